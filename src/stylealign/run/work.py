"""Keyed work in committed batches: skip what is done, commit finished batches atomically, show progress.

Every stage that calls a model works this way: it plans `WorkItem`s whose
keys hash everything that decides their output (`engine_id`, `template_id`,
sampling, seed, problem), and `run_batches` builds the ones not done yet.
This module is the one home of those keys: `work_key` for one, `WorkKeys` for
the many items of a stage that share most parts, `problem_part`/`trace_part`
for what of a problem or trace a key holds, `key_dump` for a config.

Finished batches are gathered into one shard until it holds `SHARD_RECORDS`
records or `COMMIT_SECONDS` have passed since the last commit, so a fast
engine writes a few large shards instead of one small fsynced file per batch
(one per batch, 100K problems would be 6,250 sample shards), while a slow one still commits
every batch. A kill loses at most the batch in flight and the batches
finished in the last `COMMIT_SECONDS`; an exception commits what finished
before it propagates. Failure records go to a sibling stage
`failures_<stage>` so they never mix with the stage's kept records.
"""

from __future__ import annotations

import gc
import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from rich.console import Console

from stylealign.config import EngineConfig, runtime_only_fields
from stylealign.engines.base import Completion, Engine, Request, SamplingParams
from stylealign.grading.verdicts import Verdict, grade_completions
from stylealign.progress import stage_bar
from stylealign.prompts import PromptTemplate
from stylealign.records import Problem, Trace, content_id, json_string, json_value
from stylealign.store import RunStore

DEFAULT_BATCH = 32
SHARD_RECORDS = 4096
"""Records (or finished keys) that close a shard even when batches come faster than `COMMIT_SECONDS`."""
COMMIT_SECONDS = 5.0
"""Longest time finished work waits in memory before it is committed."""


@contextmanager
def few_collections(young: int = 100_000) -> Iterator[None]:
    """Run a stage with the cyclic GC collecting young objects every `young` allocations (CPython's default is
    700), and older generations rarely. A stage allocates millions of short-lived records and metrics, almost
    none in cycles; at the default the collector takes a fifth of the score stage of 10K problems x 8 samples
    (53 s with it, 41 s with it off). Reference counting still frees what is not in a cycle at once; the
    old thresholds come back afterwards."""
    old = gc.get_threshold()
    gc.set_threshold(young, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*old)


def work_key(stage: str, **parts: Any) -> str:
    """Content key of one unit of work of `stage`; any change in what determines the output changes the key.
    The hash of the JSON list `[stage, parts]` (sorted keys: `content_id`)."""
    return content_id(stage, parts)


class WorkKeys:
    """The keys of the many items of one stage that share `fixed` parts: `keys(**varying)` is exactly
    `work_key(stage, **fixed, **varying)`, with `fixed` encoded once and the layout of each set of varying names
    built once. A stream keys each of its items (800K at 100K problems) and the score stage each trace (500K)
    with the same engines, templates and sampling: re-encoding those per item would cost a tenth of a stage."""

    def __init__(self, stage: str, **fixed: Any) -> None:
        self.stage = stage
        self._fixed = {name: json_value(value) for name, value in fixed.items()}
        self._layouts: dict[tuple[str, ...], tuple[str, tuple[tuple[int, str], ...]]] = {}

    def __call__(self, **varying: Any) -> str:
        names = tuple(varying)
        layout = self._layouts.get(names)
        if layout is None:
            layout = self._layouts[names] = self._layout(names)
        text, slots = layout
        values = tuple(varying.values())
        for index, tail in slots:
            text += json_value(values[index]) + tail
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def _layout(self, names: tuple[str, ...]) -> tuple[str, tuple[tuple[int, str], ...]]:
        """The JSON `work_key` hashes, cut at the varying values: its head, then per varying value (in sorted
        name order) the value's index in `names` and the text after it."""
        clash = self._fixed.keys() & set(names)
        if clash:
            raise TypeError(f"work key of {self.stage!r}: {sorted(clash)} given twice")
        index = {name: i for i, name in enumerate(names)}
        pieces, slots = ["[" + json_value(self.stage) + ", {"], []
        for n, name in enumerate(sorted([*self._fixed, *names])):
            pieces[-1] += (", " if n else "") + json_string(name) + ": "
            if name in index:
                slots.append(index[name])
                pieces.append("")
            else:
                pieces[-1] += self._fixed[name]
        pieces[-1] += "}]"
        return pieces[0], tuple(zip(slots, pieces[1:], strict=True))


def problem_part(problem: Problem) -> str:
    """What of a problem a work key holds: its id, question and answer (an edited problem is new work)."""
    return content_id(problem.id, problem.question, problem.answer)


