"""The lab's process reward: how much of a trace the step checker accepts.

It plays the role of the paper's reward model in lab runs: a trace scores
the fraction of its steps before the first wrong one (1.0 when all hold).
"""

from __future__ import annotations

from stylealign.lab.checker import first_error_in_steps
from stylealign.records import Problem


def step_report(problem: Problem, text: str, mode: str = "paragraph") -> tuple[int, int]:
    """(number of steps, index of the first wrong step or -1)."""
    from stylealign.steps import split_steps

    steps = split_steps(text, mode)
    return len(steps), first_error_in_steps(problem, steps)


def first_error_index(problem: Problem, text: str, mode: str = "paragraph") -> int:
    return step_report(problem, text, mode)[1]


def process_reward(problem: Problem, text: str, mode: str = "paragraph") -> float:
    """Fraction of steps accepted: the steps before the first wrong one, over all steps."""
    total, first = step_report(problem, text, mode)
    if total == 0:
        return 0.0
    return 1.0 if first < 0 else first / total
