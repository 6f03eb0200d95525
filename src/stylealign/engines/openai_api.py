"""Any OpenAI-compatible server (vLLM serve, SGLang, `stylealign serve`, hosted APIs) over plain HTTP.

Requests run concurrently (at most `concurrency` in flight); 429, 5xx,
connection errors, timeouts and malformed answers are retried with
exponential backoff and jitter; any other 4xx fails at once with the request
id, status and body. Each send is bounded in wall time by `timeout` (a
server that trickles bytes cannot hold a request longer) and in size by
`max_response_bytes` (a larger body is a malformed answer, never read whole),
so a call takes at most attempts × timeout plus the backoff. Every answer is
checked before it is used: JSON, the fields read, and exactly `n` choices (a
short answer is a failed send, never a partial result). `generate_each` sends
every request once and returns its error in place (the oracle streams own the
retries, see `engines/retry.py`). The API key comes from the environment variable
`api_key_env` names (unset there is an error, not an anonymous request) and
never reaches an error message: bodies are redacted before they are cut.
Continuation uses vLLM's chat semantics (the prefix is a final assistant
message with `continue_final_message`). Scoring sends the prompt + response
token ids, tokenized client-side by `encode_prompt_response`'s rule, to the
completions endpoint with `echo` and `logprobs`, as vLLM supports.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

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
BODY_EXCERPT = 500
MAX_RESPONSE_BYTES = 16 * 2**20
"""Largest answer read (an echoed 8K-token prompt with log-probs is about 1 MB)."""
ERROR_BODY_BYTES = 64 * 2**10
"""Of an error answer only the start is read: its message is cut to `BODY_EXCERPT` anyway."""


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


class SendFailed(Exception):
    """One send that failed: `retryable` for 429, 5xx and malformed answers; `status` when the server answered."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None):
        super().__init__(message)
        self.retryable, self.status = retryable, status


def malformed(message: str) -> SendFailed:
    return SendFailed(f"malformed response: {message}", retryable=True)


