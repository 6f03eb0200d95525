"""Keyed work in committed batches: skip what is done, commit finished batches atomically, show progress.

Finished batches are gathered into one shard until it holds `SHARD_RECORDS`
records or `COMMIT_SECONDS` have passed since the last commit, so a fast
engine writes a few large shards instead of one small fsynced file per batch
(100K problems were 6,250 sample shards), while a slow one still commits
every batch. A kill loses at most the batch in flight and the batches
finished in the last `COMMIT_SECONDS`; an exception commits what finished
before it propagates. Failure records go to a sibling stage
`failures_<stage>` so they never mix with the stage's kept records.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console

from stylealign.progress import stage_bar
from stylealign.records import Trace
from stylealign.store import RunStore
from stylealign.streams.context import BatchResult, WorkItem

DEFAULT_BATCH = 32
SHARD_RECORDS = 4096
"""Records (or finished keys) that close a shard even when batches come faster than `COMMIT_SECONDS`."""
COMMIT_SECONDS = 5.0
"""Longest time finished work waits in memory before it is committed."""


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
    last_commit = time.monotonic()

    def commit() -> None:
        """Write what finished; the buffers are emptied first, so a write that fails is not tried again."""
        nonlocal last_commit
        held = (list(traces), list(keys), list(failures))
        for buffer in (traces, keys, failures):
            buffer.clear()
        last_commit = time.monotonic()
        if held[2]:
            store.stage(f"failures_{stage_name}").commit(held[2], [])
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
                counts.update(result.counts)
                counts["new"] += len(result.traces)
                counts["left_undone"] += len(batch) - len(set(result.done))
                if max(len(traces), len(keys)) >= SHARD_RECORDS or time.monotonic() - last_commit >= COMMIT_SECONDS:
                    commit()
                advance(len(batch))
        finally:
            commit()
    return {k: v for k, v in counts.items() if v}
