"""score: fill every stream trace's metrics, then compare the streams side by side.

Per trace (stage `scored_<name>`): adaptation cost under the student (nll,
ppl, ppl_q1..q4, step_nll, loss_by_token), reward (with the scorer's name),
and for streams that edit a parent (`SPEC.edits`) the normalised edit distance
to it. Per
stream: coverage, correctness, reward, PPL global and per quarter, JS drift
against the student's own samples, length / step ratios, edit distance and
the tokens carrying most of the loss, plus each stream's own counters
(`SPEC.summarize`, e.g. SAR's gate, with a line from `SPEC.describe`) —
printed as a table and written to `DIR/streams.json`. The same pass gives the predictors of utility
(`metrics/predictors.py`: PPL, mean token rank, RSR, CAR, GRAPE likelihood,
reward); each stream's predicted place under each (`predicted_rank`) is kept
in `streams.json`, and the rankings are printed, before any training.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from stylealign.metrics.adaptation import adaptation_cost, top_loss_tokens
from stylealign.metrics.aggregate import stream_summary
from stylealign.metrics.drift import (
    TextProfile,
    Tokenize,
    normalized_edit_distance,
    profile_drift,
    text_profile,
    tokenizer_for,
)
from stylealign.metrics.predictors import predicted_ranks, ranking_lines
from stylealign.progress import counts_text
from stylealign.records import Trace
from stylealign.run.context import RunContext
from stylealign.run.rewards import run_scorer
from stylealign.run.work import (
    BatchResult,
    WorkItem,
    WorkKeys,
    engine_id,
    key_dump,
    run_batches,
    template_id,
    trace_part,
)
from stylealign.stages.sample import STAGE as SAMPLES
from stylealign.stages.sample import current_sample_ids
from stylealign.streams.listing import stream_traces
from stylealign.streams.registry import stream_spec

SCORE_BATCH = 32


COLUMNS = {"stream": "stream", "traces": "n", "coverage": "cov", "correctness": "correct", "reward": "reward",
           "ppl": "ppl", "ppl_q1": "q1", "ppl_q2": "q2", "ppl_q3": "q3", "ppl_q4": "q4", "js_drift": "js",
           "edit_distance": "edit"}


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def print_table(ctx: RunContext, rows: list[dict[str, Any]]) -> None:
    """Streams side by side: n = traces, cov = coverage, q1..q4 = PPL per response quarter, js = unigram JS drift."""
    table = Table(title="streams", box=box.SIMPLE_HEAD, pad_edge=False)
    for key, header in COLUMNS.items():
        table.add_column(header, justify="left" if key == "stream" else "right", no_wrap=True)
    for row in rows:
        table.add_row(*[_fmt(row.get(key)) for key in COLUMNS])
    wide = Console(file=ctx.console.file, width=max(ctx.console.width, 120), force_terminal=ctx.console.is_terminal)
    wide.print(table)


def _drop_shadowing(ctx: RunContext, name: str, items: list[WorkItem]) -> None:
    """Scored traces keep their stream trace's id, so a trace scored under other settings (reward, student) would
    shadow its re-scored copy: such a stage is cleared and scored afresh."""
    stage = ctx.store.stage(f"scored_{name}")
    current = {item.parent.id: item.key for item in items}
    if any(t.metrics.get("score_key") != current[t.id] for t in stage.iter_records(Trace, ids=current)):
        stage.clear()


def vocabulary_guards(ctx: RunContext, texts: list[str], ppl: float | None) -> dict[str, Any]:
    """Signs that a stream's cost measures the student's vocabulary rather than its taste: the share of
    tokens a lab student never trained on, and a warning when PPL is worse than guessing uniformly."""
    from stylealign.lab.student import untrained_token_share
    from stylealign.models import resolve_model

    spec = ctx.config.student.engine.model or ""
    local = spec.startswith("lab:") or Path(spec).is_dir()
    path = resolve_model(spec) if local else None
    out: dict[str, Any] = {"untrained_token_share": untrained_token_share(path, texts) if path else None}
    vocab = getattr(getattr(ctx.student(), "tokenizer", None), "vocab_size", None)
    out["warnings"] = []
    if ppl is not None and vocab and ppl > vocab:
        out["warnings"].append(
            f"PPL {ppl:.3g} exceeds the vocabulary size {vocab}: the student does worse than uniform guessing, "
            "so this cost reflects tokens it never learned, not its style"
        )
    if (out["untrained_token_share"] or 0) > 0.01:
        out["warnings"].append(f"{out['untrained_token_share']:.1%} of the tokens were never a training target of the student")
    return out


PER_TOKEN = ("token_nll", "token_offsets", "loss_by_token", "step_nll")


class _StreamSummary:
    """What a stream's aggregates need of its scored traces: each trace without its per-token metrics, and
    the summed loss per token. Per-token NLLs are most of a scored record's size, so a stream of 100K x 8
    samples is summarised in a fraction of the memory its records take; traces scored in this run are
    collected as they are built, and only those scored by an earlier run are read back from the store."""

    def __init__(self) -> None:
        self.fresh: list[Trace] = []
        self.losses: Counter[str] = Counter()

    def add(self, trace: Trace) -> None:
        self.losses.update(trace.metrics.get("loss_by_token", {}))
        self.fresh.append(dataclasses.replace(trace, metrics={k: v for k, v in trace.metrics.items() if k not in PER_TOKEN}))

    def take(self, ctx: RunContext, name: str, ids: set[str]) -> tuple[list[Trace], Counter[str]]:
        """The stream's traces, earlier runs' (store order) before this run's (as committed): the order a
        full read gives; and their loss per token. Starts over for the next stream."""
        fresh, losses = self.fresh, self.losses
        self.fresh, self.losses = [], Counter()
        earlier = ids - {t.id for t in fresh}
        kept = [t for t in fresh if t.id in ids]
        if not earlier:
            return kept, losses
        old = _StreamSummary()
        for trace in ctx.store.stage(f"scored_{name}").iter_records(Trace, ids=earlier):
            old.add(trace)
        old.losses.update(losses)  # not `+`, which drops zero sums
        return old.fresh + kept, old.losses


def _samples_profile_and_parents(ctx: RunContext, names: list[str], tokenize: Tokenize) -> tuple[TextProfile, dict[str, str]]:
    """The drift profile of the student's samples, and the texts of the traces that the streams in `names`
    edit (samples, or another stream's traces) by id: one pass over the samples for both."""
    edited = {stream_spec(name).edits for name in names} - {None}
    parents: dict[str, str] = {}

    def sample_texts() -> Iterator[str]:
        for trace_id, text in ctx.store.stage(SAMPLES).iter_columns(Trace, ["text"], current_sample_ids(ctx)):
            if "sample" in edited:
                parents[trace_id] = text
            yield text

    profile = text_profile(sample_texts(), tokenize)
    for parent in edited - {"sample"}:
        parents.update((t.id, t.text) for t in stream_traces(ctx.store, parent))
    return profile, parents


def score_stage(ctx: RunContext) -> dict[str, Any]:
    problems = ctx.problem_by_id()
    tokenize, tokenizer_name = tokenizer_for(ctx.student())
    samples_profile, parents = _samples_profile_and_parents(ctx, list(ctx.streams), tokenize)
    template = ctx.student_template()
    parts = {
        "student": engine_id(ctx.config.student.engine),
        "template": template_id(template),
        "reward": key_dump(ctx.config.reward),
        "cost_fields": "token_nll+rank",  # in the key: a trace scored without per-token NLLs and ranks is scored again
    }

    key_of = WorkKeys("scored", **parts)
    request_for = functools.lru_cache(maxsize=4096)(lambda question: template.request(question=question))
    summary = _StreamSummary()

    def build(batch: list[WorkItem], name: str) -> BatchResult:
        scorer = run_scorer(ctx)
        traces = [item.parent for item in batch]
        costs = adaptation_cost(ctx.student(), [request_for(i.problem.question) for i in batch], [t.text for t in traces])
        rewards = scorer.score([i.problem for i in batch], [t.text for t in traces])
        result = BatchResult(done=[i.key for i in batch])
        for item, trace, cost, reward in zip(batch, traces, costs, rewards, strict=True):
            metrics = {**trace.metrics, **cost, **reward, "reward_model": scorer.name, "score_key": item.key}
            if stream_spec(name).edits and trace.parent_id in parents:
                metrics["edit_distance"] = normalized_edit_distance(parents[trace.parent_id], trace.text)
            result.traces.append(dataclasses.replace(trace, metrics=metrics))
            summary.add(result.traces[-1])
        return result

    rows = []
    exclusions = ctx.store.read_json("streams/exclusions.json", missing={})
    for name in ctx.streams:
        traces = stream_traces(ctx.store, name)
        items = [WorkItem(key_of(trace=trace_part(t)), problems[t.problem_id], t) for t in traces if t.problem_id in problems]
        _drop_shadowing(ctx, name, items)
        run_batches(ctx.store, f"scored_{name}", items, lambda batch, n=name: build(batch, n), ctx.console, SCORE_BATCH)
        ids = {t.id for t in traces}
        del traces, items
        scored, losses = summary.take(ctx, name, ids)
        row = {"stream": name, **stream_summary(scored, list(problems))}
        row.update(profile_drift(text_profile((t.text for t in scored), tokenize), samples_profile))
        if not stream_spec(name).edits:
            row["edit_distance"] = None
        row["top_loss_tokens"] = top_loss_tokens([losses])
        row["reward_model"] = scored[0].metrics.get("reward_model") if scored else None
        row["drift_tokenizer"] = tokenizer_name
        row["oracle_failures"] = sum(1 for _ in ctx.store.stage(f"failures_stream_{name}").iter_records(Trace))
        row["excluded"] = exclusions.get(name, {})
        row.update(vocabulary_guards(ctx, [t.text for t in scored], row.get("ppl")))
        row.update(stream_spec(name).summarize(scored))
        rows.append(row)
    for row, places in zip(rows, predicted_ranks(rows).values(), strict=True):
        row["predicted_rank"] = places
    ctx.store.write_json("streams.json", rows)
    print_table(ctx, rows)
    for row in rows:
        if line := stream_spec(row["stream"]).describe(row):
            ctx.console.print(line)
    excluded = {row["stream"]: row["excluded"] for row in rows if row.get("excluded")}
    if excluded:
        ctx.console.print("excluded from training data (answer matched, but cut by max_tokens or never stated): "
                          + "; ".join(f"{name} {counts_text(counts)}" for name, counts in excluded.items()))
    for row in rows:
        for warning in row["warnings"]:
            ctx.console.print(f"[yellow]warning[/yellow] {row['stream']}: {warning}")
    ctx.console.print("[bold]Predicted before training[/bold], best first (checked against accuracy in the report):")
    for line in ranking_lines(rows):
        ctx.console.print(f"  {line}")
    return {"streams": len(rows), "traces": sum(r["traces"] for r in rows)}
