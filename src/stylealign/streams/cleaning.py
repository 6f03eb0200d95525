"""Light cleaning of generation debris in the student's own traces, recorded so nothing is silent.

A repeated tail (a degenerate loop that repeats the same span at least
`MIN_REPEATS` times at the end, before the model stopped) collapses to one
copy. A cleaned trace is kept only if it still grades correct; otherwise the
original text stands. Samples cut off by `max_tokens` never reach cleaning:
they are never correct training data (`grading.verdicts`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

MIN_REPEATS = 3
MIN_REPEAT_CHARS = 24
MAX_PERIOD = 400


@dataclass
class Cleaned:
    text: str
    actions: list[str] = field(default_factory=list)
    removed_chars: int = 0


def collapse_repeated_tail(text: str) -> str:
    """Collapse the shortest period that repeats ≥ MIN_REPEATS times at the end into a single copy."""
    n = len(text)
    for period in range(1, min(MAX_PERIOD, n // MIN_REPEATS) + 1):
        unit = text[n - period :]
        repeats = 1
        while n - (repeats + 1) * period >= 0 and text[n - (repeats + 1) * period : n - repeats * period] == unit:
            repeats += 1
        if repeats >= MIN_REPEATS and repeats * period >= MIN_REPEAT_CHARS:
            return text[: n - (repeats - 1) * period]
    return text


def clean_text(text: str) -> Cleaned:
    out = Cleaned(text)
    collapsed = collapse_repeated_tail(text.rstrip())
    if collapsed != text.rstrip():
        out.actions.append("repeated_tail")
        out.text = collapsed
    out.removed_chars = len(text) - len(out.text)
    return out
