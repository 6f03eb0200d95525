"""Steps of a solution: split losslessly, join back byte-for-byte, number for prompts.

A step keeps its trailing separator (the blank lines after a paragraph, the
newline after a line), so `"".join(split_steps(text)) == text` always holds
and a prefix of steps is an exact prefix of the text: what a continuation
from "the student's first k steps" needs. Whitespace-only pieces (leading
blank lines) are folded into the next step so no step is empty.
"""

from __future__ import annotations

import re

_SEPARATORS = {
    "paragraph": re.compile(r"\n(?:[ \t\r\f\v]*\n)+"),
    "line": re.compile(r"\n(?:[ \t\r\f\v]*\n)*"),
}


def split_steps(text: str, mode: str = "paragraph") -> list[str]:
    """Steps of `text`: paragraphs (split at blank lines) or lines; `"".join(steps) == text`."""
    if mode not in _SEPARATORS:
        raise ValueError(f"step mode {mode!r}: choose one of {', '.join(_SEPARATORS)}")
    steps: list[str] = []
    start = 0
    pending = ""
    for match in _SEPARATORS[mode].finditer(text):
        piece = pending + text[start : match.end()]
        start = match.end()
        if piece.strip():
            steps.append(piece)
            pending = ""
        else:
            pending = piece
    tail = pending + text[start:]
    if steps and not tail.strip():
        steps[-1] += tail
    elif tail:
        steps.append(tail)
    return steps


def step_mode(text: str) -> str:
    """Paragraphs, or lines when the text is a single paragraph (how free-form model output is cut into steps)."""
    return "paragraph" if len(split_steps(text, "paragraph")) > 1 else "line"


def trace_steps(text: str) -> list[str]:
    """The steps of `text` in its `step_mode`; `"".join(steps) == text`."""
    return split_steps(text, step_mode(text))


def step_separator(steps: list[str], default: str) -> str:
    """The whitespace the author puts between steps (the first step before the last that ends in some),
    or `default` when it cannot be seen."""
    for step in steps[:-1]:
        tail = step[len(step.rstrip()) :]
        if tail:
            return tail
    return default


def join_steps(steps: list[str]) -> str:
    """The text the steps came from (the inverse of `split_steps`)."""
    return "".join(steps)


def tag_paragraphs(steps: list[str]) -> str:
    """ProcessBench's numbering: `<paragraph_i>\\n{step}\\n</paragraph_i>` blocks, blank-line separated."""
    return "\n\n".join(f"<paragraph_{i}>\n{step.strip()}\n</paragraph_{i}>" for i, step in enumerate(steps))
