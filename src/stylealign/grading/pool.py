"""Grading many answers at once: slow items in worker processes with a timeout, verdicts remembered.

A worker stuck in sympy is killed and replaced, and its item counts as wrong
and is reported. Each distinct (answer, reference) pair is sent once and its
verdict remembered, and the workers stay up between batches.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from stylealign.grading.equivalence import _grading_pair, _quick_verdict, _quiet_math_verify, equivalent

log = logging.getLogger("stylealign.grading")


class _Verdicts:
    """Verdicts of math-verify already paid for, by (answer, reference): the k samples of a problem
    repeat answers, and a run grades the same pairs stage after stage. Bounded, oldest out first."""

    def __init__(self, limit: int = 200_000) -> None:
        self.limit = limit
        self.lock = threading.Lock()
        self.known: dict[tuple[str, str], bool] = {}

    def get(self, pair: tuple[str, str]) -> bool | None:
        return self.known.get(pair)

    def put(self, pair: tuple[str, str], verdict: bool) -> None:
        with self.lock:
            if len(self.known) >= self.limit:
                del self.known[next(iter(self.known))]
            self.known[pair] = verdict


_VERDICTS = _Verdicts()


@dataclass
class GradedBatch:
    """Verdicts of a batch plus which items were cut off: index lists into the inputs."""

    verdicts: list[bool]
    timed_out: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)

    def status(self, index: int) -> str:
        if index in self.timed_out:
            return "timeout"
        return "error" if index in self.failed else "ok"


_STARTUP_TIMEOUT = 300.0
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def serve_worker() -> None:
    """Worker loop (`python -m stylealign.grading --worker`): one JSON line in, one JSON line out."""
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # whatever a library prints goes to stderr, never into the reply stream
    _quiet_math_verify()
    equivalent("x + 1", "1 + x")  # import sympy and build the LaTeX parser before saying ready,
    print(json.dumps("ready"), file=protocol, flush=True)  # so item timeouts never pay for it
    for line in sys.stdin:
        index, answer, reference = json.loads(line)
        try:
            reply = [index, equivalent(answer, reference), None]
        except Exception as err:  # a bad item must not take the batch down
            reply = [index, False, f"{type(err).__name__}: {err}"]
        print(json.dumps(reply), file=protocol, flush=True)


class _Worker:
    """A grading subprocess working on at most one item, with a deadline."""

    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stylealign.grading", "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env=env,
        )
        self.ready = False
        self.index: int | None = None
        self.reference: str | None = None  # the last one it was given: its parse is cached there
        self.deadline = time.monotonic() + _STARTUP_TIMEOUT

    @property
    def waiting(self) -> bool:
        return not self.ready or self.index is not None

    @property
    def reusable(self) -> bool:
        """Alive and not holding an item; one still starting is kept too, so no start-up is wasted."""
        return self.index is None and self.process.poll() is None

    def give(self, index: int, answer: str, reference: str, timeout: float) -> None:
        self.index, self.reference, self.deadline = index, reference, time.monotonic() + timeout
        self.process.stdin.write(json.dumps([index, answer, reference]) + "\n")
        self.process.stdin.flush()

    def read(self) -> Any:
        """The next reply, or None if the worker died."""
        line = self.process.stdout.readline()
        return json.loads(line) if line else None

    def stop(self) -> None:
        if self.waiting:
            self.process.kill()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class _Idle:
    """Ready workers kept between batches: a stage grading batch after batch pays sympy's import once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.workers: list[_Worker] = []
        self.pid = os.getpid()

    def take(self, count: int) -> list[_Worker]:
        with self.lock:
            if self.pid != os.getpid():  # a forked child must not talk to its parent's workers
                self.workers, self.pid = [], os.getpid()
            alive = [w for w in self.workers if w.process.poll() is None]
            taken, self.workers = alive[:count], alive[count:]
        return taken + [_Worker() for _ in range(count - len(taken))]

    def give_back(self, workers: list[_Worker]) -> None:
        """Keep the healthy idle ones (up to one per CPU), stop the rest."""
        limit = os.cpu_count() or 1
        stop = [w for w in workers if not w.reusable]
        with self.lock:
            for w in workers:
                if w.reusable:
                    (self.workers if len(self.workers) < limit else stop).append(w)
        for w in stop:
            w.stop()

    def close(self) -> None:
        with self.lock:
            workers, self.workers = self.workers, []
        if self.pid == os.getpid():
            for w in workers:
                w.stop()


_IDLE = _Idle()


