"""An oracle for problems with a reference solution but no computation graph (GSM8K and the like).

Without a large model at hand, each oracle operation is a deterministic edit
of two texts it can trust: the dataset's reference solution and the student's
own trace, checked step by step against that reference
(`stylealign.lab.checker`).

- `solve` (Oracle-Synthesized): the reference rewritten in the oracle house
  style (`stylealign.oracles.house_style`).
- `refine` (Oracle-Refined): a correct student trace rewritten in the house
  style line for line (the student's logic, the oracle's presentation); a
  wrong trace gets the reference's rewrite instead.
- `refine_style_aligned` (SAR): the student's steps up to the first wrong one
  kept byte for byte, then the reference's remaining lines in the reference's
  plain words, closed by the student's own final-answer phrase with the right
  number. A trace with no wrong step comes back unchanged.
- `repair_step`: the reference line that computes the next quantity the
  student's prefix has not computed yet.
- `locate_error`: the step checker.
"""

from __future__ import annotations

from stylealign.grading import grade
from stylealign.lab.checker import answer_of, computed_values, first_wrong_step, replace_answer
from stylealign.oracles.house_style import FINAL_LINE, oracle_style, solution_lines
from stylealign.records import Problem
from stylealign.steps import step_separator, trace_steps


class ReferenceOracle:
    """Always-correct oracle for problems whose `reference_solution` it may rewrite."""

    @staticmethod
    def _reference(problem: Problem) -> str:
        if not problem.reference_solution:
            raise ValueError(f"problem {problem.id}: no reference solution for the reference oracle")
        return problem.reference_solution

    def _reference_lines(self, problem: Problem) -> list[str]:
        return [line for line in solution_lines(self._reference(problem)) if not FINAL_LINE.match(line)]

    def _pending(self, problem: Problem, done: str) -> list[str]:
        """The reference's lines from the first one whose result `done` has not computed."""
        have = computed_values(done)
        lines = self._reference_lines(problem)
        for i, line in enumerate(lines):
            if not computed_values(line) <= have:
                return lines[i:]
        return []

    @staticmethod
    def _closing(problem: Problem, step: str | None) -> str:
        """The student's final-answer step with the right number, or a plain closing sentence."""
        if step is None:
            return f"The answer is {problem.answer}."
        return replace_answer(step.rstrip(), problem.answer)

    def solve(self, problem: Problem) -> str:
        return oracle_style(self._reference(problem), problem.answer)

    def refine(self, problem: Problem, text: str) -> str:
        return oracle_style(text, problem.answer) if grade(text, problem.answer) else self.solve(problem)

    def locate_error(self, problem: Problem, text: str) -> int:
        return first_wrong_step(problem, trace_steps(text))

    def refine_style_aligned(self, problem: Problem, text: str, seed: int | None = None) -> str:
        """Deterministic: `seed` is accepted for the `Oracle` protocol and not used."""
        steps = trace_steps(text)
        first = first_wrong_step(problem, steps)
        if first < 0:
            return text
        sep = step_separator(steps, "\n")
        kept = "".join(steps[:first])
        if kept and not kept[-1].isspace():
            kept += sep
        rest = self._pending(problem, kept)
        own_closing = next((s for s in reversed(steps) if answer_of(s)), None)
        for closing in (self._closing(problem, own_closing), self._closing(problem, None)):
            refined = kept + sep.join([*rest, closing])
            if first_wrong_step(problem, trace_steps(refined)) < 0:
                return refined
        return refined

    def repair_step(self, problem: Problem, prefix: str, wrong_step: str, seed: int | None = None) -> str:
        if answer_of(wrong_step):
            return self._closing(problem, wrong_step)
        rest = self._pending(problem, prefix)
        return rest[0] if rest else self._closing(problem, None)
