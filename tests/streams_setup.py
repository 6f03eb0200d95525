"""Shared helpers of the streams / metrics / export tests: lab problems, a run context, scripted engines.

`ScriptedStudent` is a real `Engine` whose samples are fixed per question (so
each stream sees known correct and wrong traces) and whose scores come from
the tiny HF model; oracles are the lab's programmatic oracle, optionally
wrapped to fail the way remote oracles do. The tiny student itself is the
`tiny_engine` fixture in conftest.py.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from stylealign.config import ExperimentConfig, parse_config
from stylealign.engines.base import Completion, EngineError, Request, SamplingParams, TokenScores
from stylealign.lab.styles import student_solution
from stylealign.records import Problem
from stylealign.run.context import RunContext
from stylealign.stages.load import load_stage
from stylealign.store import RunStore


def make_config(model_dir: Path, *, limit: int = 3, streams: dict[str, Any] | None = None, **extra: Any) -> ExperimentConfig:
    data: dict[str, Any] = {
        "name": "streams-test",
        "problems": {"source": "lab", "split": "train", "limit": limit},
        "student": {"engine": {"type": "hf", "model": str(model_dir), "device": "cpu", "batch_size": 8}},
        "oracle": {"engine": {"type": "lab-oracle"}},
        "sampling": {"k": 2, "temperature": 1.0, "max_tokens": 16},
        "streams": {"oracle_retries": 2, "sar_repair": {"continuations": 2}, **(streams or {})},
        "reward": {"type": "lab"},
    }
    data.update(extra)
    return parse_config(data)


def make_ctx(run_dir: Path, cfg: ExperimentConfig, *, student=None, oracle=None) -> RunContext:
    """A run context with problems loaded; `student` / `oracle` replace the engines the config names."""
    ctx = RunContext(config=cfg, store=RunStore(run_dir, cfg.model_dump(mode="json")), console=Console(file=io.StringIO(), width=200))
    load_stage(ctx)
    if student is not None:
        ctx.use_engine(cfg.student.engine, student)
    if oracle is not None:
        ctx.use_engine(cfg.oracle.engine, oracle)
    return ctx


def correct_text(problem: Problem) -> str:
    return student_solution(problem.metadata)


def wrong_text(problem: Problem) -> str:
    """The student's style with the last operation off by one: wrong final step and answer."""
    graph = copy.deepcopy(problem.metadata)
    graph["nodes"][-1]["value"] += 1
    return student_solution(graph)


class ScriptedStudent:
    """Fixed samples per question; a prefixed request (a continuation) gets `The answer is N.`."""

    def __init__(self, scorer: Any, problems: Sequence[Problem], samples: dict[str, list[str | Completion]], name: str = "scripted-student"):
        self.scorer, self.name, self.samples = scorer, name, samples
        self.tokenizer = scorer.tokenizer
        self.answers = {p.question: p.answer for p in problems}
        self.continued: list[str] = []

    def generate(self, requests: Sequence[Request], n: int, sampling: SamplingParams) -> list[list[Completion]]:
        out = []
        for r in requests:
            question = r.messages[-1]["content"]
            if r.prefix:
                self.continued.append(r.prefix)
                out.append([Completion(f"The answer is {self.answers[question]}.") for _ in range(n)])
            else:
                scripted = self.samples[question]  # texts, or completions that say how they ended
                out.append([_completion(scripted[j % len(scripted)]) for j in range(n)])
        return out

    def score(self, requests: Sequence[Request], responses: Sequence[str]) -> list[TokenScores]:
        return self.scorer.score(requests, responses)

    def close(self) -> None:
        pass


def _completion(scripted: str | Completion) -> Completion:
    return Completion(**vars(scripted)) if isinstance(scripted, Completion) else Completion(scripted)


def scripted_student(tiny_engine: Any, problems: Sequence[Problem], solved: int) -> ScriptedStudent:
    """The first `solved` problems get two correct samples, the rest two wrong ones."""
    samples = {
        p.question: [correct_text(p)] * 2 if i < solved else [wrong_text(p)] * 2 for i, p in enumerate(problems)
    }
    return ScriptedStudent(tiny_engine, problems, samples)


class FlakyOracle:
    """Wraps an oracle: the first call for each request raises, the second answers garbage, then it behaves."""

    def __init__(self, inner: Any, always_fail: bool = False):
        self.inner, self.always_fail = inner, always_fail
        self.name = f"flaky({inner.name})"
        self.calls: dict[str, int] = {}

    def generate(self, requests: Sequence[Request], n: int, sampling: SamplingParams) -> list[list[Completion]]:
        out = []
        for r in requests:
            key = r.messages[-1]["content"]
            self.calls[key] = self.calls.get(key, 0) + 1
            if self.always_fail or self.calls[key] == 1:
                raise EngineError(f"flaky oracle: request {r.id} timed out")
            if self.calls[key] == 2:
                out.append([Completion("I'm sorry, I cannot help with that.") for _ in range(n)])
            else:
                out.extend(self.inner.generate([r], n, sampling))
        return out

    def score(self, requests: Sequence[Request], responses: Sequence[str]) -> list[TokenScores]:
        raise EngineError("flaky oracle cannot score")

    def close(self) -> None:
        pass
