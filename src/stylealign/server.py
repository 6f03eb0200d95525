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

Exposed to others, it stays bounded: `ServerLimits` caps `n`, the prompts of
one request and its completions in all (prompts × n), `max_tokens`, the body
size (413) and the prompt's tokens; malformed requests get 400 naming the
field; a request whose client disconnects is dropped (queued) or stopped
(running: the engine is called one batch at a time, and no further batch
starts once every client of the call left; the hf engine also stops the batch
in flight); `stream: true` is refused with 400; an API key (`--api-key-env`)
is required with `Authorization: Bearer`, and a non-loopback address is
refused without one unless `--insecure` is given. Every error, unknown paths
and server faults included, comes in OpenAI's shape,
`{"error": {"message", "type", "param", "code"}}`, which clients parse.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import os
import threading
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi import Request as HTTPRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from stylealign.engines.base import (
    Completion,
    Engine,
    EngineError,
    Request,
    SamplingParams,
    encode_prompt,
    render_prompt,
)

T = TypeVar("T")


@dataclass(frozen=True)
class ServerLimits:
    """What one request may ask for; more is refused with 400 (413 for the body), never queued."""

    max_n: int = 16
    max_tokens: int = 4096
    max_body_bytes: int = 1_000_000
    max_prompt_tokens: int = 8192
    """Prompt tokens per prompt (the hf engine also refuses prompt + max_tokens beyond the model's context)."""
    max_prompts: int = 32
    """Prompts in one completions request."""
    max_completions: int = 64
    """Completions one request may ask for in all: prompts × n."""


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
    stream: bool = False

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
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    continue_final_message: bool = False
    add_generation_prompt: bool = True


class CompletionBody(SamplingBody):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    logprobs: int | None = Field(None, ge=0)


