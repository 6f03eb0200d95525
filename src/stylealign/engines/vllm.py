"""In-process vLLM for GPU users (`pip install 'stylealign[vllm]'`); imported only when a config selects it.

It renders and tokenizes exactly like the hf engine (`render_prompt`,
`encode_prompt_response` rules), sends token ids (TokensPrompt dicts) and
scores with vLLM's `prompt_logprobs` (None for the first prompt token, then
`{token_id: Logprob}` per position; each `Logprob` carries the token's `rank`).
vLLM does not install on the machines this project is developed on:
tests/test_vllm_contract.py checks this mapping against a stand-in written
from vLLM's documented API (0.10.x), not vLLM itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stylealign.config import EngineConfig
from stylealign.engines.base import (
    Completion,
    EngineError,
    Request,
    SamplingParams,
    TokenScores,
    encode_prompt,
    encode_response,
    render_prompt,
)
from stylealign.models import resolve_model


def import_vllm() -> Any:
    try:
        import vllm
    except ImportError as err:
        raise EngineError(
            "engine type 'vllm' needs vLLM, which is not installed: pip install 'stylealign[vllm]' "
            "(GPU machines only), or use engine type 'hf' or 'openai'"
        ) from err
    return vllm


class VLLMEngine:
    def __init__(
        self,
        model: str,
        *,
        dtype: str = "auto",
        max_model_len: int | None = None,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.85,
        name: str | None = None,
    ):
        self._vllm = import_vllm()
        self.llm = self._vllm.LLM(
            model=resolve_model(model),
            dtype=dtype,
            max_model_len=max_model_len,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.name = name or model

    @classmethod
    def from_config(cls, cfg: EngineConfig) -> VLLMEngine:
        if not cfg.model:
            raise ValueError("engine.model is required for the vllm engine")
        return cls(
            cfg.model,
            dtype=cfg.dtype,
            max_model_len=cfg.max_model_len,
            tensor_parallel_size=cfg.tensor_parallel_size,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
        )

    def generate(
        self, requests: Sequence[Request], n: int, sampling: SamplingParams
    ) -> list[list[Completion]]:
        params = self._vllm.SamplingParams(
            n=n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
            stop=list(sampling.stop),
            seed=sampling.seed,
        )
        prompts = [
            {"prompt_token_ids": encode_prompt(self.tokenizer, render_prompt(self.tokenizer, r))}
            for r in requests
        ]
        outputs = self.llm.generate(prompts, params)
        return [
            [
                Completion(
                    text=c.text,
                    finish_reason="length" if c.finish_reason == "length" else "stop",
                    num_tokens=len(c.token_ids),
                )
                for c in out.outputs
            ]
            for out in outputs
        ]

    def score(self, requests: Sequence[Request], responses: Sequence[str]) -> list[TokenScores]:
        if len(requests) != len(responses):
            raise ValueError(f"score: {len(requests)} requests but {len(responses)} responses")
        rows = []
        for request, response in zip(requests, responses, strict=True):
            prompt_ids = encode_prompt(self.tokenizer, render_prompt(self.tokenizer, request))
            rows.append((prompt_ids, *encode_response(self.tokenizer, response)))
        params = self._vllm.SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0)
        outputs = self.llm.generate([{"prompt_token_ids": p + ids} for p, ids, _ in rows], params)
        scores = []
        for (prompt_ids, ids, offsets), out in zip(rows, outputs, strict=True):
            entries = [pos[t] for pos, t in zip(out.prompt_logprobs[len(prompt_ids) :], ids, strict=True)]
            ranks = [entry.rank for entry in entries]
            scores.append(
                TokenScores(
                    tokens=[self.tokenizer.decode([t]) for t in ids],
                    logprobs=[entry.logprob for entry in entries],
                    offsets=offsets,
                    ranks=None if None in ranks else ranks,
                )
            )
        return scores

    def close(self) -> None:
        del self.llm
