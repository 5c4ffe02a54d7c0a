"""The OpenAPI 3.1 description of the prediction service (``GET /openapi.json``).

Generated from the same definitions the request validator uses
(:data:`eta_cli.orders.ORDER_COLUMNS`, limits and allowed-value texts), so what
the server accepts and what it documents cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from eta_cli.orders import (
    MAX_ORDER_ID_INT,
    MAX_ORDER_ID_LENGTH,
    MAX_TEXT_LENGTH,
    ORDER_COLUMNS,
    ORDER_ID,
    ORDER_ID_ALLOWED,
    REQUIRED_FIELDS,
    TIMESTAMP_PATTERN,
    allowed_text,
)
from eta_cli.schema import Column
from eta_cli.validation import BATCH_KEY, FORBIDDEN_FIELDS, PARTIAL_KEY, interval_field

# The security scheme of the admin routes (eta_cli.serve.admin): a bearer token.
ADMIN_SCHEME = "adminToken"


def _column_schema(column: Column) -> dict[str, Any]:
    kinds = {"int": "integer", "float": "number", "str": "string", "timestamp": "string"}
    prop: dict[str, Any] = {
        "type": [kinds[column.kind], "null"] if column.nullable else kinds[column.kind],
        "description": f"{column.description}. {allowed_text(column)}.",
    }
    if column.minimum is not None:
        prop["minimum"] = column.minimum
    if column.maximum is not None:
        prop["maximum"] = column.maximum
    if column.kind == "str":
        prop["maxLength"] = MAX_TEXT_LENGTH
    if column.kind == "timestamp":
        prop["pattern"] = TIMESTAMP_PATTERN
        prop["examples"] = ["2015-02-06 22:24:17"]
    return prop


def order_schema() -> dict[str, Any]:
    """JSON Schema (2020-12, as OpenAPI 3.1 uses) of one order, from the column definitions."""
    properties = {c.name: _column_schema(c) for c in ORDER_COLUMNS}
    properties[ORDER_ID] = {
        "anyOf": [
            {"type": "string", "minLength": 1, "maxLength": MAX_ORDER_ID_LENGTH},
            {"type": "integer", "minimum": 0, "maximum": MAX_ORDER_ID_INT},
            {"type": "null"},
        ],
        "description": f"Your id of the order: {ORDER_ID_ALLOWED}.",
    }
    return {
        "type": "object",
        "description": "One order, with the features known when it is placed "
        f"(never {', '.join(FORBIDDEN_FIELDS)}).",
        "properties": properties,
        "required": list(REQUIRED_FIELDS),
        "additionalProperties": False,
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> dict[str, Any]:
    """A response documented as the JSON error body (error, details, request_id)."""
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


def _ok(schema_name: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ref(schema_name)}},
    }


def _plain(content_type: str, kind: str, description: str) -> dict[str, Any]:
    """A 200 response whose body is a bare type (the metrics text, this document)."""
    return {"description": description, "content": {content_type: {"schema": {"type": kind}}}}


def document_info(max_batch: int, max_body_bytes: int) -> dict[str, Any]:
    """Title, version and the request limits, stated where a client reads first."""
    return {
        "title": "eta prediction service",
        "version": "1",
        "description": "Delivery-time predictions (median, interval, quoted ETA) for orders. "
        f"Bodies are limited to {max_body_bytes} bytes and batches to {max_batch} orders.",
    }


def predict_operation(max_batch: int, max_body_bytes: int) -> dict[str, Any]:
    """``POST /predict``: its body, its answer and every error status it can give."""
    return {
        "summary": "Predict the delivery time of one order or a batch",
        "operationId": "predict",
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref("PredictRequest")}},
        },
        "responses": {
            "200": {
                "description": "One prediction per order, in the order sent",
                "headers": {
                    "X-Request-ID": {
                        "description": "The request id (yours if you sent one).",
                        "schema": {"type": "string"},
                    }
                },
                "content": {
                    "application/json": {
                        "schema": {"oneOf": [_ref("Prediction"), _ref("BatchPrediction")]}
                    }
                },
            },
            "400": _error("Empty body or not JSON"),
            "413": _error(f"Body over {max_body_bytes} bytes or more than {max_batch} orders"),
            "415": _error("Content-Type is not application/json"),
            "422": _error("An order is invalid (a batch: unless partial); details say which"),
            "503": _error("No model loaded yet"),
        },
    }


def service_paths(max_batch: int, max_body_bytes: int) -> dict[str, Any]:
    """Every route of the service with its statuses, in the order the routes are listed."""
    return {
        "/predict": {"post": predict_operation(max_batch, max_body_bytes)},
        "/health": {"get": {"summary": "Alive", "responses": {"200": _ok("Status", "Alive")}}},
        "/ready": {
            "get": {
                "summary": "A model is loaded and predictions are served",
                "responses": {
                    "200": _ok("Status", "Ready (registry status included)"),
                    "503": _ok("Status", "No model loaded yet"),
                },
            }
        },
        "/model": {
            "get": {
                "summary": "The model being served",
                "responses": {
                    "200": _ok("ModelInfo", "Name, version, alias, run, metrics"),
                    "503": _error("No model loaded yet"),
                },
            }
        },
        "/reload": {
            "post": {
                "summary": "Check the registry alias now and load the new version if it moved",
                "description": "An admin route: it needs `Authorization: Bearer "
                "<ETA_ADMIN_TOKEN>`, and is off (403) on a server without that token.",
                "security": [{ADMIN_SCHEME: []}],
                "responses": {
                    "200": _ok("Status", "Checked (and reloaded if needed)"),
                    "202": _ok("Status", "Still loading in the background"),
                    "401": _error("No, a malformed or a wrong admin bearer token; nothing done"),
                    "403": _error("Admin routes are off: the server has no ETA_ADMIN_TOKEN"),
                    "503": _ok("Status", "The reload failed; the current model is kept"),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": _plain("text/plain", "string", "Prometheus text exposition format 0.0.4")
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": _plain("application/json", "object", "OpenAPI 3.1")},
            }
        },
    }


def prediction_properties(quantile_low: float, quantile_high: float) -> dict[str, Any]:
    """The fields of one order's answer; the interval's names follow the model's quantiles."""
    return {
        "order_id": {
            "type": ["string", "null"],
            "description": (
                "The order's id as sent; for an order sent without one, the id derived "
                "from its order-time fields ('v2-' + 16 hex digits), the id `eta ingest` "
                "gives the same order's outcome."
            ),
        },
        "eta_p50_s": {"type": "number", "description": "Median delivery duration (seconds)."},
        interval_field(quantile_low): {
            "type": "number",
            "description": f"Lower end of the interval: quantile {quantile_low} (seconds).",
        },
        interval_field(quantile_high): {
            "type": "number",
            "description": f"Upper end of the interval: quantile {quantile_high} (seconds).",
        },
        "eta_quoted_s": {
            "type": "number",
            "description": "The ETA to show the customer (a deliberately cautious quantile).",
        },
        "expected_delivery_at": {
            "type": "string",
            "description": "created_at + eta_quoted_s, ISO 8601 UTC.",
        },
    }


