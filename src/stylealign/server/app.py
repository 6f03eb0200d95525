"""The app: `create_app` wires one small function per route, the error handlers and the `Guard` together.

The routes find what they share (`Served`: the batcher, the tokenizer, the limits) on `app.state.served`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi import Request as HTTPRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
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
from stylealign.server.batching import Batcher, ClientGone, unless_client_leaves
from stylealign.server.guard import Guard
from stylealign.server.limits import ServerLimits, check_prompts, check_size
from stylealign.server.protocol import (
    BadRequest,
    ChatBody,
    CompletionBody,
    echo_logprobs,
    envelope,
    error_response,
    parse_prompts,
)


@dataclass
class Served:
    """What every route shares: the model's name, the limits, the engine's batcher and its tokenizer (or None)."""

    model_name: str
    limits: ServerLimits
    batcher: Batcher
    tokenizer: Any
    raw: bool
    """Whether the engine has a raw-prompt path (`generate_text`, `token_logprobs`, a tokenizer): completions need it."""


def create_app(
    engine: Engine, model_name: str, *, limits: ServerLimits | None = None, api_key: str | None = None
) -> FastAPI:
    """The app; with `api_key`, every `/v1` request must send `Authorization: Bearer <api_key>`."""
    limits = limits or ServerLimits()
    app = FastAPI(title=f"stylealign serve {model_name}")
    batcher = app.state.batcher = Batcher(engine)
    app.state.served = Served(
        model_name,
        limits,
        batcher,
        tokenizer=getattr(engine, "tokenizer", None),
        raw=all(hasattr(engine, a) for a in ("generate_text", "token_logprobs", "tokenizer")),
    )
    app.add_middleware(Guard, api_key=api_key, max_body_bytes=limits.max_body_bytes)
    for error, handler in ERROR_HANDLERS.items():
        app.add_exception_handler(error, handler)
    app.add_api_route("/v1/models", models, methods=["GET"])
    app.add_api_route("/v1/chat/completions", chat, methods=["POST"])
    app.add_api_route("/v1/completions", completions, methods=["POST"])
    return app


# errors: every one in OpenAI's shape


async def invalid(_: HTTPRequest, err: RequestValidationError) -> JSONResponse:
    fields = [".".join(str(p) for p in e["loc"] if p != "body") or "body" for e in err.errors()]
    problems = "; ".join(f"{name}: {e['msg']}" for name, e in zip(fields, err.errors(), strict=True))
    return error_response(400, f"invalid request: {problems}", fields[0] if fields else None)


async def bad_request(_: HTTPRequest, err: BadRequest) -> JSONResponse:
    return error_response(400, str(err), err.param)


async def http_error(_: HTTPRequest, err: HTTPException) -> JSONResponse:
    return error_response(err.status_code, str(err.detail))


async def server_fault(_: HTTPRequest, err: Exception) -> JSONResponse:
    return error_response(500, f"internal error: {type(err).__name__}")


async def engine_error(_: HTTPRequest, err: EngineError) -> JSONResponse:
    return error_response(400, str(err))


async def client_gone(_: HTTPRequest, err: ClientGone) -> JSONResponse:
    return error_response(499, "client disconnected")


ERROR_HANDLERS: dict[type[Exception], Any] = {
    RequestValidationError: invalid,
    BadRequest: bad_request,
    HTTPException: http_error,
    Exception: server_fault,
    EngineError: engine_error,
    ClientGone: client_gone,
}


# routes


async def models(http: HTTPRequest) -> dict[str, Any]:
    name = http.app.state.served.model_name
    return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "stylealign"}]}


async def chat(body: ChatBody, http: HTTPRequest) -> dict[str, Any]:
    served: Served = http.app.state.served
    request = _chat_request(body)
    sampling = _chat_sampling(body)
    check_size(served.limits, body, sampling, 1)
    tokenizer = served.tokenizer
    prompt_tokens = len(encode_prompt(tokenizer, render_prompt(tokenizer, request))) if tokenizer else 0
    check_prompts(served.limits, [prompt_tokens])
    (samples,) = await unless_client_leaves(http, served.batcher.submit("chat", [request], body.n, sampling))
    choices = [
        {
            "index": k,
            "message": {"role": "assistant", "content": c.text},
            "finish_reason": c.finish_reason,
            "logprobs": None,
        }
        for k, c in enumerate(samples)
    ]
    return envelope("chat.completion", served.model_name, choices, samples, prompt_tokens)


def _chat_request(body: ChatBody) -> Request:
    """The engine's request; with `continue_final_message`, the assistant's last message is the prefix to continue."""
    messages = [{"role": m.role, "content": m.content} for m in body.messages]
    prefix = ""
    if body.continue_final_message:
        if not messages or messages[-1]["role"] != "assistant":
            raise BadRequest("continue_final_message needs the last message to be the assistant's")
        prefix = messages.pop()["content"]
    elif not body.add_generation_prompt:
        raise BadRequest("add_generation_prompt=false is only supported with continue_final_message=true")
    return Request(messages=tuple(messages), prefix=prefix)


def _chat_sampling(body: ChatBody) -> SamplingParams:
    """512 tokens unless `max_tokens` (or else `max_completion_tokens`) says otherwise; at least 1."""
    sampling = body.sampling(512)
    if body.max_completion_tokens is not None and body.max_tokens is None:
        sampling = SamplingParams(**{**vars(sampling), "max_tokens": body.max_completion_tokens})
    if sampling.max_tokens < 1:
        raise BadRequest("max_tokens must be at least 1 for chat completions")
    return sampling


async def completions(body: CompletionBody, http: HTTPRequest) -> dict[str, Any]:
    served: Served = http.app.state.served
    if not served.raw:
        raise BadRequest(f"{served.model_name} serves chat completions only: its engine has no raw-prompt path")
    tokenizer = served.tokenizer
    sampling = body.sampling(16)
    prompts = parse_prompts(body.prompt, len(tokenizer))
    check_size(served.limits, body, sampling, len(prompts))
    if body.logprobs is not None and not (body.echo and sampling.max_tokens == 0):
        raise BadRequest("logprobs are returned for echoed prompts only: send echo=true with max_tokens=0")
    if sampling.max_tokens == 0 and not body.echo:
        raise BadRequest("max_tokens=0 is only allowed with echo=true")
    ids = [p if isinstance(p, list) else encode_prompt(tokenizer, p) for p in prompts]
    check_prompts(served.limits, [len(seq) for seq in ids])
    texts = [p if isinstance(p, str) else tokenizer.decode(p) for p in prompts]
    if sampling.max_tokens == 0:
        generated = [[Completion(text="", finish_reason="length") for _ in range(body.n)] for _ in prompts]
    else:
        generated = await unless_client_leaves(http, served.batcher.submit("text", prompts, body.n, sampling))
    echoed = await _echoed(served, http, ids) if body.logprobs is not None else [None] * len(prompts)
    choices = [
        {
            "index": i * body.n + j,
            "text": texts[i] + c.text if body.echo else c.text,
            "finish_reason": c.finish_reason,
            "logprobs": echoed[i],
        }
        for i, row in enumerate(generated)
        for j, c in enumerate(row)
    ]
    return envelope(
        "text_completion", served.model_name, choices, [c for row in generated for c in row], sum(map(len, ids))
    )


async def _echoed(served: Served, http: HTTPRequest, ids: list[list[int]]) -> list[dict[str, Any]]:
    """Each prompt's tokens with their log-probs, in vLLM's echo layout (a one-token prompt has none to score)."""
    scored = [i for i, seq in enumerate(ids) if len(seq) > 1]
    values = await unless_client_leaves(
        http, served.batcher.submit("score", [ids[i] for i in scored], extra=[1] * len(scored))
    )
    lps = {i: v for i, v in zip(scored, values, strict=True)}
    return [echo_logprobs(served.tokenizer, seq, lps.get(i, [])) for i, seq in enumerate(ids)]
