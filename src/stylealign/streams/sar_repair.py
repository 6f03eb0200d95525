"""sar_repair: reach problems the student never solved, keeping most of the student's own tokens.

For a problem with no correct sample: locate the first wrong step of a student
trace (the oracle with the ProcessBench-style `locate_error` prompt, or the
lab's step checker), keep the student's prefix before it byte-for-byte, let
the oracle rewrite that one step in the student's style (`repair_step`), and
let the student continue from there (`continuations` samples). The verified
completion with the lowest student NLL is kept (`keep` > 1: that many, lowest
NLL first, less the near-duplicates of kept ones under `streams.near_duplicate`).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from stylealign.config import StreamSettings
from stylealign.grading.verdicts import grade_completions
from stylealign.metrics.adaptation import adaptation_cost
from stylealign.records import Trace, content_id
from stylealign.run.work import BatchResult, WorkItem
from stylealign.steps import step_mode, tag_paragraphs, trace_steps
from stylealign.streams.context import StreamContext
from stylealign.streams.near_duplicates import drop_near_duplicates
from stylealign.streams.near_duplicates import summarize as summarize_near_duplicates
from stylealign.streams.registry import Built, StreamSpec, settings_of

NAME = "sar_repair"
LOCATE, REPAIR = "locate_error", "repair_step"


class Settings(StreamSettings):
    """`streams.sar_repair` (the exemplars in the repair prompt are `streams.sar.exemplars`)."""

    continuations: int = Field(4, ge=1)
    locator: Literal["oracle", "lab"] = "oracle"
    max_problems: int | None = Field(None, ge=1)
    keep: int = Field(1, ge=1, description="verified continuations kept per problem, lowest student NLL first")


_INDEX = re.compile(r"\\boxed\{\s*(-?\d+)\s*\}")


def parse_step_index(text: str) -> int:
    found = _INDEX.findall(text)
    if not found:
        raise ValueError("no \\boxed{index} in the locator's answer")
    index = int(found[-1])
    if index < -1:
        raise ValueError(f"step index {index} is not -1 or a step")
    return index


def plan(sc: StreamContext, built: Built) -> list[WorkItem]:
    cfg = settings_of(sc, NAME)
    parts = {**sc.oracle_parts(LOCATE, REPAIR), "sar_repair": cfg.model_dump(exclude={"keep"}),
             "exemplars": settings_of(sc, "sar").exemplars, "sampling": sc.student_sampling().to_dict()}
    if cfg.keep > 1:  # with one continuation kept (the default) neither setting can change it: both stay out of the key
        parts.update(keep=cfg.keep, near_duplicate=sc.config.streams.near_duplicate)
    key = sc.keyer(NAME, **parts)
    items = []
    for p in sc.problems:
        samples = sc.samples.get(p.id, [])
        if _attempts(sc, p.id) and not any(t.correct for t in samples):
            items.append(WorkItem(key(p, samples=[t.id for t in samples]), p))
    return items[: cfg.max_problems] if cfg.max_problems else items


def _attempts(sc: StreamContext, problem_id: str) -> list[Trace]:
    """The problem's samples that have any text to repair."""
    return [t for t in sc.samples.get(problem_id, []) if t.text.strip()]


def _locate_lab(sc: StreamContext, items: list[WorkItem]) -> list[tuple[Trace, int] | None]:
    """The wrong sample whose first error comes latest (the longest native prefix), per item."""
    from stylealign.lab.checker import first_wrong_step

    out = []
    for item in items:
        located = [(t, first_wrong_step(item.problem, t.text, step_mode(t.text))) for t in _attempts(sc, item.problem.id)]
        out.append(max(located, key=lambda pair: pair[1] if pair[1] >= 0 else len(trace_steps(pair[0].text)) - 1))
    return out


def _locate_oracle(sc: StreamContext, items: list[WorkItem], result: BatchResult) -> list[tuple[Trace, int] | None]:
    """The oracle's earliest wrong step of each problem's first sample (an index past the end means the last step)."""
    template = sc.oracle_template(LOCATE)
    firsts = [_attempts(sc, item.problem.id)[0] for item in items]
    requests = [
        template.request(question=item.problem.question, tagged_solution=tag_paragraphs(trace_steps(s.text)), id=s.id)
        for item, s in zip(items, firsts, strict=True)
    ]
    answers = sc.ask_oracle(NAME, items, requests, LOCATE, result, parse=parse_step_index)
    return [
        None if a.failed else (s, min(a.value, len(trace_steps(s.text)) - 1))
        for s, a in zip(firsts, answers, strict=True)
    ]