# Sent once per answer, beside the predictions: which model answered, and the request id.
MODEL_PROPERTIES: dict[str, Any] = {
    "model_name": {"type": "string"},
    "model_version": {"type": ["string", "null"]},
    "request_id": {"type": "string"},
}


def request_schemas(max_batch: int) -> dict[str, Any]:
    """What a client sends: one order, or a batch of at most ``max_batch``."""
    return {
        "Order": order_schema(),
        "OrderBatch": {
            "type": "object",
            "properties": {
                BATCH_KEY: {
                    "type": "array",
                    "items": _ref("Order"),
                    "minItems": 1,
                    "maxItems": max_batch,
                },
                PARTIAL_KEY: {
                    "type": "boolean",
                    "default": False,
                    "description": "false: one invalid order refuses the batch (422). true: "
                    "the valid orders are answered (200) and each invalid one is an "
                    "item with its error in its place; 'rejected' counts them.",
                },
            },
            "required": [BATCH_KEY],
            "additionalProperties": False,
        },
        "PredictRequest": {"oneOf": [_ref("Order"), _ref("OrderBatch")]},
    }


def answer_schemas(quantile_low: float, quantile_high: float) -> dict[str, Any]:
    """What a client gets back: a prediction, a batch of them, an error, a status."""
    props = prediction_properties(quantile_low, quantile_high)
    required = [k for k in props if k != "order_id"]
    return {
        "OrderPrediction": {"type": "object", "properties": props, "required": required},
        "Prediction": {
            "type": "object",
            "properties": {**props, **MODEL_PROPERTIES},
            "required": required + list(MODEL_PROPERTIES),
        },
        "BatchPrediction": {
            "type": "object",
            "properties": {
                "predictions": {
                    "type": "array",
                    "items": {"oneOf": [_ref("OrderPrediction"), _ref("RejectedOrder")]},
                },
                "rejected": {"type": "integer", "description": "with partial: orders refused"},
                **MODEL_PROPERTIES,
            },
            "required": ["predictions", *MODEL_PROPERTIES],
        },
        "RejectedOrder": {
            "type": "object",
            "properties": {
                "index": {"type": "integer"},
                "order_id": {"type": ["string", "null"]},
                "error": {"type": "string"},
                "details": {"type": "array", "items": _ref("Problem")},
            },
            "required": ["index", "error", "details"],
        },
        "Problem": {
            "type": "object",
            "properties": {
                "field": {"type": "string"},
                "problem": {"type": "string"},
                "allowed": {"type": ["string", "null"]},
            },
            "required": ["field", "problem", "allowed"],
        },
        "Error": {
            "type": "object",
            "properties": {
                "error": {"type": "string"},
                "details": {"type": "array", "items": _ref("Problem")},
                "request_id": {"type": "string"},
            },
            "required": ["error", "details", "request_id"],
        },
        "Status": {"type": "object", "additionalProperties": True},
        "ModelInfo": {"type": "object", "additionalProperties": True},
    }


def openapi_document(
    *, max_batch: int, max_body_bytes: int, quantile_low: float, quantile_high: float
) -> dict[str, Any]:
    """The OpenAPI 3.1 description of the service, generated from the same definitions."""
    return {
        "openapi": "3.1.0",
        "info": document_info(max_batch, max_body_bytes),
        "paths": service_paths(max_batch, max_body_bytes),
        "components": {
            "schemas": {
                **request_schemas(max_batch),
                **answer_schemas(quantile_low, quantile_high),
            },
            "securitySchemes": {
                ADMIN_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The server's ETA_ADMIN_TOKEN (docs/security.md): "
                    "only admin routes ask for it; the others are public.",
                }
            },
        },
    }
