"""Oracle calls that fail softly, within a budget: a record of what failed, never a stalled run.

An oracle may raise (network, timeout, server error), refuse, or answer in a
form the stream cannot use. `parse` turns a raw answer into the value the
stream needs or raises ValueError naming what was wrong. Every request gets
`retries + 1` sends in all, whatever failed: engines answer request by request
(`generate_each`), so one bad request never re-sends the others, and a
failed batch is never retried on top of the engine's own retries. Sends that
raised are retried after an exponential backoff (from the engine's
`backoff`, in seconds; in-process engines have none). A `CircuitBreaker` shared by
every call to one engine stops sending once it failed `threshold` sends in a
row, so a dead server costs seconds, not a run's worth of timeouts. A request
that still failed comes back as a failed `OracleResult`, and its error text
is redacted of secrets before anything stores it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from stylealign.engines.base import Engine, Request, SamplingParams, generate_each, redact
from stylealign.records import Trace, content_id

ERROR_EXCERPT = 500
BACKOFF_CAP = 8.0
BREAKER_THRESHOLD = 10


@dataclass
class OracleResult:
    text: str | None = None
    value: Any = None
    attempts: int = 0
    errors: int = 0
    error: str = ""
    raw: str = ""
    finish_reason: str = ""

    @property
    def failed(self) -> bool:
        return self.text is None


class CircuitBreaker:
    """Counts consecutive failed sends to one engine; open (send nothing more) at `threshold`."""

    def __init__(self, threshold: int):
        self.threshold = threshold
        self.consecutive = 0
        self.last_error = ""

    @property
    def open(self) -> bool:
        return self.consecutive >= self.threshold

    def record(self, error: str | None) -> None:
        if error is None:
            self.consecutive = 0
        else:
            self.consecutive += 1
            self.last_error = error

    def reason(self, engine: str) -> str:
        return f"circuit open: {engine} failed {self.consecutive} requests in a row (last: {self.last_error})"


def _describe(err: BaseException, secrets: Sequence[str]) -> str:
    return redact(f"{type(err).__name__}: {err}", secrets)[:ERROR_EXCERPT]


def generate_with_retries(
    engine: Engine,
    requests: Sequence[Request],
    sampling: SamplingParams,
    *,
    retries: int,
    parse: Callable[[str], Any] = lambda text: text,
    breaker: CircuitBreaker | None = None,
) -> list[OracleResult]:
    """Answer every request with at most `retries + 1` sends each (see the module doc)."""
    breaker = breaker or CircuitBreaker(BREAKER_THRESHOLD)
    backoff = float(getattr(engine, "backoff", 0.0))
    secrets = tuple(getattr(engine, "secrets", ()))
    results = [OracleResult() for _ in requests]
    pending = list(range(len(requests)))
    raised = False
    for attempt in range(retries + 1):
        if not pending or breaker.open:
            break
        if raised:
            time.sleep(min(backoff * 2 ** (attempt - 1), BACKOFF_CAP))
        params = dataclasses.replace(sampling, seed=sampling.seed + attempt)
        answers = generate_each(engine, [requests[i] for i in pending], 1, params)
        still, raised = [], False
        for i, answer in zip(pending, answers, strict=True):
            result = results[i]
            result.attempts = attempt + 1
            if isinstance(answer, BaseException) or not answer:
                error = _describe(answer, secrets) if isinstance(answer, BaseException) else "no completion returned"
                result.error, result.errors, raised = error, result.errors + 1, True
                breaker.record(error)
                still.append(i)
                continue
            breaker.record(None)
            text = answer[0].text
            try:
                if not text.strip():
                    raise ValueError("empty answer")
                result.value = parse(text)
            except ValueError as err:
                result.error, result.raw = redact(f"malformed: {err}", secrets)[:ERROR_EXCERPT], redact(text, secrets)
                still.append(i)
                continue
            result.text, result.error, result.finish_reason = text, "", answer[0].finish_reason
        pending = still
    if breaker.open:
        for i in pending:
            results[i].error = breaker.reason(engine.name)[:ERROR_EXCERPT]
    return results


def failure_record(stream: str, key: str, problem_id: str, template: str, model: str, result: OracleResult) -> Trace:
    """A failed oracle call as a Trace in stage `failures_<stream>` (text = the unusable answer, if any)."""
    return Trace(
        id=content_id("failure", key, result.error),
        problem_id=problem_id,
        text=result.raw,
        stream=stream,
        model=model,
        template=template,
        metrics={"error": result.error, "attempts": result.attempts},
    )
