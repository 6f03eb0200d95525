"""rft: rejection sampling — the student's own correct samples, cleaned and selected.

Only samples that finished and state their answer count (`grading.verdicts`); the others whose answer
matched are set aside in `excluded_stream_rft` with the reason. Selection: one per problem (`first`, `random`, or `lowest_cost`: the lowest
student NLL), `all_distinct`: every correct sample whose reasoning differs,
deduplicated by its sequence of equations (or of numbers when it has none),
as in Yuan et al. 2023, or `all`: every correct sample. With several kept per
problem, `streams.near_duplicate` drops the near-duplicates among them.
"""

from __future__ import annotations

import dataclasses
import random
import re
from typing import Literal

from stylealign.config import StreamSettings
from stylealign.grading import grade_many
from stylealign.metrics.adaptation import adaptation_cost
from stylealign.records import Trace, content_id
from stylealign.run.work import BatchResult, WorkItem
from stylealign.streams.cleaning import clean_text
from stylealign.streams.context import StreamContext
from stylealign.streams.near_duplicates import drop_near_duplicates
from stylealign.streams.near_duplicates import summarize as summarize_near_duplicates
from stylealign.streams.registry import Built, StreamSpec, settings_of

NAME = "rft"

_EQUATION = re.compile(r"[\d.()][\d.\s+\-*/×÷^()]*=\s*-?[\d.,]*\d")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


MANY = ("all_distinct", "all")
"""Selections that keep several traces per problem."""


class Settings(StreamSettings):
    """`streams.rft`."""

    selection: Literal["first", "random", "lowest_cost", "all_distinct", "all"] = "first"
    clean: bool = True


def reasoning_signature(text: str) -> tuple[str, ...]:
    """The equations a trace writes (whitespace-free), or its numbers if it writes none."""
    equations = [re.sub(r"\s+", "", e) for e in _EQUATION.findall(text)]
    return ("eq", *equations) if equations else ("num", *_NUMBER.findall(text))


def plan(sc: StreamContext, built: Built) -> list[WorkItem]:
    cfg = settings_of(sc, NAME)
    near = sc.config.streams.near_duplicate if cfg.selection in MANY else None
    key = sc.keyer(NAME, selection=cfg.selection, clean=cfg.clean, **({"near_duplicate": near} if near else {}))
    items = []
    for p in sc.problems:
        correct = [t for t in sc.samples.get(p.id, []) if t.correct]
        excluded = [t.id for t in sc.samples.get(p.id, []) if "excluded" in t.metrics]
        if correct or excluded:
            items.append(WorkItem(key(p, samples=[t.id for t in correct], **({"excluded": excluded} if excluded else {})), p))
    return items


def _candidates(sc: StreamContext, problem_id: str, cfg: Settings) -> list[Trace]:
    """Correct samples of a problem as rft traces, cleaned where configured."""
    out = []
    for sample in sc.samples.get(problem_id, []):
        if not sample.correct:
            continue
        cleaned = clean_text(sample.text) if cfg.clean else None
        metrics = {"selection": cfg.selection, "cleaning": cleaned.actions if cleaned else []}
        if cleaned and cleaned.actions:
            metrics["cleaned_chars"] = cleaned.removed_chars
        text = cleaned.text if cleaned else sample.text
        out.append(
            Trace(id=content_id(NAME, sample.id, text), problem_id=sample.problem_id, text=text, stream=NAME,
                  parent_id=sample.id, model=sample.model, template=sample.template, sampling=sample.sampling,
                  seed=sample.seed, correct=True, metrics=metrics)
        )
    return out


def _undo_breaking_cleaning(sc: StreamContext, traces: list[Trace]) -> None:
    """Restore the original text of any trace whose cleaning changed its graded answer."""
    cleaned = [t for t in traces if t.metrics["cleaning"]]
    verdicts = grade_many([t.text for t in cleaned], [sc.problem_by_id[t.problem_id].answer for t in cleaned])
    for trace, ok in zip(cleaned, verdicts, strict=True):
        if not ok:
            trace.text = sc.sample_by_id[trace.parent_id].text
            trace.id = content_id(NAME, trace.parent_id, trace.text)
            trace.metrics.update(cleaning=[], cleaning_reverted=True)
            trace.metrics.pop("cleaned_chars", None)


def correct_samples(sc: StreamContext, problem_ids: list[str]) -> list[list[Trace]]:
    """Per problem, every correct student sample as an rft trace (cleaned as configured): what rft selects from."""
    cfg = settings_of(sc, NAME)
    per_problem = [_candidates(sc, problem_id, cfg) for problem_id in problem_ids]
    _undo_breaking_cleaning(sc, [t for candidates in per_problem for t in candidates])
    return per_problem


def _select(sc: StreamContext, item: WorkItem, candidates: list[Trace], policy: str) -> list[Trace]:
    if policy == "first":
        return candidates[:1]
    if policy == "random":
        return [random.Random(content_id(sc.config.seed, item.problem.id)).choice(candidates)]
    if policy == "all":
        return drop_near_duplicates(candidates, sc.config.streams.near_duplicate)
    if policy == "all_distinct":
        seen: set[tuple[str, ...]] = set()
        kept = []
        for trace in candidates:
            signature = reasoning_signature(trace.text)
            if signature not in seen:
                seen.add(signature)
                kept.append(trace)
        return drop_near_duplicates(kept, sc.config.streams.near_duplicate)
    return [min(candidates, key=lambda t: t.metrics["nll"])]


def build(sc: StreamContext, items: list[WorkItem], built: Built) -> BatchResult:
    result = BatchResult(done=[item.key for item in items])
    per_item = correct_samples(sc, [item.problem.id for item in items])
    flat = [t for candidates in per_item for t in candidates]
    selection = settings_of(sc, NAME).selection
    if selection == "lowest_cost":
        costs = adaptation_cost(sc.student(), [sc.student_request(sc.problem_by_id[t.problem_id]) for t in flat],
                                [t.text for t in flat])
        for trace, cost in zip(flat, costs, strict=True):
            trace.metrics.update(nll=cost["nll"], ppl=cost["ppl"])
    for item, candidates in zip(items, per_item, strict=True):
        for sample in sc.samples.get(item.problem.id, []):
            if "excluded" in sample.metrics:  # its answer matched, but it was cut off or never stated it
                result.exclude(item, dataclasses.replace(sample, stream=NAME, parent_id=sample.id, metrics=dict(sample.metrics)))
        if not candidates:
            continue
        kept = _select(sc, item, candidates, selection)
        for trace in kept:
            trace.metrics["candidates"] = len(candidates)
            result.keep(item, trace)
        result.count("cleaned", sum(bool(t.metrics["cleaning"]) for t in kept))
    return result


SPEC = StreamSpec(NAME, plan, build, settings=Settings, summarize=summarize_near_duplicates)
