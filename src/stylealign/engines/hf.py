"""transformers engine: batched sampling with a KV cache and left padding, length-bucketed scoring, CPU or CUDA.

Sampling is its own decode loop rather than `model.generate`, so a row that has ended leaves the batch:
a batch then costs the tokens its rows write, not its longest row times its size.

Sampling draws every row's tokens from its own generator, seeded from
(seed, prompt tokens, sample index), so a sample depends on its request and
seed only, never on which other requests share its batch: the loopback
server, the Ray engine and a direct call all return the same samples.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

from stylealign.config import EngineConfig
from stylealign.engines.base import (
    Completion,
    EngineError,
    Request,
    SamplingParams,
    TokenScores,
    check_context,
    encode_prompt,
    encode_response,
    render_prompt,
)
from stylealign.models import resolve_model
from stylealign.progress import library_bars, quiet_loading

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DETOKENIZE_CONTEXT = 4
"""Prompt tokens decoded with the new ones, so tokenizers that strip a leading space (SentencePiece) keep it."""


def _pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose auto or one of {sorted(DTYPES)}")
    return DTYPES[dtype]


def row_seed(seed: int, prompt_ids: Sequence[int], index: int) -> int:
    """A 63-bit seed for one sample: a function of the request's tokens, the user's seed and the sample index."""
    digest = hashlib.blake2b(
        f"{seed}|{index}|{','.join(map(str, prompt_ids))}".encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "little") >> 1


class RowSampler:
    """Temperature + top-p sampling with one generator per row, so a row's draws do not depend on its batch."""

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float):
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.temperature = temperature
        self.top_p = top_p

    def sample(self, logits: torch.Tensor, rows: Sequence[int]) -> torch.Tensor:
        """One token for each of `rows` (indices into the generators) from its row of `logits`."""
        probs = torch.softmax(logits.float() / self.temperature, dim=-1)
        order = None
        if self.top_p < 1.0:
            probs, order = probs.sort(dim=-1, descending=True)
            probs = probs.masked_fill(probs.cumsum(-1) - probs >= self.top_p, 0.0)
        cdf = probs.cumsum(-1)
        u = torch.stack([torch.rand((), generator=self.generators[r]) for r in rows]).to(cdf.device)
        picked = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1), right=True).clamp_(max=cdf.shape[1] - 1)
        if order is not None:
            picked = order.gather(1, picked)
        return picked.squeeze(1)


