"""Light cleaning of generation debris in the student's own traces, recorded so nothing is silent.

Two kinds of debris are removed: a repeated tail (a degenerate loop that
repeats the same span at least `MIN_REPEATS` times at the end) collapses to one
copy, and an unterminated last line of a length-truncated sample is dropped.
A cleaned trace is kept only if it still grades correct; otherwise the
original text stands.
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


def drop_unterminated_line(text: str) -> str:
    """Drop a trailing line that does not end a sentence (the generation was cut off mid-line)."""
    head, sep, last = text.rstrip().rpartition("\n")
    if not sep or not last.strip() or last.rstrip().endswith((".", "!", "?", "}", "$", ")", "]")):
        return text
    return head.rstrip()


def clean_text(text: str, truncated: bool) -> Cleaned:
    out = Cleaned(text)
    collapsed = collapse_repeated_tail(text.rstrip())
    if collapsed != text.rstrip():
        out.actions.append("repeated_tail")
        out.text = collapsed
    if truncated:
        dropped = drop_unterminated_line(out.text)
        if dropped != out.text:
            out.actions.append("unterminated")
            out.text = dropped
    out.removed_chars = len(text) - len(out.text)
    return out
