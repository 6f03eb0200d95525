"""The lab's reward: the step checker's verdict plus a reward model's known taste for polish.

It plays the role of the paper's reward model in lab runs. Real reward models
score correctness but also prefer the polished presentation of large
instruct models (explanations, LaTeX, a boxed answer), which is why oracle
text outscores the student's own traces in the paper (reward 1.88 / 1.70 /
1.47 / 1.37 for Oracle-Synthesized / Oracle-Refined / SLM-RFT / SAR). The lab
reward is

    process_reward + style_preference * polish

where `process_reward` is the fraction of steps before the first wrong one
(1.0 when all hold) and `polish` in [0, 1] is the mean of three presentation
features: a boxed final answer, the share of equation steps written in LaTeX
math, and the share of steps that explain before they compute ("Since ...", "Given ...",
"Because ...", "Therefore ..."). `style_preference` (default 1.0,
`reward.style_preference`) sets how much the stand-in reward model cares; 0
leaves the checker alone. Accuracy is never tuned through it: the reward only
describes the data.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from stylealign.lab.checker import first_wrong_step, has_equation
from stylealign.records import Problem

_EXPLANATION = re.compile(r"\b(?:Since|Because|Given|Therefore|Thus|Adding|Let.s|We can|We start|To solve|At \\\()", re.I)
_LATEX_MATH = re.compile(r"\\\(|\\\[|\$")


def step_report(problem: Problem, text: str, mode: str = "paragraph") -> tuple[int, int]:
    """(number of steps, index of the first wrong step or -1)."""
    from stylealign.steps import split_steps

    steps = split_steps(text, mode)
    return len(steps), first_wrong_step(problem, steps)


def process_reward(problem: Problem, text: str, mode: str = "paragraph") -> float:
    """Fraction of steps accepted: the steps before the first wrong one, over all steps."""
    total, first = step_report(problem, text, mode)
    if total == 0:
        return 0.0
    return 1.0 if first < 0 else first / total


def polish(text: str, mode: str = "paragraph") -> float:
    """How polished a solution looks to a reward model, in [0, 1] (see the module docstring)."""
    from stylealign.steps import split_steps

    steps = [s for s in split_steps(text, mode) if s.strip()]
    if not steps:
        return 0.0
    math_steps = [s for s in steps if has_equation(s)]
    latex = sum(bool(_LATEX_MATH.search(s)) for s in math_steps) / len(math_steps) if math_steps else 0.0
    explained = sum(bool(_EXPLANATION.search(s)) for s in steps) / len(steps)
    boxed = 1.0 if "\\boxed{" in text else 0.0
    return (boxed + latex + explained) / 3


def lab_reward(problem: Problem, text: str, style_preference: float = 1.0, mode: str = "paragraph") -> float:
    return process_reward(problem, text, mode) + style_preference * polish(text, mode)


class LabReward:
    """The lab reward as a reward scorer (`reward.type: lab`), with the checker's verdict and the polish beside it."""

    name = "lab"

    def __init__(self, style_preference: float = 1.0) -> None:
        self.style_preference = style_preference

    def score(self, problems: Sequence[Problem], texts: Sequence[str]) -> list[dict[str, Any]]:
        return [
            {"reward": lab_reward(p, t, self.style_preference), "reward_checker": process_reward(p, t), "polish": polish(t)}
            for p, t in zip(problems, texts, strict=True)
        ]
