"""Near-duplicate control for streams that keep several traces per problem (`streams.near_duplicate`).

k samples of one problem are often the same solution with a word changed; trained on, they weigh that
problem k times. A trace is dropped when its normalised edit distance (Levenshtein over the longer
length, as the score stage's `edit_distance`) to a trace already kept for its problem is below the
threshold. Traces are taken in the stream's order of preference, so the kept one is the one the stream
would have picked first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from rapidfuzz.distance import Levenshtein

from stylealign.records import Trace

FIELD = "near_duplicates"
"""Per kept trace: how many traces of its problem were dropped as its near-duplicates."""


def drop_near_duplicates(traces: Sequence[Trace], threshold: float | None) -> list[Trace]:
    """`traces` less the near-duplicates of earlier ones of the same problem; None keeps them all (and counts
    nothing). Each kept trace counts in `metrics["near_duplicates"]` the ones dropped for it."""
    if threshold is None:
        return list(traces)
    kept: dict[str, list[Trace]] = defaultdict(list)
    out = []
    for trace in traces:
        mine = kept[trace.problem_id]
        twin = next(
            (k for k in mine if Levenshtein.normalized_distance(k.text, trace.text, score_cutoff=threshold) < threshold),
            None,
        )
        if twin is None:
            trace.metrics.setdefault(FIELD, 0)
            mine.append(trace)
            out.append(trace)
        else:
            twin.metrics[FIELD] = twin.metrics.get(FIELD, 0) + 1
    return out


def summarize(traces: Sequence[Trace]) -> dict[str, Any]:
    """The stream's `near_duplicates_dropped` in streams.json, where the control was on."""
    counted = [t.metrics[FIELD] for t in traces if FIELD in t.metrics]
    return {"near_duplicates_dropped": sum(counted)} if counted else {}