def start_workers(processes: int | None = None) -> None:
    """Start the grading workers now and return once they are ready: a run pays their start-up
    (sympy, the LaTeX parser) once, before its first batch, not inside a batch's timing."""
    workers = _IDLE.take(processes or os.cpu_count() or 1)
    try:
        for w in workers:
            if not w.ready:
                ready = wait([w.process.stdout], max(0.0, w.deadline - time.monotonic()))
                if not ready or w.read() != "ready":
                    raise RuntimeError(f"grading worker failed to start: {' '.join(w.process.args)}")
                w.ready = True
    finally:
        _IDLE.give_back(workers)


def close_workers() -> None:
    """Stop the idle grading workers and forget memoized verdicts (at exit, or to measure a cold start)."""
    _IDLE.close()
    with _VERDICTS.lock:
        _VERDICTS.known.clear()


atexit.register(close_workers)


class _Pending:
    """The pairs left to grade, by reference: a worker gets more pairs of the reference it has just
    parsed, so each reference is parsed about once per batch rather than once per worker."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.by_reference: dict[str, deque[int]] = {}
        for k, (_, reference) in enumerate(pairs):
            self.by_reference.setdefault(reference, deque()).append(k)

    def __bool__(self) -> bool:
        return bool(self.by_reference)

    def next_for(self, worker: _Worker, workers: list[_Worker]) -> int:
        reference = worker.reference
        if reference not in self.by_reference:
            busy = {w.reference for w in workers if w is not worker}
            reference = next((r for r in self.by_reference if r not in busy), next(iter(self.by_reference)))
        queue = self.by_reference[reference]
        k = queue.popleft()
        if not queue:
            del self.by_reference[reference]
        return k


def grade_batch(
    predictions: Sequence[str],
    references: Sequence[str],
    *,
    timeout: float = 5.0,
    processes: int | None = None,
    last_number: bool = True,
) -> GradedBatch:
    """Grade pairs; items needing sympy run in `processes` worker processes, `timeout` seconds each.

    An item over its time has its worker killed and replaced; it counts as wrong and is listed
    in `timed_out`. Plain-number items never leave this process; each distinct (answer, reference)
    pair goes to a worker once, and pairs graded before (in this process) not again. The workers
    stay up between calls, so a run starts them once.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    result = GradedBatch(verdicts=[False] * len(predictions))
    items: dict[tuple[str, str], list[int]] = {}  # the pairs math-verify must decide, and who asks
    for i, (prediction, reference) in enumerate(zip(predictions, references, strict=True)):
        pair = _grading_pair(prediction, reference, last_number)
        verdict = _quick_verdict(*pair)
        if verdict is None:
            verdict = _VERDICTS.get(pair)
        if verdict is None:
            items.setdefault(pair, []).append(i)
        else:
            result.verdicts[i] = verdict
    if not items:
        return result
    pairs = list(items)
    pending = _Pending(pairs)
    workers = _IDLE.take(max(1, min(processes or os.cpu_count() or 1, len(pairs))))
    try:
        while pending or any(w.index is not None for w in workers):
            for w in workers:
                if w.ready and w.index is None and pending:
                    k = pending.next_for(w, workers)
                    w.give(k, *pairs[k], timeout)
            waiting = [w for w in workers if w.waiting]
            wait(
                [w.process.stdout for w in waiting],
                max(0.0, min(w.deadline for w in waiting) - time.monotonic()),
            )
            for slot, w in enumerate(workers):
                if not w.waiting:
                    continue
                readable = bool(wait([w.process.stdout], 0))
                if not readable and time.monotonic() < w.deadline:
                    continue
                reply = w.read() if readable else None
                if reply == "ready":
                    w.ready = True
                    continue
                if reply is not None:
                    k, verdict, error = reply
                    for i in items[pairs[k]]:
                        result.verdicts[i] = verdict
                        if error:
                            result.failed[i] = error
                    if not error:
                        _VERDICTS.put(pairs[k], verdict)
                    w.index = None
                    continue
                if not w.ready:
                    raise RuntimeError(f"grading worker failed to start: {' '.join(w.process.args)}")
                for i in items[pairs[w.index]]:
                    if readable:
                        result.failed[i] = "worker process died"
                    else:
                        result.timed_out.append(i)
                w.stop()
                workers[slot] = _Worker()
    finally:
        _IDLE.give_back(workers)
    result.timed_out.sort()
    if result.timed_out or result.failed:
        log.warning(
            "grading: %d item(s) timed out after %.1fs and %d failed, counted as wrong: %s",
            len(result.timed_out),
            timeout,
            len(result.failed),
            sorted(result.timed_out + list(result.failed))[:20],
        )
    return result


def grade_many(
    predictions: Sequence[str],
    references: Sequence[str],
    *,
    timeout: float = 5.0,
    processes: int | None = None,
    last_number: bool = True,
) -> list[bool]:
    """Verdicts only; see `grade_batch` for which items timed out."""
    return grade_batch(
        predictions, references, timeout=timeout, processes=processes, last_number=last_number
    ).verdicts

