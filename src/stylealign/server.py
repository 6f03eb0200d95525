"""An OpenAI-compatible HTTP server over any engine: `stylealign serve MODEL`.

Serves a local student or oracle to tools that speak the OpenAI API, and
lets the `openai` engine be tested for real. Chat completions work with any
engine (continuation as in vLLM: `continue_final_message`); the completions
endpoint needs an engine with a raw-prompt path (`HFEngine`), and returns
prompt log-probs with `echo` + `logprobs` + `max_tokens: 0`, as vLLM does.

Model calls run in a worker thread, one at a time. Requests that arrive
while the model is busy are merged into the next batch (same kind and
sampling parameters), so concurrent clients get batched generation; the hf
engine seeds every sample from its own request, so merging never changes
results.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi import Request as HTTPRequest
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from stylealign.engines.base import Completion, Engine, EngineError, Request, SamplingParams, encode_prompt


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str = ""


class SamplingBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    n: int = Field(1, ge=1)
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=0)
    stop: str | list[str] | None = None
    seed: int | None = None

    def sampling(self, default_max_tokens: int) -> SamplingParams:
        stop = [self.stop] if isinstance(self.stop, str) else self.stop or []
        return SamplingParams(
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=default_max_tokens if self.max_tokens is None else self.max_tokens,
            stop=tuple(stop),
            seed=self.seed or 0,
        )


class ChatBody(SamplingBody):
    messages: list[ChatMessage]
    max_completion_tokens: int | None = Field(None, ge=1)
    continue_final_message: bool = False
    add_generation_prompt: bool = True


class CompletionBody(SamplingBody):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    logprobs: int | None = Field(None, ge=0)


class BadRequest(ValueError):
    pass


@dataclass
class _Job:
    kind: str
    key: Any
    items: list
    future: asyncio.Future
    n: int = 1
    sampling: SamplingParams | None = None
    extra: list = field(default_factory=list)


class Batcher:
    """One worker task feeding the engine: every call that queued while it was busy runs as one batch."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.lock = threading.Lock()
        self.pending: list[_Job] = []
        self.wake: asyncio.Event | None = None
        self.worker: asyncio.Task | None = None

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
        return await job.future

    async def _run(self) -> None:
        while True:
            await self.wake.wait()
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
        first = group[0]
        items = [item for job in group for item in job.items]
        with self.lock:
            if first.kind == "chat":
                return self.engine.generate(items, first.n, first.sampling)
            if first.kind == "text":
                return self.engine.generate_text(items, first.n, first.sampling)  # type: ignore[attr-defined]
            starts = [s for job in group for s in job.extra]
            return self.engine.token_logprobs(items, starts)  # type: ignore[attr-defined]


def create_app(engine: Engine, model_name: str) -> FastAPI:
    app = FastAPI(title=f"stylealign serve {model_name}")
    batcher = Batcher(engine)
    raw = all(hasattr(engine, a) for a in ("generate_text", "token_logprobs", "tokenizer"))

    @app.exception_handler(BadRequest)
    async def bad_request(_: HTTPRequest, err: BadRequest) -> JSONResponse:
        return _error(400, str(err))

    @app.exception_handler(EngineError)
    async def engine_error(_: HTTPRequest, err: EngineError) -> JSONResponse:
        return _error(400, str(err))

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "stylealign"}]}

    @app.post("/v1/chat/completions")
    async def chat(body: ChatBody) -> dict[str, Any]:
        messages = [{"role": m.role, "content": m.content} for m in body.messages]
        prefix = ""
        if body.continue_final_message:
            if not messages or messages[-1]["role"] != "assistant":
                raise BadRequest("continue_final_message needs the last message to be the assistant's")
            prefix = messages.pop()["content"]
        elif not body.add_generation_prompt:
            raise BadRequest("add_generation_prompt=false is only supported with continue_final_message=true")
        sampling = body.sampling(512)
        if body.max_completion_tokens is not None and body.max_tokens is None:
            sampling = SamplingParams(**{**vars(sampling), "max_tokens": body.max_completion_tokens})
        if sampling.max_tokens < 1:
            raise BadRequest("max_tokens must be at least 1 for chat completions")
        (completions,) = await batcher.submit(
            "chat", [Request(messages=tuple(messages), prefix=prefix)], body.n, sampling
        )
        choices = [
            {
                "index": k,
                "message": {"role": "assistant", "content": c.text},
                "finish_reason": c.finish_reason,
                "logprobs": None,
            }
            for k, c in enumerate(completions)
        ]
        return _envelope("chat.completion", model_name, choices, completions)

    @app.post("/v1/completions")
    async def completions(body: CompletionBody) -> dict[str, Any]:
        if not raw:
            raise BadRequest(f"{model_name} serves chat completions only: its engine has no raw-prompt path")
        tokenizer = engine.tokenizer  # type: ignore[attr-defined]
        prompts = _prompts(body.prompt)
        sampling = body.sampling(16)
        if body.logprobs is not None and not (body.echo and sampling.max_tokens == 0):
            raise BadRequest(
                "logprobs are returned for echoed prompts only: send echo=true with max_tokens=0"
            )
        if sampling.max_tokens == 0 and not body.echo:
            raise BadRequest("max_tokens=0 is only allowed with echo=true")
        texts = [p if isinstance(p, str) else tokenizer.decode(p) for p in prompts]
        if sampling.max_tokens == 0:
            generated = [
                [Completion(text="", finish_reason="length") for _ in range(body.n)] for _ in prompts
            ]
        else:
            generated = await batcher.submit("text", prompts, body.n, sampling)
        echoed: list[dict[str, Any] | None] = [None] * len(prompts)
        if body.logprobs is not None:
            ids = [p if isinstance(p, list) else encode_prompt(tokenizer, p) for p in prompts]
            scored = [i for i, seq in enumerate(ids) if len(seq) > 1]
            values = await batcher.submit("score", [ids[i] for i in scored], extra=[1] * len(scored))
            lps = {i: v for i, v in zip(scored, values, strict=True)}
            echoed = [_echo_logprobs(tokenizer, seq, lps.get(i, [])) for i, seq in enumerate(ids)]
        choices = []
        for i, row in enumerate(generated):
            for j, c in enumerate(row):
                text = texts[i] + c.text if body.echo else c.text
                choices.append(
                    {
                        "index": i * body.n + j,
                        "text": text,
                        "finish_reason": c.finish_reason,
                        "logprobs": echoed[i],
                    }
                )
        return _envelope("text_completion", model_name, choices, [c for row in generated for c in row])

    return app


