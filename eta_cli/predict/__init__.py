"""``eta predict``: predictions for orders from a JSON file, a whole file, or a dataset.

Two predictors give the same numbers: :class:`LocalPredictor` runs a model
in-process (the registry's champion by default), :class:`RemotePredictor` posts
the orders to a running ``eta serve``. Both validate with ``eta_cli.validation``
and format with :func:`format_predictions`, the function the server answers with.

Batch files (CSV/Parquet, local or ``s3://``) are :mod:`eta_cli.predict.batch`
(``predict_files``), validated and scored as columns; the Dask engine's path is
:mod:`eta_cli.predict.dask`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eta_cli import validation
from eta_cli.errors import EtaError, first_line
from eta_cli.order_ids import record_order_ids
from eta_cli.validation import ORDER_ID, interval_field

if TYPE_CHECKING:
    from eta_cli.config import Settings
    from eta_cli.registry import LoadedModel

DEFAULT_CHUNK_ROWS = 50_000
REMOTE_TIMEOUT_S = 30.0


class PredictError(EtaError):
    """The orders or the file cannot be read, or the server cannot be used."""


# --- the one formatting of an answer (server and CLI) ------------------------------


def format_predictions(
    loaded: LoadedModel,
    records: Sequence[dict[str, Any]],
    order_ids: Sequence[str | None],
    values: Any,
) -> list[dict[str, Any]]:
    """One answer per order: median, interval (named by the model's quantiles), quoted ETA
    and the expected delivery time (created_at + quoted, ISO 8601 UTC), seconds to 0.1 s.
    """
    model = loaded.model
    low, high = interval_field(model.low), interval_field(model.high)
    out = []
    for record, order_id, (p_low, p50, p_high, quoted) in zip(
        records, order_ids, values.tolist(), strict=True
    ):
        created: datetime = record["created_at"]
        if created.microsecond:
            created = created.replace(microsecond=0)
        out.append(
            {
                "order_id": order_id,
                "eta_p50_s": round(p50, 1),
                low: round(p_low, 1),
                high: round(p_high, 1),
                "eta_quoted_s": round(quoted, 1),
                "expected_delivery_at": (created + timedelta(seconds=round(quoted))).isoformat()
                + "Z",
            }
        )
    return out


# --- predictors -------------------------------------------------------------------


@dataclass
class Outcome:
    """The answer for one input order: a prediction, or why it was refused."""

    index: int
    order_id: str | None
    prediction: dict[str, Any] | None = None
    problems: list[validation.Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.prediction is not None

    def error_text(self) -> str | None:
        if self.ok:
            return None
        return "; ".join(f"{p.field}: {p.problem}" for p in self.problems) or "rejected"

    def to_dict(self) -> dict[str, Any]:
        if self.prediction is not None:
            return {"index": self.index, **self.prediction}
        return {
            "index": self.index,
            "order_id": self.order_id,
            "error": self.error_text(),
            "details": [p.to_dict() for p in self.problems],
        }


def _validated(orders: Sequence[Any]) -> tuple[list[Outcome], list[int], list[dict], list]:
    outcomes: list[Outcome] = []
    good: list[int] = []
    records: list[dict[str, Any]] = []
    ids: list[str | None] = []
    for i, order in enumerate(orders):
        record, order_id, problems = validation.validate_order(order)
        if order_id is None and isinstance(order, dict) and isinstance(order.get(ORDER_ID), str):
            order_id = order[ORDER_ID]
        outcomes.append(Outcome(i, order_id, problems=problems))
        if not problems:
            good.append(i)
            records.append(record)  # type: ignore[arg-type]
            ids.append(order_id)
    return outcomes, good, records, ids


def _hold_back(outcomes: list[Outcome], good: list[int], strict: bool) -> bool:
    """Strict batches are all or nothing (the server's default): when any order is invalid,
    the valid ones are not predicted either and say why. True when nothing is predicted."""
    if not strict or len(good) == len(outcomes):
        return False
    for i in good:
        outcomes[i].problems = [
            validation.Problem(
                "batch",
                "not predicted: another order in the batch is invalid (strict)",
                "a batch whose orders are all valid",
            )
        ]
    return True


class LocalPredictor:
    """Predicts in this process with a loaded model (same code path as the server)."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.model_name = loaded.name
        self.model_version = loaded.version
        self.interval_fields = (interval_field(loaded.model.low), interval_field(loaded.model.high))

    @classmethod
    def from_settings(cls, settings: Settings, model_uri: str | None = None) -> LocalPredictor:
        """The model of ``model_uri`` (default: the champion), through the local cache of
        registry models (:mod:`eta_cli.model_cache`): a one-off call starts in well under a
        second when the registry confirms the cached version."""
        from eta_cli import model_cache

        return cls(model_cache.load_model(settings, model_uri))

    def predict(self, orders: Sequence[Any], *, strict: bool = False) -> list[Outcome]:
        """One outcome per order; ``strict``: none predicted when any is invalid."""
        outcomes, good, records, ids = _validated(orders)
        if records and not _hold_back(outcomes, good, strict):
            ids = record_order_ids(records, ids)  # derived for orders sent without one
            for i, order_id in zip(good, ids, strict=True):
                outcomes[i].order_id = order_id
            values = self.loaded.model.predict_records(records)
            for i, prediction in zip(
                good, format_predictions(self.loaded, records, ids, values), strict=True
            ):
                outcomes[i].prediction = prediction
        return outcomes


class RemotePredictor:
    """Posts the valid orders to ``eta serve`` in batches; invalid ones never leave the client."""

    def __init__(self, url: str, max_batch: int = 1000, timeout: float = REMOTE_TIMEOUT_S) -> None:
        import requests

        if not url.lower().startswith(("http://", "https://")):
            raise PredictError(
                f"--url {url!r}: not an http:// or https:// address (an `eta serve` is "
                "e.g. http://localhost:9696)"
            )
        self.url = url.rstrip("/")
        self.max_batch = max(1, max_batch)
        self.timeout = timeout
        self.session = requests.Session()
        self.model_name: str | None = None
        self.model_version: str | None = None
        self.interval_fields: tuple[str, str] | None = None

    def wait_ready(self, timeout: float) -> None:
        """Poll ``GET /ready`` until the server has a model (for scripts that just started it)."""
        import time

        import requests

        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            try:
                response = self.session.get(f"{self.url}/ready", timeout=5)
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}: {response.text[:200]}"
            except requests.RequestException as exc:
                last = self._unreachable(exc)
            if time.monotonic() >= deadline:
                raise PredictError(
                    f"eta server at {self.url} not ready after {timeout:g} s ({last})"
                )
            time.sleep(0.25)

    def _unreachable(self, exc: Exception) -> str:
        """What a failed connection means for the user, without the HTTP library's text."""
        import requests

        if isinstance(exc, requests.Timeout):
            return f"{self.url} did not answer within {self.timeout:g} s: is it `eta serve`?"
        if isinstance(exc, requests.ConnectionError):
            return f"cannot reach {self.url}: is `eta serve` running?"
        return f"cannot reach {self.url}: {type(exc).__name__}"

    def _post(self, orders: list[Any]) -> dict[str, Any]:
        import requests

        try:
            response = self.session.post(
                f"{self.url}/predict", json={"orders": orders}, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise PredictError(self._unreachable(exc)) from exc
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code != 200 or not isinstance(payload, dict):
            detail = ""
            if isinstance(payload, dict):
                detail = payload.get("error", "")
                problems = payload.get("details") or []
                if problems:
                    detail += ": " + "; ".join(
                        f"{p.get('field')}: {p.get('problem')}" for p in problems[:5]
                    )
            raise PredictError(
                f"eta server at {self.url} answered HTTP {response.status_code}"
                + (f" ({detail})" if detail else "")
            )
        return payload

    def predict(self, orders: Sequence[Any], *, strict: bool = False) -> list[Outcome]:
        """One outcome per order; ``strict``: none sent when any is invalid."""
        outcomes, good, _, _ = _validated(orders)
        if _hold_back(outcomes, good, strict):
            return outcomes
        for start in range(0, len(good), self.max_batch):
            chunk = good[start : start + self.max_batch]
            payload = self._post([orders[i] for i in chunk])
            predictions = payload.get("predictions") or []
            if len(predictions) != len(chunk):
                raise PredictError(
                    f"eta server at {self.url} answered {len(predictions)} predictions "
                    f"for {len(chunk)} orders"
                )
            self.model_name = payload.get("model_name")
            self.model_version = payload.get("model_version")
            for i, prediction in zip(chunk, predictions, strict=True):
                outcomes[i].prediction = prediction
                if outcomes[i].order_id is None:  # the id the server derived
                    outcomes[i].order_id = prediction.get(ORDER_ID)
            if self.interval_fields is None and predictions:
                keys = [k for k in predictions[0] if k.startswith("eta_p") and k != "eta_p50_s"]
                if len(keys) == 2:
                    self.interval_fields = (keys[0], keys[1])
        return outcomes


Predictor = LocalPredictor | RemotePredictor


# --- JSON orders -------------------------------------------------------------------


def read_orders_json(path: str) -> list[Any]:
    """Orders from a JSON file (``-`` for stdin): one object, a list, or JSON Lines."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise PredictError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PredictError(f"{path}: cannot be read: {first_line(exc)}") from exc
    if not text.strip():
        raise PredictError(f"{path} is empty: expected an order object, a list or JSON Lines")
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as whole:
        if not _looks_like_json_lines(text):
            raise PredictError(
                f"{path} is not valid JSON: {_json_error_text(text, whole)}"
            ) from None
        return _json_lines(path, text)
    if isinstance(data, dict) and validation.BATCH_KEY in data and len(data) == 1:
        data = data[validation.BATCH_KEY]
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list):
        if not data:
            raise PredictError(f"{path} holds an empty list: no orders")
        return data
    raise PredictError(f"{path} holds a JSON {type(data).__name__}: expected an order object")


def _looks_like_json_lines(text: str) -> bool:
    """Whether a file that is not one JSON document is meant as JSON Lines: its first
    non-blank line is a whole JSON value and another line follows. A pretty-printed
    object starts with a line such as ``{`` that is not, so its error is the document's."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        return False
    try:
        json.loads(lines[0], parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        return False
    return True


def _json_lines(path: str, text: str) -> list[Any]:
    """The values of a JSON Lines file; the first bad line is named with its column."""
    data = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data.append(json.loads(line, parse_constant=_refuse_constant))
        except (ValueError, RecursionError) as exc:
            raise PredictError(
                f"{path} is not valid JSON Lines (one order per line): "
                f"{_json_error_text(line, exc, line_offset=number - 1)}"
            ) from None
    return data


def _json_error_text(text: str, exc: BaseException, line_offset: int = 0) -> str:
    """Where and what: 'line 10, column 24: ',' expected after this value' and the line.

    Python's parser reports a missing comma at the next value, often on the next line;
    the place to fix is just after the previous value, so that is the position given.
    """
    if not isinstance(exc, json.JSONDecodeError):
        return "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
    pos, message = exc.pos, exc.msg
    if message.startswith("Expecting ',' delimiter") or message.startswith(
        "Expecting ':' delimiter"
    ):
        back = pos
        while back > 0 and text[back - 1].isspace():
            back -= 1
        if back < pos:
            pos = back
            message = f"{message[10:13]} missing after this value"
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    source = text.splitlines()[line - 1] if text.splitlines() else ""
    shown = source.strip()
    if len(shown) > 80:
        shown = shown[:77] + "..."
    where = f"line {line + line_offset}, column {column}: {message}"
    return f"{where}\n  {shown}" if shown else where


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