class OpenAIEngine:
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = None,
        endpoint: str = "chat",
        concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 5,
        tokenizer: str | None = None,
        backoff: float = 0.5,
        name: str | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = os.environ.get(api_key_env, "") if api_key_env else ""
        if api_key_env and not self.api_key:
            raise EngineError(
                f"engine.api_key_env: the environment variable {api_key_env} is unset or empty; set it, or set "
                "api_key_env: null for a server that takes no key"
            )
        self.endpoint = endpoint
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_response_bytes = max_response_bytes
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
    def secrets(self) -> tuple[str, ...]:
        """Values that must never be stored: the API key (redacted from anything kept from an exchange)."""
        return (self.api_key,) if self.api_key else ()

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
        call: Callable[[httpx.AsyncClient, int, Request], Awaitable[T]],
        return_exceptions: bool = False,
    ) -> list[Any]:
        limit = asyncio.Semaphore(self.concurrency)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        async with httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=self.timeout) as client:

            async def one(i: int, request: Request) -> T:
                async with limit:
                    return await call(client, i, request)

            coros = (one(i, r) for i, r in enumerate(requests))
            return list(await asyncio.gather(*coros, return_exceptions=return_exceptions))

    async def _post(self, client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST `body`; the answer's JSON object, read up to `max_response_bytes` (`ERROR_BODY_BYTES` of an error)."""
        async with client.stream("POST", path, json=body) as response:
            ok = response.status_code < 400
            limit = self.max_response_bytes if ok else ERROR_BODY_BYTES
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    if ok:
                        raise malformed(f"body over {limit:,} bytes")
                    break
        raw = b"".join(chunks)
        if not ok:
            server_id = response.headers.get("x-request-id")
            excerpt = self._excerpt(raw.decode("utf-8", errors="replace"))
            status = response.status_code
            raise SendFailed(
                f"HTTP {status}{f' (server request id {server_id})' if server_id else ''}: {excerpt}",
                retryable=status == 429 or status >= 500,
                status=status,
            )
        try:
            payload = json.loads(raw)
        except (ValueError, RecursionError):
            excerpt = self._excerpt(raw.decode("utf-8", errors="replace"))
            raise malformed(
                f"not JSON (content-type {response.headers.get('content-type', 'none')}): {excerpt!r}"
            ) from None
        if not isinstance(payload, dict):
            raise malformed(f"expected a JSON object, got {type(payload).__name__}")
        return payload

    def _excerpt(self, text: str) -> str:
        """What of a server's answer or a transport error goes into a message: redacted first, then cut, so no
        part of a secret survives the cut."""
        return redact(text, self.secrets)[:BODY_EXCERPT]

    async def _with_retries(self, label: str, send: Callable[[], Awaitable[T]], retries: int | None = None) -> T:
        """`send()` with up to `retries` more tries after a retryable failure; the last failure as an EngineError."""
        retries = self.max_retries if retries is None else retries
        for attempt in range(retries + 1):
            try:
                return await asyncio.wait_for(send(), self.timeout)
            except (asyncio.TimeoutError, httpx.TimeoutException):
                failure = SendFailed(f"timed out after {self.timeout:g} s", retryable=True)
            except httpx.HTTPError as err:
                failure = SendFailed(self._excerpt(f"{type(err).__name__}: {err}"), retryable=True)
            except SendFailed as err:
                failure = err
            if not failure.retryable or attempt == retries:
                tried = f"gave up after {attempt + 1} attempts: " if retries and failure.retryable else ""
                raise EngineError(f"{label}: {tried}{failure}") from failure
            await asyncio.sleep(min(self.backoff * 2**attempt, 30.0) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def _label(self, index: int, request: Request) -> str:
        return f"{self.name} at {self.base_url}, request {request.id or f'#{index}'}"

    async def _chat(
        self, client: httpx.AsyncClient, index: int, request: Request, n: int, sampling: SamplingParams, retries: int
    ) -> list[Completion]:
        messages = [dict(m) for m in request.messages]
        body = {"model": self.model, "messages": messages, **_sampling_fields(n, sampling)}
        if request.prefix:
            messages.append({"role": "assistant", "content": request.prefix})
            body.update(continue_final_message=True, add_generation_prompt=False)

        async def send() -> list[Completion]:
            choices = _choices(await self._post(client, "/chat/completions", body), n)
            return [
                Completion(text=_text(c.get("message"), "content", "choices[].message.content"), finish_reason=_finish(c))
                for c in choices
            ]

        return await self._with_retries(self._label(index, request), send, retries)

    async def _complete(
        self, client: httpx.AsyncClient, index: int, request: Request, n: int, sampling: SamplingParams, retries: int
    ) -> list[Completion]:
        body = {"model": self.model, "prompt": render_prompt(self.tokenizer, request), **_sampling_fields(n, sampling)}

        async def send() -> list[Completion]:
            choices = _choices(await self._post(client, "/completions", body), n)
            return [Completion(text=_text(c, "text", "choices[].text"), finish_reason=_finish(c)) for c in choices]

        return await self._with_retries(self._label(index, request), send, retries)

    async def _score(self, client: httpx.AsyncClient, index: int, request: Request, response: str) -> TokenScores:
        label = self._label(index, request)
        prompt_ids = encode_prompt(self.tokenizer, render_prompt(self.tokenizer, request))
        response_ids, offsets = encode_response(self.tokenizer, response)
        if not response_ids:
            return TokenScores()
        body = {
            "model": self.model, "prompt": prompt_ids + response_ids, "max_tokens": 0, "echo": True, "logprobs": 0,
            "temperature": 0,
        }
        tail = slice(len(prompt_ids), len(prompt_ids) + len(response_ids))

        async def send() -> list[float]:
            payload = await self._post(client, "/completions", body)
            choices = payload.get("choices")
            logprobs = choices[0].get("logprobs") if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
            values = logprobs.get("token_logprobs") if isinstance(logprobs, dict) else None
            if not isinstance(values, list) or len(values) < tail.stop:
                raise SendFailed(
                    "the server cannot score: completions with echo + logprobs returned "
                    f"{len(values) if isinstance(values, list) else 'no'} prompt log-probs for {tail.stop} tokens",
                    retryable=False,
                )
            scored = values[tail]
            if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in scored):
                raise malformed("choices[0].logprobs.token_logprobs holds a value that is not a number")
            return [float(v) for v in scored]

        try:
            logprobs = await self._with_retries(label, send)
        except EngineError as err:
            status = getattr(err.__cause__, "status", None)
            if status is not None and status < 500:
                raise EngineError(
                    f"{err}\n(the server cannot score: scoring needs completions with echo + logprobs)"
                ) from err
            raise
        return TokenScores(tokens=[self.tokenizer.decode([t]) for t in response_ids], logprobs=logprobs, offsets=offsets)


def _sampling_fields(n: int, sampling: SamplingParams) -> dict[str, Any]:
    fields = {
        "n": n,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
        "seed": sampling.seed,
    }
    if sampling.stop:
        fields["stop"] = list(sampling.stop)
    return fields


def _choices(payload: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """The answer's `n` choices in index order; fewer, more or repeated ones make the answer malformed."""
    choices = payload.get("choices")
    if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
        raise malformed("no list of choices")
    indices = [c.get("index", k) for k, c in enumerate(choices)]
    if not all(type(i) is int for i in indices) or sorted(indices) != list(range(n)):
        raise malformed(f"{len(choices)} choice(s) with indices {indices[:8]} for n={n}")
    return [c for _, c in sorted(zip(indices, choices, strict=True), key=lambda pair: pair[0])]


def _text(holder: Any, key: str, name: str) -> str:
    """A text field of a choice (`name` says where): a string, null read as empty; anything else is malformed."""
    if not isinstance(holder, dict):
        raise malformed(f"{name.rsplit('.', 1)[0]} is {type(holder).__name__}, not an object")
    value = holder.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise malformed(f"{name} is {type(value).__name__}, not a string")
    return value


def _finish(choice: dict[str, Any]) -> str:
    return "length" if choice.get("finish_reason") == "length" else "stop"
