"""The one engine protocol every stage talks to, and the one chat-template rule.

Streams, metrics, evaluation and training never know which engine runs: they
build `Request`s and call `generate` or `score`. A request is a chat
(`messages`) plus an optional `prefix`, a partial assistant response the
model continues (SAR repair resumes the student after an oracle-fixed step).

`render_prompt` is the single place a request becomes model input text. The
hf engine, the loopback server, scoring and training all call it, so the
student sees byte-identical prompts whether it is sampled, scored or trained.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from stylealign.config import EvaluationConfig, SamplingConfig


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 512
    stop: tuple[str, ...] = ()
    seed: int = 0

    @classmethod
    def from_config(
        cls, config: SamplingConfig | EvaluationConfig, *, seed: int, **overrides: Any
    ) -> SamplingParams:
        """The one way a config's sampling settings become `SamplingParams`: `config`'s temperature, top_p and
        max_tokens (the experiment's `sampling`, or `evaluation` for the test sets), drawn with `seed`.
        `overrides` replace single fields (an oracle's temperature, a judge's max_tokens); an override of None
        keeps `config`'s value, so an unset optional setting (`streams.oracle_temperature: null`) passes as is."""
        values = {"temperature": config.temperature, "top_p": config.top_p, "max_tokens": config.max_tokens, "seed": seed}
        values.update((name, value) for name, value in overrides.items() if value is not None)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (every sample carries one: `asdict`'s deep copy would cost a tenth of the sample stage)."""
        return {**{name: getattr(self, name) for name in _SAMPLING_FIELDS}, "stop": list(self.stop)}


_SAMPLING_FIELDS = tuple(f.name for f in fields(SamplingParams))


@dataclass(frozen=True)
class Request:
    """A chat to answer, optionally with the start of the answer already written."""

    messages: tuple[dict[str, str], ...]
    prefix: str = ""
    id: str = ""
    template: str = ""
    """The name of the prompt template that rendered it: how a programmatic oracle knows the operation asked."""

    @classmethod
    def from_prompt(
        cls, user: str, system: str | None = None, prefix: str = "", id: str = "", template: str = ""
    ) -> Request:
        messages: list[dict[str, str]] = []
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": user})
        return cls(messages=tuple(messages), prefix=prefix, id=id, template=template)


@dataclass
class Completion:
    """Generated text only: never the prompt, never the request's prefix."""

    text: str
    finish_reason: str = "stop"
    num_tokens: int = 0


@dataclass
class TokenScores:
    """Teacher-forced log-probabilities of a response's tokens given its prompt.

    `offsets[i]` is the (start, end) character span of token i in the response
    text, so per-step and per-quarter costs can be computed on any engine.
    `ranks[i]` is token i's rank in the student's next-token distribution (1 = its
    most likely token; vLLM's definition: the number of vocabulary tokens whose
    log-prob is at least token i's), or None where the engine cannot see the
    distribution (an OpenAI-compatible server): rank predictors are then unavailable.
    """

    tokens: list[str] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    offsets: list[tuple[int, int]] = field(default_factory=list)
    ranks: list[int] | None = None

    @property
    def nll(self) -> float:
        return -sum(self.logprobs) / max(len(self.logprobs), 1)


class EngineError(RuntimeError):
    """A model backend failed in a way a retry will not fix; the message names the request."""


@runtime_checkable
class Engine(Protocol):
    name: str

    def generate(self, requests: Sequence[Request], n: int, sampling: SamplingParams) -> list[list[Completion]]:
        """`n` completions per request, in request order; reproducible for a fixed `sampling.seed`."""
        ...

    def score(self, requests: Sequence[Request], responses: Sequence[str]) -> list[TokenScores]:
        """Log-probability of every token of `responses[i]` given `requests[i]` (prefix included in the prompt)."""
        ...

    def close(self) -> None: ...


def generate_each(
    engine: Engine, requests: Sequence[Request], n: int, sampling: SamplingParams
) -> list[list[Completion] | Exception]:
    """One result per request: its completions, or the error that request alone met.

    Engines that fail per request (the openai engine) provide `generate_each`
    themselves and send each request once; for the others a failed batch is
    re-sent request by request, so only the bad request fails.
    """
    own = getattr(engine, "generate_each", None)
    if own is not None:
        return list(own(requests, n, sampling))
    try:
        return list(engine.generate(requests, n, sampling))
    except Exception as err:  # noqa: BLE001 - any backend failure is returned, never fatal
        if len(requests) == 1:
            return [err]
    return [generate_each(engine, [request], n, sampling)[0] for request in requests]


REDACTED = "[REDACTED]"
_SECRET_FIELDS = (
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(?:bearer\s+)?[^\s\"',}]+"),
    re.compile(r"(?i)(bearer\s+)[^\s\"',}]+"),
    re.compile(r"(?i)([\"']?(?:x-)?api[_-]?key[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"),
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every value of `secrets`, `Authorization` header, bearer token and `api_key` field replaced.

    Applied to anything kept from an HTTP exchange (error bodies, unusable
    answers), since a server may echo the request's headers back.
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    for pattern in _SECRET_FIELDS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text


def check_context(label: str, prompt_tokens: int, max_tokens: int, context: int | None) -> None:
    """Refuse a prompt that, with `max_tokens` to generate, does not fit the model's `context` positions."""
    if context is not None and prompt_tokens + max_tokens > context:
        raise EngineError(
            f"{label}: prompt of {prompt_tokens} tokens + max_tokens {max_tokens} exceeds the model's "
            f"context of {context} tokens"
        )


PLAIN_TEMPLATE = "{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}\n\n{% elif m['role'] == 'user' %}Question: {{ m['content'] }}\n{% endif %}{% endfor %}Answer: "
"""Prompt for base models without a chat template: system text, then `Question: ...` / `Answer: `."""


def render_prompt(tokenizer: Any, request: Request) -> str:
    """Model input text for `request`: the chat template with a generation prompt, then the prefix.

    Tokenizers without a chat template get `PLAIN_TEMPLATE`. The prefix is
    appended verbatim, so the model continues exactly where it stops.
    """
    messages = [dict(m) for m in request.messages]
    template = getattr(tokenizer, "chat_template", None) or PLAIN_TEMPLATE
    text = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False, add_generation_prompt=True)
    return text + request.prefix


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    """Token ids of rendered prompt text; the tokenizer's special tokens (BOS) are added unless the text has them."""
    bos = getattr(tokenizer, "bos_token", None)
    add_special = not (bos and text.startswith(bos))
    return list(tokenizer(text, add_special_tokens=add_special)["input_ids"])


def encode_response(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of a response (no special tokens) and each token's (start, end) character span in `text`."""
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    offsets, start = [], 0
    for i in range(len(ids)):
        end = len(tokenizer.decode(ids[: i + 1]))
        offsets.append((start, end))
        start = end
    return ids, offsets


def encode_prompt_response(tokenizer: Any, request: Request, response: str) -> tuple[list[int], int]:
    """The one tokenization rule for a (request, response) pair: sampling, scoring and training all use it.

    The prompt is `render_prompt(tokenizer, request)` tokenized on its own
    (`encode_prompt`), the response is tokenized separately without special
    tokens (`encode_response`), and the ids are concatenated. Returns the ids
    and the number of prompt tokens; no EOS is appended (training adds it if
    it wants the model to learn to stop).
    """
    prompt_ids = encode_prompt(tokenizer, render_prompt(tokenizer, request))
    response_ids, _ = encode_response(tokenizer, response)
    return prompt_ids + response_ids, len(prompt_ids)
