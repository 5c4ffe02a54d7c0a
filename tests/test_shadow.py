"""The shadow challenger of ``eta serve``: logged with its role and version, never answered,
never in the way of /predict (a full queue drops and counts), following its own alias."""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa
from helpers_model import fake_loaded, sample_orders

from eta_cli.config import load_settings
from eta_cli.monitor import database
from eta_cli.serve import ModelProvider, create_app
from eta_cli.serve.prediction_log import PredictionLog
from eta_cli.serve.shadow import ShadowProvider, ShadowScorer, shadow_for


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def _rows(settings) -> list[dict]:
    engine = database.engine_for(settings)
    table = database.predictions
    try:
        with engine.connect() as conn:
            query = sa.select(table).order_by(table.c.role, table.c.id)
            return [dict(r) for r in conn.execute(query).mappings()]
    finally:
        engine.dispose()


def test_shadow_is_logged_with_role_and_version_and_never_answers(settings) -> None:
    champion, challenger = fake_loaded("1"), fake_loaded("2", scale=1.5, alias="challenger")
    plog = PredictionLog(settings.effective_database_url, 1000).start()
    shadow = ShadowScorer(settings, ModelProvider.fixed(settings, challenger), plog)
    app = create_app(settings, ModelProvider.fixed(settings, champion), plog, shadow)
    client = app.test_client()
    orders = sample_orders(6, seed=5, with_id=True)
    try:
        batch = client.post("/predict", json={"orders": orders[:5]})
        single = client.post("/predict", json=orders[5])
        assert batch.status_code == single.status_code == 200
        # The client gets the champion's answer only: its version, its numbers, no shadow.
        own = champion.model.predict_records(orders[:5])
        body = batch.get_json()
        assert body["model_version"] == "1" and "shadow" not in body
        assert [p["eta_p50_s"] for p in body["predictions"]] == [round(v, 1) for v in own[:, 1]]
        assert single.get_json()["model_version"] == "1"
        assert "challenger" not in batch.get_data(as_text=True)

        assert shadow.drain() == 6  # the worker's job, done here for a deterministic test
        assert plog.flush()
    finally:
        plog.close()
    rows = _rows(settings)
    by_role = {role: [r for r in rows if r["role"] == role] for role in ("champion", "challenger")}
    assert len(by_role["champion"]) == len(by_role["challenger"]) == 6
    assert {r["model_version"] for r in by_role["champion"]} == {"1"}
    assert {r["model_version"] for r in by_role["challenger"]} == {"2"}
    for role in by_role:  # same requests, same orders, in both roles
        assert [r["order_id"] for r in by_role[role]] == [o["order_id"] for o in orders]
    assert [r["request_id"] for r in by_role["champion"]] == [
        r["request_id"] for r in by_role["challenger"]
    ]
    theirs = challenger.model.predict_records(orders)
    assert [r["eta_p50_s"] for r in by_role["challenger"]] == [float(v) for v in theirs[:, 1]]

    model = client.get("/model").get_json()
    assert model["version"] == "1"
    assert model["shadow"]["version"] == "2" and model["shadow"]["model"]["version"] == "2"
    assert model["shadow"]["scored"] == 6 and model["shadow"]["dropped"] == 0
    metrics = client.get("/metrics").get_data(as_text=True)
    assert _metric(metrics, "eta_shadow_scored_total") == 6
    assert 'eta_shadow_model_info{model_name="eta",model_version="2"} 1.0' in metrics


class BlockedModel:
    """A challenger that hangs until released: the shadow worker stays stuck on it."""

    def __init__(self, model, release: threading.Event) -> None:
        self.model, self.release = model, release

    def predict_records(self, records):
        self.release.wait(30)
        return self.model.predict_records(records)


