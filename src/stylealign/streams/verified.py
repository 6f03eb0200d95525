"""Oracle-written traces, graded: the shared step of oracle_synth, oracle_refine and sar."""

from __future__ import annotations

from collections.abc import Sequence

from stylealign.engines.base import Request
from stylealign.grading import extract_answer
from stylealign.grading.verdicts import grade_completions
from stylealign.records import Trace, content_id
from stylealign.run.work import BatchResult, WorkItem
from stylealign.streams.context import StreamContext


def parse_final_answer(text: str) -> str:
    """An oracle solution must state a final answer explicitly (boxed, "the answer is", `####`); one that does not
    is malformed (or a refusal), and is asked again."""
    answer = extract_answer(text, last_number=False)
    if answer is None:
        raise ValueError("no final answer stated in the oracle's solution")
    return answer


def oracle_traces(
    sc: StreamContext, stream: str, items: Sequence[WorkItem], requests: Sequence[Request], template: str,
    result: BatchResult, attempt: int = 0,
) -> list[Trace | None]:
    """One graded oracle trace per item (parent = the item's parent), or None where the oracle failed."""
    answers = sc.ask_oracle(stream, items, requests, template, result, parse=parse_final_answer, attempt=attempt)
    answered = [(item, a) for item, a in zip(items, answers, strict=True) if not a.failed]
    verdicts = iter(grade_completions(
        [a.text for _, a in answered], [a.finish_reason for _, a in answered], [item.problem.answer for item, _ in answered],
        training=True,
    ))
    sampling = sc.oracle_sampling(attempt)
    name = sc.oracle().name
    out: list[Trace | None] = []
    for item, answer in zip(items, answers, strict=True):
        if answer.failed:
            out.append(None)
            continue
        verdict = next(verdicts)
        out.append(
            Trace(
                id=content_id(stream, item.key, answer.text), problem_id=item.problem.id, text=answer.text,
                stream=stream, parent_id=item.parent.id if item.parent else None, model=name, template=template,
                sampling=sampling.to_dict(), seed=sampling.seed, correct=verdict.correct,
                metrics={"oracle_attempts": answer.attempts, "finish_reason": answer.finish_reason,
                         **verdict.metrics},
            )
        )
    return out


def keep_correct(items: Sequence[WorkItem], traces: Sequence[Trace | None], result: BatchResult) -> BatchResult:
    """Finished items (oracle answered) are done; correct traces are kept, excluded ones set aside, wrong ones counted."""
    for item, trace in zip(items, traces, strict=True):
        if trace is None:
            continue
        result.done.append(item.key)
        if trace.correct:
            result.keep(item, trace)
        elif "excluded" in trace.metrics:
            result.exclude(item, trace)
        else:
            result.count("wrong_answer")
    return result
