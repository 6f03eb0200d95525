"""The lab's step checker: the first step of a free-form trace that is wrong, or -1.

A step is wrong when an equation in it is false, uses a number that is not
known yet (neither a fact of the problem nor a result of an earlier
equation), states a number that is not known, gives a wrong final answer, or
computes a quantity that is not in the problem's computation graph while the
trace's final answer is wrong (a correct alternative route is accepted).

Problems outside the lab (GSM8K and other sets with a reference solution)
are checked against the reference instead of a graph: the numbers of the
reference solution are the quantities "in the graph", and they, the question's
numbers and a few everyday constants (minutes per hour, days per week, 100
for percentages) may be used without being computed.
Equations are read in any of the styles the lab writes: ASCII (`12 * 3 = 36`),
LaTeX inline math (`\\( 3 \\times 12 = 36 \\)`, `\\frac{36}{3} = 12`) and
GSM8K calculator annotations (`12*3=<<12*3=36>>36`). A trace with no final
answer is wrong at its last step: it did not finish.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from fractions import Fraction

from stylealign.grading import extract_answer
from stylealign.grading.extract import MAX_NUMBER_DIGITS
from stylealign.records import Problem
from stylealign.steps import split_steps

NUM = r"\d+(?:\.\d+)?"
_CHAIN_TOKEN = re.compile(rf"(?P<num>{NUM})|\s*(?P<op>[-+*/=])\s*|\s+|.", re.DOTALL)
"""What chains are made of: a number, an operator or `=` with the spaces around it, anything else."""
_NUMBER = re.compile(NUM)
_REWRITES = (
    (re.compile(r"\\d?frac\{\s*(" + NUM + r")\s*\}\{\s*(" + NUM + r")\s*\}"), r"\1 / \2"),
    (re.compile(r"\\times|\\cdot|×|·|(?<=\d)\s*x\s*(?=\d)"), "*"),
    (re.compile(r"(?<=\d)[a-zA-Z]{1,3}\b"), ""),
    (re.compile(r"(?<![\d.])\.(?=\d)"), "0."),
    (re.compile(r"(?<=\d)\s*\\?%"), " / 100"),
    (re.compile(r"\\div|÷"), "/"),
    (re.compile(r"\\[()\[\]]|\$"), " "),
    (re.compile(r"(?<=\d),(?=\d{3})"), ""),
    (re.compile(r"\bStep\s+\d+|^[ \t]*\d+[.)]\s", re.MULTILINE), " "),
)


def _without_annotations(text: str) -> str:
    """`text` without GSM8K's calculator annotations ("<<15*8=120>>": from `<<` to the first `>`, if it opens
    `>>`). The first `>` after an opening is found once for a run of openings, so `<<<<...` costs linear time."""
    pieces, pos, close = [], 0, -1
    while (start := text.find("<<", pos)) >= 0:
        if close < start + 2:
            close = text.find(">", start + 2)
            if close < 0:
                break
        if text.startswith(">>", close):
            pieces.append(text[pos:start])
            pos = close + 2
        else:
            pieces.append(text[pos : start + 1])
            pos = start + 1
    return "".join(pieces) + text[pos:]


def normalize(step: str) -> str:
    """Plain ASCII arithmetic for any of the notations above."""
    step = _without_annotations(step)
    for pattern, replacement in _REWRITES:
        step = pattern.sub(replacement, step)
    return step


def _fraction(number: str) -> Fraction | None:
    """A number's exact value; None past `MAX_NUMBER_DIGITS` digits (no lab quantity is that long)."""
    return Fraction(number) if len(number) <= MAX_NUMBER_DIGITS else None


def _fractions(numbers: Iterable[str]) -> set[Fraction] | None:
    """The numbers' values; None if one is too long, so it can never count as known."""
    values = {_fraction(number) for number in numbers}
    return None if None in values else values  # type: ignore[return-value]


def evaluate(expression: str) -> Fraction | None:
    """Value of `a op b op c ...` with the usual precedence (never eval); None on division by zero or a
    number too long to compute with."""
    tokens = re.findall(rf"{NUM}|[-+*/]", expression)
    if any(_fraction(token) is None for token in tokens[::2]):
        return None
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


CONSTANTS = frozenset(Fraction(n) for n in (*range(13), 24, 30, 52, 60, 100, 365, 1000))
"""Numbers a real-world solution may bring in unstated: small counts, time units, percent."""


