"""Keyed work in committed batches: skip what is done, commit each batch atomically, show progress.

A kill loses at most the batch in flight. Failure records go to a sibling
stage `failures_<stage>` so they never mix with the stage's kept records.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console

from stylealign.progress import stage_bar
from stylealign.store import RunStore
from stylealign.streams.context import BatchResult, WorkItem

DEFAULT_BATCH = 32


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
    with stage_bar(console, stage_name, len(pending)) as advance:
        for start in range(0, len(pending), batch_size):
            batch = list(pending[start : start + batch_size])
            result = build(batch)
            if result.failures:
                store.stage(f"failures_{stage_name}").commit(result.failures, [])
            stage.commit(result.traces, result.done)
            counts.update(result.counts)
            counts["new"] += len(result.traces)
            counts["left_undone"] += len(batch) - len(set(result.done))
            advance(len(batch))
    return {k: v for k, v in counts.items() if v}
