"""The drift report renders in a real browser with the network off.

Debian's headless Chromium opens the HTML file with every host unresolvable and a
dead proxy, so a script or font fetched from a CDN would fail; the report must
still draw Evidently's widgets (checked in the rendered DOM) and a screenshot.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from helpers_model import fake_loaded

from eta_cli import synthetic
from eta_cli.config import Settings
from eta_cli.monitor import drift

CHROMIUM = Path("/usr/bin/chromium")
OFFLINE_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Network off: nothing resolves, and any proxy-able request goes nowhere.
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=127.0.0.1:9",
    "--virtual-time-budget=20000",
]


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the drift report must be rendered in a real browser. "
            "Install Debian's chromium (`make system-deps` or `apt-get install chromium`)."
        )
    return subprocess.run(
        [str(CHROMIUM), *OFFLINE_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.mark.slow
def test_report_renders_offline_in_headless_chromium(settings: Settings, tmp_path: Path) -> None:
    reference = tmp_path / "reference.parquet"
    current = tmp_path / "current.parquet"
    synthetic.generate_orders(3000, seed=0).to_parquet(reference)
    synthetic.generate_orders(2000, seed=0, drift=True).to_parquet(current)
    result = drift.drift_report(
        settings, reference=str(reference), current=str(current), model=fake_loaded()
    )
    html_path = Path(result.html_path)
    page = html_path.read_text(encoding="utf-8")

    # Self-contained: no external script, stylesheet, font or image.
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=[\"']?(https?:)?//", page)
    assert "url(data:font" in page  # the icon font is inlined
    assert html_path.stat().st_size < 10_000_000

    url = html_path.resolve().as_uri()
    dom = _chromium(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    # Evidently draws into an empty <div id="root_..."> with its bundled React app:
    # the widgets' text is in that div only if the scripts ran.
    match = re.search(r'<div id="root_[^"]+">(.*?)</div>\s*<script', dom.stdout, re.S)
    assert match, "Evidently's root element is missing from the rendered page"
    rendered = match.group(1)
    assert "Share of Drifted Columns" in rendered
    drifted = [c.column for c in result.columns if c.drifted]
    assert drifted and all(name in rendered for name in drifted)
    assert "eta_p50_s" in rendered
    assert "DATASET DRIFT DETECTED" in dom.stdout  # our static header

    png = tmp_path / "report.png"
    shot = _chromium(tmp_path, f"--screenshot={png}", "--window-size=1400,2000", url)
    assert shot.returncode == 0 and png.is_file(), shot.stderr[-2000:]
    from PIL import Image

    with Image.open(png) as image:
        assert image.size == (1400, 2000)
        colours = image.convert("L").getextrema()
    assert colours[1] - colours[0] > 100  # not a blank page


#: Hostile category values: one ends Evidently's data script and starts another; one
#: opens an HTML comment inside the script (which would swallow the page's next script;
#: it sorts after the first so that the first is the one a browser meets first).
HOSTILE = (
    "</script><script>document.title='pwned';"
    "document.documentElement.setAttribute('data-pwned','1')</script>"
)
COMMENT = "~<!--<script>"


def _page_data(page: str) -> str:
    """The text of Evidently's data script, as a JavaScript engine would read it."""
    start = page.index("<script>\n    var ") + len("<script>")
    return page[start : page.index(";\n</script>", start)]


@pytest.mark.slow
def test_hostile_data_stays_text_in_the_report(settings: Settings, tmp_path: Path) -> None:
    reference = tmp_path / "reference.parquet"
    current = tmp_path / "current.parquet"
    synthetic.generate_orders(2000, seed=0).to_parquet(reference)
    orders = synthetic.generate_orders(1500, seed=1)
    orders.loc[:200, "store_primary_category"] = HOSTILE
    orders.loc[200:250, "store_primary_category"] = COMMENT
    orders.to_parquet(current)
    result = drift.drift_report(
        settings, reference=str(reference), current=str(current), model=fake_loaded()
    )
    page = Path(result.html_path).read_text(encoding="utf-8")

    # Nothing of the data can close or comment out a script: every "<" in it is escaped,
    # and the values are intact once JavaScript reads the strings.
    data = _page_data(page)
    assert "<" not in data
    assert HOSTILE.replace("<", "\\u003c") in data and COMMENT.replace("<", "\\u003c") in data
    first = data.split(" = ", 1)[1].split(";\n    var additional_graphs_", 1)[0]
    assert HOSTILE in json.dumps(json.loads(first), ensure_ascii=False)
    assert page.count("</script>") == 4  # Evidently's own: data, global, library, draw

    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', page)
    assert csp and page.index(csp.group(0)) < page.index("<script>")
    policy = csp.group(1)
    assert "default-src 'none'" in policy and "'unsafe-inline'" not in policy.split(";")[1]
    assert "unsafe-eval" not in policy and "connect-src 'none'" in policy

    dom = _chromium(tmp_path, "--dump-dom", Path(result.html_path).resolve().as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "pwned</title>" not in dom.stdout and "data-pwned=" not in dom.stdout.split("<head>")[0]
    assert "<html" in dom.stdout and 'data-pwned="1"' not in dom.stdout
    match = re.search(r'<div id="root_[^"]+">(.*?)</div>\s*<script', dom.stdout, re.S)
    assert match and "Share of Drifted Columns" in match.group(1)  # still renders under CSP
    assert "store_primary_category" in match.group(1)