def _chains(normalized: str) -> list[tuple[int, int]]:
    """(start, end) of each chain `a op b = c`, `a op b = c op d = e` (parts that must all be equal): the
    longest run of numbers joined by operators from each number on, if it holds a `=`. One pass over the
    tokens: a run without `=` is skipped whole, as every run starting inside it ends where it does."""
    tokens = [(m.lastgroup, m.group(m.lastgroup or 0), m.start(), m.end()) for m in _CHAIN_TOKEN.finditer(normalized)]
    found, i = [], 0
    while i < len(tokens):
        if tokens[i][0] != "num":
            i += 1
            continue
        end, equals = i, False
        while end + 2 < len(tokens) and tokens[end + 1][0] == "op" and tokens[end + 2][0] == "num":
            equals = equals or tokens[end + 1][1] == "="
            end += 2
        if equals:
            found.append((tokens[i][2], tokens[end][3]))
        i = end + 1
    return found


def equations(
    normalized: str, chains: list[tuple[int, int]] | None = None
) -> list[tuple[list[str], list[Fraction | None]]]:
    """(parts, values) of each equation (a chain with at least one operator) in normalized text; `chains` are
    its `_chains` when the caller has them already."""
    found = []
    for start, end in _chains(normalized) if chains is None else chains:
        chain = normalized[start:end]
        if re.search(r"[-+*/]", chain):
            parts = chain.split("=")
            found.append((parts, [evaluate(part) for part in parts]))
    return found


def _without_chains(normalized: str, chains: list[tuple[int, int]]) -> str:
    pieces, last = [], 0
    for start, end in chains:
        pieces += [normalized[last:start], " "]
        last = end
    return "".join(pieces) + normalized[last:]


def computed_values(text: str) -> set[Fraction]:
    """The results (last parts) of the equations in `text`."""
    return {values[-1] for _, values in equations(normalize(text)) if values[-1] is not None}


def has_equation(text: str) -> bool:
    return bool(equations(normalize(text)))


def numbers_in(text: str) -> set[Fraction]:
    return _fractions(_NUMBER.findall(normalize(text))) or set()


def has_graph(problem: Problem) -> bool:
    return "nodes" in problem.metadata


def known_values(problem: Problem) -> set[Fraction]:
    """Numbers a solution may use without computing them: the question's, and for a reference-checked
    problem also the reference's and `CONSTANTS`."""
    values = numbers_in(problem.question)
    if has_graph(problem):
        return values | {Fraction(f["value"]) for f in problem.metadata["facts"]}
    return values | graph_values(problem) | CONSTANTS


def graph_values(problem: Problem) -> set[Fraction]:
    """The quantities a correct solution computes: the graph's, or every number of the reference solution."""
    meta = problem.metadata
    if has_graph(problem):
        return {Fraction(n["value"]) for n in meta["nodes"]} | {Fraction(f["value"]) for f in meta["facts"]}
    return numbers_in(problem.reference_solution or "")


_ANSWER_NUMBER = re.compile(r"(boxed\{\s*|answer is:?\s*|####\s*)(-?[\d,]*\d(?:\.\d+)?)", re.I)


def answer_of(step: str) -> str | None:
    return extract_answer(step, last_number=False) if re.search(r"boxed|answer|####", step, re.I) else None


def replace_answer(step: str, answer: str) -> str:
    """`step` with the number of its final-answer phrase replaced by `answer` (unchanged when it has none)."""
    return _ANSWER_NUMBER.sub(lambda m: m.group(1) + answer, step)


def first_wrong_step(problem: Problem, steps: str | Sequence[str], mode: str = "paragraph") -> int:
    """Index of the first wrong step (see the module docstring), or -1 when every step holds.

    `steps` is a list of steps, or a text split into steps by `split_steps(text, mode)`.
    """
    if isinstance(steps, str):
        steps = split_steps(steps, mode)
    if not has_graph(problem) and not problem.reference_solution:
        raise ValueError(f"problem {problem.id}: not a lab problem and no reference solution to check against")
    gold = _as_fraction(problem.answer)
    if gold is None:
        raise ValueError(f"problem {problem.id}: answer {problem.answer!r} is not a number")
    answers = [(i, answer_of(s)) for i, s in enumerate(steps)]
    answers = [(i, a) for i, a in answers if a]
    final_ok = bool(answers) and _as_fraction(answers[-1][1]) == gold
    on_graph = graph_values(problem)
    known = known_values(problem)
    for i, step in enumerate(steps):
        text = normalize(step)
        chains = _chains(text)  # one pass over the step's tokens, for its equations and the numbers outside them
        for parts, values in equations(text, chains):
            operands = _fractions(_NUMBER.findall(parts[0]))
            if operands is None or not operands <= known or values[0] is None or any(v != values[0] for v in values):
                return i
            if values[-1] not in on_graph and not final_ok:
                return i
            known.add(values[-1])
            known |= _fractions(n for part in parts[1:] for n in _NUMBER.findall(part)) or set()
        stated = _fractions(_NUMBER.findall(_without_chains(text, chains)))
        if stated is None or not stated <= known:
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
