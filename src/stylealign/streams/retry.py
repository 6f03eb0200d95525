"""Oracle calls that fail softly: bounded retries, per-request isolation, and a record of what failed.

An oracle may raise (network, timeout, server error), refuse, or answer in a
form the stream cannot use. `parse` turns a raw answer into the value the
stream needs or raises ValueError naming what was wrong; both kinds of failure
are retried `retries` times with a fresh seed, and a request that still fails
comes back as a failed `OracleResult` instead of an exception, so one bad
request never costs the rest of the batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from stylealign.engines.base import Engine, Request, SamplingParams
from stylealign.records import Trace, content_id


@dataclass
class OracleResult:
    text: str | None = None
    value: Any = None
    attempts: int = 0
    error: str = ""
    raw: str = ""

    @property
    def failed(self) -> bool:
        return self.text is None


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"[:500]


def _generate_isolated(engine: Engine, requests: Sequence[Request], sampling: SamplingParams) -> list[str | BaseException]:
    """One completion per request; if the batch raises, each request is tried alone so only the bad one fails."""
    try:
        return [c[0].text if c else ValueError("no completion returned") for c in engine.generate(requests, 1, sampling)]
    except Exception as err:  # noqa: BLE001 - any backend failure is recorded, never fatal
        if len(requests) == 1:
            return [err]
    out: list[str | BaseException] = []
    for request in requests:
        out.extend(_generate_isolated(engine, [request], sampling))
    return out


def generate_with_retries(
    engine: Engine,
    requests: Sequence[Request],
    sampling: SamplingParams,
    *,
    retries: int,
    parse: Callable[[str], Any] = lambda text: text,
) -> list[OracleResult]:
    """Answer every request, retrying failures (exceptions or unparseable answers) up to `retries` times."""
    results = [OracleResult() for _ in requests]
    pending = list(range(len(requests)))
    for attempt in range(retries + 1):
        if not pending:
            break
        params = dataclasses.replace(sampling, seed=sampling.seed + attempt)
        answers = _generate_isolated(engine, [requests[i] for i in pending], params)
        still = []
        for i, answer in zip(pending, answers, strict=True):
            result = results[i]
            result.attempts = attempt + 1
            if isinstance(answer, BaseException):
                result.error = _describe(answer)
                still.append(i)
                continue
            try:
                if not answer.strip():
                    raise ValueError("empty answer")
                result.value = parse(answer)
            except ValueError as err:
                result.error, result.raw = f"malformed: {err}"[:500], answer
                still.append(i)
                continue
            result.text, result.error = answer, ""
        pending = still
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
