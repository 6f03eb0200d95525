"""The lab's programmatic oracle, and an Engine that answers the oracle prompt templates with it.

`LabOracle` knows every lab problem's computation graph, so its logic is
always right; its operations differ in how much of the student's text they
keep and how they write, with the paper's semantics:

- `solve` (Oracle-Synthesized): the oracle's own polished solution
  (`styles.oracle_solution`), ignoring the student, on its own route (at
  times two comparisons in one expression, `styles.oracle_merged`).
- `refine` (Oracle-Refined): reads the student trace and keeps its numbers,
  operand order, step order and granularity (one paragraph per student step,
  the starting amount with the first operation as the oracle lays it out),
  fixes the wrong steps, and rewrites the wording into the oracle's style
  (its own statement of each relation, explanations, LaTeX math, a boxed
  answer). It keeps the student's route, so it says neither the oracle's plan
  nor its notes on distractors (`styles.oracle_plan`), and sits between the
  student and the oracle.
- `refine_style_aligned` (SAR): fixes what is wrong and what a careful
  teacher would improve (the first wrong step and everything after it, a
  redundant line repeating a result, a step that skipped restating the fact
  it uses, a garbled line), writing every change in the student's own phrasing
  as it reads it from the trace (`styles.Voice`). Imitation is imperfect like
  a real oracle's: each line it writes is, with probability `style_leak`, in
  the oracle's own phrasing instead. A trace with nothing to improve comes
  back byte for byte.
- `repair_step`: one wrong step redone in the student's style (same leak).
- `locate_error`: the step checker.

The leak is drawn from the request's sampling seed and the problem, so a
retried refinement (a new seed per attempt) can come out differently, and the
SAR cost gate has real work: it rejects leaked refinements and retries.

`oracles.engine.OracleEngine` puts this oracle behind the Engine protocol.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from stylealign.lab import styles
from stylealign.lab.checker import (
    answer_of,
    computed_values,
    first_wrong_step,
    has_equation,
    numbers_in,
    replace_answer,
)
from stylealign.records import Problem
from stylealign.steps import step_separator

_ASCII_EQUATION = re.compile(r"(?<!\d)(\d+)(\s*)([-+*/])(\s*)(\d+)(\s*)=(\s*)(\d+)")  # from a number's start: linear
_STUDENT_STEP = re.compile(r"^[A-Z][^\\\n]* \d+ [-+*/] \d+ = \d+\b[^\\\n]*\.$")
STYLE_LEAK = 0.25
"""Default share of the lines a style-aligned refinement writes in the oracle's phrasing instead."""


def _split(text: str) -> list[str]:
    from stylealign.steps import split_steps

    return split_steps(text, "paragraph")


def _trailing(step: str) -> tuple[str, str]:
    body = step.rstrip()
    return body, step[len(body) :]


def _latex_equation(m: re.Match[str]) -> str:
    return f"\\( {styles.latex_operation(m.group(1), m.group(3), m.group(5))} = {m.group(8)} \\)"


def _oracle_restatement(line: str) -> str:
    """A student line the oracle does not recompute (a result said again, a fact restated, a step out of
    the oracle's order) in the oracle's notation: the same clause, its arithmetic and numbers in LaTeX."""
    clause = line[3:] if line.startswith("So ") else line
    parts = re.split(r"(\\\(.*?\\\))", _ASCII_EQUATION.sub(_latex_equation, clause))
    return "".join(p if p.startswith("\\(") else re.sub(r"\b\d+\b", r"\\( \g<0> \\)", p) for p in parts)


def _oracle_paragraphs(lines: list[str], rng: random.Random, starts: bool) -> list[str]:
    """Lines laid out the way the oracle writes (`styles.oracle_solution`): an opening sentence in a
    paragraph of its own, the starting amount in one paragraph with the first operation, a transition
    before each later line ("Next, since ..."), so a refinement uses only phrasing the oracle writes and
    its cost measures a change of style, not words out of place. `starts` says whether the first line
    states the starting amount."""
    joined = 2 if starts and len(lines) > 1 else 1
    first, rest = " ".join(lines[:joined]), lines[joined:]
    return [rng.choice(styles.ORACLE_OPENINGS), first, *(styles.after_transition(line, rng) for line in rest)]