def _prompts(prompt: str | list[str] | list[int] | list[list[int]]) -> list[str | list[int]]:
    if isinstance(prompt, str):
        return [prompt]
    if not prompt:
        raise BadRequest("prompt is empty")
    if all(isinstance(p, int) for p in prompt):
        return [list(prompt)]  # type: ignore[arg-type]
    return list(prompt)  # type: ignore[arg-type]


def _echo_logprobs(tokenizer: Any, ids: list[int], logprobs: list[float]) -> dict[str, Any]:
    """vLLM's echo layout: the first token has no log-prob; offsets are cumulative lengths of the token strings."""
    tokens = [tokenizer.decode([t]) for t in ids]
    offsets, position = [], 0
    for token in tokens:
        offsets.append(position)
        position += len(token)
    values: list[float | None] = [None, *logprobs]
    return {
        "tokens": tokens,
        "token_logprobs": values,
        "top_logprobs": [None if v is None else {t: v} for t, v in zip(tokens, values, strict=True)],
        "text_offset": offsets,
    }


def _envelope(
    kind: str, model_name: str, choices: list[dict[str, Any]], completions: list[Completion]
) -> dict[str, Any]:
    generated = sum(c.num_tokens for c in completions)
    return {
        "id": f"{'chatcmpl' if kind == 'chat.completion' else 'cmpl'}-{uuid.uuid4().hex}",
        "object": kind,
        "created": int(time.time()),
        "model": model_name,
        "choices": choices,
        "usage": {"prompt_tokens": 0, "completion_tokens": generated, "total_tokens": generated},
    }


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"error": {"message": message, "type": "BadRequestError", "code": status}}
    )


def build_engine(model: str, *, device: str = "auto", dtype: str = "auto", batch_size: int = 16) -> Engine:
    """`lab:oracle` is the lab's programmatic oracle; anything else is a model the hf engine loads."""
    if model == "lab:oracle":
        from stylealign.config import EngineConfig
        from stylealign.engines import load_engine

        return load_engine(EngineConfig(type="lab-oracle"))
    from stylealign.engines.hf import HFEngine

    return HFEngine(model, device=device, dtype=dtype, batch_size=batch_size)


def serve(
    model: str, *, host: str = "127.0.0.1", port: int = 8000, name: str | None = None, **engine_options: Any
) -> None:
    import uvicorn

    engine = build_engine(model, **engine_options)
    uvicorn.run(create_app(engine, name or model), host=host, port=port)


class BackgroundServer:
    """An app served by uvicorn in a daemon thread on a free port: for tests, benchmarks and notebooks.

    `with BackgroundServer(app) as url:` yields the base URL (`http://127.0.0.1:PORT/v1`).
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1"):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.host = host

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the background server failed to start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://{self.host}:{port}/v1"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
