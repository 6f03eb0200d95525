"""streams: build every selected stream into store stage `stream_<name>`.

Order matters: a stream is built after the stream it edits and the ones it needs (its `SPEC`,
see `stylealign.streams.registry`): oracle_refine and sar refine rft traces, sar / sar_repair
take the student's style exemplars from rft, sdft rewrites gold, grape selects
among its pool and mix composes its components. A needed stream is built even
when not selected. Each stream's current traces are listed
for the stages after this one (`stylealign.streams.listing`), and its oracle failures are counted in
`streams/failures.json` (the report shows them); what each stream's batches did in this run
(new traces, wrong oracle answers, SAR gate outcomes, work skipped as already done) is in
`streams/counts.json`. Traces whose answer matched but that training data may not hold (cut by
`max_tokens`, or no stated final answer: `grading.verdicts`) are kept in `excluded_stream_<name>` and
counted per reason in `streams/exclusions.json` (and `streams.json`). A stream left with no traces
because its oracle failed stops the run with a summary (finished work is kept;
`--allow-failures` goes on with what there is).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from stylealign.records import Trace
from stylealign.run.context import RunContext
from stylealign.run.work import run_batches
from stylealign.stages.sample import current_samples
from stylealign.streams.context import StreamContext
from stylealign.streams.listing import write_listing
from stylealign.streams.registry import build_order, stream_spec


class StreamsFailed(ValueError):
    """A selected stream got no data because its engine failed."""


def streams_stage(ctx: RunContext) -> dict[str, Any]:
    sc = StreamContext.from_run(ctx, current_samples(ctx))
    summary: dict[str, Any] = {}
    failures: dict[str, dict[str, Any]] = {}
    run_counts: dict[str, dict[str, int]] = {}
    exclusions: dict[str, dict[str, int]] = {}
    built: dict[str, list[Trace]] = {}
    for name in build_order(ctx.config, ctx.streams):
        spec = stream_spec(name)
        items = spec.plan(sc, built)
        counts = run_batches(ctx.store, f"stream_{name}", items, lambda batch, spec=spec: spec.build(sc, batch, built),
                             ctx.console, batch_size=spec.batch_size)
        run_counts[name] = counts
        keys = {item.key for item in items}
        current = [t for t in ctx.store.stage(f"stream_{name}").iter_records(Trace) if t.metrics.get("work_key") in keys]
        exclusions[name] = dict(sorted(Counter(
            t.metrics["excluded"] for t in ctx.store.stage(f"excluded_stream_{name}").iter_records(Trace)
            if t.metrics.get("work_key") in keys
        ).items()))
        write_listing(ctx.store, name, current)
        built[name] = current
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
    ctx.store.write_json("streams/counts.json", run_counts)
    ctx.store.write_json("streams/exclusions.json", exclusions)
    starved = {name: f for name, f in failures.items() if not f["traces"] and f["failed_requests"]}
    if starved and not ctx.allow_failures:
        detail = "; ".join(f"{name}: {f['failed_requests']} requests failed, last error: {f['last_error']}" for name, f in starved.items())
        raise StreamsFailed(
            f"streams {', '.join(starved)} got no data because the oracle failed ({detail}). Finished work is "
            "kept; rerun to retry the failed requests, or pass --allow-failures to go on with partial streams"
        )
    return summary