@dataclass
class _Repair:
    """One problem's repair: the student sample, its first wrong step, the kept prefix and the oracle's fix."""

    item: WorkItem
    sample: Trace
    index: int
    prefix: str
    wrong: str
    fixed: str = ""

    @property
    def head(self) -> str:
        """What the student continues from: its own prefix, byte-for-byte, then the repaired step."""
        return self.prefix + self.fixed


def build(sc: StreamContext, items: list[WorkItem], built: Built) -> BatchResult:
    cfg = settings_of(sc, NAME)
    result = BatchResult()
    located = _locate_lab(sc, items) if cfg.locator == "lab" else _locate_oracle(sc, items, result)
    jobs = []
    for item, found in zip(items, located, strict=True):
        if found is not None:
            sample, index = found
            steps = trace_steps(sample.text)
            index = index if index >= 0 else len(steps) - 1
            jobs.append(_Repair(item, sample, index, "".join(steps[:index]), steps[index]))
    if not jobs:
        return result

    template, exemplars = sc.oracle_template(REPAIR), settings_of(sc, "sar").exemplars
    requests = [
        template.request(id=job.sample.id, question=job.item.problem.question, steps_so_far=job.prefix,
                         wrong_step=job.wrong, exemplars=sc.exemplars(built["rft"], job.item.problem, exemplars))
        for job in jobs
    ]
    repaired = []
    for job, answer in zip(jobs, sc.ask_oracle(NAME, [j.item for j in jobs], requests, REPAIR, result), strict=True):
        if not answer.failed:
            job.fixed = answer.text.strip() + job.wrong[len(job.wrong.rstrip()) :]
            repaired.append(job)
    if not repaired:
        return result

    student = sc.student()
    sampling = sc.student_sampling()
    groups = student.generate([sc.student_request(j.item.problem, prefix=j.head) for j in repaired], cfg.continuations, sampling)
    flat = [(job, job.head + c.text, c.finish_reason) for job, group in zip(repaired, groups, strict=True) for c in group]
    verdicts = grade_completions([text for _, text, _ in flat], [finish for _, _, finish in flat],
                                 [job.item.problem.answer for job, _, _ in flat], training=True)
    verified = [(job, text) for (job, text, _), verdict in zip(flat, verdicts, strict=True) if verdict.correct]
    for (job, text, finish), verdict in zip(flat, verdicts, strict=True):
        if verdict.excluded:  # the continuation reached the answer but was cut off or never stated it
            result.exclude(job.item, Trace(
                id=content_id(NAME, job.item.key, text, "excluded"), problem_id=job.item.problem.id, text=text,
                stream=NAME, parent_id=job.sample.id, model=student.name, template=REPAIR, sampling=sampling.to_dict(),
                seed=sampling.seed, correct=False, metrics={"excluded": verdict.excluded, "finish_reason": finish},
            ))
    costs = adaptation_cost(student, [sc.student_request(job.item.problem) for job, _ in verified], [t for _, t in verified])
    ranked: dict[int, dict[str, float]] = defaultdict(dict)  # per job: text -> NLL, lowest first
    for (job, text), cost in sorted(zip(verified, costs, strict=True), key=lambda pair: pair[1]["nll"]):
        ranked[id(job)].setdefault(text, cost["nll"])
    counts = Counter(id(job) for job, _ in verified)

    oracle_name = sc.oracle().name
    for job in repaired:
        result.done.append(job.item.key)
        if id(job) not in ranked:
            result.count("unrepaired")
            continue
        candidates = [
            Trace(id=content_id(NAME, job.item.key, text), problem_id=job.item.problem.id, text=text, stream=NAME,
                  parent_id=job.sample.id, model=student.name, template=REPAIR, sampling=sampling.to_dict(),
                  seed=sampling.seed, correct=True, metrics={
                      "locator": cfg.locator, "error_step": job.index, "prefix_chars": len(job.prefix),
                      "repair_chars": len(job.fixed), "native_fraction": 1 - len(job.fixed) / len(text),
                      "oracle": oracle_name, "verified": counts[id(job)], "continuations": cfg.continuations, "nll": nll,
                  })
            for text, nll in ranked[id(job)].items()
        ]
        for trace in drop_near_duplicates(candidates, sc.config.streams.near_duplicate if cfg.keep > 1 else None)[: cfg.keep]:
            result.keep(job.item, trace)
        result.count("repaired")
    return result


SPEC = StreamSpec(
    NAME, plan, build, needs=lambda config: ("rft",), edits="sample", settings=Settings, summarize=summarize_near_duplicates
)
