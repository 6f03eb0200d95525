"""report.html in a real browser (Debian's headless Chromium): it loads, shows its figures, logs no errors.

The page itself has no scripts, so any console line Chromium logs for it is a
problem. To see inside the page, a probed copy gets a script that records
error events (failed resources included) and each image's decoded size, and
`--dump-dom` hands them back. A screenshot is checked for content and kept.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from test_report import PARADOX_HITS, make_run

from stylealign.report import report_stage

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian chromium not installed: apt-get install -y chromium"
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=5000",
]
PROBE = """<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(String(e.message || (e.target && e.target.src) || "error")), true);
const __consoleError = console.error;
console.error = (...a) => { window.__errors.push(a.join(" ")); __consoleError(...a); };
window.addEventListener("load", () => {
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify({errors: window.__errors,
    images: [...document.images].map(i => ({src: i.src.slice(0, 22), width: i.naturalWidth, height: i.naturalHeight}))});
  document.body.appendChild(pre);
});
</script>"""


def chromium(page: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def probe(page: Path, tmp_path: Path) -> dict:
    probed = tmp_path / f"probed-{page.name}"
    probed.write_text(
        page.read_text(encoding="utf-8").replace("<head>", "<head>" + PROBE, 1), encoding="utf-8"
    )
    dom = chromium(probed, tmp_path, "--dump-dom").stdout
    match = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert match, f"the probe did not run: {dom[:500]}"
    return json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def test_probe_catches_broken_pages(tmp_path: Path) -> None:
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<html><head></head><body><img src="missing.png"><script>console.error("boom")</script></body></html>'
    )
    result = probe(bad, tmp_path)
    assert "boom" in result["errors"] and any("missing.png" in e for e in result["errors"])
    assert result["images"][0]["width"] == 0


def test_report_renders_in_chromium(tmp_path: Path) -> None:
    run = tmp_path / "run"
    report_stage(make_run(run, PARADOX_HITS))
    page = run / "report.html"

    result = probe(page, tmp_path)
    assert result["errors"] == []
    assert len(result["images"]) == 5
    for image in result["images"]:
        assert image["src"].startswith("data:image/png;base64")
        assert image["width"] > 300 and image["height"] > 200, f"a figure did not decode: {image}"

    shot = tmp_path / "report.png"
    log = chromium(page, tmp_path, "--window-size=1280,2400", f"--screenshot={shot}").stderr
    assert not [line for line in log.splitlines() if ":CONSOLE" in line], log
    with Image.open(shot) as img:
        rgb = img.convert("RGB")
        assert rgb.size == (1280, 2400)
        colours = rgb.resize((128, 240)).getcolors(maxcolors=1 << 16)
    assert colours is not None and len(colours) > 20, "the screenshot is blank"
    target = os.environ.get("STYLEALIGN_SCREENSHOT")
    if target:
        shutil.copy(shot, target)
