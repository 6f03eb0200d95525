"""A stand-in for the part of vLLM's offline API that stylealign's vllm engine uses, for its contract test.

Written from vLLM's documentation (0.10.x: `vllm.LLM`, `vllm.SamplingParams`, `vllm.outputs.RequestOutput`,
`vllm.outputs.CompletionOutput`, `vllm.logprobs.Logprob`), not from its code. It runs a small Hugging Face
causal LM on the CPU so that the logprobs it returns are real ones. It is put on `sys.path` only inside
tests/test_vllm_contract.py; nothing else can import it. What it mirrors:

- `LLM(model=..., dtype=..., max_model_len=..., tensor_parallel_size=..., gpu_memory_utilization=...)`,
  `LLM.get_tokenizer()`, `LLM.generate(prompts, sampling_params)` with prompts given as token ids
  (`{"prompt_token_ids": [...]}`, a TokensPrompt) and one RequestOutput per prompt, in order;
- `SamplingParams` keyword-only, unknown keywords rejected (vLLM's is a msgspec struct);
- `RequestOutput.outputs[i]` (`CompletionOutput`: `index`, `text`, `token_ids`, `finish_reason` "stop" or
  "length", `stop_reason`), `RequestOutput.prompt_logprobs`: None unless asked for, else a list with one
  entry per prompt token, None for the first, then `dict[token_id, Logprob(logprob, rank, decoded_token)]`
  holding the prompt's own token plus the top `prompt_logprobs` tokens, each token's `rank` counted as vLLM's
  sampler counts it (the vocabulary tokens whose log-prob is at least the token's: 1 for the most likely);
- stop strings end a completion and are not part of its text. `top_p` is recorded, not applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__version__ = "0.10.2"  # the documentation this stand-in follows


@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None = None
    logprobs: Any = None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    prompt_logprobs: list[dict[int, Logprob] | None] | None
    outputs: list[CompletionOutput]
    finished: bool = True


@dataclass
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int | None = 16
    stop: list[str] | None = None
    seed: int | None = None
    logprobs: int | None = None
    prompt_logprobs: int | None = None


@dataclass
class _Call:
    prompts: list[Any]
    params: SamplingParams


class LLM:
    """Records every `generate` call (`calls`) and its construction arguments (`init_args`) for the test."""

    def __init__(
        self,
        model: str,
        *,
        tokenizer: str | None = None,
        dtype: str = "auto",
        max_model_len: int | None = None,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        seed: int | None = 0,
        trust_remote_code: bool = False,
    ):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.init_args = {
            "model": model,
            "dtype": dtype,
            "max_model_len": max_model_len,
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
        }
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer or model, trust_remote_code=trust_remote_code)
        self.model = AutoModelForCausalLM.from_pretrained(model, trust_remote_code=trust_remote_code).eval()
        self.calls: list[_Call] = []

    def get_tokenizer(self) -> Any:
        return self.tokenizer

    def generate(
        self, prompts: Any, sampling_params: SamplingParams | None = None, use_tqdm: bool = True
    ) -> list[RequestOutput]:
        params = sampling_params or SamplingParams()
        prompts = prompts if isinstance(prompts, list) else [prompts]
        self.calls.append(_Call(prompts, params))
        outputs = []
        for i, prompt in enumerate(prompts):
            if isinstance(prompt, str):
                ids = list(self.tokenizer(prompt)["input_ids"])
            elif isinstance(prompt, dict) and set(prompt) <= {"prompt_token_ids", "prompt"}:
                ids = list(prompt["prompt_token_ids"])
            else:
                raise TypeError(f"unsupported prompt {type(prompt).__name__}: {prompt!r:.80}")
            outputs.append(
                RequestOutput(
                    request_id=str(i),
                    prompt=prompt if isinstance(prompt, str) else None,
                    prompt_token_ids=ids,
                    prompt_logprobs=None if params.prompt_logprobs is None else self._prompt_logprobs(ids, params),
                    outputs=[self._sample(ids, params, j) for j in range(params.n)],
                )
            )
        return outputs

    def _prompt_logprobs(self, ids: list[int], params: SamplingParams) -> list[dict[int, Logprob] | None]:
        import torch

        with torch.no_grad():
            logprobs = self.model(torch.tensor([ids])).logits[0].float().log_softmax(-1)
        entries: list[dict[int, Logprob] | None] = [None]
        for pos in range(1, len(ids)):
            row = logprobs[pos - 1]
            order = row.argsort(descending=True).tolist()
            wanted = [ids[pos], *order[: params.prompt_logprobs]]
            entries.append(
                {t: Logprob(float(row[t]), int((row >= row[t]).sum()), self.tokenizer.decode([t])) for t in wanted}
            )
        return entries

    def _sample(self, ids: list[int], params: SamplingParams, index: int) -> CompletionOutput:
        import torch

        generator = torch.Generator().manual_seed((params.seed or 0) * 1000 + index)
        out: list[int] = []
        finish, text = "length", ""
        with torch.no_grad():
            for _ in range(params.max_tokens or 16):
                logits = self.model(torch.tensor([ids + out])).logits[0, -1].float()
                if params.temperature == 0:
                    token = int(logits.argmax())
                else:
                    probs = (logits / params.temperature).softmax(-1)
                    token = int(torch.multinomial(probs, 1, generator=generator))
                if token == self.tokenizer.eos_token_id:
                    finish = "stop"
                    break
                out.append(token)
                text = self.tokenizer.decode(out)
                hit = next((s for s in params.stop or [] if s in text), None)
                if hit is not None:
                    text, finish = text[: text.index(hit)], "stop"
                    break
        return CompletionOutput(index=index, text=text, token_ids=out, finish_reason=finish)
