"""Any OpenAI-compatible server (vLLM serve, SGLang, `stylealign serve`, hosted APIs) through the official client.

Requests run concurrently (at most `concurrency` in flight); 429, 5xx,
connection errors and timeouts are retried with exponential backoff and
jitter; any other 4xx fails at once with the request id, status and body.
Each send is bounded in wall time by `timeout` (a server that trickles bytes
cannot hold a request longer), so a call takes at most attempts × timeout
plus the backoff. `generate_each` sends every request once and returns its
error in place (the oracle streams own the retries, see `run/retry.py`).
Error messages never carry the API key: bodies are redacted before they are cut.
Continuation uses vLLM's chat semantics (the prefix is a final assistant
message with `continue_final_message`). Scoring sends the prompt + response
token ids, tokenized client-side by `encode_prompt_response`'s rule, to the
completions endpoint with `echo` and `logprobs`, as vLLM supports.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import openai

from stylealign.config import EngineConfig
from stylealign.engines.base import (
    Completion,
    EngineError,
    Request,
    SamplingParams,
    TokenScores,
    encode_prompt,
    encode_response,
    redact,
    render_prompt,
)

T = TypeVar("T")
RETRYABLE = (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError)
"""429, 5xx, and connection failures (`APITimeoutError` is a connection error)."""
BODY_EXCERPT = 500


def run_sync(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine from sync code, also when the caller already runs an event loop (notebooks, servers)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro_fn())
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro_fn())
        except BaseException as err:  # re-raised in the caller's thread
            box["error"] = err

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


class OpenAIEngine:
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = "OPENAI_API_KEY",
        endpoint: str = "chat",
        concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 5,
        tokenizer: str | None = None,
        backoff: float = 0.5,
        name: str | None = None,
    ):
        self.base_url = base_url
        self.model = model
        self.api_key_env = api_key_env
        self.endpoint = endpoint
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.name = name or model
        self.tokenizer_source = tokenizer or (model if Path(model).is_dir() else None)
        self._tokenizer: Any = None

    @classmethod
    def from_config(cls, cfg: EngineConfig) -> OpenAIEngine:
        if not cfg.base_url or not cfg.model:
            raise ValueError("the openai engine needs engine.base_url and engine.model")
        return cls(
            cfg.base_url,
            cfg.model,
            api_key_env=cfg.api_key_env,
            endpoint=cfg.endpoint,
            concurrency=cfg.concurrency,
            timeout=cfg.timeout,
            max_retries=cfg.max_retries,
            tokenizer=cfg.tokenizer,
        )

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer, loaded on first use; needed to render prompts client-side (completions, scoring)."""
        if self._tokenizer is None:
            if not self.tokenizer_source:
                raise EngineError(
                    f"{self.name}: rendering prompts client-side needs a tokenizer; set engine.tokenizer to a "
                    "local tokenizer directory (engine.model is not one)"
                )
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_source)
        return self._tokenizer

    def close(self) -> None:
        pass

    @property
    def api_key(self) -> str:
        return os.environ.get(self.api_key_env or "", "") or "EMPTY"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never be stored: the API key (redacted from anything kept from an exchange)."""
        return () if self.api_key == "EMPTY" else (self.api_key,)

    def generate(
        self, requests: Sequence[Request], n: int, sampling: SamplingParams
    ) -> list[list[Completion]]:
        call = self._chat if self.endpoint == "chat" else self._complete
        return run_sync(
            lambda: self._gather(requests, lambda client, i, r: call(client, i, r, n, sampling, self.max_retries))
        )

    def generate_each(
        self, requests: Sequence[Request], n: int, sampling: SamplingParams
    ) -> list[list[Completion] | Exception]:
        """One send per request; a request that failed gets its `EngineError` in place of completions."""
        call = self._chat if self.endpoint == "chat" else self._complete
        return run_sync(
            lambda: self._gather(
                requests, lambda client, i, r: call(client, i, r, n, sampling, 0), return_exceptions=True
            )
        )

    def score(self, requests: Sequence[Request], responses: Sequence[str]) -> list[TokenScores]:
        if len(requests) != len(responses):
            raise ValueError(f"score: {len(requests)} requests but {len(responses)} responses")
        return run_sync(
            lambda: self._gather(requests, lambda client, i, r: self._score(client, i, r, responses[i]))
        )

    async def _gather(
        self,
        requests: Sequence[Request],
        call: Callable[[Any, int, Request], Awaitable[T]],
        return_exceptions: bool = False,
    ) -> list[Any]:
        limit = asyncio.Semaphore(self.concurrency)
        async with openai.AsyncOpenAI(
            base_url=self.base_url, api_key=self.api_key, max_retries=0, timeout=self.timeout
        ) as client:

            async def one(i: int, request: Request) -> T:
                async with limit:
                    return await call(client, i, request)

            coros = (one(i, r) for i, r in enumerate(requests))
            return list(await asyncio.gather(*coros, return_exceptions=return_exceptions))

    async def _with_retries(self, label: str, send: Callable[[], Awaitable[T]], retries: int | None = None) -> T:
        retries = self.max_retries if retries is None else retries
        for attempt in range(retries + 1):
            try:
                return await asyncio.wait_for(send(), self.timeout)
            except (*RETRYABLE, TimeoutError) as err:
                if attempt == retries:
                    tried = f"gave up after {attempt + 1} attempts: " if retries else ""
                    raise EngineError(f"{label}: {tried}{self._describe(err)}") from err
                await asyncio.sleep(min(self.backoff * 2**attempt, 30.0) * (0.5 + random.random()))
            except openai.APIStatusError as err:
                raise EngineError(f"{label}: {self._describe(err)}") from err
            except (openai.APIError, ValueError) as err:  # a 200 whose body is not a valid response
                raise EngineError(f"{label}: malformed response: {self._describe(err)}") from err
        raise AssertionError("unreachable")

    def _describe(self, err: Exception) -> str:
        return _describe(err, self.timeout, self.secrets)

    def _label(self, index: int, request: Request) -> str:
        return f"{self.name} at {self.base_url}, request {request.id or f'#{index}'}"

    async def _chat(
        self, client: Any, index: int, request: Request, n: int, sampling: SamplingParams, retries: int
    ) -> list[Completion]:
        messages = [dict(m) for m in request.messages]
        extra: dict[str, Any] = {}
        if request.prefix:
            messages.append({"role": "assistant", "content": request.prefix})
            extra = {"continue_final_message": True, "add_generation_prompt": False}
        response = await self._with_retries(
            self._label(index, request),
            lambda: client.chat.completions.create(
                model=self.model, messages=messages, extra_body=extra or None, **_sampling_kwargs(n, sampling)
            ),
            retries,
        )
        return [
            Completion(text=c.message.content or "", finish_reason=_finish(c.finish_reason), num_tokens=0)
            for c in sorted(response.choices, key=lambda c: c.index)
        ]

    async def _complete(
        self, client: Any, index: int, request: Request, n: int, sampling: SamplingParams, retries: int
    ) -> list[Completion]:
        prompt = render_prompt(self.tokenizer, request)
        response = await self._with_retries(
            self._label(index, request),
            lambda: client.completions.create(
                model=self.model, prompt=prompt, **_sampling_kwargs(n, sampling)
            ),
            retries,
        )
        return [
            Completion(text=c.text, finish_reason=_finish(c.finish_reason))
            for c in sorted(response.choices, key=lambda c: c.index)
        ]

    async def _score(self, client: Any, index: int, request: Request, response: str) -> TokenScores:
        label = self._label(index, request)
        prompt_ids = encode_prompt(self.tokenizer, render_prompt(self.tokenizer, request))
        response_ids, offsets = encode_response(self.tokenizer, response)
        if not response_ids:
            return TokenScores()
        try:
            result = await self._with_retries(
                label,
                lambda: client.completions.create(
                    model=self.model,
                    prompt=prompt_ids + response_ids,
                    max_tokens=0,
                    echo=True,
                    logprobs=0,
                    temperature=0,
                ),
            )
        except EngineError as err:
            cause = err.__cause__
            if isinstance(cause, openai.APIStatusError) and cause.status_code < 500:
                raise EngineError(
                    f"{err}\n(the server cannot score: scoring needs completions with echo + logprobs)"
                ) from err
            raise
        logprobs = result.choices[0].logprobs if result.choices else None
        values = list(logprobs.token_logprobs or []) if logprobs else []
        if len(values) < len(prompt_ids) + len(response_ids):
            raise EngineError(
                f"{label}: the server cannot score: completions with echo + logprobs returned "
                f"{len(values)} prompt log-probs for {len(prompt_ids) + len(response_ids)} tokens"
            )
        tail = slice(len(prompt_ids), len(prompt_ids) + len(response_ids))
        return TokenScores(
            tokens=[self.tokenizer.decode([t]) for t in response_ids],
            logprobs=[float(v) for v in values[tail]],
            offsets=offsets,
        )


def _sampling_kwargs(n: int, sampling: SamplingParams) -> dict[str, Any]:
    return {
        "n": n,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
        "stop": list(sampling.stop) or None,
        "seed": sampling.seed,
    }


def _finish(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"


def _describe(err: Exception, timeout: float, secrets: Sequence[str]) -> str:
    """What went wrong, for an error message: status and the start of the body, secrets redacted first."""
    if isinstance(err, openai.APITimeoutError | TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(err, openai.APIStatusError):
        server_id = err.response.headers.get("x-request-id")
        body = redact(err.response.text, secrets)[:BODY_EXCERPT]
        return f"HTTP {err.status_code}{f' (server request id {server_id})' if server_id else ''}: {body}"
    return redact(f"{type(err).__name__}: {err}", secrets)[:BODY_EXCERPT]
