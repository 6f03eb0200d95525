"""The student's GPU paths at the paper's model size, in one run of a few minutes (issue 16).

A Qwen2 with Qwen2.5-Math-1.5B's shape (28 layers, d=1536, 12/2 heads, vocab 151,936) and random weights,
in bf16, with a tokenizer trained here (no hub). It measures, through stylealign's own code paths:
  sampling  the `hf` engine, 64 prompts x 8 samples x 512 new tokens at T=1, against raw `model.generate`
            with the same batch (do_sample, no top-k) in the same run: `sampling_ratio` = engine / raw tokens/s
  scoring   `HFEngine.token_logprobs` on 512 sequences of 1,024 tokens against a raw forward +
            log_softmax + gather with the same batches: `scoring_ratio`
  training  `stylealign.training.fine_tune` with the DFT loss, one optimizer step at batch 8 x 1,024 tokens,
            full fine-tuning in bf16: step seconds and peak GPU memory
Random weights almost never emit EOS, so every sample runs the full 512 tokens on both sides.
Run: python benchmarks/gpu_check.py [--out DIR]   (`--tiny` runs the same code on CPU in seconds)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from engines import DATA, measure, tokens_until_eos, train_tokenizer

from stylealign.config import BudgetConfig, TrainingConfig
from stylealign.engines import Request, SamplingParams, render_prompt
from stylealign.engines.hf import HFEngine
from stylealign.training import TRAINING_INFO, fine_tune

QWEN25_MATH_15B = dict(
    hidden_size=1536,
    intermediate_size=8960,
    num_hidden_layers=28,
    num_attention_heads=12,
    num_key_value_heads=2,
    vocab_size=151936,
    max_position_embeddings=4096,
    rope_theta=10000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
)
TINY = dict(QWEN25_MATH_15B, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)


@dataclass
class Shape:
    prompts: int = 64
    samples: int = 8
    new_tokens: int = 512
    score_sequences: int = 512
    score_length: int = 1024
    score_batch: int = 16
    train_batch: int = 8
    train_length: int = 1024


TINY_SHAPE = Shape(prompts=4, samples=2, new_tokens=16, score_sequences=8, score_length=64, score_batch=4,
                   train_batch=2, train_length=64)


def build_model(out: Path, rows: list[dict], shape: dict, device: torch.device) -> Path:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = train_tokenizer(rows)
    config = Qwen2Config(**shape, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    print(f"model: {sum(p.numel() for p in model.parameters()) / 1e9:.3f}B parameters, bf16, "
          f"vocab {config.vocab_size} (tokenizer {len(tokenizer)})", flush=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    del model
    return out


def raw_sample(engine: HFEngine, prompts: list[str], samples: int, new_tokens: int) -> int:
    """What one writes by hand: one left-padded batch, `num_return_sequences`, plain multinomial sampling."""
    batch = engine.tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left").to(engine.device)
    with torch.inference_mode():
        out = engine.model.generate(
            **batch,
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            num_return_sequences=samples,
            max_new_tokens=new_tokens,
            pad_token_id=engine.pad_id,
            eos_token_id=engine.eos_ids,
        )
    return tokens_until_eos(out[:, batch["input_ids"].shape[1]:].tolist(), engine.eos_ids)


def engine_sample(engine: HFEngine, requests: list[Request], samples: int, new_tokens: int) -> int:
    sampling = SamplingParams(temperature=1.0, max_tokens=new_tokens, seed=0)
    return sum(c.num_tokens for row in engine.generate(requests, samples, sampling) for c in row)


def raw_score(engine: HFEngine, sequences: list[list[int]], batch_size: int) -> int:
    scored = 0
    for start in range(0, len(sequences), batch_size):
        ids = torch.tensor(sequences[start:start + batch_size], device=engine.device)
        with torch.inference_mode():
            logprobs = torch.log_softmax(engine.model(input_ids=ids).logits.float(), dim=-1)
            picked = logprobs[:, :-1].gather(2, ids[:, 1:, None]).squeeze(2)
        scored += sum(len(row) for row in picked.tolist())
    return scored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model and small shapes: check the script on CPU")
    parser.add_argument("--rounds", type=int, default=2, help="alternating timed rounds; the best of each is kept")
    parser.add_argument("--out", type=Path, default=None, help="write gpu_check.json here")
    args = parser.parse_args()
    shape, model_shape = (TINY_SHAPE, TINY) if args.tiny else (Shape(), QWEN25_MATH_15B)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    result: dict = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                    "torch": torch.__version__, "shape": asdict(shape)}
    rows = [json.loads(line) for line in DATA.read_text().splitlines()[:2000]]

    def save() -> None:
        """Written after every phase, so a failure in a later one keeps the earlier numbers."""
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "gpu_check.json").write_text(json.dumps(result, indent=2))

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        model_dir = build_model(Path(tmp) / "model", rows, model_shape, device)
        print(f"built and saved in {time.perf_counter() - start:.1f} s", flush=True)
        engine = HFEngine(str(model_dir), device=str(device), dtype="bfloat16",
                          batch_size=shape.prompts * shape.samples, progress=False)
        requests = [Request.from_prompt(r["question"]) for r in rows[: shape.prompts]]
        prompts = [render_prompt(engine.tokenizer, r) for r in requests]

        print("sampling (warm-up, then alternating rounds)", flush=True)
        engine_sample(engine, requests[:2], 2, 4)
        raw_sample(engine, prompts[:2], 2, 4)
        rates = measure(args.rounds, {
            "raw": lambda: raw_sample(engine, prompts, shape.samples, shape.new_tokens),
            "engine": lambda: engine_sample(engine, requests, shape.samples, shape.new_tokens),
        })
        result["sampling_tokens_per_s"] = {k: round(v, 1) for k, v in rates.items()}
        result["sampling_ratio"] = round(rates["engine"] / rates["raw"], 3)
        save()

        print("scoring", flush=True)
        generator = torch.Generator().manual_seed(0)
        vocab = len(engine.tokenizer)
        sequences = torch.randint(0, vocab, (shape.score_sequences, shape.score_length), generator=generator).tolist()
        engine.batch_size = shape.score_batch
        score_rates = measure(args.rounds, {
            "raw": lambda: raw_score(engine, sequences, shape.score_batch),
            "engine": lambda: sum(map(len, engine.token_logprobs(sequences, [1] * len(sequences)))),
        })
        result["scoring_tokens_per_s"] = {k: round(v, 1) for k, v in score_rates.items()}
        result["scoring_ratio"] = round(score_rates["engine"] / score_rates["raw"], 3)
        save()
        engine.close()

        print("training: one DFT step through fine_tune", flush=True)
        text = "\n".join(r["answer"] for r in rows[:400])
        examples = [(Request.from_prompt(rows[i]["question"]), text[i * 50:i * 50 + 8000]) for i in range(shape.train_batch)]
        cfg = TrainingConfig(loss="dft", budget=BudgetConfig(steps=1), batch_size=shape.train_batch,
                             max_length=shape.train_length, learning_rate=5e-5, bf16=device.type == "cuda")
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        trained = fine_tune(model_dir, examples, cfg, Path(tmp) / "train")
        info = json.loads((trained / TRAINING_INFO).read_text())
        result["training"] = {
            "loss": cfg.loss,
            "batch": shape.train_batch,
            "tokens_per_sequence": shape.train_length,
            "trained_tokens": info["tokens"],
            "step_seconds": info["seconds"],
            "fine_tune_seconds_with_load_and_save": round(time.perf_counter() - start, 2),
            "first_loss": info["first_loss"],
            "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
            if device.type == "cuda" else None,
        }

    save()
    print(json.dumps(result, indent=2))
    print(f"sampling_ratio={result['sampling_ratio']}")
    print(f"scoring_ratio={result['scoring_ratio']}")
    print(f"train_step_seconds={result['training']['step_seconds']}")
    print(f"train_peak_gpu_memory_gib={result['training']['peak_gpu_memory_gib']}")


if __name__ == "__main__":
    main()
