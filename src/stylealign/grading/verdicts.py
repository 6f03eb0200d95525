"""When a model's answer counts: stricter for training data than for evaluation, with the reason it did not.

A real model cut off by `max_tokens` in the middle of an equation can still
end on the right number, and the last-number fallback then grades it correct.
Such a trace must never train the student (it teaches it not to stop), and a
trace that never states its answer teaches it to leave the answer implicit.
So training data counts a sample only when it finished and states its final
answer explicitly (boxed, "the answer is", `####`, ...), and evaluation may
use the last-number fallback (`evaluation.last_number`) but never on a sample
that was cut off: there the last number is wherever the cut fell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stylealign.grading.pool import grade_many

CUT_BY_LENGTH = "length"
"""Excluded: the sample states the right answer but was stopped by `max_tokens`."""
IMPLICIT_ANSWER = "implicit_answer"
"""Excluded: the right answer is only the last number; the sample never states a final answer."""


@dataclass(frozen=True)
class Verdict:
    correct: bool
    excluded: str | None = None
    """Why a sample whose answer matches does not count (`CUT_BY_LENGTH`, `IMPLICIT_ANSWER`), else None."""

    @property
    def metrics(self) -> dict[str, str]:
        """What a kept record's metrics say of it: `{"excluded": reason}` when it is excluded, else nothing."""
        return {"excluded": self.excluded} if self.excluded else {}


def grade_completions(
    texts: Sequence[str],
    finish_reasons: Sequence[str],
    references: Sequence[str],
    *,
    training: bool,
    last_number: bool = True,
) -> list[Verdict]:
    """One verdict per text. `training`: finished and explicit only; else explicit, or a finished last number."""
    if not len(texts) == len(finish_reasons) == len(references):
        raise ValueError(f"grade_completions: {len(texts)} texts, {len(finish_reasons)} finish reasons, {len(references)} references")
    lenient = grade_many(texts, references, last_number=True)
    matched = [i for i, ok in enumerate(lenient) if ok]
    explicit = dict(zip(matched, grade_many([texts[i] for i in matched], [references[i] for i in matched], last_number=False), strict=True))
    verdicts = []
    for i, ok in enumerate(lenient):
        cut = finish_reasons[i] == "length"
        if not ok:
            verdicts.append(Verdict(False))
        elif explicit[i] and not (training and cut):
            verdicts.append(Verdict(True))
        elif last_number and not training and not cut:
            verdicts.append(Verdict(True))
        else:
            verdicts.append(Verdict(False, CUT_BY_LENGTH if cut else IMPLICIT_ANSWER))
    return verdicts


def grading_sentence(last_number: bool) -> str:
    """What the report says about how its accuracies were graded (`evaluation.last_number`)."""
    fallback = (
        ", or, for a sample that finished but states none, its last number (evaluation.last_number: true)"
        if last_number else " (evaluation.last_number: false: a last number alone never counts)"
    )
    return (
        f"Grading: a sample counts when its stated final answer (boxed, 'the answer is', ####) matches the reference"
        f"{fallback}; a sample cut by max_tokens counts only with a stated answer. Training data holds only finished "
        "samples that state their answer."
    )
