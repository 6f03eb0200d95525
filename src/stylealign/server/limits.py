"""What one request may ask for (issue #37): more is refused with 400 before any work, never queued."""

from __future__ import annotations

from dataclasses import dataclass

from stylealign.engines.base import SamplingParams
from stylealign.server.protocol import BadRequest, SamplingBody


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


def check_size(limits: ServerLimits, body: SamplingBody, sampling: SamplingParams, prompts: int) -> None:
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


def check_prompts(limits: ServerLimits, prompt_tokens: list[int]) -> None:
    """Each prompt's token count against `max_prompt_tokens`."""
    for i, count in enumerate(prompt_tokens):
        if count > limits.max_prompt_tokens:
            raise BadRequest(
                f"prompt {i} has {count} tokens, over this server's limit of {limits.max_prompt_tokens}", "prompt"
            )