class BadRequest(ValueError):
    """A request the server refuses (400); `param` names the field at fault, as OpenAI's errors do."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


class Guard:
    """ASGI middleware run before any body is read: the API key (401) and the body size (411, 413).

    Plain ASGI rather than `@app.middleware`, so the app still sees the client's disconnect.
    """

    def __init__(self, app: Any, api_key: str | None, max_body_bytes: int):
        self.app, self.api_key, self.max_body_bytes = app, api_key, max_body_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: dict) -> JSONResponse | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.api_key is not None:
            sent = headers.get("authorization", "")
            if not hmac.compare_digest(sent.encode(), f"Bearer {self.api_key}".encode()):
                return _error(401, "missing or wrong API key: send Authorization: Bearer <key>")
        if scope["method"] == "POST":
            length = headers.get("content-length", "")
            if not length.isdigit():
                return _error(411, "send the body with a Content-Length header")
            if int(length) > self.max_body_bytes:
                return _error(413, f"body of {int(length):,} bytes is over the limit of {self.max_body_bytes:,}")
        return None


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


def create_app(
    engine: Engine, model_name: str, *, limits: ServerLimits | None = None, api_key: str | None = None
) -> FastAPI:
    """The app; with `api_key`, every `/v1` request must send `Authorization: Bearer <api_key>`."""
    limits = limits or ServerLimits()
    app = FastAPI(title=f"stylealign serve {model_name}")
    batcher = app.state.batcher = Batcher(engine)
    raw = all(hasattr(engine, a) for a in ("generate_text", "token_logprobs", "tokenizer"))
    tokenizer = getattr(engine, "tokenizer", None)
    app.add_middleware(Guard, api_key=api_key, max_body_bytes=limits.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: HTTPRequest, err: RequestValidationError) -> JSONResponse:
        fields = [".".join(str(p) for p in e["loc"] if p != "body") or "body" for e in err.errors()]
        problems = "; ".join(f"{name}: {e['msg']}" for name, e in zip(fields, err.errors(), strict=True))
        return _error(400, f"invalid request: {problems}", fields[0] if fields else None)

    @app.exception_handler(BadRequest)
    async def bad_request(_: HTTPRequest, err: BadRequest) -> JSONResponse:
        return _error(400, str(err), err.param)

    @app.exception_handler(HTTPException)
    async def http_error(_: HTTPRequest, err: HTTPException) -> JSONResponse:
        return _error(err.status_code, str(err.detail))

    @app.exception_handler(Exception)
    async def server_fault(_: HTTPRequest, err: Exception) -> JSONResponse:
        return _error(500, f"internal error: {type(err).__name__}")

    @app.exception_handler(EngineError)
    async def engine_error(_: HTTPRequest, err: EngineError) -> JSONResponse:
        return _error(400, str(err))

    @app.exception_handler(ClientGone)
    async def client_gone(_: HTTPRequest, err: ClientGone) -> JSONResponse:
        return _error(499, "client disconnected")

    def check_size(body: SamplingBody, sampling: SamplingParams, prompts: int) -> None:
        """What a request asks for, refused before any prompt is tokenized."""
        if body.stream:
            raise BadRequest("stream=true is not supported by stylealign serve; send stream=false", "stream")
        if body.n > limits.max_n:
            raise BadRequest(f"n={body.n} is over this server's limit of {limits.max_n}", "n")
        if prompts > limits.max_prompts:
            raise BadRequest(f"{prompts} prompts are over this server's limit of {limits.max_prompts}", "prompt")
        if prompts * body.n > limits.max_completions:
            raise BadRequest(
                f"{prompts} prompts x n={body.n} = {prompts * body.n} completions are over this server's limit of "
                f"{limits.max_completions}", "n",
            )
        if sampling.max_tokens > limits.max_tokens:
            raise BadRequest(f"max_tokens={sampling.max_tokens} is over this server's limit of {limits.max_tokens}", "max_tokens")

    def check_prompts(prompt_tokens: list[int]) -> None:
        for i, count in enumerate(prompt_tokens):
            if count > limits.max_prompt_tokens:
                raise BadRequest(
                    f"prompt {i} has {count} tokens, over this server's limit of {limits.max_prompt_tokens}", "prompt"
                )

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "stylealign"}]}

    @app.post("/v1/chat/completions")
    async def chat(body: ChatBody, http: HTTPRequest) -> dict[str, Any]:
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
        check_size(body, sampling, 1)
        request = Request(messages=tuple(messages), prefix=prefix)
        prompt_tokens = len(encode_prompt(tokenizer, render_prompt(tokenizer, request))) if tokenizer else 0
        check_prompts([prompt_tokens])
        (completions,) = await _unless_client_leaves(http, batcher.submit("chat", [request], body.n, sampling))
        choices = [
            {
                "index": k,
                "message": {"role": "assistant", "content": c.text},
                "finish_reason": c.finish_reason,
                "logprobs": None,
            }
            for k, c in enumerate(completions)
        ]
        return _envelope("chat.completion", model_name, choices, completions, prompt_tokens)

    @app.post("/v1/completions")
    async def completions(body: CompletionBody, http: HTTPRequest) -> dict[str, Any]:
        if not raw:
            raise BadRequest(f"{model_name} serves chat completions only: its engine has no raw-prompt path")
        sampling = body.sampling(16)
        prompts = _prompts(body.prompt, len(tokenizer))
        check_size(body, sampling, len(prompts))
        if body.logprobs is not None and not (body.echo and sampling.max_tokens == 0):
            raise BadRequest(
                "logprobs are returned for echoed prompts only: send echo=true with max_tokens=0"
            )
        if sampling.max_tokens == 0 and not body.echo:
            raise BadRequest("max_tokens=0 is only allowed with echo=true")
        ids = [p if isinstance(p, list) else encode_prompt(tokenizer, p) for p in prompts]
        check_prompts([len(seq) for seq in ids])
        texts = [p if isinstance(p, str) else tokenizer.decode(p) for p in prompts]
        if sampling.max_tokens == 0:
            generated = [
                [Completion(text="", finish_reason="length") for _ in range(body.n)] for _ in prompts
            ]
        else:
            generated = await _unless_client_leaves(http, batcher.submit("text", prompts, body.n, sampling))
        echoed: list[dict[str, Any] | None] = [None] * len(prompts)
        if body.logprobs is not None:
            scored = [i for i, seq in enumerate(ids) if len(seq) > 1]
            values = await _unless_client_leaves(
                http, batcher.submit("score", [ids[i] for i in scored], extra=[1] * len(scored))
            )
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
        return _envelope(
            "text_completion", model_name, choices, [c for row in generated for c in row], sum(map(len, ids))
        )

    return app


async def _unless_client_leaves(http: HTTPRequest, work: Awaitable[T], poll_s: float = 0.2) -> T:
    """Await `work`, cancelling it (and so dropping or stopping its job) if the client disconnects first."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=poll_s)
        if done:
            return task.result()
        if await http.is_disconnected():
            task.cancel()
            raise ClientGone