def test_a_stuck_shadow_never_blocks_predict_and_a_full_queue_is_counted(settings) -> None:
    release = threading.Event()
    stuck = fake_loaded("2", alias="challenger")
    stuck.model = BlockedModel(stuck.model, release)
    plog = PredictionLog(settings.effective_database_url, 1000).start()
    shadow = ShadowScorer(settings, ModelProvider.fixed(settings, stuck), plog, capacity=3)
    app = create_app(settings, ModelProvider.fixed(settings, fake_loaded("1")), plog, shadow)
    client = app.test_client()
    orders = sample_orders(12, seed=9, with_id=True)
    shadow.start()
    try:
        client.post("/predict", json=orders[0])
        deadline = time.monotonic() + 10
        while shadow.pending and time.monotonic() < deadline:  # the worker took it, and hangs
            time.sleep(0.01)
        started = time.perf_counter()
        answers = [client.post("/predict", json=order) for order in orders[1:]]
        elapsed = time.perf_counter() - started
        assert all(a.status_code == 200 for a in answers)
        assert all(a.get_json()["model_version"] == "1" for a in answers)
        assert elapsed < 5  # 11 answers while the shadow is stuck: nothing waited for it
        stats = shadow.stats()
        assert stats["pending"] == 3 and stats["dropped"] == 8  # 3 queued, the rest dropped
        metrics = client.get("/metrics").get_data(as_text=True)
        assert _metric(metrics, "eta_shadow_dropped_total") == 8
        assert _metric(metrics, "eta_shadow_pending") == 3
    finally:
        release.set()
        shadow.close()
        plog.close()
    assert shadow.stats()["scored"] == 4  # the stuck one and the 3 queued, once released
    challenger_rows = [r for r in _rows(settings) if r["role"] == "challenger"]
    assert len(challenger_rows) == 4


def test_sample_zero_shadows_nothing(settings) -> None:
    plog = PredictionLog(settings.effective_database_url, 100)
    shadow = ShadowScorer(
        settings, ModelProvider.fixed(settings, fake_loaded("2")), plog, sample=0.0
    )
    app = create_app(settings, ModelProvider.fixed(settings, fake_loaded("1")), plog, shadow)
    for order in sample_orders(5, with_id=True):
        assert app.test_client().post("/predict", json=order).status_code == 200
    assert shadow.pending == 0 and shadow.stats()["dropped"] == 0


def test_shadow_follows_its_alias_and_the_setting_turns_it_off(settings, monkeypatch) -> None:
    aliases = {"champion": "1", "challenger": "2"}

    def resolve(_settings, name, alias):
        return aliases.get(alias)

    def load(_settings, uri):
        alias = uri.rsplit("@", 1)[1]
        return fake_loaded(aliases[alias], alias=alias, uri=uri)

    plog = PredictionLog(settings.effective_database_url, 100)
    provider = ModelProvider(settings, loader=load, resolver=resolve)
    shadow = shadow_for(settings, provider, plog)
    assert isinstance(shadow.provider, ShadowProvider)
    assert shadow.provider.model_uri == "models:/eta@challenger"
    assert shadow.provider.check().status == "loaded"
    assert shadow.provider.current.version == "2"
    aliases["challenger"] = "3"  # a new challenger registered: followed
    assert shadow.provider.check().version == "3"
    assert shadow.provider.current.version == "3"
    del aliases["challenger"]  # promoted or retired: the shadow stops scoring
    shadow.provider.check()
    assert shadow.provider.current is None
    app = create_app(settings, ModelProvider.fixed(settings, fake_loaded("1")), plog, shadow)
    assert app.test_client().get("/model").get_json()["shadow"]["active"] is False

    monkeypatch.setenv("ETA_SHADOW_ALIAS", "")  # set but empty: no shadow
    off = load_settings()
    assert off.shadow_alias == ""
    assert shadow_for(off, provider, plog) is None
    monkeypatch.delenv("ETA_SHADOW_ALIAS")
    assert load_settings().shadow_alias == "challenger"
    assert shadow_for(settings, provider, None) is None  # nothing logged: nothing to shadow
    pinned = ModelProvider(settings, "models:/eta/1", loader=load, resolver=resolve)
    assert shadow_for(settings, pinned, plog) is None
