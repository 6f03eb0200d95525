"""The stream registry: every stream declares itself in its own module, found here by name.

A stream is the module `stylealign.streams.<name>` with a `SPEC` (a
`StreamSpec`: how to plan its work items, how to build a batch, which streams
it needs built first, which stream its traces edit, its own settings and
counters) plus its name in `config.STREAMS`. So a new stream is one file and
one list entry: its settings model (a `config.StreamSettings`) lives in its
file, and `streams.<name>: {...}` in a config is validated against it here
(`stream_settings`, and `check_stream_settings` once when a run starts), since
config.py imports no stream. The `streams` stage orders the streams by their
needs and the `score` stage measures edit distance for those that edit a
parent and adds each stream's counters, without naming any stream.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import stylealign.config
from stylealign.config import ExperimentConfig, StreamSettings, invalid, known_streams, stream_sections
from stylealign.records import Trace
from stylealign.run.work import BatchResult, WorkItem
from stylealign.streams.context import StreamContext

Built = Mapping[str, list[Trace]]
"""The current traces of the streams built so far in this `streams` run, by name."""


def _no_needs(config: ExperimentConfig) -> tuple[str, ...]:
    return ()


def _no_summary(traces: Sequence[Trace]) -> dict[str, Any]:
    return {}


def _no_check(config: ExperimentConfig, settings: Any) -> None:
    return None


def _no_description(row: Mapping[str, Any]) -> str | None:
    return None


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
    settings: type[StreamSettings] = StreamSettings
    """The model of the stream's own settings, its section `streams.<name>: {...}` (read with `stream_settings`);
    the base class, with no fields, for a stream that has none."""
    check: Callable[[ExperimentConfig, Any], None] = _no_check
    """`(config, settings)`, when the stream is enabled: what its settings need of the rest of the config, as a
    ValueError whose message starts with the dotted key (grape's `car` criterion needs a reward)."""
    summarize: Callable[[Sequence[Trace]], dict[str, Any]] = _no_summary
    """Extra fields of the stream's `streams.json` row, from its scored traces (acceptance rates, sources, gate
    counters); `stylealign rehearse` adds them to the stream's entry of `rehearsal.json`."""
    describe: Callable[[Mapping[str, Any]], str | None] = _no_description
    """A line the score stage prints about the stream's `streams.json` row after the table (SAR: what its gate did)."""

    def dependencies(self, config: ExperimentConfig) -> tuple[str, ...]:
        """The streams built before this one: the one it edits, then what it `needs`."""
        edited = (self.edits,) if self.edits not in (None, "sample") else ()
        return (*edited, *(n for n in self.needs(config) if n not in edited))


def stream_spec(name: str) -> StreamSpec:
    known_streams([name])
    return importlib.import_module(f"stylealign.streams.{name}").SPEC


def stream_settings(config: ExperimentConfig, name: str) -> Any:
    """Stream `name`'s own settings: its section of `config` validated by its `SPEC.settings`, defaults where the
    section leaves a key out; a ConfigError names the dotted key."""
    return stream_sections(config, {name: stream_spec(name).settings})[name]


def settings_of(sc: StreamContext, name: str) -> Any:
    """`stream_settings` for a stream builder: validated once per run and config, not once per batch."""
    return sc.run.memo(f"stream_settings:{name}:{id(sc.config)}", lambda: stream_settings(sc.config, name))


def check_stream_settings(config: ExperimentConfig, origin: str = "<config>") -> ExperimentConfig:
    """`config` with every stream's section checked, against its settings model and (for the enabled streams) its
    `check`, in one ConfigError naming each failing dotted key; returned with each section complete (every
    default filled in, streams in `STREAMS` order), as a run records it in its manifest. Called when a run starts
    (`run_experiment`) and when the CLI loads a config (`origin`: its path)."""
    names = stylealign.config.STREAMS  # read when called: the one list of streams
    specs = {name: stream_spec(name) for name in names}
    settings = stream_sections(config, {name: spec.settings for name, spec in specs.items()}, origin)
    lines = []
    for name in config.streams.enabled:
        try:
            specs[name].check(config, settings[name])
        except ValueError as err:
            lines.append(f"  {err}")
    if lines:
        raise invalid(origin, lines)
    general = config.streams.model_dump(exclude=set(config.streams.model_extra or {}))
    sections = {name: s.model_dump() for name, s in settings.items() if type(s).model_fields}
    return config.model_copy(update={"streams": type(config.streams).model_validate({**general, **sections})})


def build_order(config: ExperimentConfig, selected: Sequence[str]) -> list[str]:
    """`selected` and everything they need, each after its needs (else in `STREAMS` order)."""
    known_streams(selected)
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise ValueError(f"streams need each other in a cycle: {' -> '.join((*path, name))}")
        if name in order:
            return
        for need in stream_spec(name).dependencies(config):
            visit(need, (*path, name))
        order.append(name)

    for name in (n for n in stylealign.config.STREAMS if n in selected):
        visit(name, ())
    return order
