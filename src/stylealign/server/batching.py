"""The request batcher: model calls run in a worker thread, one at a time, and what queued meanwhile is merged.

Requests that arrive while the model is busy are merged into the next batch (same kind and sampling
parameters), so concurrent clients get batched generation; the hf engine seeds every sample from its own
request, so merging never changes results. A request whose client disconnects is dropped (queued) or stopped
(running: the engine is called one batch at a time, and no further batch starts once every client of the call
left; the hf engine also stops the batch in flight).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import Request as HTTPRequest
from starlette.concurrency import run_in_threadpool

from stylealign.engines.base import Engine, SamplingParams

T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


@dataclass
class _Job:
    kind: str
    key: Any
    items: list
    future: asyncio.Future
    n: int = 1
    sampling: SamplingParams | None = None
    extra: list = field(default_factory=list)


GATHER_SECONDS = 0.05
"""How long an idle batcher waits after the first request before it starts: a client sending many requests at
once (the openai engine with `concurrency`) gets them answered as one batch, not the first alone."""


class Batcher:
    """One worker task feeding the engine: every call that queued while it was busy runs as one batch."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.lock = threading.Lock()
        self.pending: list[_Job] = []
        self.wake: asyncio.Event | None = None
        self.worker: asyncio.Task | None = None
        self.abandoned = 0
        """Jobs whose clients left: dropped from the queue, or stopped early while running (hf engine)."""

    async def submit(
        self,
        kind: str,
        items: list,
        n: int = 1,
        sampling: SamplingParams | None = None,
        extra: list | None = None,
    ) -> list:
        if self.worker is None or self.worker.done():
            self.wake = asyncio.Event()
            self.worker = asyncio.get_running_loop().create_task(self._run())
        job = _Job(
            kind,
            (kind, n, sampling),
            items,
            asyncio.get_running_loop().create_future(),
            n,
            sampling,
            extra or [],
        )
        self.pending.append(job)
        self.wake.set()
        try:
            return await job.future
        except asyncio.CancelledError:
            if job in self.pending:
                self.pending.remove(job)
                self.abandoned += 1
            raise

    async def _run(self) -> None:
        while True:
            await self.wake.wait()
            await asyncio.sleep(GATHER_SECONDS)  # the rest of a burst of concurrent requests joins the first
            self.wake.clear()
            while self.pending:
                first = self.pending[0]
                group = [j for j in self.pending if j.key == first.key]
                self.pending = [j for j in self.pending if j.key != first.key]
                await self._answer(group)

    async def _answer(self, group: list[_Job]) -> None:
        """Run `group` as one batch; if it fails, run each job alone so only the bad request gets the error."""
        try:
            results = await run_in_threadpool(self._call, group)
            self.abandoned += sum(job.future.cancelled() for job in group)
        except ClientGone:  # every client left before the last engine batch: nobody to answer
            self.abandoned += len(group)
            return
        except Exception as err:  # noqa: BLE001 - every failure goes back to its client
            if len(group) > 1:
                for job in group:
                    await self._answer([job])
            elif not group[0].future.done():
                group[0].future.set_exception(err)
            return
        start = 0
        for job in group:
            if not job.future.done():
                job.future.set_result(results[start : start + len(job.items)])
            start += len(job.items)

    def _call(self, group: list[_Job]) -> list:
        """The group's items, one engine batch of rows at a time; `ClientGone` once every client left."""
        first = group[0]
        items = [item for job in group for item in job.items]
        extra = [e for job in group for e in job.extra]

        def everyone_left() -> bool:
            return all(job.future.cancelled() for job in group)

        rows = getattr(self.engine, "batch_size", 16)
        if first.kind != "score" and first.sampling is not None and first.sampling.temperature > 0:
            rows //= first.n  # each prompt is n rows (one, greedy)
        step = max(1, rows)
        stoppable = hasattr(self.engine, "should_stop")
        results: list = []
        with self.lock:
            if stoppable:
                self.engine.should_stop = everyone_left  # type: ignore[attr-defined]
            try:
                for start in range(0, len(items), step):
                    if everyone_left():
                        raise ClientGone
                    chunk = items[start : start + step]
                    if first.kind == "chat":
                        results += self.engine.generate(chunk, first.n, first.sampling)
                    elif first.kind == "text":
                        results += self.engine.generate_text(chunk, first.n, first.sampling)  # type: ignore[attr-defined]
                    else:
                        results += self.engine.token_logprobs(chunk, extra[start : start + step])  # type: ignore[attr-defined]
            finally:
                if stoppable:
                    self.engine.should_stop = None  # type: ignore[attr-defined]
        return results


async def unless_client_leaves(http: HTTPRequest, work: Awaitable[T], poll_s: float = 0.2) -> T:
    """Await `work`, cancelling it (and so dropping or stopping its job) if the client disconnects first."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=poll_s)
        if done:
            return task.result()
        if await http.is_disconnected():
            task.cancel()
            raise ClientGone
