"""report.html in a real browser (Debian's headless Chromium): it loads, shows its figures and trace browser,
logs no errors.

Any console line Chromium logs for the page is a problem. To see inside the
page, a probed copy gets a script that records error events (failed
resources included), each image's decoded size and what the trace browser
draws, before and after a reader picks another problem, searches and
switches to diffs; `--dump-dom` hands them back. A screenshot is checked for
content and kept (`STYLEALIGN_SCREENSHOT=PATH` copies it out).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from test_report import PARADOX_HITS, add_scored_traces, make_run

from stylealign.records import Trace
from stylealign.stages.report import report_stage

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
const __view = () => {
  const view = document.getElementById("tb-view");
  if (!view) return null;
  return {problem: view.dataset.problem || null,
    streams: [...view.querySelectorAll(".tb-col")].map(c => ({stream: c.dataset.stream,
      nll: [...c.querySelectorAll(".tok[data-nll]")].map(t => Number(t.dataset.nll)),
      tokens: [...c.querySelectorAll(".tok")].map(t => t.textContent),
      marks: [...c.querySelectorAll(".mark")].map(m => m.textContent),
      ins: c.querySelectorAll("ins").length, del: c.querySelectorAll("del").length}))};
};
window.addEventListener("load", () => {
  const result = {errors: window.__errors,
    images: [...document.images].map(i => ({src: i.src.slice(0, 22), width: i.naturalWidth, height: i.naturalHeight}))};
  const select = document.getElementById("tb-problem");
  if (select && select.options.length > 1) {
    result.first = __view();
    select.value = select.options[1].value;
    select.dispatchEvent(new Event("change"));
    result.second = __view();
    const diff = document.getElementById("tb-diff");
    diff.checked = true;
    diff.dispatchEvent(new Event("change"));
    result.diff = __view();
    const search = document.getElementById("tb-search");
    search.value = "train-3";
    search.dispatchEvent(new Event("input"));
    result.found = [...select.options].map(o => o.textContent.split(" ")[0]);
    result.searched = __view();
  }
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(result);
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
    return json.loads(html.unescape(match.group(1)))


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
    ctx = make_run(run, PARADOX_HITS)
    add_scored_traces(ctx)
    report_stage(ctx)
    page = run / "report.html"

    result = probe(page, tmp_path)
    assert result["errors"] == []
    assert len(result["images"]) == 7
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
    heat = [count for count, (r, g, b) in colours if r > 200 and g < 180 and b < 120]  # the OrRd shades of tokens
    assert sum(heat) > 50, "the trace browser's heat map is not on the screenshot"
    target = os.environ.get("STYLEALIGN_SCREENSHOT")
    if target:
        shutil.copy(shot, target)


def test_trace_browser_draws_tokens_with_their_nll_and_follows_the_picker(tmp_path: Path) -> None:
    run = tmp_path / "run"
    ctx = make_run(run, PARADOX_HITS)
    add_scored_traces(ctx)
    report_stage(ctx)
    result = probe(run / "report.html", tmp_path)
    assert result["errors"] == []

    first, second = result["first"], result["second"]
    assert first["problem"] == "train-11" and second["problem"] == "train-10"
    shaded = [s for s in first["streams"] if s["nll"]]
    assert len(shaded) >= 2, first
    scored = {t.stream: t for s in ("rft", "sar", "oracle_refine", "oracle_synth")
              for t in ctx.store.stage(f"scored_{s}").records(Trace) if t.problem_id == "train-11"}
    for drawn in shaded:
        trace = scored[drawn["stream"]]
        assert drawn["nll"] == pytest.approx(trace.metrics["token_nll"], abs=1e-3)
        assert drawn["tokens"] == trace.text.split()
        assert {"Q2", "Q3", "Q4", "step 2"} <= set(drawn["marks"])
    assert first["streams"] != second["streams"], "picking another problem must change the view"

    diffs = {s["stream"]: s for s in result["diff"]["streams"]}
    assert diffs["oracle_refine"]["ins"] > 0 and diffs["oracle_refine"]["del"] > 0 and not diffs["oracle_refine"]["nll"]
    assert diffs["oracle_synth"]["nll"] and diffs["oracle_synth"]["ins"] == 0, "a stream without a parent stays a heat map"

    assert result["found"] == ["train-3"] and result["searched"]["problem"] == "train-3"
