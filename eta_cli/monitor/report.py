"""The files of a drift report: an HTML page and a JSON summary, optionally in S3.

The HTML is Evidently's standalone report (scripts and font inlined, so it opens
offline) with a static header on top that states the verdict and the figures
Evidently does not show (sampling, quality, unseen stores, notes). The JSON is
:meth:`DriftResult.to_dict`. Both go under ``reports_dir`` and, with
``upload_s3``, to ``s3://<bucket>/<prefix>/reports/YYYY/MM/DD/``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eta_cli.errors import first_line
from eta_cli.monitor.result import DriftInputError, DriftResult, Quality

if TYPE_CHECKING:
    from eta_cli.config import Settings


def report_paths(settings: Settings, created: datetime) -> tuple[Path, Path]:
    """Fresh HTML and JSON paths under the reports folder (created if missing)."""
    out_dir = Path(settings.effective_reports_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DriftInputError(
            f"reports folder {out_dir} cannot be created: {first_line(exc)}"
        ) from exc
    name = report_name(created)
    return out_dir / f"{name}.html", out_dir / f"{name}.json"


def report_name(created: datetime) -> str:
    """``drift-YYYYmmddTHHMMSSZ-xxxxxx``: sorted by time, unique within a second."""
    return f"drift-{created:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def s3_report_uri(settings: Settings, created: datetime, filename: str) -> str:
    """``s3://<bucket>/<prefix>/reports/YYYY/MM/DD/<file>``."""
    from eta_cli.storage import StorageError

    if not settings.s3_bucket:
        raise StorageError(
            "--upload-s3 needs a bucket: set ETA_S3_BUCKET (or s3_bucket in the profile)"
        )
    prefix = settings.s3_prefix.strip("/")
    parts = [p for p in (prefix, "reports", f"{created:%Y/%m/%d}", filename) if p]
    return f"s3://{settings.s3_bucket}/{'/'.join(parts)}"


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"


def summary_html(result: DriftResult) -> str:
    """A static header (no script) with the verdict and the figures Evidently does not show."""
    e = html.escape
    verdict = "DATASET DRIFT DETECTED" if result.dataset_drift else "no dataset drift"
    colour = "#b00020" if result.dataset_drift else "#1b5e20"
    if not result.meaningful:
        verdict, colour = "no verdict: too few current orders", "#8a6d00"
    rows = "".join(
        f"<tr><td>{e(c.column)}</td><td>{e(c.kind)}</td><td>{e(c.method)}</td>"
        f"<td>{c.score:.4g}</td><td>{_fmt(c.threshold)}</td>"
        f"<td style='color:{'#b00020' if c.drifted else '#1b5e20'}'>"
        f"{'drifted' if c.drifted else 'ok'}</td></tr>"
        for c in result.tested_columns
    )
    quality = quality_html(result.quality) if result.quality else ""
    notes = "".join(f"<li>{e(n)}</li>" for n in result.notes)
    return f"""
<section id="eta-drift-summary" style="font-family: system-ui, sans-serif; margin: 16px 24px;
  padding: 12px 16px; border: 1px solid #ccc; border-radius: 6px; background: #fafafa">
<style>#eta-drift-summary table {{ border-collapse: collapse; margin: 8px 0 }}
#eta-drift-summary td, #eta-drift-summary th {{ border: 1px solid #ddd; padding: 2px 8px;
  font-size: 13px; text-align: left }}</style>
<h1 style="font-size: 20px; margin: 0 0 8px">ETA drift report — <span
  style="color: {colour}">{verdict}</span></h1>
<p>{result.drifted_columns} of {result.total_columns} columns drifted
  (share {result.drift_share:.2f}, threshold {result.threshold:.2f}).
  Model: {e(str(result.model_name))} v{e(str(result.model_version))}.
  Created {e(result.created_at.strftime("%Y-%m-%d %H:%M:%S UTC"))}.</p>
<p>Reference: {e(result.reference_source)} — {result.reference_rows:,} rows,
  {result.reference_sampled_rows:,} sampled.<br>
  Current: {e(result.current_source)} — {result.current_rows:,} rows,
  {result.current_sampled_rows:,} sampled.<br>
  Figures are computed on the sampled rows (at most {result.sample_rows:,} per side).
  Orders from stores unseen by the model: {_fmt(result.unseen_store_share)}.</p>
<table><tr><th>column</th><th>kind</th><th>method</th><th>score</th><th>threshold</th>
  <th>verdict</th></tr>{rows}</table>
{quality}
{f"<ul>{notes}</ul>" if notes else ""}
</section>
"""


