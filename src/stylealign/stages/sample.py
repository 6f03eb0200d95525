"""sample: k student samples per problem, graded — the raw material of rft, sar and sar_repair."""

from __future__ import annotations

from typing import Any

from stylealign.engines.base import SamplingParams
from stylealign.records import Trace, content_id
from stylealign.run.context import RunContext
from stylealign.run.work import (
    BatchResult,
    WorkItem,
    engine_id,
    problem_part,
    run_batches,
    sample_and_grade,
    template_id,
    work_key,
)

STAGE = "samples"


def _sampling(ctx: RunContext) -> SamplingParams:
    return SamplingParams.from_config(ctx.config.sampling, seed=ctx.config.seed)


def _items(ctx: RunContext) -> list[WorkItem]:
    """One keyed item per problem, built once per run context (the stage and the readers of its samples need them)."""
    cfg = ctx.config

    def items() -> list[WorkItem]:
        engine_cfg = engine_id(cfg.student.engine)
        template, sampling = template_id(ctx.student_template()), _sampling(ctx).to_dict()
        return [
            WorkItem(
                work_key(STAGE, model=engine_cfg, template=template, sampling=sampling, k=cfg.sampling.k,
                         seed=cfg.seed, problem=problem_part(p), grading="training"),
                p,
            )
            for p in ctx.problems()
        ]

    return ctx.memo("sample_items", items)


def current_sample_ids(ctx: RunContext) -> frozenset[str]:
    """Ids of the samples the current config asks for (a run dir may also hold samples of earlier configs)."""
    k = ctx.config.sampling.k
    return ctx.memo("sample_ids", lambda: frozenset(content_id(item.key, j) for item in _items(ctx) for j in range(k)))


def current_samples(ctx: RunContext) -> list[Trace]:
    """The samples the current config asks for."""
    return list(ctx.store.stage(STAGE).iter_records(Trace, ids=current_sample_ids(ctx)))


def sample_stage(ctx: RunContext) -> dict[str, Any]:
    s = ctx.config.sampling
    sampling = _sampling(ctx)
    template = ctx.student_template()
    items = _items(ctx)

    def build(batch: list[WorkItem]) -> BatchResult:
        student = ctx.student()
        requests = [template.request(question=i.problem.question, id=i.problem.id) for i in batch]
        groups = sample_and_grade(student, requests, [i.problem.answer for i in batch], s.k, sampling, training=True)
        traces = [
            Trace(
                id=content_id(item.key, j), problem_id=item.problem.id, text=c.text, stream="sample", model=student.name,
                template=template.name, sampling=sampling.to_dict(), seed=sampling.seed, correct=verdict.correct,
                metrics={"sample_index": j, "finish_reason": c.finish_reason, "num_tokens": c.num_tokens,
                         **verdict.metrics},
            )
            for item, group in zip(batch, groups, strict=True)
            for j, (c, verdict) in enumerate(group)
        ]
        return BatchResult(traces=traces, done=[i.key for i in batch])

    counts = run_batches(ctx.store, STAGE, items, build, ctx.console, batch_size=16)
    samples = correct = 0
    solved: set[str] = set()
    # counted as they stream, from two columns: 800K samples need not sit in memory, or be decoded, for a summary
    for _, problem_id, ok in ctx.store.stage(STAGE).iter_columns(Trace, ["problem_id", "correct"], current_sample_ids(ctx)):
        samples += 1
        if ok:
            correct += 1
            solved.add(problem_id)
    return {
        "samples": samples,
        "accuracy": round(correct / samples, 4) if samples else 0.0,
        "solved": len(solved),
        "new": counts.get("new", 0),
    }
