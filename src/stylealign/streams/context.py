"""What every stream builder shares: the run, the problems, the student's samples, keys and helpers."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from stylealign.engines.base import Engine, Request, SamplingParams
from stylealign.engines.retry import (
    BREAKER_THRESHOLD,
    CircuitBreaker,
    OracleResult,
    failure_record,
    generate_with_retries,
)
from stylealign.prompts import PromptTemplate
from stylealign.records import Problem, Trace, by_id, content_id
from stylealign.run.context import RunContext
from stylealign.run.work import (
    BatchResult,
    WorkItem,
    WorkKeys,
    engine_id,
    problem_part,
    template_id,
    trace_part,
)


@dataclass
class StreamContext:
    run: RunContext
    problems: list[Problem]
    samples: dict[str, list[Trace]]
    breaker: CircuitBreaker = field(default_factory=lambda: CircuitBreaker(BREAKER_THRESHOLD))
    """Shared by every stream of one `streams` run: once the oracle failed that many sends in a row, stop asking."""
    _pool_positions: tuple[Sequence[Trace], dict[str, list[int]]] | None = field(default=None, repr=False)

    @classmethod
    def from_run(cls, run: RunContext, samples: Sequence[Trace]) -> StreamContext:
        by_problem: dict[str, list[Trace]] = defaultdict(list)
        for trace in samples:
            by_problem[trace.problem_id].append(trace)
        for traces in by_problem.values():
            traces.sort(key=lambda t: t.metrics.get("sample_index", 0))
        return cls(run=run, problems=run.problems(), samples=dict(by_problem))

    @property
    def config(self):
        return self.run.config

    def student(self) -> Engine:
        return self.run.student()

    def oracle(self) -> Engine:
        return self.run.oracle()

    @cached_property
    def problem_by_id(self) -> dict[str, Problem]:
        """Built once per run: builders look problems up per batch, and rebuilding it there is quadratic."""
        return by_id(self.problems)

    @cached_property
    def sample_by_id(self) -> dict[str, Trace]:
        return {s.id: s for samples in self.samples.values() for s in samples}

    @cached_property
    def student_template(self) -> PromptTemplate:
        return self.run.student_template()

    def student_request(self, problem: Problem, prefix: str = "") -> Request:
        return self.student_template.request(question=problem.question, prefix=prefix, id=problem.id)

    def keyer(self, stream: str, **fixed: Any) -> Callable[..., str]:
        """`(problem, parent=None, **varying) -> content key` of one item of `stream`: stream, engines,
        templates, seed, what all its items share (`fixed`: oracle, sampling, settings), the problem, the parent
        text and what varies per item. Everything shared is encoded once per stream, not once per item
        (`run.work.WorkKeys`; the problem and parent as `problem_part` and `trace_part` give them)."""
        keys = WorkKeys(
            f"stream_{stream}",
            student=engine_id(self.config.student.engine),
            student_template=template_id(self.student_template),
            seed=self.config.seed,
            **fixed,
        )

        def key(problem: Problem, *, parent: Trace | None = None, **varying: Any) -> str:
            return keys(problem=problem_part(problem), parent=None if parent is None else trace_part(parent), **varying)

        return key

    def oracle_parts(self, *templates: str) -> dict[str, Any]:
        oracle = self.config.oracle
        return {
            "oracle": engine_id(oracle.engine if oracle else None),
            "templates": [template_id(self.run.template(name, oracle.system if oracle else None)) for name in templates],
            "sampling": self.oracle_sampling().to_dict(),
            "retries": self.config.streams.oracle_retries,
        }

    def oracle_template(self, name: str) -> PromptTemplate:
        oracle = self.config.oracle
        return self.run.template(name, oracle.system if oracle else None)

    def oracle_sampling(self, attempt: int = 0) -> SamplingParams:
        """A fresh seed per attempt, so a retried refinement can differ (at temperature > 0)."""
        streams = self.config.streams
        return SamplingParams.from_config(
            self.config.sampling, seed=self.config.seed + 1000 * attempt,
            temperature=streams.oracle_temperature, max_tokens=streams.oracle_max_tokens,
        )

    def student_sampling(self, **overrides: Any) -> SamplingParams:
        """The student's sampling settings, with `overrides` (None keeps the config's value)."""
        return SamplingParams.from_config(self.config.sampling, seed=self.config.seed, **overrides)

    def ask_oracle(
        self, stream: str, items: Sequence[WorkItem], requests: Sequence[Request], template: str, result: BatchResult,
        *, parse=lambda text: text, attempt: int = 0,
    ) -> list[OracleResult]:
        """Oracle answers for `requests` (one per item); failures become records in `result.failures`.

        Counts: `oracle_errors` (sends that raised, retried or not) and `oracle_failures` (requests that stayed failed).
        """
        oracle = self.oracle()
        answers = generate_with_retries(
            oracle, requests, self.oracle_sampling(attempt), retries=self.config.streams.oracle_retries, parse=parse,
            breaker=self.breaker,
        )
        for item, answer in zip(items, answers, strict=True):
            result.count("oracle_errors", answer.errors)
            if answer.failed:
                result.failures.append(failure_record(stream, item.key, item.problem.id, template, oracle.name, answer))
                result.count("oracle_failures")
        return answers

    def exemplars(self, pool: Sequence[Trace], problem: Problem, n: int) -> list[str]:
        """`n` (`streams.sar.exemplars`) of the student's correct traces on *other* problems, chosen reproducibly.

        Drawn as `rng.sample(others, n)` would draw them from the pool without the problem's own traces,
        without building that list per problem (quadratic in the pool): positions in it are mapped back
        past the problem's own positions, which `_positions` indexes once per pool.
        """
        own = self._positions(pool).get(problem.id, [])
        n = min(n, len(pool) - len(own))
        rng = random.Random(content_id(self.config.seed, problem.id))
        picked = []
        for index in rng.sample(range(len(pool) - len(own)), n):
            for position in own:
                if position > index:
                    break
                index += 1
            picked.append(pool[index].text)
        return picked

    def _positions(self, pool: Sequence[Trace]) -> dict[str, list[int]]:
        """Each problem's positions in `pool`, ascending; kept for the last pool asked about (one per stream)."""
        if self._pool_positions is None or self._pool_positions[0] is not pool:
            positions: dict[str, list[int]] = defaultdict(list)
            for i, trace in enumerate(pool):
                positions[trace.problem_id].append(i)
            self._pool_positions = (pool, dict(positions))
        return self._pool_positions[1]
