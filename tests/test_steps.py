"""Steps split and join back byte-for-byte; ProcessBench tagging."""

from __future__ import annotations

import json

import pytest

from stylealign.datasets import DATA_DIR
from stylealign.steps import join_steps, split_steps, tag_paragraphs

TRICKY = [
    "",
    "one line",
    "\n\n",
    "a\n\nb",
    "\n\nleading blank lines\n\n\nthree newlines\n",
    "a\nb\n\n  \t\nc\n\n",
    "windows\r\n\r\nparagraphs\r\n",
    "trailing spaces   \n\n   indented next\n \n",
    "unicode ✓ — ü\n\n\u2028not a break\n",
]


@pytest.mark.parametrize("mode", ["paragraph", "line"])
def test_join_restores_text_exactly(mode):
    solutions = [
        json.loads(line)["solution"] for line in (DATA_DIR / "math500" / "test.jsonl").open(encoding="utf-8")
    ]
    for text in TRICKY + solutions:
        steps = split_steps(text, mode)
        assert join_steps(steps) == text
        assert all(step.strip() for step in steps) or text.strip() == ""


def test_paragraphs_keep_their_separators():
    text = "Step one.\nStill one.\n\nStep two.\n\n\nStep three."
    assert split_steps(text) == ["Step one.\nStill one.\n\n", "Step two.\n\n\n", "Step three."]
    assert split_steps(text, "line") == ["Step one.\n", "Still one.\n\n", "Step two.\n\n\n", "Step three."]
    assert split_steps("\n\nfirst\n\nsecond\n\n") == ["\n\nfirst\n\n", "second\n\n"]
    assert split_steps("") == []


def test_prefix_of_steps_is_prefix_of_text():
    text = "A.\n\nB.\n\nC."
    steps = split_steps(text)
    for k in range(len(steps) + 1):
        assert text.startswith(join_steps(steps[:k]))


def test_unknown_mode():
    with pytest.raises(ValueError, match="sentence"):
        split_steps("x", "sentence")


def test_tag_paragraphs_matches_processbench_format():
    tagged = tag_paragraphs(split_steps("First.\n\nSecond line\nmore.\n\n"))
    assert (
        tagged == "<paragraph_0>\nFirst.\n</paragraph_0>\n\n<paragraph_1>\nSecond line\nmore.\n</paragraph_1>"
    )
    assert tag_paragraphs([]) == ""
