"""The probabilistic ETA model: feature state + one multi-quantile XGBoost booster.

One object serves every path: batch scoring (``predict_frame``), the online
service (``predict_columns`` on a few rows, no pandas), and MLflow's pyfunc
(:class:`eta_cli.pyfunc.EtaPyfunc`, so ``mlflow models serve`` and
``mlflow.pyfunc.load_model`` work on the logged model too).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eta_cli import features

OUTPUT_COLUMNS: tuple[str, ...] = ("eta_p10_s", "eta_p50_s", "eta_p90_s", "eta_quoted_s")
BOOSTER_FILE = "booster.ubj"
FEATURES_FILE = "feature_state.json"
META_FILE = "eta_model.json"
MODEL_DIR_ARTIFACT = "model_dir"


@dataclass
class EtaModel:
    """Median ETA, an interval and a quoted ETA for each order.

    ``quantiles`` are the booster's output quantiles in order; ``low``, ``median``,
    ``high`` and ``quoted`` name which of them answer p10 / p50 / p90 / quoted.
    """

    booster: Any  # xgboost.Booster
    state: features.FeatureState
    quantiles: tuple[float, ...]
    low: float = 0.1
    high: float = 0.9
    quoted: float = 0.7
    metadata: dict[str, Any] = field(default_factory=dict)
    # Per-quantile shifts (seconds, booster order) calibrated on validation data so the
    # interval covers what it claims on unseen orders; empty = none.
    offsets: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.offsets and len(self.offsets) != len(self.quantiles):
            raise ValueError(f"offsets {self.offsets} do not match quantiles {self.quantiles}")
        index = {round(q, 6): i for i, q in enumerate(self.quantiles)}
        try:
            self._order = [index[round(q, 6)] for q in (self.low, 0.5, self.high, self.quoted)]
        except KeyError as exc:
            raise ValueError(
                f"booster has no quantile {exc.args[0]}: it has {self.quantiles}"
            ) from exc

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """(n, 4) seconds: p_low, p50, p_high, quoted; non-crossing and non-negative."""
        raw = self.booster.inplace_predict(matrix)
        raw = np.asarray(raw, dtype=np.float64).reshape(matrix.shape[0], -1)
        if self.offsets:
            raw = raw + np.asarray(self.offsets, dtype=np.float64)
        # Quantile heads are fitted jointly but can still cross on odd inputs.
        raw = np.maximum(np.sort(raw, axis=1), 0.0)
        return raw[:, self._order]

    def predict_columns(self, columns: features.Columns) -> np.ndarray:
        return self.predict_matrix(features.build_features(columns, self.state))

    def predict_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return self.predict_columns(features.columns_from_records(records))

    def predict_frame(self, frame: Any) -> Any:
        """A pandas frame of :data:`OUTPUT_COLUMNS`, index aligned with ``frame``."""
        import pandas as pd

        values = self.predict_columns(features.columns_from_frame(frame))
        return pd.DataFrame(values, columns=list(OUTPUT_COLUMNS), index=frame.index)

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(directory / BOOSTER_FILE))
        (directory / FEATURES_FILE).write_text(json.dumps(self.state.to_dict()))
        meta = {
            "quantiles": list(self.quantiles),
            "low": self.low,
            "high": self.high,
            "quoted": self.quoted,
            "feature_names": list(features.FEATURE_NAMES),
            "offsets": list(self.offsets),
            "metadata": self.metadata,
        }
        (directory / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
        return directory

    @classmethod
    def load(cls, directory: str | Path, *, native: bool = False) -> EtaModel:
        """The model saved by :meth:`save` in ``directory``.

        ``native``: the booster is used through XGBoost's C library without importing
        the ``xgboost`` package (:class:`eta_cli.booster.NativeBooster`; seconds less
        start-up for a one-off prediction, same numbers), falling back to the package
        where the library cannot be used that way.
        """
        directory = Path(directory)
        meta = json.loads((directory / META_FILE).read_text())
        if meta.get("feature_names") != list(features.FEATURE_NAMES):
            raise ValueError(
                f"model in {directory} was built with other features than this eta version: "
                "retrain it with this version"
            )
        booster = _load_booster(directory / BOOSTER_FILE, native)
        state = features.FeatureState.from_dict(json.loads((directory / FEATURES_FILE).read_text()))
        return cls(
            booster,
            state,
            tuple(meta["quantiles"]),
            meta["low"],
            meta["high"],
            meta["quoted"],
            meta.get("metadata", {}),
            tuple(float(v) for v in meta.get("offsets") or ()),
        )


def _load_booster(path: Path, native: bool) -> Any:
    """One request, one core (threads only add latency): ``nthread`` 1 either way."""
    if native:
        from eta_cli.booster import NativeBooster, NativeUnavailable

        try:
            return NativeBooster.load(path, {"nthread": "1"})
        except NativeUnavailable:
            pass  # the package below says what is wrong with the file, if anything
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(str(path))
    booster.set_param({"nthread": 1})
    return booster
