"""The lab's step checker: the first step of a free-form trace that is wrong, or -1.

A step is wrong when an equation in it is false, uses a number that is not
known yet (neither a fact of the problem nor a result of an earlier
equation), states a number that is not known, gives a wrong final answer, or
computes a quantity that is not in the problem's computation graph while the
trace's final answer is wrong (a correct alternative route is accepted).
Equations are read in any of the styles the lab writes: ASCII (`12 * 3 = 36`),
LaTeX inline math (`\\( 3 \\times 12 = 36 \\)`, `\\frac{36}{3} = 12`) and
GSM8K calculator annotations (`12*3=<<12*3=36>>36`). A trace with no final
answer is wrong at its last step: it did not finish.
"""

from __future__ import annotations

import re
from fractions import Fraction

from stylealign.grading import extract_answer
from stylealign.records import Problem

NUM = r"\d+(?:\.\d+)?"
_EQUATION = re.compile(rf"({NUM}(?:\s*[-+*/]\s*{NUM})+)\s*=\s*({NUM})")
_NUMBER = re.compile(NUM)
_REWRITES = (
    (re.compile(r"<<[^>]*>>"), ""),
    (re.compile(r"\\d?frac\{\s*(" + NUM + r")\s*\}\{\s*(" + NUM + r")\s*\}"), r"\1 / \2"),
    (re.compile(r"\\times|\\cdot|×|·"), "*"),
    (re.compile(r"\\div|÷"), "/"),
    (re.compile(r"\\[()\[\]]|\$"), " "),
    (re.compile(r"(?<=\d),(?=\d{3})"), ""),
    (re.compile(r"\bStep\s+\d+|^\s*\d+[.)]\s", re.MULTILINE), " "),
)


def normalize(step: str) -> str:
    """Plain ASCII arithmetic for any of the notations above."""
    for pattern, replacement in _REWRITES:
        step = pattern.sub(replacement, step)
    return step


def evaluate(expression: str) -> Fraction | None:
    """Value of `a op b op c ...` with the usual precedence (never eval); None on division by zero."""
    tokens = re.findall(rf"{NUM}|[-+*/]", expression)
    terms: list[Fraction] = [Fraction(tokens[0])]
    signs: list[str] = []
    for op, num in zip(tokens[1::2], tokens[2::2], strict=True):
        value = Fraction(num)
        if op == "*":
            terms[-1] *= value
        elif op == "/":
            if value == 0:
                return None
            terms[-1] /= value
        else:
            signs.append(op)
            terms.append(value)
    total = terms[0]
    for sign, term in zip(signs, terms[1:], strict=True):
        total = total + term if sign == "+" else total - term
    return total


def known_values(problem: Problem) -> set[Fraction]:
    """Numbers a solution may use without computing them: every number stated in the question."""
    meta = problem.metadata
    values = {Fraction(m) for m in _NUMBER.findall(problem.question)}
    values |= {Fraction(f["value"]) for f in meta.get("facts", [])}
    return values


def graph_values(problem: Problem) -> set[Fraction]:
    meta = problem.metadata
    return {Fraction(n["value"]) for n in meta.get("nodes", [])} | {Fraction(f["value"]) for f in meta.get("facts", [])}


def answer_of(step: str) -> str | None:
    return extract_answer(step, last_number=False) if re.search(r"boxed|answer|####", step, re.I) else None


def first_error_in_steps(problem: Problem, steps: list[str]) -> int:
    """Index of the first wrong step of `steps` (see the module docstring), or -1."""
    if "nodes" not in problem.metadata:
        raise ValueError(f"problem {problem.id}: not a lab problem (metadata has no computation graph)")
    gold = Fraction(problem.answer)
    answers = [(i, answer_of(s)) for i, s in enumerate(steps)]
    answers = [(i, a) for i, a in answers if a]
    final_ok = bool(answers) and _as_fraction(answers[-1][1]) == gold
    on_graph = graph_values(problem)
    known = known_values(problem)
    for i, step in enumerate(steps):
        text = normalize(step)
        for match in _EQUATION.finditer(text):
            lhs, rhs = match.group(1), Fraction(match.group(2))
            operands = {Fraction(n) for n in _NUMBER.findall(lhs)}
            if not operands <= known or evaluate(lhs) != rhs:
                return i
            if rhs not in on_graph and not final_ok:
                return i
            known.add(rhs)
        stated = {Fraction(n) for n in _NUMBER.findall(_EQUATION.sub(" ", text))}
        if not stated <= known:
            return i
        answer = answer_of(step)
        if answer is not None and _as_fraction(answer) != gold:
            return i
    if not answers:
        return max(len(steps) - 1, 0) if steps else 0
    return -1


def _as_fraction(answer: str) -> Fraction | None:
    try:
        return Fraction(answer.replace(",", "").strip().rstrip("."))
    except (ValueError, ZeroDivisionError):
        return None


def first_error_step(problem: Problem, text: str, mode: str = "paragraph") -> int:
    """Index into `split_steps(text, mode)` of the first wrong step, or -1 when every step holds."""
    from stylealign.steps import split_steps

    return first_error_in_steps(problem, split_steps(text, mode))
