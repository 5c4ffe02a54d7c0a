"""The Flask app through its test client: predictions, every kind of bad input, readiness,
metrics, the OpenAPI document, the access log and hot reload with a fake registry."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from datetime import datetime, timedelta

import numpy as np
import pytest
from helpers_model import fake_loaded, sample_orders, tiny_model

from eta_cli import validation
from eta_cli.serve import ModelProvider, create_app
from eta_cli.serve.prediction_log import PredictionLog

ORDERS = sample_orders(30, with_id=True)
ORDER = {k: v for k, v in ORDERS[0].items() if k != "order_id"}


@pytest.fixture
def provider(settings):
    return ModelProvider.fixed(settings, fake_loaded("1"))


@pytest.fixture
def plog(settings):
    log = PredictionLog(settings.effective_database_url, 1000).start()
    yield log
    log.close()


@pytest.fixture
def client(settings, provider, plog):
    return create_app(settings, provider, plog).test_client()


def expected_for(order, scale=1.0):
    record, _, problems = validation.validate_order(order)
    assert not problems
    return tiny_model(scale=scale).predict_records([record])[0]


def post(client, body, **kwargs):
    return client.post("/predict", data=json.dumps(body), content_type="application/json", **kwargs)


# --- happy paths ---------------------------------------------------------------


def test_health(client):
    response = client.get("/health")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_single_prediction_matches_the_model(client):
    response = post(client, ORDER)
    assert response.status_code == 200
    body = response.get_json()
    p10, p50, p90, quoted = expected_for(ORDER)
    assert body["eta_p50_s"] == round(p50, 1)
    assert body["eta_p10_s"] == round(p10, 1)
    assert body["eta_p90_s"] == round(p90, 1)
    assert body["eta_quoted_s"] == round(quoted, 1)
    assert body["eta_p10_s"] <= body["eta_p50_s"] <= body["eta_quoted_s"] <= body["eta_p90_s"]
    created = datetime.fromisoformat(ORDER["created_at"])
    assert (
        body["expected_delivery_at"]
        == (created + timedelta(seconds=round(quoted))).isoformat() + "Z"
    )
    assert body["model_name"] == "eta" and body["model_version"] == "1"
    assert body["order_id"].startswith("v2-")  # sent without one: the derived id
    assert response.headers["X-Request-ID"] == body["request_id"]
    assert len(body["request_id"]) == 32


def test_incoming_request_id_is_honoured_and_bad_ones_replaced(client):
    response = post(client, ORDER, headers={"X-Request-ID": "abc-123"})
    assert response.get_json()["request_id"] == "abc-123"
    assert response.headers["X-Request-ID"] == "abc-123"
    for bad in ("bad id <script>", "x" * 65):
        response = post(client, ORDER, headers={"X-Request-ID": bad})
        assert response.get_json()["request_id"] != bad
        assert len(response.get_json()["request_id"]) == 32


def test_batch_prediction_keeps_order_and_ids(client):
    response = post(client, {"orders": ORDERS})
    assert response.status_code == 200
    body = response.get_json()
    assert [p["order_id"] for p in body["predictions"]] == [o["order_id"] for o in ORDERS]
    records = [validation.validate_order(o)[0] for o in ORDERS]
    expected = tiny_model().predict_records(records)
    got = np.array([[p["eta_p10_s"], p["eta_p50_s"], p["eta_p90_s"]] for p in body["predictions"]])
    np.testing.assert_allclose(got, np.round(expected[:, :3], 1))
    assert body["model_version"] == "1"


def test_interval_is_named_by_the_model_quantiles(settings):
    loaded = fake_loaded("1")
    model = tiny_model()
    from eta_cli.model import EtaModel

    loaded.model = EtaModel(model.booster, model.state, model.quantiles, 0.1, 0.7, 0.5)
    client = create_app(settings, ModelProvider.fixed(settings, loaded)).test_client()
    body = post(client, ORDER).get_json()
    assert {"eta_p10_s", "eta_p70_s", "eta_p50_s"} <= set(body)
    assert "eta_p90_s" not in body
    spec = client.get("/openapi.json").get_json()
    assert "eta_p70_s" in spec["components"]["schemas"]["OrderPrediction"]["properties"]


# --- bad input: the right 4xx and a JSON error naming the field -------------------


def with_(**changes):
    return {**ORDER, **changes}


BAD_ORDERS = [
    ({k: v for k, v in ORDER.items() if k != "total_items"}, "total_items"),
    (with_(colour="red"), "colour"),
    (with_(total_items="3"), "total_items"),
    (with_(total_items=True), "total_items"),
    (with_(store_id=12.5), "store_id"),
    (with_(subtotal=-1), "subtotal"),
    (with_(total_onshift_dashers=-2), "total_onshift_dashers"),
    (with_(num_distinct_items=5000), "num_distinct_items"),
    (with_(created_at="not a date"), "created_at"),
    (with_(created_at="2015-13-01 00:00:00"), "created_at"),
    (with_(actual_delivery_time="2015-02-06 23:10:00"), "actual_delivery_time"),
    (with_(order_id={"a": 1}), "order_id"),
]


@pytest.mark.parametrize(("order", "field"), BAD_ORDERS)
def test_invalid_order_is_422_naming_the_field(client, order, field):
    response = post(client, order)
    assert response.status_code == 422
    body = response.get_json()
    assert body["error"] == "invalid order"
    assert [d["field"] for d in body["details"]] == [field]
    assert body["details"][0]["problem"] and body["details"][0]["allowed"]
    assert body["request_id"] == response.headers["X-Request-ID"]


def test_invalid_order_in_a_batch_names_its_index(client):
    response = post(client, {"orders": [ORDER, with_(total_items="3")]})
    assert response.status_code == 422
    assert response.get_json()["details"][0]["field"] == "orders[1].total_items"


def raw_post(client, data, content_type="application/json", **kwargs):
    return client.post("/predict", data=data, content_type=content_type, **kwargs)


@pytest.mark.parametrize(
    ("send", "status", "field"),
    [
        (lambda c: raw_post(c, b"{not json"), 400, "body"),
        (lambda c: raw_post(c, b""), 400, "body"),
        (lambda c: raw_post(c, b'{"total_items": NaN}'), 400, "body"),
        (lambda c: raw_post(c, b"[" * 50_000), 400, "body"),
        (lambda c: raw_post(c, b"\xff\xfe\x00"), 400, "body"),
        (lambda c: raw_post(c, json.dumps(ORDER), "text/plain"), 415, "Content-Type"),
        (lambda c: raw_post(c, json.dumps(ORDER), "application/x-www-form-urlencoded"), 415, None),
        (lambda c: c.post("/predict", data=json.dumps(ORDER)), 415, "Content-Type"),
        (lambda c: raw_post(c, b"[]"), 422, "body"),
        (lambda c: raw_post(c, b"42"), 422, "body"),
        (lambda c: raw_post(c, json.dumps({"orders": []})), 422, "orders"),
        (lambda c: raw_post(c, json.dumps({"orders": [ORDER] * 1001})), 413, "orders"),
        (lambda c: raw_post(c, b" " * 1_048_577), 413, "body"),
        (lambda c: c.get("/predict"), 405, "method"),
        (lambda c: c.put("/predict", json=ORDER), 405, "method"),
        (lambda c: c.delete("/health"), 405, "method"),
        (lambda c: c.get("/nope"), 404, "path"),
        (lambda c: c.post("/predict/extra", json=ORDER), 404, "path"),
    ],
)
def test_bad_requests_get_the_right_4xx_and_json(client, send, status, field):
    response = send(client)
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error", "details", "request_id"}
    assert body["request_id"] == response.headers["X-Request-ID"]
    if field is not None:
        assert body["details"][0]["field"] == field
    assert "Traceback" not in response.get_data(as_text=True)
    if status == 405:
        assert "Allow" in response.headers


def test_charset_parameter_is_accepted(client):
    response = raw_post(client, json.dumps(ORDER), "application/json; charset=utf-8")
    assert response.status_code == 200


def _mutations(seed: int, n: int):
    """Random bad bodies: wrong types, odd values, junk structures, truncated JSON."""
    rng = random.Random(seed)
    junk = [None, True, -1, 0, 1e308, -1e308, 1.5, "", "x" * 300, [], {}, [1], {"a": None}]
    junk += ["2015-02-06 22:24:17", "9999-12-31 23:59:59", "0001-01-01", 2**70, -(2**70)]
    fields = [*validation.ACCEPTED_FIELDS, "actual_delivery_time", "orders", "", "x" * 500]
    for _ in range(n):
        kind = rng.random()
        if kind < 0.6:
            order = dict(ORDER)
            for _ in range(rng.randint(1, 4)):
                order[rng.choice(fields)] = rng.choice(junk)
            yield json.dumps(order).encode()
        elif kind < 0.8:
            batch = [dict(ORDER) for _ in range(rng.randint(1, 5))]
            rng.choice(batch)[rng.choice(fields)] = rng.choice(junk)
            yield json.dumps({"orders": batch if rng.random() < 0.8 else rng.choice(junk)}).encode()
        else:
            text = json.dumps(ORDER).encode()
            yield text[: rng.randint(0, len(text) - 1)]


def test_no_bad_input_causes_a_5xx(client):
    for body in _mutations(seed=7, n=400):
        response = raw_post(client, body)
        assert response.status_code < 500, (body, response.get_data(as_text=True))
        assert response.get_json() is not None


def test_a_genuine_bug_is_a_json_500_without_traceback(settings, caplog):
    loaded = fake_loaded("1")

    class Broken:
        low, high = 0.1, 0.9

        def predict_records(self, records):
            raise RuntimeError("boom")

    loaded.model = Broken()
    client = create_app(settings, ModelProvider.fixed(settings, loaded)).test_client()
    with caplog.at_level(logging.ERROR, logger="eta.serve"):
        response = post(client, ORDER)
    assert response.status_code == 500
    assert response.get_json()["error"] == "internal error"
    assert "boom" not in response.get_data(as_text=True)
    assert any("boom" in (r.exc_text or "") or r.exc_info for r in caplog.records)


# --- readiness, model info, metrics, OpenAPI, access log ----------------------------


def test_ready_is_503_until_a_model_is_loaded(settings):
    release = threading.Event()

    def slow_loader(_settings, uri):
        release.wait(10)
        return fake_loaded("7", uri=uri)

    provider = ModelProvider(settings, "/some/folder", loader=slow_loader)
    client = create_app(settings, provider).test_client()
    provider.start()
    try:
        response = client.get("/ready")
        assert response.status_code == 503
        assert response.get_json()["ready"] is False
        assert post(client, ORDER).status_code == 503
        assert client.get("/model").status_code == 503
        assert client.get("/health").status_code == 200
        release.set()
        deadline = time.monotonic() + 10
        while client.get("/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        ready = client.get("/ready").get_json()
        assert ready["ready"] is True and ready["model"]["version"] == "7"
        assert ready["polling"] is False  # a folder is not polled
        assert post(client, ORDER).get_json()["model_version"] == "7"
    finally:
        release.set()
        provider.stop()


def test_model_endpoint(client):
    body = client.get("/model").get_json()
    assert body["name"] == "eta" and body["version"] == "1" and body["alias"] == "champion"
    assert body["quantiles"] == {"low": 0.1, "median": 0.5, "high": 0.9, "quoted": 0.7}
    assert body["registry"] == "not used"


def _metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        metric, _, value = line.rpartition(" ")
        if metric.split("{")[0] != name:
            continue
        if all(f'{k}="{v}"' in metric for k, v in labels.items()):
            return float(value)
    return 0.0


def test_metrics_counters_move(client):
    before = client.get("/metrics").get_data(as_text=True)
    assert _metric(before, "eta_model_loaded") == 1
    post(client, ORDER)
    post(client, {"orders": ORDERS[:5]})
    post(client, with_(total_items="x"))
    client.get("/nope")
    response = client.get("/metrics")
    assert response.content_type.startswith("text/plain; version=0.0.4")
    text = response.get_data(as_text=True)
    ok = dict(method="POST", path="/predict", status="200")
    assert _metric(text, "eta_http_requests_total", **ok) == 2
    assert _metric(text, "eta_http_requests_total", path="/predict", status="422") == 1
    assert _metric(text, "eta_http_requests_total", path="<unmatched>", status="404") == 1
    assert _metric(text, "eta_predictions_total", model_version="1") == 6
    assert _metric(text, "eta_http_request_duration_seconds_count", path="/predict") == 3
    assert (
        _metric(text, "eta_http_request_duration_seconds_bucket", path="/predict", le="+Inf") == 3
    )
    assert "eta_prediction_log_dropped_total 0.0" in text
    assert 'eta_model_info{model_name="eta",model_version="1"} 1' in text


def test_client_chosen_methods_and_paths_mint_no_series(client):
    """FOO0..FOO50 and random paths all land in one OTHER / <unmatched> series."""
    before = client.get("/metrics").get_data(as_text=True).count("\n")
    for i in range(51):
        client.open(f"/x{i}", method=f"FOO{i}")
        client.open("/predict", method=f"FOO{i}")
        client.get(f"/nope/{i}")
    text = client.get("/metrics").get_data(as_text=True)
    assert "FOO" not in text and "/nope" not in text and "/x1" not in text
    other = dict(method="OTHER", path="<unmatched>")
    assert _metric(text, "eta_http_requests_total", **other, status="404") == 51
    assert _metric(text, "eta_http_requests_total", **other, status="405") == 51
    assert _metric(text, "eta_http_requests_total", method="GET", path="<unmatched>") == 51
    # A handful of new series (these three, their histograms), not one per request.
    assert text.count("\n") - before < 60


def test_dropped_predictions_show_in_metrics(settings, provider):
    tiny = PredictionLog(settings.effective_database_url, capacity=3)  # never started: fills up
    client = create_app(settings, provider, tiny).test_client()
    post(client, {"orders": ORDERS[:2]})
    post(client, {"orders": ORDERS[:2]})  # does not fit: 2 dropped
    post(client, ORDER)
    text = client.get("/metrics").get_data(as_text=True)
    assert _metric(text, "eta_prediction_log_dropped_total") == 2
    assert _metric(text, "eta_prediction_log_pending") == 3
    tiny.close()


def test_openapi_is_valid_and_matches_what_is_accepted(client):
    from jsonschema import Draft202012Validator
    from openapi_spec_validator import validate

    doc = client.get("/openapi.json").get_json()
    validate(doc)
    schemas = doc["components"]["schemas"]
    assert set(schemas["Order"]["properties"]) == set(validation.ACCEPTED_FIELDS)
    assert schemas["OrderBatch"]["properties"]["orders"]["maxItems"] == 1000
    # Every field of the spec is accepted by the server, and nothing else is.
    for name in schemas["Order"]["properties"]:
        if name not in validation.REQUIRED_FIELDS:
            assert post(client, {**ORDER, name: None}).status_code == 200, name
    for name in validation.REQUIRED_FIELDS:
        order = {k: v for k, v in ORDER.items() if k != name}
        assert post(client, order).status_code == 422, name
    # The answers match the documented response schemas.
    components = {"components": doc["components"]}
    single = Draft202012Validator({"$ref": "#/components/schemas/Prediction", **components})
    batch = Draft202012Validator({"$ref": "#/components/schemas/BatchPrediction", **components})
    error = Draft202012Validator({"$ref": "#/components/schemas/Error", **components})
    single.validate(post(client, ORDER).get_json())
    batch.validate(post(client, {"orders": ORDERS[:3]}).get_json())
    error.validate(post(client, with_(total_items="x")).get_json())
    assert set(doc["paths"]) == {rule.rule for rule in client.application.url_map.iter_rules()}


def test_openapi_documents_the_admin_token_of_reload(settings, provider):
    """/reload's 401/403 and its bearer scheme are in /openapi.json, and the real
    refusals match the documented error body."""
    from jsonschema import Draft202012Validator

    off = create_app(settings.replace(admin_token=""), provider).test_client()
    on = create_app(settings.replace(admin_token=TOKEN), provider).test_client()
    doc = on.get("/openapi.json").get_json()
    assert doc == off.get("/openapi.json").get_json()  # the token is never in it
    assert TOKEN not in json.dumps(doc)
    schemes = doc["components"]["securitySchemes"]
    assert len(schemes) == 1
    ((name, scheme),) = schemes.items()
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    reload = doc["paths"]["/reload"]["post"]
    assert reload["security"] == [{name: []}]
    assert {"401", "403"} <= set(reload["responses"])
    assert "security" not in doc and "security" not in doc["paths"]["/predict"]["post"]
    error = Draft202012Validator({"$ref": "#/components/schemas/Error", **doc})
    answers = {
        "403": off.post("/reload", headers={"Authorization": f"Bearer {TOKEN}"}),
        "401": on.post("/reload", headers={"Authorization": "Bearer wrong"}),
    }
    for status, answer in answers.items():
        assert str(answer.status_code) == status
        assert reload["responses"][status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }
        error.validate(answer.get_json())


def test_one_structured_log_line_per_request(client, caplog):
    with caplog.at_level(logging.INFO, logger="eta.serve.access"):
        post(client, {"orders": ORDERS[:3]}, headers={"X-Request-ID": "req-1"})
        post(client, with_(total_items="x"), headers={"X-Request-ID": "req-2"})
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "eta.serve.access"]
    assert len(lines) == 2
    first, second = lines
    assert first["request_id"] == "req-1" and first["status"] == 200
    assert first["n_orders"] == 3 and first["model_version"] == "1"
    assert first["method"] == "POST" and first["path"] == "/predict"
    assert first["latency_ms"] > 0
    assert second["status"] == 422 and second["n_orders"] == 0


# --- hot reload with a fake registry ---------------------------------------------


class FakeRegistry:
    """Alias -> version, models by version; can be made unreachable."""

    def __init__(self):
        self.alias_version = "1"
        self.down = False
        self.loads = 0

    def resolve(self, settings, name, alias):
        if self.down:
            raise ConnectionError("connection refused")
        return self.alias_version

    def load(self, settings, uri):
        if self.down:
            raise ConnectionError("connection refused")
        self.loads += 1
        version = self.alias_version
        return fake_loaded(version, scale=1.0 if version == "1" else 2.0, uri=uri)


TOKEN = "test-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def admin_client(settings, provider):
    """A test client of an app with an admin token, sending it on every request."""
    app = create_app(settings.replace(admin_token=TOKEN), provider)
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = ADMIN["Authorization"]
    return client


def test_reload_swaps_when_the_alias_moves_and_survives_an_unreachable_registry(settings):
    registry = FakeRegistry()
    provider = ModelProvider(settings, loader=registry.load, resolver=registry.resolve)
    client = admin_client(settings, provider)
    assert client.post("/reload").get_json()["status"] == "loaded"
    assert post(client, ORDER).get_json()["model_version"] == "1"
    assert client.post("/reload").get_json()["status"] == "unchanged"
    assert registry.loads == 1

    registry.alias_version = "2"
    body = client.post("/reload").get_json()
    assert body["status"] == "loaded" and body["serving_version"] == "2"
    answer = post(client, ORDER).get_json()
    assert answer["model_version"] == "2"
    assert answer["eta_p50_s"] == round(expected_for(ORDER, scale=2.0)[1], 1)

    registry.down = True
    response = client.post("/reload")
    assert response.status_code == 503
    assert response.get_json()["registry"].startswith("unreachable since ")
    ready = client.get("/ready")
    assert ready.status_code == 200  # still serving what it has
    assert ready.get_json()["registry"].startswith("unreachable")
    assert client.get("/model").get_json()["registry"].startswith("unreachable")
    assert post(client, ORDER).get_json()["model_version"] == "2"
    metrics = client.get("/metrics").get_data(as_text=True)
    assert _metric(metrics, "eta_registry_reachable") == 0

    registry.down = False
    client.post("/reload")
    assert client.get("/ready").get_json()["registry"] == "ok"


def test_background_polling_follows_the_alias(settings):
    fast = settings.replace(reload_interval_s=0.05)
    registry = FakeRegistry()
    provider = ModelProvider(fast, loader=registry.load, resolver=registry.resolve).start()
    client = create_app(fast, provider).test_client()
    try:
        deadline = time.monotonic() + 10
        while provider.current is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert post(client, ORDER).get_json()["model_version"] == "1"
        registry.alias_version = "2"
        while provider.current.version != "2" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert post(client, ORDER).get_json()["model_version"] == "2"
    finally:
        provider.stop()


def test_no_model_in_registry_is_reported(settings):
    registry = FakeRegistry()
    registry.alias_version = None
    provider = ModelProvider(settings, loader=registry.load, resolver=registry.resolve)
    client = admin_client(settings, provider)
    client.post("/reload")
    response = client.get("/ready")
    assert response.status_code == 503
    reason = response.get_json()["reason"]
    assert reason == "no champion for model 'eta' yet: run `eta train` and `eta register`"


def test_reload_is_off_without_a_configured_token(settings):
    registry = FakeRegistry()
    provider = ModelProvider(settings, loader=registry.load, resolver=registry.resolve)
    client = create_app(settings, provider).test_client()  # no ETA_ADMIN_TOKEN
    for headers in ({}, ADMIN, {"Authorization": "Bearer "}):
        response = client.post("/reload", headers=headers)
        assert response.status_code == 403
        body = response.get_json()
        assert body["error"] == "admin routes are off"
        assert body["details"][0]["field"] == "Authorization"
        assert "ETA_ADMIN_TOKEN" in body["details"][0]["problem"]
    assert registry.loads == 0 and provider.current is None  # nothing happened


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (None, "missing"),
        ("Basic dXNlcjpwYXNz", "not a Bearer token"),
        ("Bearer", "not a Bearer token"),
        ("Bearer wrong-token", "wrong token"),
        (f"Bearer {TOKEN}x", "wrong token"),
        ("Bearer t\u00f6ken-\u00e9", "wrong token"),  # non-ASCII: refused, not a 500
    ],
)
def test_reload_needs_the_right_bearer_token(settings, header, problem):
    registry = FakeRegistry()
    provider = ModelProvider(settings, loader=registry.load, resolver=registry.resolve)
    client = create_app(settings.replace(admin_token=TOKEN), provider).test_client()
    headers = {} if header is None else {"Authorization": header}
    response = client.post("/reload", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.get_json()["details"][0] == {
        "field": "Authorization",
        "problem": problem,
        "allowed": "Authorization: Bearer <ETA_ADMIN_TOKEN>",
    }
    assert registry.loads == 0 and provider.current is None
    ok = client.post("/reload", headers={"Authorization": f"bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.get_json()["status"] == "loaded"


def test_concurrent_reloads_join_one_check_and_start_one_thread(settings):
    """30 reloads while a slow load runs: one load, one reload thread, the same answer."""
    registry = FakeRegistry()
    release = threading.Event()
    started = threading.Event()

    def slow_load(settings, uri):
        started.set()
        release.wait(10)
        return registry.load(settings, uri)

    provider = ModelProvider(settings, loader=slow_load, resolver=registry.resolve)
    client = admin_client(settings, provider)
    answers: list[dict] = []

    def call():
        answers.append(client.post("/reload").get_json())

    callers = [threading.Thread(target=call) for _ in range(30)]
    for t in callers:
        t.start()
    assert started.wait(10)
    time.sleep(0.2)  # every caller has arrived and joined the running check
    reload_threads = [t for t in threading.enumerate() if t.name == "eta-reload"]
    assert len(reload_threads) == 1
    release.set()
    for t in callers:
        t.join(10)
    assert registry.loads == 1
    assert len(answers) == 30 and {a["status"] for a in answers} == {"loaded"}
    # The poller joins the same way: a check while none runs is a fresh one, unchanged.
    assert provider.check_once().status == "unchanged" and registry.loads == 1


def test_reload_of_a_pinned_version_is_a_no_op(settings):
    registry = FakeRegistry()
    provider = ModelProvider(settings, "models:/eta/1", loader=registry.load)
    client = admin_client(settings, provider)
    assert client.post("/reload").get_json()["status"] == "loaded"
    for _ in range(5):
        body = client.post("/reload").get_json()
        assert body["status"] == "unchanged" and body["version"] == "1"
    assert registry.loads == 1


# --- the lean XGBoost call ---------------------------------------------------------


def test_lean_booster_is_bit_identical_and_used_when_serving(settings):
    from eta_cli.serve import LeanBooster, accelerate

    loaded = fake_loaded("1")
    fast = accelerate(loaded)
    assert isinstance(fast.model.booster, LeanBooster)
    assert loaded.model.booster is tiny_model().booster  # the original is left alone
    rng = np.random.default_rng(3)
    matrix = rng.normal(800, 600, size=(257, 25)).astype(np.float32)
    matrix[rng.random(matrix.shape) < 0.1] = np.nan
    for rows in (matrix[:1], matrix[:7], matrix):
        assert np.array_equal(
            fast.model.booster.inplace_predict(rows), loaded.model.booster.inplace_predict(rows)
        )
    provider = ModelProvider.fixed(settings, loaded)
    assert isinstance(provider.current.model.booster, LeanBooster)


def test_lean_and_native_boosters_share_one_prediction_call(tmp_path, monkeypatch):
    """The service's lean call and `eta predict`'s native booster are one implementation
    (eta_cli.booster.predict_dense), bit-identical to xgboost's own, float32 or float64."""
    from eta_cli import booster as booster_module
    from eta_cli.booster import NativeBooster
    from eta_cli.serve import LeanBooster

    model = tiny_model()
    model.save(tmp_path / "model")
    native = NativeBooster.load(tmp_path / "model" / "booster.ubj")
    lean = LeanBooster(model.booster)
    rng = np.random.default_rng(5)
    matrix = rng.normal(800, 600, size=(33, 25))
    matrix[rng.random(matrix.shape) < 0.1] = np.nan
    for rows in (matrix[:1], matrix, matrix.astype(np.float32), matrix[::2]):
        expected = model.booster.inplace_predict(rows)
        assert np.array_equal(lean.inplace_predict(rows), expected)
        assert np.array_equal(native.inplace_predict(rows), expected)
    calls = []
    real = booster_module.predict_dense
    monkeypatch.setattr(booster_module, "predict_dense", lambda *a: calls.append(a[1]) or real(*a))
    monkeypatch.setattr("eta_cli.serve.lean.predict_dense", booster_module.predict_dense)
    lean.inplace_predict(matrix[:1])
    native.inplace_predict(matrix[:1])
    assert calls == [lean.booster.handle, native.handle]


def test_lean_booster_falls_back_when_it_disagrees(monkeypatch):
    from eta_cli import serve

    monkeypatch.setattr(serve.LeanBooster, "inplace_predict", lambda self, data: data[:, :4] * 0)
    loaded = fake_loaded("1")
    assert serve.accelerate(loaded) is loaded
