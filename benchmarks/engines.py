"""Engine overhead on one model and one prompt set: hf engine vs raw transformers, openai-over-loopback vs hf.

Builds a ~10M-parameter Qwen2 from a config with a tokenizer trained here on
GSM8K text (no downloads), or takes a real model (`--model known:qwen2.5-coder-0.5b-instruct`, with
`--dtype bfloat16` or `float32`), then measures, best of `--repeats` alternating rounds:
  generation_ratio = hf engine generated tokens/s ÷ a raw `model.generate` loop   (target >= 0.95)
  scoring_ratio    = hf engine scored tokens/s ÷ raw forward passes + log_softmax  (target >= 0.9)
  openai_ratio     = openai engine through `stylealign serve`'s app ÷ hf engine direct
and the process's peak resident memory.
Run: .venv/bin/python benchmarks/engines.py [--device cuda] [--hidden 768 --layers 12]  (~100M params)
     .venv/bin/python benchmarks/engines.py --model known:qwen2.5-coder-0.5b-instruct --dtype bfloat16 \
         --prompts 16 --max-tokens 128 --repeats 1      (GSM8K questions with the qwen_math system prompt)
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from stylealign.engines import Request, SamplingParams, render_prompt
from stylealign.engines.hf import HFEngine
from stylealign.models import resolve_model

DATA = Path(__file__).resolve().parents[1] / "src" / "stylealign" / "data" / "gsm8k" / "train.jsonl"
QWEN_MATH_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def train_tokenizer(rows: list[dict], vocab_size: int = 4000) -> Any:
    """A byte-level BPE tokenizer trained here on GSM8K text, with a chat template: no hub download."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<unk>", "<|end|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator((r["question"] + "\n" + r["answer"] for r in rows), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", eos_token="<|end|>", pad_token="<|pad|>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_model(out: Path, rows: list[dict], hidden: int, layers: int) -> Path:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = train_tokenizer(rows)
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 8 // 3,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        num_key_value_heads=max(1, hidden // 192),
        max_position_embeddings=2048,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = Qwen2ForCausalLM(config)
    print(
        f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, vocab {len(tokenizer)}"
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def measure(rounds: int, runs: dict[str, Callable[[], int]]) -> dict[str, float]:
    """Best tokens/s of each run (which returns the tokens it handled); runs alternate so load noise hits all alike."""
    best = dict.fromkeys(runs, 0.0)
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            tokens = run()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            print(f"  {name}: {tokens} tokens in {seconds:.2f} s = {tokens / seconds:,.0f} tokens/s", flush=True)
            best[name] = max(best[name], tokens / seconds)
    return best


def tokens_until_eos(rows: list[list[int]], eos_ids: list[int]) -> int:
    """Generated tokens counted as the engine counts them: up to and including the first EOS."""
    count = 0
    for row in rows:
        ends = [k for k, t in enumerate(row) if t in eos_ids]
        count += ends[0] + 1 if ends else len(row)
    return count


def raw_generate(engine: HFEngine, prompts: list[str], batch_size: int, max_tokens: int) -> int:
    """What a user would write by hand: left-padded batches through `model.generate`, greedy."""
    tokens = 0
    tokenizer, model = engine.tokenizer, engine.model
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(
            prompts[start : start + batch_size], return_tensors="pt", padding=True, padding_side="left"
        )
        with torch.inference_mode():
            out = model.generate(
                **batch.to(engine.device),
                max_new_tokens=max_tokens,
                do_sample=False,
                pad_token_id=engine.pad_id,
            )
        new = out[:, batch["input_ids"].shape[1] :]
        tokens += tokens_until_eos(new.tolist(), engine.eos_ids)
        tokenizer.batch_decode(new, skip_special_tokens=True)
    return tokens


def raw_score(engine: HFEngine, prompts: list[str], responses: list[str], batch_size: int) -> int:
    """Right-padded forward passes over prompt + response, full logits, log_softmax and gather."""
    values: list[list[float]] = []
    tokenizer, model = engine.tokenizer, engine.model
    for start in range(0, len(prompts), batch_size):
        p_ids = [tokenizer(p)["input_ids"] for p in prompts[start : start + batch_size]]
        r_ids = [
            tokenizer(r, add_special_tokens=False)["input_ids"] for r in responses[start : start + batch_size]
        ]
        rows = [p + r for p, r in zip(p_ids, r_ids, strict=True)]
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), engine.pad_id)
        mask = torch.zeros_like(ids)
        for k, row in enumerate(rows):
            ids[k, : len(row)] = torch.tensor(row)
            mask[k, : len(row)] = 1
        ids, mask = ids.to(engine.device), mask.to(engine.device)
        with torch.inference_mode():
            logprobs = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
        picked = logprobs[:, :-1].gather(2, ids[:, 1:, None]).squeeze(2)
        for k, (p, r) in enumerate(zip(p_ids, r_ids, strict=True)):
            values.append(picked[k, len(p) - 1 : len(p) + len(r) - 1].tolist())
    return sum(map(len, values))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default=None, help="a model spec (known:NAME, a directory, ...) instead of the tiny one")
    parser.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 (the hf engine's dtype)")
    args = parser.parse_args()

    from stylealign.engines.openai_api import OpenAIEngine
    from stylealign.server import BackgroundServer, create_app

    rows = [json.loads(line) for line in DATA.read_text().splitlines()[:2000]]
    with tempfile.TemporaryDirectory() as tmp:
        path = args.model or build_model(Path(tmp) / "model", rows, args.hidden, args.layers)
        engine = HFEngine(str(path), device=args.device, dtype=args.dtype, batch_size=args.batch_size, progress=False)
        engine_dir = resolve_model(str(path))
        print(
            f"model: {path}, device: {engine.device}, dtype: {engine.model.dtype}, torch threads: {torch.get_num_threads()}"
        )
        system = QWEN_MATH_SYSTEM if args.model else None
        requests = [Request.from_prompt(r["question"], system=system) for r in rows[: args.prompts]]
        responses = [r["answer"] for r in rows[: args.prompts]]
        prompts = [render_prompt(engine.tokenizer, r) for r in requests]
        greedy = SamplingParams(temperature=0.0, max_tokens=args.max_tokens)

        def engine_generate() -> int:
            return sum(c.num_tokens for row in engine.generate(requests, 1, greedy) for c in row)

        def engine_score() -> int:
            return sum(len(s.logprobs) for s in engine.score(requests, responses))

        raw_generate(engine, prompts[: args.batch_size], args.batch_size, 4)  # warm-up
        generated = engine_generate()
        with BackgroundServer(create_app(engine, "bench")) as url:
            client = OpenAIEngine(url, str(path), concurrency=args.prompts, tokenizer=str(engine_dir))

            def client_generate() -> int:
                client.generate(requests, 1, greedy)
                return generated

            rates = measure(
                args.repeats,
                {
                    "gen_raw": lambda: raw_generate(engine, prompts, args.batch_size, args.max_tokens),
                    "gen_hf": engine_generate,
                    "gen_openai": client_generate,
                    "score_raw": lambda: raw_score(engine, prompts, responses, args.batch_size),
                    "score_hf": engine_score,
                },
            )
        gen_raw, gen_hf, gen_openai = rates["gen_raw"], rates["gen_hf"], rates["gen_openai"]
        score_raw, score_hf = rates["score_raw"], rates["score_hf"]
        print(
            f"generation tokens/s: raw generate {gen_raw:.1f}, hf engine {gen_hf:.1f}, openai loopback {gen_openai:.1f}"
        )
        print(f"scoring tokens/s: raw forward {score_raw:.1f}, hf engine {score_hf:.1f}")
        print(f"generation_ratio={gen_hf / gen_raw:.3f}")
        print(f"scoring_ratio={score_hf / score_raw:.3f}")
        print(f"openai_ratio={gen_openai / gen_hf:.3f}")
        print(f"peak_rss_gb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f}")


if __name__ == "__main__":
    main()