def _prompts(prompt: str | list[str] | list[int] | list[list[int]], vocab_size: int) -> list[str | list[int]]:
    """The request's prompts; empty ones and token ids outside the vocabulary are refused."""
    if isinstance(prompt, str):
        prompts: list[str | list[int]] = [prompt]
    elif all(isinstance(p, int) for p in prompt):
        prompts = [list(prompt)]  # type: ignore[arg-type]
    else:
        prompts = list(prompt)  # type: ignore[arg-type]
    for i, p in enumerate(prompts):
        if not p:
            raise BadRequest(f"prompt {i} is empty")
        if isinstance(p, list) and not all(0 <= t < vocab_size for t in p):
            raise BadRequest(f"prompt {i} has token ids outside the vocabulary (0..{vocab_size - 1})")
    return prompts


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
    kind: str, model_name: str, choices: list[dict[str, Any]], completions: list[Completion], prompt_tokens: int
) -> dict[str, Any]:
    """The OpenAI response; `usage` counts the prompt once (0 for engines without a tokenizer) and every sample."""
    generated = sum(c.num_tokens for c in completions)
    return {
        "id": f"{'chatcmpl' if kind == 'chat.completion' else 'cmpl'}-{uuid.uuid4().hex}",
        "object": kind,
        "created": int(time.time()),
        "model": model_name,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": generated,
            "total_tokens": prompt_tokens + generated,
        },
    }


def _error(status: int, message: str, param: str | None = None) -> JSONResponse:
    """OpenAI's error shape: what went wrong, its type, the field at fault (or null) and a code."""
    kind = {401: "authentication_error", 404: "not_found_error", 413: "request_too_large", 499: "client_disconnected"}.get(
        status, "server_error" if status >= 500 else "invalid_request_error"
    )
    return JSONResponse(
        status_code=status, content={"error": {"message": message, "type": kind, "param": param, "code": status}}
    )


def build_engine(model: str, *, device: str = "auto", dtype: str = "auto", batch_size: int = 16) -> Engine:
    """`lab:oracle` is the lab's programmatic oracle; anything else is a model the hf engine loads."""
    if model == "lab:oracle":
        from stylealign.config import EngineConfig
        from stylealign.engines import load_engine

        return load_engine(EngineConfig(type="lab-oracle"))
    from stylealign.engines.hf import HFEngine

    return HFEngine(model, device=device, dtype=dtype, batch_size=batch_size)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_key(host: str, api_key_env: str | None, insecure: bool) -> str | None:
    """The key clients must send: `$api_key_env`; serving beyond loopback without one needs `insecure`."""
    if api_key_env:
        key = os.environ.get(api_key_env, "")
        if not key:
            raise ValueError(f"--api-key-env {api_key_env}: that environment variable is empty or unset")
        return key
    if not is_loopback(host) and not insecure:
        raise ValueError(
            f"--host {host}: refusing to serve beyond this machine without a key; set --api-key-env NAME "
            "(or pass --insecure to let anyone who can reach it use the model)"
        )
    return None


def serve(
    model: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    name: str | None = None,
    api_key_env: str | None = None,
    insecure: bool = False,
    limits: ServerLimits | None = None,
    **engine_options: Any,
) -> None:
    import uvicorn

    api_key = serve_key(host, api_key_env, insecure)
    engine = build_engine(model, **engine_options)
    uvicorn.run(create_app(engine, name or model, limits=limits, api_key=api_key), host=host, port=port)


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
