"""Property-based fuzzing of the request validator through the app: whatever JSON (or
not-JSON) a client sends as orders, the answer is never a 5xx nor a traceback, and every
refusal names the field it is about."""

from __future__ import annotations

import json

import pytest
from helpers_model import fake_loaded, sample_orders
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from eta_cli import validation
from eta_cli.serve import ModelProvider, create_app

BASE = {k: v for k, v in sample_orders(1)[0].items() if k != "order_id"}
FIELDS = [*validation.ACCEPTED_FIELDS, "actual_delivery_time", "unknown", ""]

# Any JSON value: scalars (huge and odd numbers, any text incl. surrogates and NUL), nested.
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=80)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
# Orders close to valid: the base order with some fields replaced, dropped or added.
near_orders = st.builds(
    lambda changes, dropped: {
        **{k: v for k, v in BASE.items() if k not in dropped},
        **changes,
    },
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=4),
    st.sets(st.sampled_from(list(BASE)), max_size=3),
)
bodies = (
    near_orders
    | json_values
    | st.builds(lambda orders: {"orders": orders}, st.lists(near_orders | json_values, max_size=6))
    | st.builds(lambda v: {"orders": v}, json_values)
)
FUZZ = hsettings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from eta_cli.config import load_settings

    settings = load_settings(overrides={"home": str(tmp_path_factory.mktemp("fuzz"))})
    return create_app(settings, ModelProvider.fixed(settings, fake_loaded("1"))).test_client()


def _check(response) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)
    text = response.get_data(as_text=True)
    assert "Traceback" not in text
    body = json.loads(text)
    if response.status_code >= 400:
        assert set(body) == {"error", "details", "request_id"}
        assert body["details"], body
        for detail in body["details"]:
            assert isinstance(detail["field"], str) and detail["field"], body
            assert isinstance(detail["problem"], str) and detail["problem"], body
        text.encode("utf-8")  # writable anywhere: no lone surrogate echoed back


@FUZZ
@given(body=bodies)
def test_any_json_body_is_answered_without_5xx_and_refusals_name_their_field(client, body):
    try:
        data = json.dumps(body)
    except (UnicodeEncodeError, ValueError):
        return
    _check(client.post("/predict", data=data, content_type="application/json"))


@FUZZ
@given(
    raw=st.binary(max_size=200)
    | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))
)
def test_any_bytes_are_answered_without_5xx(client, raw):
    _check(client.post("/predict", data=raw, content_type="application/json"))