def truncate_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """`text` cut before the earliest stop string, and whether one was found."""
    cuts = [i for i in (text.find(s) for s in stops) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


def _label(request: Request, index: int) -> str:
    return f"request {request.id}" if request.id else f"request #{index}"


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class HFEngine:
    """A local causal LM through transformers. `generate`/`score` take requests; `*_text` take rendered prompts."""

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 16,
        name: str | None = None,
        progress: bool = True,
    ):
        path = resolve_model(model)
        self.device = _pick_device(device)
        try:
            with quiet_loading():
                self.tokenizer = AutoTokenizer.from_pretrained(path)
                self.model = AutoModelForCausalLM.from_pretrained(path, dtype=_pick_dtype(dtype, self.device))
        except (OSError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise EngineError(f"model {model!r}: cannot load it (not a model directory or hub id): {first}") from None
        config = self.model.config
        self.context: int | None = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        """Positions the model has; a prompt plus what it may generate must fit (`check_context`)."""
        self.should_stop: Callable[[], bool] | None = None
        """Set by `stylealign serve`: generation ends early once it returns True (every client left)."""
        self.model.to(self.device).eval()
        self.name = name or model
        self.batch_size = batch_size
        self.progress = progress
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            eos_ids.add(self.tokenizer.eos_token_id)
        self.eos_ids = sorted(eos_ids)
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (self.eos_ids[0] if self.eos_ids else 0)
        self._cache_argument = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"

    @classmethod
    def from_config(cls, cfg: EngineConfig) -> HFEngine:
        if not cfg.model:
            raise ValueError("engine.model is required for the hf engine")
        return cls(cfg.model, device=cfg.device, dtype=cfg.dtype, batch_size=cfg.batch_size)

    def generate(
        self, requests: Sequence[Request], n: int, sampling: SamplingParams
    ) -> list[list[Completion]]:
        return self.generate_text(
            [render_prompt(self.tokenizer, r) for r in requests], n, sampling, labels=[_label(r, i) for i, r in enumerate(requests)]
        )

    def score(self, requests: Sequence[Request], responses: Sequence[str]) -> list[TokenScores]:
        return self.score_text(
            [render_prompt(self.tokenizer, r) for r in requests], responses, labels=[_label(r, i) for i, r in enumerate(requests)]
        )

    def close(self) -> None:
        if self.device.type == "cuda":
            self.model.to("cpu")
            torch.cuda.empty_cache()

    def generate_text(
        self,
        prompts: Sequence[str | list[int]],
        n: int,
        sampling: SamplingParams,
        labels: Sequence[str] | None = None,
    ) -> list[list[Completion]]:
        """`n` completions of each raw prompt (text, or token ids as the completions endpoint allows).

        A prompt that cannot fit the model's context with `max_tokens` more is refused, naming it (`labels[i]`).
        """
        encoded = [p if isinstance(p, list) else encode_prompt(self.tokenizer, p) for p in prompts]
        for i, ids in enumerate(encoded):
            check_context(f"{self.name}: {labels[i] if labels else f'prompt #{i}'}", len(ids), sampling.max_tokens, self.context)
        distinct = n if sampling.temperature > 0 else 1
        jobs = sorted(
            ((i, j) for i in range(len(encoded)) for j in range(distinct)), key=lambda ij: len(encoded[ij[0]])
        )
        results: list[list[Completion | None]] = [[None] * distinct for _ in encoded]
        batches = list(_chunks(jobs, self.batch_size))
        for batch in self._bar(batches, "generate"):
            seeds = [row_seed(sampling.seed, encoded[i], j) for i, j in batch]
            for (i, j), completion in zip(
                batch, self._generate_batch([encoded[i] for i, _ in batch], seeds, sampling), strict=True
            ):
                results[i][j] = completion
        return [[Completion(**vars(row[j % distinct])) for j in range(n)] for row in results]

    def score_text(
        self, prompts: Sequence[str], responses: Sequence[str], labels: Sequence[str] | None = None
    ) -> list[TokenScores]:
        """Teacher-forced log-probs and ranks of each response after its raw prompt, tokenized as
        `encode_prompt_response`."""
        if len(prompts) != len(responses):
            raise ValueError(f"score: {len(prompts)} prompts but {len(responses)} responses")
        prompt_ids = [encode_prompt(self.tokenizer, p) for p in prompts]
        encoded = [encode_response(self.tokenizer, r) for r in responses]
        scored = self._teacher_forced(
            [p + ids for p, (ids, _) in zip(prompt_ids, encoded, strict=True)], [len(p) for p in prompt_ids], labels,
            ranks=True,
        )
        return [
            TokenScores(tokens=[self.tokenizer.decode([t]) for t in ids], logprobs=lp, offsets=offsets, ranks=rk)
            for (ids, offsets), (lp, rk) in zip(encoded, scored, strict=True)
        ]

    def token_logprobs(
        self, sequences: Sequence[list[int]], starts: Sequence[int], labels: Sequence[str] | None = None
    ) -> list[list[float]]:
        """log p(seq[k] | seq[:k]) for k >= starts[i], one forward pass per length-bucketed batch."""
        return [lp for lp, _ in self._teacher_forced(sequences, starts, labels, ranks=False)]

    score_chunk_elements = 1 << 24
    """Float32 log-probs normalised at once (64 MiB): a 152K-token vocabulary gives ~110 positions per chunk, so
    scoring never holds a [batch, positions, vocabulary] float32 log-softmax beside the model's logits."""

    @torch.inference_mode()
    def _teacher_forced(
        self, sequences: Sequence[list[int]], starts: Sequence[int], labels: Sequence[str] | None, *, ranks: bool
    ) -> list[tuple[list[float], list[int] | None]]:
        """Per sequence, the log-probs of seq[k] for k >= starts[i] and, with `ranks`, each token's rank."""
        if any(s < 1 for s in starts):
            raise ValueError("token_logprobs: the first token has no context; starts must be >= 1")
        for i, seq in enumerate(sequences):
            check_context(f"{self.name}: {labels[i] if labels else f'sequence #{i}'}", len(seq), 0, self.context)
        results: list[tuple[list[float], list[int] | None]] = [([], [] if ranks else None) for _ in sequences]
        order = sorted(
            (i for i in range(len(sequences)) if len(sequences[i]) > starts[i]),
            key=lambda i: len(sequences[i]),
        )
        for batch in self._bar(list(_chunks(order, self.batch_size)), "score"):
            input_ids, mask = self._left_pad([sequences[i] for i in batch])
            keep = max(len(sequences[i]) - starts[i] for i in batch) + 1
            logits = self.model(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=self._positions(mask),
                logits_to_keep=keep,
            ).logits
            for row, i in enumerate(batch):
                count = len(sequences[i]) - starts[i]
                results[i] = self._target_scores(logits[row, keep - count - 1 : keep - 1], input_ids[row, -count:], ranks)
        return results

    def _target_scores(
        self, logits: torch.Tensor, targets: torch.Tensor, ranks: bool
    ) -> tuple[list[float], list[int] | None]:
        """Each target's log-prob under its row of `logits` and, with `ranks`, its rank as vLLM counts it (the
        tokens whose log-prob is at least the target's), normalising `score_chunk_elements` at a time."""
        step = max(1, self.score_chunk_elements // logits.shape[-1])
        logprobs: list[float] = []
        token_ranks: list[int] | None = [] if ranks else None
        for start in range(0, len(targets), step):
            rows = torch.log_softmax(logits[start : start + step].float(), dim=-1)
            target = rows.gather(1, targets[start : start + step].unsqueeze(1))
            logprobs += target.squeeze(1).tolist()
            if token_ranks is not None:
                token_ranks += (rows >= target).sum(dim=1).tolist()
        return logprobs, token_ranks

    @torch.inference_mode()
    def _generate_batch(
        self, prompts: list[list[int]], seeds: list[int], sampling: SamplingParams
    ) -> list[Completion]:
        """Decode with a KV cache; a row that ends (EOS, a stop string) leaves the batch and the cache."""
        input_ids, mask = self._left_pad(prompts)
        sampler = RowSampler(seeds, sampling.temperature, sampling.top_p) if sampling.temperature > 0 else None
        window = 4 * max((len(stop) for stop in sampling.stop), default=0) + 2
        new: list[list[int]] = [[] for _ in prompts]
        # how each row ended: "eos" (the EOS token counts but is not kept), "stop string", or None (length)
        ended: list[str | None] = [None] * len(prompts)
        rows = list(range(len(prompts)))
        cache = DynamicCache()
        # transformers 5 names the argument `cache` (`past_key_values` is deprecated there), 4.x `past_key_values`
        with_cache = {self._cache_argument: cache, "use_cache": True}
        logits = self.model(
            input_ids=input_ids, attention_mask=mask, position_ids=self._positions(mask), logits_to_keep=1, **with_cache
        ).logits[:, -1, :]
        for step in range(sampling.max_tokens):
            tokens = sampler.sample(logits, rows) if sampler else logits.float().argmax(-1)
            keep = []
            for slot, (row, token) in enumerate(zip(rows, tokens.tolist(), strict=True)):
                if token in self.eos_ids:
                    ended[row] = "eos"
                    continue
                new[row].append(token)
                if sampling.stop:
                    tail = self.tokenizer.decode(new[row][-window:], skip_special_tokens=True)
                    if any(stop in tail for stop in sampling.stop):
                        ended[row] = "stop string"
                        continue
                keep.append(slot)
            if not keep or step == sampling.max_tokens - 1 or (self.should_stop and self.should_stop()):
                break
            if len(keep) < len(rows):
                index = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(index)
                mask, tokens = mask[index], tokens[index]
                rows = [rows[slot] for slot in keep]
            mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
            logits = self.model(
                input_ids=tokens.unsqueeze(1), attention_mask=mask, position_ids=mask.sum(-1, keepdim=True) - 1, **with_cache
            ).logits[:, -1, :]
        completions = []
        for row, ids in enumerate(new):
            count = len(ids) + (ended[row] == "eos")
            text = self._detokenize(prompts[row][-DETOKENIZE_CONTEXT:], ids)
            text, hit = truncate_at_stop(text, sampling.stop)
            finish = "stop" if hit or ended[row] else "length"
            completions.append(Completion(text=text, finish_reason=finish, num_tokens=count))
        return completions

    def _detokenize(self, context: list[int], new: list[int]) -> str:
        head = self.tokenizer.decode(context, skip_special_tokens=True)
        full = self.tokenizer.decode(context + new, skip_special_tokens=True)
        return (
            full[len(head) :]
            if full.startswith(head)
            else self.tokenizer.decode(new, skip_special_tokens=True)
        )

    def _left_pad(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for k, r in enumerate(rows):
            ids[k, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[k, width - len(r) :] = 1
        return ids.to(self.device), mask.to(self.device)

    @staticmethod
    def _positions(mask: torch.Tensor) -> torch.Tensor:
        return (mask.cumsum(-1) - 1).clamp_(min=0)

    def _bar(self, batches: list, what: str) -> Any:
        return tqdm(
            batches,
            desc=f"{self.name}: {what}",
            unit="batch",
            leave=False,
            disable=not self.progress or len(batches) < 2 or not library_bars(),
        )
