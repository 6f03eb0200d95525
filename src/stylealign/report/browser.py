"""The report's trace browser: per problem, every stream's trace shaded token by token by the student's NLL.

`browser_data` picks the problems worth looking at (the largest
oracle_refine − sar cost gaps, the problems where SAR kept the student's
trace, then the widest spread of cost across streams), and packs each
trace compactly: its text, per-token NLL in milli-nats and character spans,
step and quarter marks, and a word-level diff against its parent. The page
embeds at most `MAX_PROBLEMS` problems and `MAX_BYTES` of data, whichever
comes first, so it stays one fast file.

`nll_deciles` is the finer Q1–Q4: mean student NLL per tenth of the response.
"""

from __future__ import annotations

import difflib
import html
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from stylealign.config import STREAMS
from stylealign.records import Problem, Trace
from stylealign.steps import split_steps

MAX_PROBLEMS = 200
MAX_BYTES = 10_000_000
GAP_PROBLEMS = 30
FALLBACK_PROBLEMS = 30
DECILES = 10
HEADLINE = ("nll", "ppl", "tokens", "reward", "edit_distance", "sar_outcome")
_WORDS = re.compile(r"\s+|[^\s]+")


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def nll_deciles(traces: Iterable[Trace]) -> list[float | None]:
    """Mean NLL per tenth of the response: each trace's decile means, averaged over the traces that reach it."""
    sums, counts = [0.0] * DECILES, [0] * DECILES
    for trace in traces:
        nlls = trace.metrics.get("token_nll") or []
        buckets: list[list[float]] = [[] for _ in range(DECILES)]
        for i, value in enumerate(nlls):
            buckets[min(DECILES - 1, (DECILES * i) // len(nlls))].append(value)
        for d, bucket in enumerate(buckets):
            if bucket:
                sums[d] += sum(bucket) / len(bucket)
                counts[d] += 1
    return [round(s / c, 4) if c else None for s, c in zip(sums, counts, strict=True)]


def word_diff(parent: str, text: str) -> list[list[str]]:
    """Word-level edit script from `parent` to `text`: `[op, words]` with op "=" (kept), "-" (deleted), "+" (inserted)."""
    a, b = _WORDS.findall(parent), _WORDS.findall(text)
    out: list[list[str]] = []

    def add(op: str, words: Sequence[str]) -> None:
        if not words:
            return
        if out and out[-1][0] == op:
            out[-1][1] += "".join(words)
        else:
            out.append([op, "".join(words)])

    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            add("=", a[i1:i2])
        else:
            add("-", a[i1:i2])
            add("+", b[j1:j2])
    return out


def _marks(trace: Trace, spans: list[list[int]]) -> list[list[Any]]:
    """(character, label, kind) where a step or a quarter of the response begins, sorted by character."""
    marks: list[list[Any]] = []
    start = 0
    for number, step in enumerate(split_steps(trace.text) if trace.text else [], 1):
        if number > 1:
            marks.append([start, f"step {number}", "step"])
        start += len(step)
    n = len(spans)
    for q in range(1, 4):
        index = round(q * n / 4)
        if 0 < index < n:
            marks.append([spans[index][0], f"Q{q + 1}", "quarter"])
    return sorted(marks, key=lambda m: (m[0], m[2] != "step"))


def pack_trace(trace: Trace, parent: Trace | None) -> dict[str, Any]:
    """One trace as the page draws it; NLLs as integer milli-nats, spans clipped to the text."""
    nlls = trace.metrics.get("token_nll") or []
    spans = trace.metrics.get("token_offsets") or []
    if len(spans) != len(nlls):
        spans = []
    size = len(trace.text)
    packed: dict[str, Any] = {
        "stream": trace.stream,
        "id": trace.id,
        "text": trace.text,
        "correct": trace.correct,
        "metrics": {k: trace.metrics[k] for k in HEADLINE if trace.metrics.get(k) is not None},
        "nll": [round(1000 * v) for v in nlls] if spans else [],
        "spans": [[max(0, min(s, size)), max(0, min(e, size))] for s, e in spans],
        "marks": _marks(trace, spans) if spans else [],
    }
    if parent is not None:
        packed["parent"] = {"stream": parent.stream, "id": parent.id}
        packed["diff"] = word_diff(parent.text, trace.text)
    return packed


def _pick(traces_by_stream: dict[str, list[Trace]]) -> dict[str, Trace]:
    """One trace per stream: refined streams first (lowest id), then for the others the trace they refined."""
    ids = {t.id for found in traces_by_stream.values() for t in found}
    refined = [s for s, found in traces_by_stream.items() if any(t.parent_id in ids for t in found)]
    picked = {s: min(traces_by_stream[s], key=lambda t: t.id) for s in refined}
    wanted = {t.parent_id for t in picked.values()}
    for stream, found in traces_by_stream.items():
        if stream not in picked and found:
            picked[stream] = next((t for t in found if t.id in wanted), min(found, key=lambda t: t.id))
    return picked


def _ranked(chosen: dict[str, dict[str, Trace]]) -> list[tuple[str, str]]:
    """(problem id, why it is shown), most informative first."""

    def cost(pid: str, stream: str) -> float | None:
        trace = chosen[pid].get(stream)
        return trace.metrics.get("nll") if trace else None

    gaps = []
    for pid in chosen:
        refine, sar = cost(pid, "oracle_refine"), cost(pid, "sar")
        if refine is not None and sar is not None:
            gaps.append((refine - sar, pid))
    order: list[tuple[str, str]] = []
    seen: set[str] = set()

    def take(pids: Iterable[str], why: str, limit: int | None = None) -> None:
        for pid in pids:
            if limit is not None and limit <= 0:
                return
            if pid not in seen:
                seen.add(pid)
                order.append((pid, why))
                limit = None if limit is None else limit - 1

    take([pid for _, pid in sorted(gaps, reverse=True)], "largest oracle_refine − sar cost gap", GAP_PROBLEMS)
    fell_back = [pid for pid in sorted(chosen) if (t := chosen[pid].get("sar")) and t.metrics.get("sar_outcome") == "kept_parent"]
    take(fell_back, "SAR kept the student's trace", FALLBACK_PROBLEMS)

    def spread(pid: str) -> float:
        costs = [t.metrics["nll"] for t in chosen[pid].values() if isinstance(t.metrics.get("nll"), (int, float))]
        return max(costs) - min(costs) if len(costs) > 1 else -math.inf

    take(sorted(chosen, key=lambda pid: (-spread(pid), pid)), "widest cost spread across streams")
    return order


def browser_data(
    problems: Sequence[Problem],
    traces: dict[str, list[Trace]],
    parents: dict[str, Trace],
    *,
    max_problems: int = MAX_PROBLEMS,
    max_bytes: int = MAX_BYTES,
) -> dict[str, Any]:
    """The embedded problems, most informative first, within `max_problems` and `max_bytes` of JSON.

    `traces` maps a stream to its scored traces; `parents` maps a trace id to a trace that may be refined from.
    """
    questions = {p.id: p.question for p in problems}
    grouped: dict[str, dict[str, list[Trace]]] = defaultdict(lambda: defaultdict(list))
    for stream, found in traces.items():
        for trace in found:
            if trace.problem_id in questions:
                grouped[trace.problem_id][stream].append(trace)
    chosen = {pid: _pick(by_stream) for pid, by_stream in grouped.items()}
    streams = sorted(traces, key=lambda s: STREAMS.index(s) if s in STREAMS else len(STREAMS))  # parents first
    embedded, size = [], 0
    ranked = _ranked(chosen)
    for pid, why in ranked:
        if len(embedded) >= max_problems:
            break
        entry = {
            "id": pid,
            "question": questions[pid],
            "why": why,
            "traces": [
                pack_trace(chosen[pid][s], parents.get(chosen[pid][s].parent_id or ""))
                for s in streams
                if s in chosen[pid]
            ],
        }
        cost = len(json.dumps(entry, ensure_ascii=False).encode("utf-8"))
        if size + cost > max_bytes:
            break
        embedded.append(entry)
        size += cost
    all_nll = sorted(v for entry in embedded for t in entry["traces"] for v in t["nll"])
    top = all_nll[int(0.98 * (len(all_nll) - 1))] / 1000 if all_nll else 1.0
    return {
        "problems": embedded,
        "available": len(ranked),
        "bytes": size,
        "max_problems": max_problems,
        "max_bytes": max_bytes,
        "scale_max": max(1.0, math.ceil(top)),
    }


def _asset(name: str) -> str:
    return (Path(__file__).with_name(name)).read_text(encoding="utf-8")


def browser_style() -> str:
    return _asset("browser.css")


def render_browser(data: dict[str, Any]) -> str:
    """The browser's HTML section: picker, legend, view, the data as inert JSON and the script that draws it."""
    shown, available = len(data["problems"]), data["available"]
    if not shown:
        return (
            '<section id="trace-browser"><h2>Trace browser</h2><p>No scored traces with their problems in this run '
            "directory: run the score stage (stylealign run CONFIG --out DIR --only score).</p></section>"
        )
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    cap = (
        f"{shown} of {available} problems with scored traces embedded ({data['bytes'] / 1e6:.2f} MB; cap "
        f"{data['max_problems']} problems or {data['max_bytes'] / 1e6:.0f} MB, most informative first)."
    )
    return f"""<section id="trace-browser"><h2>Trace browser</h2>
<p>Each token of each stream's trace is shaded by the student's NLL on it (teacher-forced, given the problem);
hover a token for its NLL. Badges mark where a step (paragraph) and each quarter of the response tokens begin.
Refined traces can show their edits against the trace they were refined from. {html.escape(cap)}</p>
<div class="tb-controls">
<div><input id="tb-search" type="search" placeholder="search problem id or text" aria-label="search problems">
<select id="tb-problem" size="10" aria-label="problem"></select></div>
<div><label><input id="tb-diff" type="checkbox"> show refined traces as edits against their parent</label>
<div id="tb-legend"></div></div>
</div>
<div id="tb-view"></div>
<script type="application/json" id="tb-data">{payload}</script>
<script>{_asset("browser.js")}</script>
</section>"""
