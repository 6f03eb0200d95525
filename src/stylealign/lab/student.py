"""The lab's student: a tiny Qwen2 causal LM pretrained on CPU on its own native writing style.

Recipe (`RECIPES["student"]`): a byte-level BPE tokenizer trained with
`tokenizers` on lab text, digits split into single tokens, with a chat
template and an EOS token; a 3-layer Qwen2 (d=96, ~0.4M parameters) trained
from scratch with AdamW for 1250 steps of 32 `pretrain`-split problems (never
the train or test splits): warmup, a constant learning rate, then a linear
decay to zero over the last 40% of the steps. Loss is on the response only,
inputs tokenized exactly as every engine tokenizes them. That is about 4.5
minutes on 2 idle cores (< 1 GiB RAM).

The step budget, not injected noise, is what makes the student fallible. It
learns the format and the reasoning pattern within a few hundred steps, but
copying the right number for the right person out of the question comes late,
in a sharp transition (greedy test accuracy at a constant learning rate: 3%
at step 1000, 16% at 1500, 34% at 2000, 49% at 2500). The final decay lands the
1250-step student inside that transition: it solves about a third of the test
problems greedily, about half with 8 samples, and its errors are wrong
look-ups and wrong sums (`benchmarks/lab.py`).

The result is cached under `cache_dir()/lab/<name>-<recipe hash>` and written
atomically (built in a temporary folder, then renamed), so a second call is
instant and a killed build leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stylealign.engines.base import Request, encode_prompt_response
from stylealign.lab.styles import oracle_solution, student_solution
from stylealign.lab.world import generate, load_lab_problems
from stylealign.records import content_id

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIALS = ["<unk>", "<|end|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>"]

RECIPES: dict[str, dict[str, Any]] = {
    "student": {
        "world_seed": 0,
        "problems": 6000,
        "vocab_size": 600,
        "hidden_size": 96,
        "intermediate_size": 288,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "steps": 1250,
        "batch_size": 32,
        "learning_rate": 8e-3,
        "warmup_steps": 20,
        "decay_fraction": 0.4,
        "weight_decay": 0.01,
        "seed": 0,
    }
}


def recipe_hash(recipe: dict[str, Any]) -> str:
    return content_id(recipe, "v2")[:10]


def student_dir(name: str = "student") -> Path:
    from stylealign.models import cache_dir

    if name not in RECIPES:
        raise ValueError(f"unknown lab model {name!r}; choose from {sorted(RECIPES)}")
    return cache_dir() / "lab" / f"{name}-{recipe_hash(RECIPES[name])}"


def ensure_student(name: str = "student", log: Callable[[str], None] | None = None) -> Path:
    """The student's model directory, pretrained on first use and cached."""
    final = student_dir(name)
    if (final / "recipe.json").is_file():
        return final
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        pretrain(tmp, RECIPES[name], log=log)
        try:
            os.replace(tmp, final)
        except OSError:
            if not (final / "recipe.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _tokenizer(corpus: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<|end|>", pad_token="<|pad|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def encode_examples(tokenizer, pairs: list[tuple[str, str]]) -> list[tuple[list[int], int]]:
    """(token ids, prompt length) per example: the rendered prompt, the solution, EOS (the engines' tokenization)."""
    examples = []
    for question, solution in pairs:
        ids, prompt_len = encode_prompt_response(tokenizer, Request.from_prompt(question), solution)
        examples.append((ids + [tokenizer.eos_token_id], prompt_len))
    return examples


def _batches(examples: list[tuple[list[int], int]], size: int, rng: random.Random):
    """Endless shuffled batches; each group of 8 batches is cut from length-sorted examples to spare padding."""
    while True:
        order = rng.sample(range(len(examples)), len(examples))
        for start in range(0, len(order) - 8 * size + 1, 8 * size):
            group = sorted(order[start : start + 8 * size], key=lambda i: len(examples[i][0]))
            chunks = [group[i : i + size] for i in range(0, len(group), size)]
            rng.shuffle(chunks)
            for chunk in chunks:
                yield [examples[i] for i in chunk]


def collate(batch: list[tuple[list[int], int]], pad_token_id: int):
    """(input_ids, attention_mask, labels) tensors for a batch of (token ids, prompt length): right padding,
    loss on the response only."""
    import torch

    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_token_id)
    labels = torch.full((len(batch), width), -100)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (ids, prompt_len) in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, prompt_len : len(ids)] = torch.tensor(ids[prompt_len:])
        mask[row, : len(ids)] = 1
    return input_ids, mask, labels


def pretrain(
    out: Path,
    recipe: dict[str, Any],
    log: Callable[[str], None] | None = None,
    on_step: Callable[[int, Any, Any], None] | None = None,
) -> dict[str, Any]:
    """Train the student from scratch into `out` (save_pretrained) and return what it took.

    The learning rate is constant after warmup until the final decay, so before the decay the model after
    step s is the model an s-step recipe without decay builds: `on_step(step, model, tokenizer)` lets recipe
    tuning read the whole curve.
    """
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    log = log or (lambda _msg: None)
    start, cpu_start = time.perf_counter(), time.process_time()
    torch.set_num_threads(recipe.get("threads") or min(2, os.cpu_count() or 1))
    torch.manual_seed(recipe["seed"])
    rng = random.Random(recipe["seed"])
    problems = load_lab_problems("pretrain", limit=recipe["problems"], seed=recipe["world_seed"])
    pairs = [(p.question, student_solution(p.metadata)) for p in problems]
    oracle_text = [oracle_solution(generate(recipe["world_seed"], -1 - i), str(i)) for i in range(200)]
    tokenizer = _tokenizer([q for q, _ in pairs] + [s for _, s in pairs] + oracle_text, recipe["vocab_size"])
    examples = encode_examples(tokenizer, pairs)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=recipe["hidden_size"],
        intermediate_size=recipe["intermediate_size"],
        num_hidden_layers=recipe["num_hidden_layers"],
        num_attention_heads=recipe["num_attention_heads"],
        num_key_value_heads=recipe["num_key_value_heads"],
        max_position_embeddings=1024,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    model = Qwen2ForCausalLM(config)
    model.train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=recipe["learning_rate"], weight_decay=recipe["weight_decay"], betas=(0.9, 0.98)
    )
    steps, warmup = recipe["steps"], recipe["warmup_steps"]
    decay_start = steps - int(steps * recipe.get("decay_fraction", 0.0))

    def lr_at(step: int) -> float:
        """Linear warmup, constant, then a linear decay to zero over the last `decay_fraction` of the steps."""
        return min((step + 1) / warmup, 1.0, (steps - step) / max(steps - decay_start, 1))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    batches = _batches(examples, recipe["batch_size"], rng)
    for step in range(steps):
        input_ids, mask, labels = collate(next(batches), tokenizer.pad_token_id)
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if on_step is not None:
            on_step(step + 1, model, tokenizer)
        if step % 50 == 0 or step == steps - 1:
            log(f"step {step}/{steps} loss {loss.item():.4f} ({time.perf_counter() - start:.0f}s)")
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    info = {"recipe": recipe, "parameters": sum(p.numel() for p in model.parameters()),
            "seconds": round(time.perf_counter() - start, 1),
            "cpu_seconds": round(time.process_time() - cpu_start, 1), "final_loss": round(loss.item(), 4)}  # fmt: skip
    (out / "recipe.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    return info
