"""A rehearsal of the production path: a real LLM oracle served over HTTP, then a whole run against it.

`rehearse` runs the experiment with the oracle served by `stylealign serve` on the loopback port named in
`oracle.engine.base_url` (`engine.serve`, see `stylealign.engines.served`; oracle failures allowed: a
small oracle fails often, and the run must still finish) and writes `rehearsal.json`: how long each
stage took, every oracle failure per stream, the SAR gate's outcomes and rejection reasons, what the
judge could not score, and the per-benchmark evaluation table.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from stylealign.config import ExperimentConfig
from stylealign.records import Trace
from stylealign.store import RunStore
from stylealign.streams.registry import stream_spec


def gate_counts(store: RunStore, scored: dict[str, list[Trace]]) -> dict[str, Any]:
    """What each stream kept and what failed at the oracle, from the records, with the stream's own counters from
    its scored traces (`SPEC.summarize`: what the SAR gate decided and why); `this_run` adds the counts of the
    streams stage's batches (e.g. `wrong_answer`: oracle answers that failed verification and were dropped, which
    leave no record)."""
    run_counts = store.read_json("streams/counts.json", missing={})
    out: dict[str, Any] = {}
    for name, traces in scored.items():
        kept = store.stage(f"stream_{name}").records(Trace)
        out[name] = {
            "kept": len(kept),
            "oracle_failures": len(store.stage(f"failures_stream_{name}").records(Trace)),
            "this_run": run_counts.get(name, {}),
            **stream_spec(name).summarize(traces),
        }
    return out


def reward_failures(scored: dict[str, list[Trace]]) -> dict[str, int]:
    """Scored traces, and how many of them the reward could not score (a judge answer without a score)."""
    traces = [t for stream in scored.values() for t in stream]
    return {"scored": len(traces), "reward_errors": sum("reward_error" in t.metrics for t in traces)}


def rehearsal_summary(store: RunStore, config: ExperimentConfig, streams: list[str], seconds: float) -> dict[str, Any]:
    from stylealign.report.table import benchmark_table, headline

    manifest = store.manifest()
    evaluations = store.read_json("eval.json", missing={})
    headers, rows = benchmark_table(evaluations, config.evaluation.k)
    scored = {name: store.stage(f"scored_{name}").records(Trace) for name in streams}  # read once: the largest records
    return {
        "seconds": round(seconds, 1),
        "stages": {name: stage.get("summary", {}) for name, stage in manifest.get("stages", {}).items()},
        "streams": gate_counts(store, scored),
        "oracle_failures": store.read_json("streams/failures.json", missing={}),
        "reward": {"type": config.reward.type, **reward_failures(scored)},
        "evaluation": {"headline": headline(evaluations, config.evaluation.k), "headers": headers, "rows": rows},
    }


def rehearse(config: ExperimentConfig, out: str | Path, *, limit: int | None = None, console: Console | None = None) -> dict[str, Any]:
    """Run `config` with its oracle served locally (failures allowed), then write rehearsal.json."""
    from stylealign.pipeline import run_experiment

    console = console or Console()
    oracle = config.oracle
    if oracle is None or oracle.engine.type != "openai" or not oracle.engine.model or not oracle.engine.base_url:
        raise ValueError("a rehearsal needs oracle.engine of type openai with model and base_url (see the packaged config `rehearsal`: src/stylealign/configs/rehearsal.yaml)")
    config = config.model_copy(
        update={"oracle": oracle.model_copy(update={"engine": oracle.engine.model_copy(update={"serve": True})})}
    )
    out = Path(out)
    start = time.perf_counter()
    console.print(f"the oracle {oracle.engine.model} is served at {oracle.engine.base_url} while the run needs it")
    ctx = run_experiment(config, out, limit=limit, console=console, allow_failures=True)
    store = RunStore(out)
    summary = rehearsal_summary(store, config, list(ctx.streams), time.perf_counter() - start)
    store.write_json("rehearsal.json", summary)
    console.print(f"rehearsal finished in {summary['seconds']:.0f}s; counts in {out / 'rehearsal.json'}")
    for name, entry in summary["streams"].items():
        console.print(f"  {name}: {json.dumps(entry)}")
    console.print(f"  reward: {json.dumps(summary['reward'])}")
    console.print(summary["evaluation"]["headline"])
    return summary
