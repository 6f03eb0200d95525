"""The OpenAI wire format `stylealign serve` speaks: request bodies, the response envelope, the error shape.

Bodies accept the fields OpenAI and vLLM clients send (unknown ones are allowed and ignored); every error,
whatever its cause, is `{"error": {"message", "type", "param", "code"}}`, which clients parse.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from stylealign.engines.base import Completion, SamplingParams


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


def parse_prompts(prompt: str | list[str] | list[int] | list[list[int]], vocab_size: int) -> list[str | list[int]]:
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


def echo_logprobs(tokenizer: Any, ids: list[int], logprobs: list[float]) -> dict[str, Any]:
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


def envelope(
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


def error_response(status: int, message: str, param: str | None = None) -> JSONResponse:
    """OpenAI's error shape: what went wrong, its type, the field at fault (or null) and a code."""
    kind = {401: "authentication_error", 404: "not_found_error", 413: "request_too_large", 499: "client_disconnected"}.get(
        status, "server_error" if status >= 500 else "invalid_request_error"
    )
    return JSONResponse(
        status_code=status, content={"error": {"message": message, "type": kind, "param": param, "code": status}}
    )
