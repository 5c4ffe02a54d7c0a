"""The service's routes, as one blueprint: /predict, /health, /ready, /model, /reload,
/metrics and /openapi.json.

The request path is plain Python + NumPy: parse and validate the JSON
(:mod:`eta_cli.validation`), one ``EtaModel.predict_records`` call, one queue append
for the prediction log. Views find the app's provider, metrics and prediction log in
``current_app.extensions["eta"]`` (put there by ``create_app``'s ``init_app`` calls).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, current_app, g, request

from eta_cli import validation
from eta_cli.order_ids import record_order_ids
from eta_cli.orders import Problem
from eta_cli.predict import format_predictions
from eta_cli.redact import redact_url
from eta_cli.serve.admin import admin_only
from eta_cli.serve.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from eta_cli.serve.openapi import openapi_document
from eta_cli.serve.prediction_log import LogEntry
from eta_cli.serve.provider import name_label, version_label
from eta_cli.serve.responses import JSON_MIMETYPE, no_model_loaded, respond
from eta_cli.validation import ApiError

if TYPE_CHECKING:
    from eta_cli.config import Settings
    from eta_cli.registry import LoadedModel
    from eta_cli.serve.prediction_log import PredictionLog

blueprint = Blueprint("eta", __name__)


def _service() -> dict[str, Any]:
    """This app's provider, metrics, prediction log and request ids."""
    return current_app.extensions["eta"]


def _settings() -> Settings:
    return current_app.config["ETA_SETTINGS"]


def model_info(loaded: LoadedModel) -> dict[str, Any]:
    """What ``/model`` says about the model being served: identity, run, metrics, quantiles."""
    model = loaded.model
    return {
        "name": loaded.name,
        "version": loaded.version,
        "alias": loaded.alias,
        "run_id": loaded.run_id,
        "uri": redact_url(loaded.uri),
        "trained_at": loaded.trained_at,
        "metrics": loaded.metrics,
        "quantiles": {
            "low": model.low,
            "median": 0.5,
            "high": model.high,
            "quoted": model.quoted,
        },
    }


def _predict_request() -> validation.PredictRequest:
    """The request's orders, validated; a 4xx ApiError naming each bad field otherwise."""
    if request.mimetype != JSON_MIMETYPE:
        raise ApiError(
            415,
            "unsupported content type",
            [Problem("Content-Type", f"{request.mimetype or 'none'!r}", JSON_MIMETYPE)],
        )
    body = validation.parse_json(request.get_data(cache=False))
    return validation.parse_predict_request(body, _settings().max_batch_orders)


def _log_predictions(
    plog: PredictionLog | None,
    parsed: validation.PredictRequest,
    values: Any,
    name: str,
    version: str,
) -> None:
    """Hand the predictions to the background writer (None: the service logs nothing)."""
    if plog is None:
        return
    plog.submit(
        LogEntry(
            request_id=g.request_id,
            predicted_at=time.time(),
            model_name=name,
            model_version=version,
            latency_ms=(time.perf_counter() - g.t0) * 1000.0,
            records=parsed.records,
            order_ids=parsed.order_ids,
            values=values,
        )
    )


@blueprint.post("/predict")
def predict() -> Response:
    """One order, or ``{"orders": [...]}``: predictions from one model, counted and logged."""
    parsed = _predict_request()
    # An order sent without an id gets the id ingest will give its outcome.
    parsed.order_ids = record_order_ids(parsed.records, parsed.order_ids)
    service = _service()
    provider = service["provider"]
    loaded = provider.current  # read once: a swap cannot mix models in this request
    if loaded is None:
        raise no_model_loaded(provider)
    if parsed.records:
        values = loaded.model.predict_records(parsed.records)
        predictions = format_predictions(loaded, parsed.records, parsed.order_ids, values)
    else:  # a partial batch whose every order was refused: nothing to score or log
        values, predictions = None, []
    n = len(predictions)
    version = version_label(loaded)
    name = name_label(loaded)
    g.model_version = version
    g.n_orders = n
    service["metrics"].count_predictions(name, version, n)
    if n:
        _log_predictions(service["log"], parsed, values, name, version)
        shadow = service.get("shadow")
        if shadow is not None:  # queued only: the challenger scores it off the request path
            shadow.offer(g.request_id, parsed.records, parsed.order_ids, loaded)
    meta = {
        "model_name": loaded.name,
        "model_version": loaded.version,
        "request_id": g.request_id,
    }
    if parsed.batch:
        if parsed.rejected:  # "partial": true, and some orders were refused
            answers = parsed.answers(predictions)
            return respond({"predictions": answers, "rejected": len(parsed.rejected), **meta})
        return respond({"predictions": predictions, **meta})
    return respond({**predictions[0], **meta})


@blueprint.get("/health")
def health() -> Response:
    """Alive: answers as long as the process serves requests, model or not."""
    return respond({"status": "ok"})


@blueprint.get("/ready")
def ready() -> Response:
    """200 once a model is loaded (503 with the reason until then), with the registry status."""
    provider = _service()["provider"]
    loaded = provider.current
    payload: dict[str, Any] = {"ready": loaded is not None, **provider.status()}
    if loaded is None:
        payload["reason"] = provider.last_error or "model is loading"
        return respond(payload, 503)
    payload["model"] = {"name": loaded.name, "version": loaded.version}
    return respond(payload)


@blueprint.get("/model")
def model() -> Response:
    """The model being served and how it is kept current."""
    provider = _service()["provider"]
    loaded = provider.current
    if loaded is None:
        raise no_model_loaded(provider)
    payload = {**model_info(loaded), **provider.status()}
    shadow = _service().get("shadow")
    if shadow is not None:  # the challenger scored beside it (its answers go to the log only)
        challenger = shadow.provider.current
        payload["shadow"] = {
            **shadow.status(),
            "model": model_info(challenger) if challenger is not None else None,
        }
    return respond(payload)


@blueprint.post("/reload")
@admin_only
def reload() -> Response:
    """Check the registry now: 200 done, 202 still loading, 503 failed (old model kept).

    Needs the admin token; concurrent calls join the check already running.
    """
    provider = _service()["provider"]
    result = provider.reload_now()
    status = {"in_progress": 202, "failed": 503}.get(result.status, 200)
    loaded = provider.current
    payload = {
        **result.to_dict(),
        "serving_version": loaded.version if loaded else None,
        **provider.status(),
    }
    shadow = _service().get("shadow")
    if shadow is not None:  # the shadow alias is checked too; its outcome never fails this
        payload["shadow"] = shadow.provider.reload_now().to_dict()
    return respond(payload, status)


@blueprint.get("/metrics")
def prometheus() -> Response:
    """The Prometheus text exposition of this app's counters and gauges."""
    service = _service()
    return Response(
        service["metrics"].render(service["provider"], service["log"]),
        content_type=METRICS_CONTENT_TYPE,
    )


@blueprint.get("/openapi.json")
def openapi() -> Response:
    """This API's description, with the served model's quantiles (the settings' until loaded)."""
    settings = _settings()
    loaded = _service()["provider"].current
    low = loaded.model.low if loaded else settings.quantile_low
    high = loaded.model.high if loaded else settings.quantile_high
    return respond(
        openapi_document(
            max_batch=settings.max_batch_orders,
            max_body_bytes=settings.max_body_bytes,
            quantile_low=low,
            quantile_high=high,
        )
    )
