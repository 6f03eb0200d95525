"""sdft: Self-Distillation Fine-Tuning (Yang et al., ACL 2024) — the student restates the reference itself.

The student (no oracle) sees the problem and the gold reference solution
(template `streams.sdft.template`, default `sdft`, through the student's own
chat template and system prompt) and writes one solution its own way. The
rewrite is kept if its final answer verifies; otherwise the reference is kept,
as in the paper. `metrics["sdft_outcome"]` says which (`rewritten` /
`kept_reference`), a fallback says why (`sdft_rejection`: `no_answer`,
`wrong_answer` or the student's error) and keeps the rejected rewrite
(`sdft_rewrite`); the stream's acceptance rate is in its `streams.json` row.
It tests whether the student alone can close the style gap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field

from stylealign.config import StreamSettings
from stylealign.engines.base import SamplingParams, generate_each
from stylealign.grading import extract_answer
from stylealign.grading.verdicts import grade_completions
from stylealign.prompts import PromptTemplate
from stylealign.records import Trace, content_id
from stylealign.run.work import BatchResult, WorkItem, template_id
from stylealign.streams.context import StreamContext
from stylealign.streams.registry import Built, StreamSpec, settings_of

NAME = "sdft"


class Settings(StreamSettings):
    """`streams.sdft`: the student restates the reference in its own words."""

    template: str = Field("sdft", description="prompt template (variables: question, reference) the student rewrites with")
    temperature: float | None = Field(None, ge=0, description="rewrite sampling temperature (default: sampling.temperature)")


def _template(sc: StreamContext) -> PromptTemplate:
    return sc.run.template(settings_of(sc, NAME).template, sc.student_template.system)


def _sampling(sc: StreamContext) -> SamplingParams:
    """The student's sampling, at `streams.sdft.temperature` when one is set."""
    return sc.student_sampling(temperature=settings_of(sc, NAME).temperature)


def plan(sc: StreamContext, built: Built) -> list[WorkItem]:
    problems = sc.problem_by_id
    key = sc.keyer(NAME, rewrite_template=template_id(_template(sc)), sampling=_sampling(sc).to_dict())
    return [
        WorkItem(key(problems[t.problem_id], parent=t), problems[t.problem_id], t)
        for t in built["gold"] if t.problem_id in problems
    ]


def _kept_reference(item: WorkItem, why: str, rewrite: str) -> Trace:
    reference = item.parent
    return Trace(
        id=content_id(NAME, item.key, "reference"), problem_id=reference.problem_id, text=reference.text, stream=NAME,
        parent_id=reference.id, model=reference.model, correct=reference.correct,
        metrics={"sdft_outcome": "kept_reference", "sdft_rejection": why, "sdft_rewrite": rewrite},
    )


def build(sc: StreamContext, items: list[WorkItem], built: Built) -> BatchResult:
    template, sampling, student = _template(sc), _sampling(sc), sc.student()
    requests = [template.request(question=i.problem.question, reference=i.parent.text, id=i.parent.id) for i in items]
    answers = generate_each(student, requests, 1, sampling)
    texts = ["" if isinstance(a, Exception) else a[0].text for a in answers]
    finishes = ["" if isinstance(a, Exception) else a[0].finish_reason for a in answers]
    verdicts = grade_completions(texts, finishes, [i.problem.answer for i in items], training=True)
    result = BatchResult(done=[i.key for i in items])
    for item, answer, text, verdict in zip(items, answers, texts, verdicts, strict=True):
        if isinstance(answer, Exception):
            trace = _kept_reference(item, f"student_error: {type(answer).__name__}: {answer}", "")
        elif verdict.excluded:
            trace = _kept_reference(item, verdict.excluded, text)
            result.exclude(item, Trace(
                id=content_id(NAME, item.key, text), problem_id=item.problem.id, text=text, stream=NAME,
                parent_id=item.parent.id, model=student.name, template=template.name, sampling=sampling.to_dict(),
                seed=sampling.seed, correct=False, metrics={"excluded": verdict.excluded, "finish_reason": answer[0].finish_reason},
            ))
        elif not verdict.correct:
            trace = _kept_reference(item, "no_answer" if extract_answer(text) is None else "wrong_answer", text)
        else:
            trace = Trace(
                id=content_id(NAME, item.key, text), problem_id=item.problem.id, text=text, stream=NAME,
                parent_id=item.parent.id, model=student.name, template=template.name, sampling=sampling.to_dict(),
                seed=sampling.seed, correct=True, metrics={"sdft_outcome": "rewritten"},
            )
        result.keep(item, trace)
        result.count(trace.metrics["sdft_outcome"])
    return result


def summarize(traces: Sequence[Trace]) -> dict[str, Any]:
    """How many rewrites verified, and their share of the stream (the rest kept the reference)."""
    rewritten = sum(t.metrics.get("sdft_outcome") == "rewritten" for t in traces)
    return {"sdft_rewritten": rewritten, "sdft_acceptance": rewritten / len(traces) if traces else None}


SPEC = StreamSpec(NAME, plan, build, edits="gold", settings=Settings, summarize=summarize)
