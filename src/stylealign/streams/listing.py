"""Which traces of a stream stage are current: the ids the latest `streams` run listed.

A stage keeps every shard it ever committed; the listing `streams/<name>.json`
names the traces made by the current config's work items, so a run dir
reused with other settings never mixes streams.
"""

from __future__ import annotations

from collections.abc import Sequence

from stylealign.records import Trace
from stylealign.store import RunStore


def write_listing(store: RunStore, name: str, traces: Sequence[Trace]) -> None:
    store.write_json(f"streams/{name}.json", [t.id for t in traces])


def stream_traces(store: RunStore, name: str) -> list[Trace]:
    """The current traces of stream `name` (all of its records if no run listed them yet)."""
    stage = store.stage(f"stream_{name}")
    listed = store.read_json(f"streams/{name}.json", missing=None)
    return stage.records(Trace) if listed is None else list(stage.iter_records(Trace, ids=listed))
