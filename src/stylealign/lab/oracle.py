"""The lab's programmatic oracle, and an Engine that answers the oracle prompt templates with it.

`LabOracle` knows every lab problem's computation graph, so it is always
right; what differs between its operations is only how it writes:

- `solve`: the oracle's own polished style (`styles.oracle_solution`);
- `refine` (Oracle-Refined): the student's trace rewritten in the oracle's
  style, one paragraph per student step, so it drifts toward the oracle;
- `refine_style_aligned` (SAR): the student's steps kept byte for byte up to
  the first wrong one; from there each step is redone in the student's own
  template (or, for a step not in that template, only its equation is
  replaced, keeping the surrounding words and spacing);
- `repair_step`: one wrong step redone in the student's style;
- `locate_first_error`: the step checker.

`LabOracleEngine` reads the built-in prompts (solve, refine, sar,
locate_error, repair_step) by their sections, so streams reach the lab oracle
exactly as they reach an LLM oracle, in process or through `stylealign serve`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction
from functools import cached_property
from typing import Any

from stylealign.config import DatasetConfig, EngineConfig
from stylealign.engines.base import Completion, EngineError, Request, SamplingParams, TokenScores
from stylealign.lab import styles
from stylealign.lab.checker import (
    answer_of,
    computed_values,
    first_error_in_steps,
    has_equation,
    has_graph,
    replace_answer,
)
from stylealign.lab.world import find_problem, normalize_question
from stylealign.records import Problem
from stylealign.reference_oracle import ReferenceOracle
from stylealign.steps import step_separator

_ASCII_EQUATION = re.compile(r"(\d+)(\s*)([-+*/])(\s*)(\d+)(\s*)=(\s*)(\d+)")
_STUDENT_STEP = re.compile(r"^(?:.+, so )?(?:Together .+ have|.+'s \w+ cost|\w+ has) \d+ [-+*/] \d+ = \d+ \w+\.$")


def _split(text: str) -> list[str]:
    from stylealign.steps import split_steps

    return split_steps(text, "paragraph")


def _trailing(step: str) -> tuple[str, str]:
    body = step.rstrip()
    return body, step[len(body) :]


class LabOracle:
    """Always-correct oracle for lab problems; every method takes a `Problem` and student text."""

    def solve(self, problem: Problem) -> str:
        return styles.oracle_solution(problem.metadata, problem.question)

    def refine(self, problem: Problem, text: str) -> str:
        """Oracle-Refined: correct, in the oracle's words, with one paragraph per operation as the student had."""
        del text  # the oracle keeps only the student's granularity, which for the lab is one step per operation
        groups = [[node] for node in problem.metadata["nodes"]]
        return styles.oracle_solution(problem.metadata, problem.question, groups=groups)

    def locate_first_error(self, problem: Problem, text: str) -> int:
        return first_error_in_steps(problem, _split(text))

    def _pending(self, problem: Problem, done: Sequence[str]) -> list[dict[str, Any]]:
        """Graph nodes not yet computed by the (correct) steps `done`, in order."""
        results = computed_values("".join(done))
        nodes = problem.metadata["nodes"]
        computed = 0
        while computed < len(nodes) and Fraction(nodes[computed]["value"]) in results:
            computed += 1
        return nodes[computed:]

    def _fix_step(self, problem: Problem, step: str, node: dict[str, Any]) -> str:
        body, tail = _trailing(step)
        if _STUDENT_STEP.match(body) or not _ASCII_EQUATION.search(body):
            return styles.student_step(problem.metadata, node) + tail

        def correct(m: re.Match[str]) -> str:
            s = m.groups()
            return f"{node['a']}{s[1]}{node['op']}{s[3]}{node['b']}{s[5]}={s[6]}{node['value']}"

        return _ASCII_EQUATION.sub(correct, body, count=1) + tail

    def _fix_answer(self, problem: Problem, step: str) -> str:
        body, tail = _trailing(step)
        fixed = replace_answer(body, problem.answer)
        return (fixed if fixed != body else styles.student_final(problem.answer)) + tail

    def _acceptable(self, problem: Problem, done: list[str], step: str) -> bool:
        first = first_error_in_steps(problem, [*done, step, styles.student_final(problem.answer)])
        return first < 0 or first > len(done)

    def refine_style_aligned(self, problem: Problem, text: str) -> str:
        """Fix the first wrong step and what depends on it; every other byte stays the student's."""
        steps = _split(text)
        first = first_error_in_steps(problem, steps)
        if first < 0:
            return text
        out = list(steps[:first])
        pending = self._pending(problem, out)
        sep = step_separator(steps, styles.STEP_SEP)
        answered = False
        for step in steps[first:]:
            if answer_of(step):
                out += [styles.student_step(problem.metadata, n) + sep for n in pending]
                pending = []
                out.append(self._fix_answer(problem, step))
                answered = True
            elif has_equation(step):
                if pending:
                    out.append(self._fix_step(problem, step, pending.pop(0)))
            elif self._acceptable(problem, out, step):
                out.append(step)
            elif not out:
                out.append(styles.student_opening(problem.metadata) + _trailing(step)[1])
        if not answered:
            if out and not _trailing(out[-1])[1]:
                out[-1] += sep
            out += [styles.student_step(problem.metadata, n) + sep for n in pending]
            out.append(styles.student_final(problem.answer))
        return "".join(out)

    def repair_step(self, problem: Problem, prefix: str, wrong_step: str) -> str:
        """The corrected version of `wrong_step`, the step after `prefix`, in the student's style."""
        pending = self._pending(problem, _split(prefix))
        if pending and not answer_of(wrong_step):
            return self._fix_step(problem, wrong_step, pending[0])
        return self._fix_answer(problem, wrong_step)


