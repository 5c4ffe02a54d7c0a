"""Deliver a finished drift report: monitoring database rows, files, S3 upload, alert.

The order matters. The database row goes first, so its id is in the files; then
the HTML file, the run in the Evidently workspace (:mod:`.workspace`, for ``eta ui``)
and the JSON file, which names the run; then the upload and the webhook alert. A
failure to store (database, workspace) or upload is recorded in ``result.errors`` (and
an alert failure in ``result.alert``) rather than raised, so the report is never lost; the files are
always written (see :attr:`DriftResult.exit_code`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from eta_cli.errors import EtaError, first_line
from eta_cli.monitor import report
from eta_cli.monitor.result import DriftRequest, DriftResult
from eta_cli.redact import redact_text

if TYPE_CHECKING:
    from eta_cli.config import Settings


def deliver(
    settings: Settings,
    request: DriftRequest,
    result: DriftResult,
    snapshot: Any,
    started: float,
) -> None:
    """Store, write, upload and alert as ``request`` asks; fills the result's locations.

    ``snapshot`` is Evidently's run (its HTML is the body of the page); ``started`` the
    ``time.perf_counter()`` of the run, for the elapsed time the JSON summary records.
    """
    html_path, json_path = report.report_paths(settings, result.created_at)
    result.html_path, result.json_path = str(html_path), str(json_path)
    if request.upload_s3:
        result.html_uri = report.s3_report_uri(settings, result.created_at, html_path.name)
        result.json_uri = report.s3_report_uri(settings, result.created_at, json_path.name)
    if request.store:
        try:
            result.report_id = store(settings, result)
        except EtaError as exc:
            result.errors.append(
                f"monitoring database: {redact_text(str(exc))} (report kept at {html_path})"
            )
    report.write_html(snapshot, result, html_path)
    if request.store:
        _add_to_workspace(settings, request, result, snapshot)
    result.elapsed_s = time.perf_counter() - started
    report.write_json(result, json_path)
    if request.upload_s3:
        _upload(settings, result)
    webhook = request.alert_webhook or settings.alert_webhook
    if webhook and result.dataset_drift:
        from eta_cli.monitor.alerts import post_webhook

        result.alert = post_webhook(webhook, alert_text(result)).to_dict()


def _add_to_workspace(
    settings: Settings, request: DriftRequest, result: DriftResult, snapshot: Any
) -> None:
    """The report as a run of the Evidently workspace (``eta ui``); a failure is recorded."""
    from eta_cli.monitor import workspace

    try:
        result.workspace_run = workspace.add_drift_run(settings, result, snapshot, request).path
    except EtaError as exc:
        result.errors.append(f"{redact_text(str(exc))} (report kept at {result.html_path})")


def _upload(settings: Settings, result: DriftResult) -> None:
    """Upload both files; on failure keep the local paths, in the result and the stored row."""
    try:
        report.upload(settings, result)
    except EtaError as exc:
        result.errors.append(
            f"S3 upload failed (report kept at {result.html_path}): {redact_text(str(exc))}"
        )
        result.html_uri = result.json_uri = None
        if result.report_id is not None:
            set_uris(settings, result)


# --------------------------------------------------------------------------- database


def store(settings: Settings, result: DriftResult) -> int:
    """One ``drift_reports`` row and its ``drift_columns`` rows; returns the report id."""
    import sqlalchemy as sa

    from eta_cli.monitor import database

    engine = database.engine_for(settings)
    try:
        database.ensure_schema(engine)
        with engine.begin() as conn:
            report_id = conn.execute(
                database.drift_reports.insert()
                .values(**report_row(result))
                .returning(database.drift_reports.c.id)
            ).scalar_one()
            conn.execute(database.drift_columns.insert(), column_rows(result, report_id))
        return int(report_id)
    except sa.exc.SQLAlchemyError as exc:
        raise database.MonitoringError(
            f"monitoring database {engine.url.render_as_string(hide_password=True)}: "
            f"{first_line(exc)}"
        ) from exc
    finally:
        engine.dispose()


def report_row(result: DriftResult) -> dict[str, Any]:
    """The ``drift_reports`` row: the verdict and headline figures Grafana plots."""
    quality = result.quality
    prediction = result.prediction
    return {
        "created_at": result.created_at,
        "model_name": result.model_name,
        "model_version": result.model_version,
        "reference_rows": result.reference_rows,
        "current_rows": result.current_rows,
        "sampled_rows": result.current_sampled_rows,
        "drifted_columns": result.drifted_columns,
        "total_columns": result.total_columns,
        "drift_share": result.drift_share,
        "dataset_drift": result.dataset_drift,
        "prediction_drift_score": prediction.score if prediction else None,
        "prediction_drifted": prediction.drifted if prediction else None,
        "mae_s": quality.mae_s if quality else None,
        "interval_coverage": quality.interval_coverage if quality else None,
        "lateness_rate": quality.lateness_rate if quality else None,
        "html_uri": result.html_uri or result.html_path,
        "json_uri": result.json_uri or result.json_path,
    }


def column_rows(result: DriftResult, report_id: int) -> list[dict[str, Any]]:
    """One ``drift_columns`` row per tested column, the prediction included."""
    return [
        {
            "report_id": report_id,
            "column_name": c.column,
            "method": c.method[:100],
            "drift_score": c.score,
            "threshold": c.threshold,
            "drifted": c.drifted,
        }
        for c in result.tested_columns
    ]


def set_uris(settings: Settings, result: DriftResult) -> None:
    """Point the stored row at the local files after a failed upload."""
    from eta_cli.monitor import database

    engine = database.engine_for(settings)
    try:
        with engine.begin() as conn:
            conn.execute(
                database.drift_reports.update()
                .where(database.drift_reports.c.id == result.report_id)
                .values(html_uri=result.html_path, json_uri=result.json_path)
            )
    except Exception as exc:
        result.errors.append(
            f"monitoring database: could not update report URIs: {first_line(exc)}"
        )
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- alert


def alert_text(result: DriftResult) -> str:
    """A short, human message with the facts someone on call needs first."""
    top = sorted((c for c in result.columns if c.drifted), key=lambda c: -c.score)[:5]
    lines = [
        f":warning: eta drift: dataset drift detected — {result.drifted_columns}/"
        f"{result.total_columns} columns drifted (share {result.drift_share:.2f} >= "
        f"threshold {result.threshold:.2f})",
        f"model {result.model_name or '?'} v{result.model_version or '?'}; current: "
        f"{result.current_source} ({result.current_sampled_rows:,} of {result.current_rows:,} "
        "rows sampled)",
    ]
    if top:
        lines.append("drifted: " + ", ".join(f"{c.column} ({c.method} {c.score:.3g})" for c in top))
    if result.prediction:
        p = result.prediction
        lines.append(
            f"prediction {p.column}: {'drifted' if p.drifted else 'stable'} "
            f"({p.method} {p.score:.3g})"
        )
    if result.quality:
        q = result.quality
        train = (q.training or {}).get("mae_s")
        lines.append(
            f"MAE {q.mae_s:.0f} s"
            + (f" (champion test {train:.0f} s)" if train else "")
            + f", coverage {q.interval_coverage:.2f}, late {q.lateness_rate:.2f}"
        )
    lines.append(f"report: {result.html_uri or result.html_path}")
    return "\n".join(lines)
