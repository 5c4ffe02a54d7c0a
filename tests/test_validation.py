"""Order validation and the OpenAPI schema generated from the same column definitions."""

from __future__ import annotations

import copy
from datetime import datetime

import pytest

from eta_cli import schema, validation
from eta_cli.serve.openapi import openapi_document
from eta_cli.validation import ApiError, parse_json, parse_predict_request, validate_order

GOOD = {
    "market_id": 1,
    "created_at": "2015-02-06 22:24:17",
    "store_id": 1845,
    "store_primary_category": "american",
    "order_protocol": 1,
    "total_items": 4,
    "subtotal": 3441,
    "num_distinct_items": 4,
    "min_item_price": 557,
    "max_item_price": 1239,
    "total_onshift_dashers": 33,
    "total_busy_dashers": 14,
    "total_outstanding_orders": 21,
    "estimated_order_place_duration": 446,
    "estimated_store_to_consumer_driving_duration": 861,
}


def with_(**changes):
    order = copy.deepcopy(GOOD)
    order.update(changes)
    return order


def without(*names):
    return {k: v for k, v in GOOD.items() if k not in names}


def problems_of(order):
    record, _, problems = validate_order(order)
    assert (record is None) == bool(problems)
    return {p.field: p for p in problems}


def test_good_order_is_cleaned_for_the_feature_builder():
    record, order_id, problems = validate_order(with_(order_id="A-1", total_items=4.0))
    assert problems == []
    assert order_id == "A-1"
    assert record["created_at"] == datetime(2015, 2, 6, 22, 24, 17)
    assert record["total_items"] == 4 and type(record["total_items"]) is int
    assert set(record) == set(schema.INPUT_COLUMNS)  # order_id is not a feature


def test_only_required_fields_is_enough_and_optional_become_none():
    record, _, problems = validate_order({k: GOOD[k] for k in schema.REQUIRED_INPUT_COLUMNS})
    assert problems == []
    assert record["market_id"] is None and record["total_onshift_dashers"] is None


@pytest.mark.parametrize(
    ("order", "field", "words"),
    [
        (without("total_items"), "total_items", "missing"),
        (with_(subtotal=None), "subtotal", "must not be null"),
        (with_(total_items="4"), "total_items", "expected an integer, got string"),
        (with_(total_items=True), "total_items", "expected an integer, got boolean"),
        (with_(store_id=12.5), "store_id", "not a whole number"),
        (with_(market_id=[1]), "market_id", "expected an integer, got array"),
        (with_(total_items=0), "total_items", "out of range"),
        (with_(total_items=1001), "total_items", "out of range"),
        (with_(total_onshift_dashers=-3), "total_onshift_dashers", "out of range"),
        (with_(total_busy_dashers=-1.0), "total_busy_dashers", "out of range"),
        (with_(created_at="yesterday"), "created_at", "not a valid timestamp"),
        (with_(created_at="2015-02-30 10:00:00"), "created_at", "not a valid timestamp"),
        (with_(created_at="1900-01-01 10:00:00"), "created_at", "not a valid timestamp"),
        (with_(created_at=1423261457), "created_at", "expected a timestamp string"),
        (with_(store_primary_category=7), "store_primary_category", "expected a string"),
        (with_(store_primary_category="x" * 201), "store_primary_category", "too long"),
        (with_(actual_delivery_time="2015-02-06 23:00:00"), "actual_delivery_time", "not allowed"),
        (with_(colour="red"), "colour", "unknown field"),
        (with_(order_id=""), "order_id", "string of 0 characters"),
        (with_(order_id=1.5), "order_id", "expected a string or an integer"),
    ],
)
def test_each_bad_field_is_named_with_what_is_allowed(order, field, words):
    problems = problems_of(order)
    assert field in problems, problems
    assert words in problems[field].problem
    assert problems[field].allowed  # every problem says what would be accepted


def test_allowed_text_comes_from_the_schema():
    problem = problems_of(with_(total_items=0))["total_items"]
    column = schema.BY_NAME["total_items"]
    assert f"from {int(column.minimum)} to {int(column.maximum)}" in problem.allowed
    unknown = problems_of(with_(colour="red"))["colour"]
    assert all(name in unknown.allowed for name in validation.ACCEPTED_FIELDS)


def test_all_problems_are_reported_not_only_the_first():
    problems = problems_of(with_(total_items="x", subtotal=-1, foo=1))
    assert set(problems) == {"total_items", "subtotal", "foo"}


def test_timezones_are_converted_to_utc():
    record, _, _ = validate_order(with_(created_at="2015-02-06T23:24:17+01:00"))
    assert record["created_at"] == datetime(2015, 2, 6, 22, 24, 17)
    record, _, _ = validate_order(with_(created_at="2015-02-06T22:24:17.5Z"))
    assert record["created_at"] == datetime(2015, 2, 6, 22, 24, 17, 500000)


