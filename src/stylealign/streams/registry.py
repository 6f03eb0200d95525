"""The stream registry: every stream declares itself in its own module, found here by name.

A stream is the module `stylealign.streams.<name>` with a `SPEC` (a
`StreamSpec`: how to plan its work items, how to build a batch, which streams
it needs built first, which stream its traces edit) plus its name in
`config.STREAMS`. So a new stream is one file and one line; the `streams`
stage orders the streams by their needs and the `score` stage measures edit
distance for those that edit a parent, without naming any stream.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stylealign.config import STREAMS, ExperimentConfig
from stylealign.records import Trace
from stylealign.run.work import BatchResult, WorkItem
from stylealign.streams.context import StreamContext

Built = Mapping[str, list[Trace]]
"""The current traces of the streams built so far in this `streams` run, by name."""


def _no_needs(config: ExperimentConfig) -> tuple[str, ...]:
    return ()


def _no_summary(traces: Sequence[Trace]) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class StreamSpec:
    """What the pipeline needs to know about one stream."""

    name: str
    plan: Callable[[StreamContext, Built], list[WorkItem]]
    """The keyed work items of this config (built streams it needs are in `Built`)."""
    build: Callable[[StreamContext, list[WorkItem], Built], BatchResult]
    needs: Callable[[ExperimentConfig], tuple[str, ...]] = _no_needs
    """Streams that must be built first besides the one it edits (they are built even when not selected,
    but not scored or trained)."""
    edits: str | None = None
    """The stream whose traces this stream's traces edit (`sample`: the student's samples); it is built
    first, and the score stage measures the edit distance to that parent. None for streams that write
    afresh, select or copy."""
    batch_size: int = 16
    summarize: Callable[[Sequence[Trace]], dict[str, Any]] = _no_summary
    """Extra fields of the stream's `streams.json` row, from its scored traces (acceptance rates, sources)."""

    def dependencies(self, config: ExperimentConfig) -> tuple[str, ...]:
        """The streams built before this one: the one it edits, then what it `needs`."""
        edited = (self.edits,) if self.edits in STREAMS else ()
        return (*edited, *(n for n in self.needs(config) if n not in edited))


def stream_spec(name: str) -> StreamSpec:
    if name not in STREAMS:
        raise ValueError(f"unknown stream {name!r}; choose from {', '.join(STREAMS)}")
    return importlib.import_module(f"stylealign.streams.{name}").SPEC


def build_order(config: ExperimentConfig, selected: Sequence[str]) -> list[str]:
    """`selected` and everything they need, each after its needs (else in `STREAMS` order)."""
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise ValueError(f"streams need each other in a cycle: {' -> '.join((*path, name))}")
        if name in order:
            return
        for need in stream_spec(name).dependencies(config):
            visit(need, (*path, name))
        order.append(name)

    for name in (n for n in STREAMS if n in selected):
        visit(name, ())
    return order
