"""The oracle protocol: the paper's operations on a problem and a student text, without a language model."""

from __future__ import annotations

from typing import Protocol

from stylealign.records import Problem


class Oracle(Protocol):
    """What `engine.OracleEngine` asks of an oracle; `seed` draws imperfections where an oracle has them."""

    def solve(self, problem: Problem) -> str:
        """Oracle-Synthesized: the oracle's own solution, ignoring the student."""

    def refine(self, problem: Problem, text: str) -> str:
        """Oracle-Refined: the student's trace corrected and rewritten in the oracle's style."""

    def refine_style_aligned(self, problem: Problem, text: str, seed: int | None = None) -> str:
        """SAR: what is wrong (and what a teacher would improve) fixed, in the student's phrasing."""

    def locate_error(self, problem: Problem, text: str) -> int:
        """Index of the first wrong step of `text`, or -1."""

    def repair_step(self, problem: Problem, prefix: str, wrong_step: str, seed: int | None = None) -> str:
        """The wrong step after `prefix`, redone."""