def read_voice(text: str) -> styles.Voice:
    """The phrasing choices a student trace shows (those it does not show are left open)."""

    def first(options: Sequence[str], pattern: str) -> str | None:
        found = [(text.find(pattern.format(o)), o) for o in options if pattern.format(o) in text]
        return min(found)[1] if found else None

    verbs = sorted(styles.STUDENT_VERBS, key=len, reverse=True)
    verb = next((v for v in verbs if re.search(rf"\w {v} \d+ [-+*/] \d+ = ", text)), None)
    unit = None
    if m := re.search(r" \d+ [-+*/] \d+ = \d+( \w+)?\.", text):
        unit = m.group(1) is not None
    finals = {f.format(n="").rstrip("."): f for f in styles.STUDENT_FINALS}
    final = next((finals[k] for k in sorted(finals, key=len, reverse=True) if k in text), None)
    openings = [o for o in styles.STUDENT_OPENINGS if re.match(re.escape(o.split("{who}")[0]) + r"[A-Z]", text)]
    opening = max(openings, key=len) if openings else None
    return styles.Voice(first(styles.STUDENT_CONNECTORS, "{} "), verb, opening, final, unit)


def restates(graph: dict[str, Any], node: dict[str, Any], step: str) -> bool:
    """Whether `step` repeats the fact its operation uses (the student's habit a teacher keeps it to)."""
    if node["kind"] == "together":
        return True
    return styles.restated_fact(graph, node) in step


