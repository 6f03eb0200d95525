"""Console progress: one bar per stage (done/total, rate, elapsed, ETA); engines stay quiet under it.

An engine's own per-call bar (`stage_bar_active`) and transformers' "Loading
weights" bar (`quiet_loading`) would print nested or bare lines under the
stage's bar, so they are switched off while it shows. A library's tqdm bar
(an engine's, the trainer's) is drawn only on a terminal (`library_bars`):
redrawn into a log file it would write a line per update, so a log gets the
summary lines alone.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

_open_bars = 0


class RateColumn(ProgressColumn):
    """Items per second (per minute when slower than one a second)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if not speed:
            return Text("–/s", style="progress.data.speed")
        return Text(f"{speed:.1f}/s" if speed >= 1 else f"{60 * speed:.1f}/min", style="progress.data.speed")


@contextmanager
def stage_bar(console: Console, description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A transient bar for `total` items of one stage; yields `advance(n)`. No bar when there is nothing to do."""
    global _open_bars
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
    shown = total > 0 and (console.is_terminal or console.is_jupyter)  # a log file gets the summary lines only
    with Progress(*columns, console=console, transient=True, disable=not shown) as bar:
        task = bar.add_task(description, total=total)
        _open_bars += 1
        try:
            yield lambda n: bar.advance(task, n)
        finally:
            _open_bars -= 1


def stage_bar_active() -> bool:
    """Whether a stage's bar is showing: an engine then shows no bar of its own."""
    return _open_bars > 0


def library_bars() -> bool:
    """Whether a library may draw its own tqdm bar: stderr (where tqdm writes) is a terminal and no stage bar shows."""
    return sys.stderr.isatty() and not stage_bar_active()


@contextmanager
def quiet_loading() -> Iterator[None]:
    """No transformers/hub progress bars ("Loading weights", downloads) while a model loads; restored after."""
    from transformers.utils import logging

    was_enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            logging.enable_progress_bar()


def counts_text(counts: Mapping[str, int]) -> str:
    """`{"cost_rise": 49, "wrong": 2}` as a console line writes it: `cost_rise 49, wrong 2` (`none` when empty)."""
    return ", ".join(f"{key} {value}" for key, value in counts.items()) or "none"
