"""Tiny real models for serving and prediction tests (trained in a second, cached per process).

A real multi-quantile XGBoost booster over the real feature builder, so tests
exercise the same code the service runs; ``scale`` gives a second model whose
outputs are clearly different (a hot-reload test must tell them apart).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eta_cli import features, schema
from eta_cli.model import EtaModel

QUANTILES = (0.1, 0.5, 0.7, 0.9)


@dataclass
class FakeLoaded:
    """Same fields as ``eta_cli.registry.LoadedModel``, for tests that need no registry."""

    model: EtaModel
    name: str = "eta"
    version: str | None = "1"
    alias: str | None = "champion"
    run_id: str | None = None
    uri: str = "models:/eta@champion"
    metrics: dict[str, float] = field(default_factory=dict)
    trained_at: str | None = None


def training_data(n: int = 3000, seed: int = 0) -> tuple[dict[str, Any], np.ndarray]:
    """Order columns and delivery seconds of clean synthetic orders."""
    from eta_cli.synthetic import generate_orders

    orders = generate_orders(n, seed, messy=False)
    target = (orders["actual_delivery_time"] - orders["created_at"]).dt.total_seconds().to_numpy()
    return features.columns_from_frame(orders), target


def tiny_model(seed: int = 0, scale: float = 1.0, rounds: int = 30, n: int = 3000) -> EtaModel:
    """A small multi-quantile booster wrapped in :class:`EtaModel` (cached: treat as read-only)."""
    return _tiny_model(int(seed), float(scale), int(rounds), int(n))


@functools.cache
def _tiny_model(seed: int, scale: float, rounds: int, n: int) -> EtaModel:
    import xgboost as xgb

    columns, target = training_data(n, seed)
    target = target * scale
    matrix, state = features.build_training_features(columns, target)
    params = {
        "objective": "reg:quantileerror",
        "quantile_alpha": list(QUANTILES),
        "tree_method": "hist",
        "max_depth": 4,
        "learning_rate": 0.2,
        "nthread": 1,
        "seed": seed,
    }
    booster = xgb.train(params, xgb.DMatrix(matrix, label=target), num_boost_round=rounds)
    booster.set_param({"nthread": 1})
    return EtaModel(booster, state, QUANTILES, 0.1, 0.9, 0.7, {"seed": seed, "scale": scale})


def fake_loaded(version: str = "1", scale: float = 1.0, **kwargs: Any) -> FakeLoaded:
    return FakeLoaded(model=tiny_model(scale=scale), version=version, **kwargs)


def sample_orders(n: int = 20, seed: int = 123, with_id: bool = False) -> list[dict[str, Any]]:
    """JSON-ready orders as a client would send them (no label, None for missing)."""
    from eta_cli.synthetic import generate_orders

    frame = generate_orders(n, seed, messy=False)
    out = []
    for i, row in enumerate(frame.to_dict("records")):
        order: dict[str, Any] = {}
        for name in schema.INPUT_COLUMNS:
            value = row[name]
            if value is None or (not isinstance(value, str) and _isna(value)):
                order[name] = None
            elif name == schema.CREATED_AT:
                order[name] = value.strftime("%Y-%m-%d %H:%M:%S")
            elif isinstance(value, str):
                order[name] = value
            else:
                order[name] = int(value)
        if with_id:
            order["order_id"] = f"o-{seed}-{i}"
        out.append(order)
    return out


def _isna(value: Any) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


class ServerThread:
    """A real waitress server for an app on a free loopback port, in a background thread."""

    def __init__(self, app: Any, threads: int = 8) -> None:
        from waitress import create_server

        self.server = create_server(app, host="127.0.0.1", port=0, threads=threads, ident="eta")
        self.port = int(self.server.effective_port)
        self.url = f"http://127.0.0.1:{self.port}"
        import threading

        self.thread = threading.Thread(target=self.server.run, name="test-waitress", daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.task_dispatcher.shutdown(timeout=5)

        def close_all() -> None:  # runs in the loop's thread: no socket closed under select()
            for channel in list(self.server._map.values()):
                channel.close()

        self.server.trigger.pull_trigger(close_all)
        self.thread.join(5)


def log_and_register(
    settings: Any, model: EtaModel, alias: str | None = "champion", tmp_dir: Any = None
) -> str:
    """Log ``model`` as the pyfunc ``eta train`` logs and register a version; return it.

    Uses MLflow directly (the tracking store of ``settings``), so registry tests do
    not depend on a full training run.
    """
    import tempfile

    import mlflow

    from eta_cli import registry, tracking
    from eta_cli.model import MODEL_DIR_ARTIFACT
    from eta_cli.pyfunc import EtaPyfunc

    client = tracking.configure(settings)
    with tempfile.TemporaryDirectory() as tmp:
        folder = model.save(f"{tmp}/model_dir")
        with mlflow.start_run(experiment_id=tracking.experiment_id(client, settings)) as run:
            info = mlflow.pyfunc.log_model(
                name=registry.MODEL_ARTIFACT,
                python_model=EtaPyfunc(),
                artifacts={MODEL_DIR_ARTIFACT: str(folder)},
                pip_requirements=["xgboost"],
            )
            mlflow.log_metric("test_mae", 100.0)
    version = mlflow.register_model(info.model_uri, settings.model_name)
    if alias:
        client.set_registered_model_alias(settings.model_name, alias, version.version)
    del run
    return str(version.version)