class LabOracle:
    """Always-correct oracle for lab problems; every method takes a `Problem` and student text.

    `style_leak` is the share of the lines a style-aligned refinement or repair writes in the oracle's
    phrasing; `seed` (with the problem) draws which.
    """

    def __init__(self, style_leak: float = STYLE_LEAK) -> None:
        if not 0.0 <= style_leak <= 1.0:
            raise ValueError(f"style_leak must be in [0, 1], got {style_leak}")
        self.style_leak = style_leak

    def solve(self, problem: Problem) -> str:
        return styles.oracle_solution(problem.metadata, problem.question)

    def _rng(self, problem: Problem, seed: int | None, what: str) -> random.Random:
        return random.Random(f"{what}:{seed}:{problem.question}")

    def _leaks(self, rng: random.Random) -> bool:
        return rng.random() < self.style_leak

    def refine(self, problem: Problem, text: str) -> str:
        """Oracle-Refined: the student's steps, numbers and order, corrected, in the oracle's words and layout."""
        graph = problem.metadata
        steps = _split(text)
        first = first_wrong_step(problem, steps)
        good = steps if first < 0 else steps[:first]
        rng = random.Random(problem.question)
        out: list[str] = []
        done: list[str] = []
        start = None
        for step in good:
            body = step.strip()
            pending = self._pending(problem, done)
            done.append(step)
            if answer_of(step):
                break
            if has_equation(step) and pending and Fraction(pending[0]["value"]) in computed_values(step):
                out.append(self._oracle_line(graph, pending[0], body, rng))
            elif not out and not has_equation(step):
                out.append(start := styles.oracle_start(graph, rng))
            elif numbers_in(step):
                out.append(_oracle_restatement(body))
        if not out:
            out.append(start := styles.oracle_start(graph, rng))
        for node in self._pending(problem, done if first < 0 else steps[:first]):
            out.append(self._oracle_line(graph, node, "", rng))
        paragraphs = _oracle_paragraphs(out, rng, starts=start is not None)
        return styles.STEP_SEP.join([*paragraphs, styles.oracle_final(problem.answer, rng)])

    def _oracle_line(self, graph: dict[str, Any], node: dict[str, Any], student_step: str, rng: random.Random) -> str:
        """One operation in the oracle's words, keeping the student's operand order."""
        a, b = node["a"], node["b"]
        if m := _ASCII_EQUATION.search(student_step):
            x, y = m.group(1), m.group(5)  # compared as text: a student's number may be too long for int()
            if node["op"] in "+*" and (x, y) == (str(b), str(a)):
                a, b = b, a
        return styles.oracle_sentence(graph, node, rng, styles.oracle_math(node, a, b))

    def locate_error(self, problem: Problem, text: str) -> int:
        return first_wrong_step(problem, _split(text))

    def _pending(self, problem: Problem, done: Sequence[str]) -> list[dict[str, Any]]:
        """Graph nodes not yet computed by the (correct) steps `done`, in order."""
        results = computed_values("".join(done))
        nodes = problem.metadata["nodes"]
        computed = 0
        while computed < len(nodes) and Fraction(nodes[computed]["value"]) in results:
            computed += 1
        return nodes[computed:]

    def _student_line(
        self, problem: Problem, node: dict[str, Any], voice: styles.Voice, rng: random.Random, leak: bool
    ) -> str:
        """A (re)written step in the student's phrasing, or, when the imitation leaks, the oracle's."""
        if leak:
            return styles.oracle_sentence(problem.metadata, node, rng)
        return styles.student_step(problem.metadata, node, voice=voice)

    def _fix_step(self, problem: Problem, step: str, node: dict[str, Any], voice: styles.Voice, rng: random.Random) -> str:
        body, tail = _trailing(step)
        leak = self._leaks(rng)
        if leak or _STUDENT_STEP.match(body) or not _ASCII_EQUATION.search(body):
            return self._student_line(problem, node, voice, rng, leak) + tail

        def correct(m: re.Match[str]) -> str:
            s = m.groups()
            return f"{node['a']}{s[1]}{node['op']}{s[3]}{node['b']}{s[5]}={s[6]}{node['value']}"

        return _ASCII_EQUATION.sub(correct, body, count=1) + tail

    def _fix_answer(self, problem: Problem, step: str, voice: styles.Voice, rng: random.Random) -> str:
        body, tail = _trailing(step)
        if self._leaks(rng):
            return styles.oracle_final(problem.answer, rng) + tail
        fixed = replace_answer(body, problem.answer)
        return (fixed if fixed != body else styles.student_final(problem.answer, voice=voice)) + tail

    def _acceptable(self, problem: Problem, done: list[str], step: str) -> bool:
        first = first_wrong_step(problem, [*done, step, styles.student_final(problem.answer)])
        return first < 0 or first > len(done)

    def _improve(self, problem: Problem, steps: list[str], voice: styles.Voice, rng: random.Random) -> list[str]:
        """Correct steps as a careful teacher leaves them: restatements added, repeated results dropped."""
        graph = problem.metadata
        out: list[str] = []
        for i, step in enumerate(steps):
            pending = self._pending(problem, out)
            body, tail = _trailing(step)
            if has_equation(step) and pending and Fraction(pending[0]["value"]) in computed_values(step):
                node = pending[0]
                if not restates(graph, node, step) and _STUDENT_STEP.match(body):
                    leak = self._leaks(rng)
                    rewritten = self._student_line(problem, node, voice, rng, leak)
                    if not leak:
                        m, n = _ASCII_EQUATION.search(body), _ASCII_EQUATION.search(rewritten)
                        rewritten = rewritten[: n.start()] + m.group(0) + rewritten[n.end() :] if m and n else rewritten
                    step = rewritten + tail
            elif i > 0 and not has_equation(step) and not answer_of(step) and numbers_in(step) <= computed_values("".join(out)):
                if out and not _trailing(out[-1])[1]:
                    out[-1] += tail
                continue
            out.append(step)
        return out

    def refine_style_aligned(self, problem: Problem, text: str, seed: int | None = None) -> str:
        """Fix the first wrong step and what depends on it, and improve the correct steps, in the
        student's voice; a trace with nothing to fix or improve is returned unchanged."""
        steps = _split(text)
        rng = self._rng(problem, seed, "sar")
        voice = read_voice(text)
        first = first_wrong_step(problem, steps)
        out = self._improve(problem, steps if first < 0 else steps[:first], voice, rng)
        if first < 0:
            return "".join(out)
        pending = self._pending(problem, out)
        sep = step_separator(steps, styles.STEP_SEP)
        answered = False
        for step in steps[first:]:
            if answer_of(step):
                out += [self._student_line(problem, n, voice, rng, self._leaks(rng)) + sep for n in pending]
                pending = []
                out.append(self._fix_answer(problem, step, voice, rng))
                answered = True
            elif has_equation(step):
                if pending:
                    out.append(self._fix_step(problem, step, pending.pop(0), voice, rng))
            elif self._acceptable(problem, out, step):
                out.append(step)
            elif not out:
                out.append(styles.student_opening(problem.metadata, voice=voice) + _trailing(step)[1])
        if not answered:
            if out and not _trailing(out[-1])[1]:
                out[-1] += sep
            out += [self._student_line(problem, n, voice, rng, self._leaks(rng)) + sep for n in pending]
            out.append(styles.student_final(problem.answer, voice=voice))
        return "".join(out)

    def repair_step(self, problem: Problem, prefix: str, wrong_step: str, seed: int | None = None) -> str:
        """The corrected version of `wrong_step`, the step after `prefix`, in the student's style."""
        rng = self._rng(problem, seed, f"repair:{prefix}")
        voice = read_voice(prefix + wrong_step)
        pending = self._pending(problem, _split(prefix))
        if pending and not answer_of(wrong_step):
            return self._fix_step(problem, wrong_step, pending[0], voice, rng)
        return self._fix_answer(problem, wrong_step, voice, rng)