_SECTION = re.compile(r"^\[([^\]\n]+)\][ \t]*$", re.MULTILINE)
_PARAGRAPH = re.compile(r"<paragraph_(\d+)>\n?(.*?)\n?</paragraph_\1>", re.DOTALL)


def sections(prompt: str) -> dict[str, str]:
    """`[Name]` headed sections of a prompt, each up to the next header (stripped)."""
    parts = _SECTION.split(prompt)
    return {parts[i].strip(): parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}


class LabOracleEngine:
    """An Engine answering the built-in oracle prompts; it cannot score text.

    Lab problems get `LabOracle`; questions from the `references` datasets
    (e.g. GSM8K) get `ReferenceOracle`, which works from their reference solutions.
    """

    def __init__(self, world_seed: int = 0, references: Sequence[DatasetConfig] = (), name: str = "lab:oracle") -> None:
        self.name = name
        self.world_seed = world_seed
        self.references = list(references)
        self.oracle = LabOracle()
        self.reference_oracle = ReferenceOracle()

    @classmethod
    def from_config(cls, cfg: EngineConfig | None = None) -> LabOracleEngine:
        cfg = cfg or EngineConfig(type="lab-oracle")
        return cls(world_seed=cfg.world_seed, references=cfg.references)

    @cached_property
    def _reference_index(self) -> dict[str, Problem]:
        from stylealign.datasets import load_problems

        return {normalize_question(p.question): p for cfg in self.references for p in load_problems(cfg)}

    def _problem(self, question: str) -> Problem | None:
        found = find_problem(question, self.world_seed)
        if found is None and self.references:
            found = self._reference_index.get(normalize_question(question))
        return found

    def _oracle_for(self, problem: Problem) -> LabOracle | ReferenceOracle:
        return self.oracle if has_graph(problem) else self.reference_oracle

    def answer(self, prompt: str) -> str:
        """The oracle's reply to one rendered user prompt."""
        parts = sections(prompt)
        if "Math Problem" in parts and "<paragraph_" in prompt:
            problem = self._problem(parts["Math Problem"])
            if problem is None:
                return _REFUSAL
            steps = [m.group(2) for m in sorted(_PARAGRAPH.finditer(prompt), key=lambda m: int(m.group(1)))]
            return f"\\boxed{{{first_error_in_steps(problem, steps)}}}"
        problem = self._problem(parts.get("Problem", ""))
        if "Problem" in parts and problem is None:
            return _REFUSAL
        if problem is None:
            raise EngineError(f"lab oracle: unrecognised prompt (no [Problem] section): {prompt[:120]!r}")
        oracle = self._oracle_for(problem)
        if "Wrong Step" in parts:
            return oracle.repair_step(problem, parts.get("Steps So Far", ""), parts["Wrong Step"])
        if "Student Solution" in parts:
            return oracle.refine_style_aligned(problem, parts["Student Solution"])
        if "Solution" in parts:
            return oracle.refine(problem, parts["Solution"])
        if re.search(r"\bsolve\b", prompt, re.I):
            return oracle.solve(problem)
        raise EngineError(f"lab oracle: unrecognised prompt for problem {problem.id}: {prompt[:120]!r}")

    def generate(self, requests: Sequence[Request], n: int, sampling: SamplingParams) -> list[list[Completion]]:
        results = []
        for request in requests:
            user = next((m["content"] for m in reversed(request.messages) if m["role"] == "user"), None)
            if user is None:
                raise EngineError(f"lab oracle: request {request.id or '?'} has no user message")
            text = self.answer(user)
            if request.prefix:
                if not text.startswith(request.prefix):
                    raise EngineError(f"lab oracle: request {request.id or '?'}: cannot continue a foreign prefix")
                text = text[len(request.prefix) :]
            for stop in sampling.stop:
                text = text.split(stop, 1)[0]
            results.append([Completion(text=text, finish_reason="stop", num_tokens=len(text.split())) for _ in range(n)])
        return results

    def score(self, requests: Sequence[Request], responses: Sequence[str]) -> list[TokenScores]:
        raise EngineError("lab oracle: a programmatic oracle has no token probabilities; score with a language model")

    def close(self) -> None:
        pass


_REFUSAL = "I can only answer questions from the stylealign lab world or my reference datasets, and this question is in neither."
