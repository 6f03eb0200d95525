"""streams: build every selected stream into store stage `stream_<name>`.

Order matters: oracle_refine and sar refine rft traces, and sar / sar_repair
take the student's style exemplars from rft, so rft is built first whenever
one of them is selected. Each stream's current traces are listed (see
`listing.py`) for the stages after this one, and its oracle failures are
counted in `streams/failures.json` (the report shows them). A stream left
with no traces because its oracle failed stops the run with a summary
(finished work is kept; `--allow-failures` goes on with what there is).
"""

from __future__ import annotations

from typing import Any

from stylealign.pipeline import RunContext
from stylealign.records import Trace
from stylealign.streams import gold, oracle_refine, oracle_synth, rft, sar, sar_repair
from stylealign.streams.batches import run_batches
from stylealign.streams.context import StreamContext, WorkItem
from stylealign.streams.listing import write_listing
from stylealign.streams.sample import current_samples


class StreamsFailed(ValueError):
    """A selected stream got no data because its engine failed."""


ORDER = ("gold", "rft", "oracle_synth", "oracle_refine", "sar", "sar_repair")
NEEDS_RFT = {"oracle_refine", "sar", "sar_repair"}
ORACLE_BATCH = 16


def _plan(sc: StreamContext, name: str, parents: list[Trace]) -> list[WorkItem]:
    if name in ("oracle_refine", "sar"):
        return {"oracle_refine": oracle_refine, "sar": sar}[name].plan(sc, parents)
    return {"gold": gold, "rft": rft, "oracle_synth": oracle_synth, "sar_repair": sar_repair}[name].plan(sc)


def _builder(sc: StreamContext, name: str, pool: list[Trace]):
    if name == "sar":
        return lambda batch: sar.build(sc, batch, pool)
    if name == "sar_repair":
        return lambda batch: sar_repair.build(sc, batch, pool)
    return lambda batch: {"gold": gold, "rft": rft, "oracle_synth": oracle_synth, "oracle_refine": oracle_refine}[name].build(sc, batch)


def streams_stage(ctx: RunContext) -> dict[str, Any]:
    sc = StreamContext.from_run(ctx, current_samples(ctx))
    selected = set(ctx.streams)
    if selected & NEEDS_RFT:
        selected.add("rft")
    summary: dict[str, Any] = {}
    failures: dict[str, dict[str, Any]] = {}
    rft_traces: list[Trace] = []
    for name in (n for n in ORDER if n in selected):
        items = _plan(sc, name, rft_traces)
        counts = run_batches(ctx.store, f"stream_{name}", items, _builder(sc, name, rft_traces), ctx.console,
                             batch_size=ORACLE_BATCH if name != "gold" else 256)
        keys = {item.key for item in items}
        current = [t for t in ctx.store.stage(f"stream_{name}").records(Trace) if t.metrics.get("work_key") in keys]
        write_listing(ctx.store, name, current)
        if name == "rft":
            rft_traces = current
        covered = len({t.problem_id for t in current})
        summary[name] = f"{len(current)} traces/{covered} problems" + "".join(
            f", {k}={v}" for k, v in sorted(counts.items()) if k not in ("new", "skipped")
        )
        if counts.get("oracle_failures") or counts.get("oracle_errors"):
            failed = ctx.store.stage(f"failures_stream_{name}").records(Trace)
            failures[name] = {
                "traces": len(current),
                "failed_requests": counts.get("oracle_failures", 0),
                "failed_sends": counts.get("oracle_errors", 0),
                "left_undone": counts.get("left_undone", 0),
                "last_error": failed[-1].metrics.get("error", "") if failed else "",
            }
    ctx.store.write_json("streams/failures.json", failures)
    starved = {name: f for name, f in failures.items() if not f["traces"] and f["failed_requests"]}
    if starved and not ctx.allow_failures:
        detail = "; ".join(f"{name}: {f['failed_requests']} requests failed, last error: {f['last_error']}" for name, f in starved.items())
        raise StreamsFailed(
            f"streams {', '.join(starved)} got no data because the oracle failed ({detail}). Finished work is "
            "kept; rerun to retry the failed requests, or pass --allow-failures to go on with partial streams"
        )
    return summary
