"""mix: Mix Distillation (Li et al. 2025) — each problem's trace from one component stream, at a fixed ratio.

The budget is one problem's worth of data per problem: every problem some
component covers gets its traces from exactly one component
(`streams.mix.components`, default rft 4 : 1 oracle_synth, the paper's
learnability-gap baseline mixing the student-sized and the strong teacher's
data). Assignment is deterministic by seed and keeps the realised ratio as
close to the weights as coverage allows: problems only one component covers
go to it first; the others, in an order shuffled by `seed`, each go to the
available component furthest below its share (smallest (count + 1) / weight;
ties to the component listed first). A component with several traces on a
problem (rft `all_distinct`) contributes all of them. Traces are copied
unchanged, with `metrics["mix_source"]` naming the component.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import Field, field_validator

from stylealign.config import StreamSettings, known_streams
from stylealign.records import Trace, content_id
from stylealign.run.work import BatchResult, WorkItem
from stylealign.streams.context import StreamContext
from stylealign.streams.registry import Built, StreamSpec, settings_of, stream_settings

NAME = "mix"


class Settings(StreamSettings):
    """`streams.mix`: each problem's trace comes from one component stream, at a fixed ratio."""

    components: dict[str, Annotated[float, Field(gt=0, strict=True)]] = Field(
        default_factory=lambda: {"rft": 4.0, "oracle_synth": 1.0}, min_length=1,
        description="stream -> weight: the share of problems whose trace the stream supplies (default rft 4 : 1 oracle_synth)",
    )

    @field_validator("components")
    @classmethod
    def _components(cls, weights: dict[str, float]) -> dict[str, float]:
        known_streams(weights, besides=NAME)
        return weights


def assign(weights: dict[str, float], available: dict[str, list[str]], seed: int) -> dict[str, str]:
    """Problem id -> component, from each problem's available components (in `weights` order)."""
    forced = sorted(p for p, names in available.items() if len(names) == 1)
    free = sorted(p for p, names in available.items() if len(names) > 1)
    random.Random(content_id(NAME, seed)).shuffle(free)
    counts: Counter[str] = Counter()
    chosen: dict[str, str] = {}
    for problem_id in forced + free:
        names = available[problem_id]
        best = min(names, key=lambda name: ((counts[name] + 1) / weights[name], list(weights).index(name)))
        chosen[problem_id] = best
        counts[best] += 1
    return chosen


def plan(sc: StreamContext, built: Built) -> list[WorkItem]:
    weights = settings_of(sc, NAME).components
    problems = sc.problem_by_id
    traces: dict[tuple[str, str], list[Trace]] = {}
    for name in weights:
        for trace in built[name]:
            if trace.problem_id in problems:
                traces.setdefault((name, trace.problem_id), []).append(trace)
    available: dict[str, list[str]] = {}
    for name, problem_id in traces:
        available.setdefault(problem_id, []).append(name)
    chosen = assign(weights, available, sc.config.seed)
    key = sc.keyer(NAME, components=weights)
    return [
        WorkItem(key(problems[problem_id], parent=trace, source=name), problems[problem_id], trace)
        for problem_id, name in chosen.items()
        for trace in traces[(name, problem_id)]
    ]


def build(sc: StreamContext, items: list[WorkItem], built: Built) -> BatchResult:
    result = BatchResult(done=[item.key for item in items])
    for item in items:
        source = item.parent
        result.keep(item, Trace(
            id=content_id(NAME, item.key), problem_id=source.problem_id, text=source.text, stream=NAME,
            parent_id=source.id, model=source.model, template=source.template, sampling=source.sampling,
            seed=source.seed, correct=source.correct, metrics={"mix_source": source.stream},
        ))
        result.count(f"from_{source.stream}")
    return result


def summarize(traces: Sequence[Trace]) -> dict[str, Any]:
    """How many traces, and how many problems, each component supplied (by component name: the same bytes in every
    process, whatever its hash seed)."""
    problems = {(t.metrics.get("mix_source"), t.problem_id) for t in traces}
    return {
        "mix_sources": dict(sorted(Counter(t.metrics.get("mix_source") for t in traces).items())),
        "mix_problems": dict(sorted(Counter(source for source, _ in problems).items())),
    }


SPEC = StreamSpec(
    NAME, plan, build, needs=lambda config: tuple(stream_settings(config, NAME).components), settings=Settings,
    summarize=summarize,
)
