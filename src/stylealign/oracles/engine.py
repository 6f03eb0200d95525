"""An Engine that answers the oracle prompt templates with the programmatic oracles.

Lab problems get `lab.LabOracle`; questions from the `references` datasets
(e.g. GSM8K) get `reference.ReferenceOracle`, which works from their
reference solutions. Streams reach these oracles exactly as they reach an LLM
oracle, in process or through `stylealign serve`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cached_property

from stylealign.config import DatasetConfig, EngineConfig
from stylealign.engines.base import Completion, EngineError, Request, SamplingParams, TokenScores
from stylealign.lab.checker import first_wrong_step, has_graph
from stylealign.lab.world import find_problem, normalize_question
from stylealign.oracles.base import Oracle
from stylealign.oracles.lab import STYLE_LEAK, LabOracle
from stylealign.oracles.reference import ReferenceOracle
from stylealign.records import Problem

_SECTION = re.compile(r"^\[([^\]\n]+)\][ \t]*$", re.MULTILINE)
_PARAGRAPH = re.compile(r"<paragraph_(\d+)>\n?(.*?)\n?</paragraph_\1>", re.DOTALL)


def sections(prompt: str) -> dict[str, str]:
    """`[Name]` headed sections of a prompt, each up to the next header (stripped)."""
    parts = _SECTION.split(prompt)
    return {parts[i].strip(): parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}


OPERATIONS = ("solve", "refine", "sar", "locate_error", "repair_step")
"""The prompt templates the oracle answers, by name: a request says which one rendered it (`Request.template`)."""


def operation_of(prompt: str, template: str) -> str:
    """The operation a prompt asks for: the name of the template that rendered it.

    A request that came over HTTP carries only its messages; then the built-in
    templates are recognised by their sections.
    """
    if template:
        if template not in OPERATIONS:
            raise EngineError(
                f"lab oracle: no operation for prompt template {template!r}; it answers {', '.join(OPERATIONS)} "
                "(a custom template must keep the name of the operation it asks for)"
            )
        return template
    parts = sections(prompt)
    if "Math Problem" in parts and "<paragraph_" in prompt:
        return "locate_error"
    for section, operation in (("Wrong Step", "repair_step"), ("Student Solution", "sar"), ("Solution", "refine")):
        if section in parts:
            return operation
    if "Problem" in parts and re.search(r"\bsolve\b", prompt, re.I):
        return "solve"
    raise EngineError(f"lab oracle: unrecognised prompt (not one of the built-in oracle templates): {prompt[:120]!r}")


def _section(parts: dict[str, str], name: str, operation: str) -> str:
    if name not in parts:
        raise EngineError(f"lab oracle: the {operation!r} prompt has no [{name}] section; its template must keep it")
    return parts[name]


class OracleEngine:
    """An Engine answering the built-in oracle prompts; it cannot score text.

    Lab problems get `LabOracle`; questions from the `references` datasets
    (e.g. GSM8K) get `ReferenceOracle`, which works from their reference solutions.
    """

    def __init__(
        self,
        world_seed: int = 0,
        references: Sequence[DatasetConfig] = (),
        name: str = "lab:oracle",
        style_leak: float = STYLE_LEAK,
    ) -> None:
        self.name = name
        self.world_seed = world_seed
        self.references = list(references)
        self.oracle = LabOracle(style_leak)
        self.reference_oracle = ReferenceOracle()

    @classmethod
    def from_config(cls, cfg: EngineConfig | None = None) -> OracleEngine:
        cfg = cfg or EngineConfig(type="lab-oracle")
        return cls(world_seed=cfg.world_seed, references=cfg.references, style_leak=cfg.style_leak)

    @cached_property
    def _reference_index(self) -> dict[str, Problem]:
        from stylealign.datasets import load_problems

        return {normalize_question(p.question): p for cfg in self.references for p in load_problems(cfg)}

    def _problem(self, question: str) -> Problem | None:
        found = find_problem(question, self.world_seed)
        if found is None and self.references:
            found = self._reference_index.get(normalize_question(question))
        return found

    def _oracle_for(self, problem: Problem) -> Oracle:
        return self.oracle if has_graph(problem) else self.reference_oracle

    def answer(self, prompt: str, seed: int | None = None, template: str = "") -> str:
        """The oracle's reply to one rendered user prompt of `template`; `seed` draws its imperfections."""
        operation = operation_of(prompt, template)
        parts = sections(prompt)
        if operation == "locate_error":
            problem = self._problem(_section(parts, "Math Problem", operation))
            if problem is None:
                return _REFUSAL
            steps = [m.group(2) for m in sorted(_PARAGRAPH.finditer(prompt), key=lambda m: int(m.group(1)))]
            return f"\\boxed{{{first_wrong_step(problem, steps)}}}"
        problem = self._problem(_section(parts, "Problem", operation))
        if problem is None:
            return _REFUSAL
        oracle = self._oracle_for(problem)
        if operation == "repair_step":
            return oracle.repair_step(problem, parts.get("Steps So Far", ""), _section(parts, "Wrong Step", operation), seed)
        if operation == "sar":
            return oracle.refine_style_aligned(problem, _section(parts, "Student Solution", operation), seed)
        if operation == "refine":
            return oracle.refine(problem, _section(parts, "Solution", operation))
        return oracle.solve(problem)

    def generate(self, requests: Sequence[Request], n: int, sampling: SamplingParams) -> list[list[Completion]]:
        results = []
        for request in requests:
            user = next((m["content"] for m in reversed(request.messages) if m["role"] == "user"), None)
            if user is None:
                raise EngineError(f"lab oracle: request {request.id or '?'} has no user message")
            text = self.answer(user, sampling.seed, request.template)
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
