"""Oracle-written traces, graded: the shared step of oracle_synth, oracle_refine and sar."""

from __future__ import annotations

from collections.abc import Sequence

from stylealign.engines.base import Request
from stylealign.grading import extract_answer, grade_many
from stylealign.records import Trace, content_id
from stylealign.run.work import BatchResult, WorkItem
from stylealign.streams.context import StreamContext


def parse_final_answer(text: str) -> str:
    """An oracle solution must state a final answer; one that does not is malformed (or a refusal)."""
    answer = extract_answer(text)
    if answer is None:
        raise ValueError("no final answer in the oracle's solution")
    return answer


def oracle_traces(
    sc: StreamContext, stream: str, items: Sequence[WorkItem], requests: Sequence[Request], template: str,
    result: BatchResult, attempt: int = 0,
) -> list[Trace | None]:
    """One graded oracle trace per item (parent = the item's parent), or None where the oracle failed."""
    answers = sc.ask_oracle(stream, items, requests, template, result, parse=parse_final_answer, attempt=attempt)
    answered = [(item, a) for item, a in zip(items, answers, strict=True) if not a.failed]
    verdicts = iter(grade_many([a.text for _, a in answered], [item.problem.answer for item, _ in answered]))
    sampling = sc.oracle_sampling(attempt)
    name = sc.oracle().name
    out: list[Trace | None] = []
    for item, answer in zip(items, answers, strict=True):
        if answer.failed:
            out.append(None)
            continue
        out.append(
            Trace(
                id=content_id(stream, item.key, answer.text), problem_id=item.problem.id, text=answer.text,
                stream=stream, parent_id=item.parent.id if item.parent else None, model=name, template=template,
                sampling=sampling.to_dict(), seed=sampling.seed, correct=next(verdicts),
                metrics={"oracle_attempts": answer.attempts},
            )
        )
    return out


def keep_correct(items: Sequence[WorkItem], traces: Sequence[Trace | None], result: BatchResult) -> BatchResult:
    """Finished items (oracle answered) are done; correct traces are kept, wrong ones counted."""
    for item, trace in zip(items, traces, strict=True):
        if trace is None:
            continue
        result.done.append(item.key)
        if trace.correct:
            result.keep(item, trace)
        else:
            result.count("wrong_answer")
    return result