def test_not_an_object():
    for body in ([GOOD], "order", 3, None):
        with pytest.raises(ApiError) as info:
            parse_predict_request(body, 10)
        assert info.value.status == 422
        assert info.value.details[0].field == "body"


def test_batch_problems_name_the_order_index():
    body = {"orders": [GOOD, with_(total_items="x"), GOOD, without("store_id")]}
    with pytest.raises(ApiError) as info:
        parse_predict_request(body, 10)
    assert info.value.status == 422
    assert {d.field for d in info.value.details} == {"orders[1].total_items", "orders[3].store_id"}


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"orders": []}, 422, "orders"),
        ({"orders": GOOD}, 422, "orders"),
        ({"orders": [GOOD] * 4}, 413, "orders"),
        ({"orders": [GOOD], "extra": 1}, 422, "extra"),
    ],
)
def test_batch_shape(body, status, field):
    with pytest.raises(ApiError) as info:
        parse_predict_request(body, 3)
    assert info.value.status == status
    assert info.value.details[0].field == field


def test_batch_of_good_orders():
    parsed = parse_predict_request({"orders": [GOOD, with_(order_id=7)]}, 3)
    assert parsed.batch and len(parsed.records) == 2 and parsed.order_ids == [None, "7"]


def test_details_are_capped():
    body = {"orders": [with_(total_items="x")] * 150}
    with pytest.raises(ApiError) as info:
        parse_predict_request(body, 1000)
    assert len(info.value.details) == validation.MAX_DETAILS + 1
    assert "more problems" in info.value.details[-1].problem


@pytest.mark.parametrize(
    "raw", [b"", b"   ", b"{", b"not json", b'{"a": NaN}', b"[" * 100_000, b"\xff\xfe{}"]
)
def test_bad_json_is_a_400(raw):
    with pytest.raises(ApiError) as info:
        parse_json(raw)
    assert info.value.status == 400
    assert info.value.details and info.value.details[0].field == "body"


# --- the OpenAPI schema agrees with the validator ---------------------------------


def _schema_validator():
    from jsonschema import Draft202012Validator

    doc = openapi_document(max_batch=3, max_body_bytes=1000, quantile_low=0.1, quantile_high=0.9)
    return Draft202012Validator(
        {"$ref": "#/components/schemas/PredictRequest", "components": doc["components"]}
    )


def test_openapi_document_is_valid_openapi():
    from openapi_spec_validator import validate

    doc = openapi_document(
        max_batch=1000, max_body_bytes=1 << 20, quantile_low=0.1, quantile_high=0.9
    )
    validate(doc)
    props = doc["components"]["schemas"]["Order"]["properties"]
    assert set(props) == set(validation.ACCEPTED_FIELDS)
    assert set(doc["components"]["schemas"]["Order"]["required"]) == set(
        schema.REQUIRED_INPUT_COLUMNS
    )
    for column in schema.COLUMNS:
        if column.known_at_order_time and column.minimum is not None:
            assert props[column.name]["minimum"] == column.minimum
            assert props[column.name]["maximum"] == column.maximum


AGREEMENT_CASES = [
    GOOD,
    with_(order_id="x"),
    with_(order_id=12),
    with_(total_items=4.0),
    {k: GOOD[k] for k in schema.REQUIRED_INPUT_COLUMNS},
    with_(market_id=None),
    with_(created_at="2015-02-06T22:24:17Z"),
    with_(created_at="2015-02-06 22:24"),
    with_(created_at="2015-02-06T22:24:17.123+05:30"),
    without("subtotal"),
    with_(subtotal=None),
    with_(total_items="4"),
    with_(total_items=True),
    with_(store_id=1.5),
    with_(total_items=0),
    with_(total_outstanding_orders=-1),
    with_(max_item_price=10_000_001),
    with_(created_at="06/02/2015"),
    with_(created_at="1969-12-31 23:59:59"),
    with_(created_at=5),
    with_(store_primary_category="x" * 201),
    with_(actual_delivery_time="2015-02-06 23:00:00"),
    with_(unknown=1),
    with_(order_id=""),
    with_(order_id=-1),
    with_(order_id=False),
    {"orders": [GOOD, GOOD]},
    {"orders": []},
    {"orders": [GOOD] * 4},
    {"orders": [GOOD, with_(total_items=-1)]},
    {"orders": [GOOD], "x": 1},
    [GOOD],
    "text",
]


@pytest.mark.parametrize("body", AGREEMENT_CASES)
def test_the_schema_accepts_exactly_what_the_server_accepts(body):
    accepted_by_schema = _schema_validator().is_valid(body)
    try:
        parse_predict_request(body, 3)
        accepted_by_server = True
    except ApiError:
        accepted_by_server = False
    assert accepted_by_schema == accepted_by_server


def test_interval_field_names():
    assert validation.interval_field(0.1) == "eta_p10_s"
    assert validation.interval_field(0.9) == "eta_p90_s"
    assert validation.interval_field(0.05) == "eta_p5_s"
    assert validation.interval_field(0.975) == "eta_p97_5_s"