def quality_html(q: Quality) -> str:
    """The quality table: current figures next to the champion's test and the reference."""
    train = q.training or {}
    ref = q.reference or {}
    return (
        "<h2>Quality of the current orders (actual delivery time known)</h2>"
        "<table><tr><th>metric</th><th>current</th><th>champion test</th>"
        "<th>reference sample</th></tr>"
        + "".join(
            f"<tr><td>{label}</td><td>{_fmt(getattr(q, key))}</td>"
            f"<td>{_fmt(train.get(key))}</td><td>{_fmt(ref.get(key))}</td></tr>"
            for key, label in (
                ("mae_s", "MAE (s)"),
                ("interval_coverage", "p10–p90 coverage"),
                ("lateness_rate", "late vs quoted ETA"),
            )
        )
        + f"</table><p>{q.rows:,} orders with a known delivery time.</p>"
    )


#: Where Evidently's standalone page embeds the report data: one ``<script>`` in the head
#: holding ``var <id> = {JSON};`` and ``var additional_graphs_<id> = {JSON};``. Both
#: markers contain a raw newline, which JSON text never does, so data cannot fake them.
_DATA_START = "<script>\n    var "
_DATA_END = ";\n</script>"
_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)
#: What the page may do: only its own inline scripts (by hash: an injected one would not
#: run), inline styles (React and Plotly set them), the inlined font and data:/blob:
#: images; no network, no forms, no plugins, no <base>.
_CSP = (
    "default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; "
    "font-src data:; img-src data: blob:; connect-src 'none'; object-src 'none'; "
    "base-uri 'none'; form-action 'none'"
)


def inert_html(document: str) -> str:
    """Evidently's page made inert against hostile data values.

    Evidently embeds its data as JSON inside a ``<script>``; a category such as
    ``</script><script>…`` would end that script and start the attacker's. Every ``<``
    inside the JSON becomes ``\\u003c`` (the same string to JavaScript, never markup to
    the HTML parser), and a Content-Security-Policy meta tag allows only the page's own
    scripts, by hash, so anything injected some other way does not run either. Refuses
    (:class:`DriftInputError`) a page whose data block it cannot find rather than write
    a report it could not make safe.
    """
    start = document.find(_DATA_START)
    end = document.find(_DATA_END, start + len(_DATA_START))
    head_end = document.find("</head>")
    if start < 0 or end < 0 or head_end < 0 or not start < end < head_end:
        raise DriftInputError(
            "the drift report HTML has an unexpected layout (Evidently's data script not "
            "found); not written, because its data could not be escaped"
        )
    body = start + len("<script>")
    data = document[body:end].replace("<", "\\u003c")
    document = document[:body] + data + document[end:]
    hashes = " ".join(
        "'sha256-{}'".format(
            base64.b64encode(hashlib.sha256(m.group(1).encode("utf-8")).digest()).decode()
        )
        for m in _SCRIPT.finditer(document)
    )
    meta = f'<meta http-equiv="Content-Security-Policy" content="{_CSP.format(hashes=hashes)}">'
    head = document.find("<head>")
    at = head + len("<head>") if head >= 0 else 0
    return document[:at] + "\n" + meta + document[at:]


def write_html(snapshot: Any, result: DriftResult, path: Path) -> None:
    """Evidently's standalone HTML (scripts and font inlined), made inert
    (:func:`inert_html`), with our header on top."""
    document = inert_html(snapshot.get_html_str(as_iframe=False))
    header = summary_html(result)
    marker = "<body>"
    index = document.find(marker)
    if index >= 0:
        document = document[: index + len(marker)] + header + document[index + len(marker) :]
    else:
        document = header + document
    path.write_text(document, encoding="utf-8")


def write_json(result: DriftResult, path: Path) -> None:
    """The JSON summary, as ``eta drift-report --json`` prints it."""
    path.write_text(json.dumps(result.to_dict(), indent=2, default=str), encoding="utf-8")


def upload(settings: Settings, result: DriftResult) -> None:
    """Both files to their ``s3://`` URIs (set on ``result`` beforehand)."""
    from eta_cli import storage

    storage.upload_file(str(result.html_path), str(result.html_uri), settings, "text/html")
    storage.upload_file(str(result.json_path), str(result.json_uri), settings, "application/json")