def trace_part(trace: Trace) -> str:
    """What of a trace a work key holds when the work reads it: its id and text."""
    return content_id(trace.id, trace.text)


def key_dump(config: BaseModel) -> dict[str, Any]:
    """`config` as a work key holds it: its JSON dump without its own runtime-only fields
    (`stylealign.config.runtime_only_fields`); a nested model (an engine's `actor`) is dumped whole."""
    return config.model_dump(mode="json", exclude=set(runtime_only_fields(type(config))))


def template_id(template: PromptTemplate) -> str:
    return content_id(template.name, template.system, template.user)


def engine_id(cfg: EngineConfig | None) -> dict[str, Any] | None:
    """What in an engine config decides its outputs: runtime-only settings (throughput, addresses) may change
    without redoing work."""
    return None if cfg is None else key_dump(cfg)


@dataclass
class WorkItem:
    """One unit of keyed work: a problem, and the trace it works on (refines, scores) when there is one."""

    key: str
    problem: Problem
    parent: Trace | None = None


@dataclass
class BatchResult:
    traces: list[Trace] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    failures: list[Trace] = field(default_factory=list)
    excluded: list[Trace] = field(default_factory=list)
    """Traces whose answer matched but that training data may not hold (`metrics["excluded"]` says why)."""
    counts: dict[str, int] = field(default_factory=dict)

    def keep(self, item: WorkItem, trace: Trace) -> None:
        """Keep `trace` as output of `item`; the work key ties it to the config that made it."""
        trace.metrics["work_key"] = item.key
        self.traces.append(trace)

    def exclude(self, item: WorkItem, trace: Trace) -> None:
        """Set `trace` aside in `excluded_<stage>`, counted as `excluded_<reason>`."""
        trace.metrics["work_key"] = item.key
        self.excluded.append(trace)
        self.count(f"excluded_{trace.metrics['excluded']}")

    def count(self, what: str, n: int = 1) -> None:
        self.counts[what] = self.counts.get(what, 0) + n


def run_batches(
    store: RunStore,
    stage_name: str,
    items: Sequence[WorkItem],
    build: Callable[[list[WorkItem]], BatchResult],
    console: Console,
    batch_size: int = DEFAULT_BATCH,
) -> dict[str, Any]:
    """Build the not-yet-done `items` batch by batch into `stage_name`; return counts for the summary."""
    stage = store.stage(stage_name)
    done = stage.done_keys()
    pending = [item for item in items if item.key not in done]
    counts: Counter[str] = Counter(skipped=len(items) - len(pending))
    traces: list[Trace] = []
    keys: list[str] = []
    failures: list[Trace] = []
    excluded: list[Trace] = []
    last_commit = time.monotonic()

    def commit() -> None:
        """Write what finished; the buffers are emptied first, so a write that fails is not tried again."""
        nonlocal last_commit
        held = (list(traces), list(keys), list(failures), list(excluded))
        for buffer in (traces, keys, failures, excluded):
            buffer.clear()
        last_commit = time.monotonic()
        if held[2]:
            store.stage(f"failures_{stage_name}").commit(held[2], [])
        if held[3]:
            store.stage(f"excluded_{stage_name}").commit(held[3], [])
        if held[0] or held[1]:
            stage.commit(held[0], held[1])

    with stage_bar(console, stage_name, len(pending)) as advance:
        try:
            for start in range(0, len(pending), batch_size):
                batch = list(pending[start : start + batch_size])
                result = build(batch)
                traces.extend(result.traces)
                keys.extend(result.done)
                failures.extend(result.failures)
                excluded.extend(result.excluded)
                counts.update(result.counts)
                counts["new"] += len(result.traces)
                counts["left_undone"] += len(batch) - len(set(result.done))
                if max(len(traces), len(keys)) >= SHARD_RECORDS or time.monotonic() - last_commit >= COMMIT_SECONDS:
                    commit()
                advance(len(batch))
        finally:
            commit()
    return {k: v for k, v in counts.items() if v}


def sample_and_grade(
    engine: Engine, requests: Sequence[Request], answers: Sequence[str], k: int, sampling: SamplingParams, *,
    training: bool, last_number: bool = True,
) -> list[list[tuple[Completion, Verdict]]]:
    """`k` completions per request, each with its verdict against that request's answer (graded in one batch;
    `training` and `last_number` as in `grade_completions`)."""
    groups = engine.generate(requests, k, sampling)
    flat = [c for g in groups for c in g]
    verdicts = iter(grade_completions(
        [c.text for c in flat], [c.finish_reason for c in flat],
        [a for a, g in zip(answers, groups, strict=True) for _ in g], training=training, last_number=last_number,
    ))
    return [[(c, next(verdicts)) for c in g] for g in groups]
