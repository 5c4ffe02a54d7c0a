"""The OpenAPI 3.1 description of the prediction service (``GET /openapi.json``).

Generated from the same definitions the request validator uses
(:data:`eta_cli.validation.ORDER_COLUMNS`, limits and allowed-value texts), so what
the server accepts and what it documents cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from eta_cli.schema import Column
from eta_cli.validation import (
    BATCH_KEY,
    FORBIDDEN_FIELDS,
    MAX_ORDER_ID_INT,
    MAX_ORDER_ID_LENGTH,
    MAX_TEXT_LENGTH,
    ORDER_COLUMNS,
    ORDER_ID,
    ORDER_ID_ALLOWED,
    REQUIRED_FIELDS,
    TIMESTAMP_PATTERN,
    allowed_text,
    interval_field,
)


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


def openapi_document(
    *, max_batch: int, max_body_bytes: int, quantile_low: float, quantile_high: float
) -> dict[str, Any]:
    """The OpenAPI 3.1 description of the service, generated from the same definitions."""
    low, high = interval_field(quantile_low), interval_field(quantile_high)
    error_ref = {"$ref": "#/components/schemas/Error"}
    prediction_props = {
        "order_id": {"type": ["string", "null"], "description": "The order's id, if sent."},
        "eta_p50_s": {"type": "number", "description": "Median delivery duration (seconds)."},
        low: {
            "type": "number",
            "description": f"Lower end of the interval: quantile {quantile_low} (seconds).",
        },
        high: {
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
    model_props = {
        "model_name": {"type": "string"},
        "model_version": {"type": ["string", "null"]},
        "request_id": {"type": "string"},
    }
    json_error = {"application/json": {"schema": error_ref}}

    def error(description: str) -> dict[str, Any]:
        return {"description": description, "content": json_error}

    def ok(schema_ref: str, description: str) -> dict[str, Any]:
        return {
            "description": description,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}
            },
        }

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "eta prediction service",
            "version": "1",
            "description": "Delivery-time predictions (median, interval, quoted ETA) for orders. "
            f"Bodies are limited to {max_body_bytes} bytes and batches to {max_batch} orders.",
        },
        "paths": {
            "/predict": {
                "post": {
                    "summary": "Predict the delivery time of one order or a batch",
                    "operationId": "predict",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/PredictRequest"}
                            }
                        },
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
                                    "schema": {
                                        "oneOf": [
                                            {"$ref": "#/components/schemas/Prediction"},
                                            {"$ref": "#/components/schemas/BatchPrediction"},
                                        ]
                                    }
                                }
                            },
                        },
                        "400": error("Empty body or not JSON"),
                        "413": error(
                            f"Body over {max_body_bytes} bytes or more than {max_batch} orders"
                        ),
                        "415": error("Content-Type is not application/json"),
                        "422": error("An order is invalid; details name each field"),
                        "503": error("No model loaded yet"),
                    },
                }
            },
            "/health": {"get": {"summary": "Alive", "responses": {"200": ok("Status", "Alive")}}},
            "/ready": {
                "get": {
                    "summary": "A model is loaded and predictions are served",
                    "responses": {
                        "200": ok("Status", "Ready (registry status included)"),
                        "503": ok("Status", "No model loaded yet"),
                    },
                }
            },
            "/model": {
                "get": {
                    "summary": "The model being served",
                    "responses": {
                        "200": ok("ModelInfo", "Name, version, alias, run, metrics"),
                        "503": error("No model loaded yet"),
                    },
                }
            },
            "/reload": {
                "post": {
                    "summary": "Check the registry alias now and load the new version if it moved",
                    "responses": {
                        "200": ok("Status", "Checked (and reloaded if needed)"),
                        "202": ok("Status", "Still loading in the background"),
                        "503": ok("Status", "The reload failed; the current model is kept"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text exposition format 0.0.4",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "Order": order_schema(),
                "OrderBatch": {
                    "type": "object",
                    "properties": {
                        BATCH_KEY: {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Order"},
                            "minItems": 1,
                            "maxItems": max_batch,
                        }
                    },
                    "required": [BATCH_KEY],
                    "additionalProperties": False,
                },
                "PredictRequest": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/Order"},
                        {"$ref": "#/components/schemas/OrderBatch"},
                    ]
                },
                "OrderPrediction": {
                    "type": "object",
                    "properties": prediction_props,
                    "required": [k for k in prediction_props if k != "order_id"],
                },
                "Prediction": {
                    "type": "object",
                    "properties": {**prediction_props, **model_props},
                    "required": [k for k in prediction_props if k != "order_id"]
                    + list(model_props),
                },
                "BatchPrediction": {
                    "type": "object",
                    "properties": {
                        "predictions": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/OrderPrediction"},
                        },
                        **model_props,
                    },
                    "required": ["predictions", *model_props],
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
                        "details": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Problem"},
                        },
                        "request_id": {"type": "string"},
                    },
                    "required": ["error", "details", "request_id"],
                },
                "Status": {"type": "object", "additionalProperties": True},
                "ModelInfo": {"type": "object", "additionalProperties": True},
            }
        },
    }
