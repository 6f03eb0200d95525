"""The lab's student: a tiny Qwen2 causal LM pretrained on CPU, mostly on its own native writing style.

Recipe (`RECIPES["student"]`): a byte-level BPE tokenizer trained with
`tokenizers` on lab text with Qwen2's pre-tokenization (digits one by one),
so the tokenizer the engines load is the one the model trained with, plus a
chat template and an EOS token; a 3-layer Qwen2 (d=96, ~0.4M parameters) trained from scratch for
800 steps of 32 `pretrain`-split problems (never the train or test
splits; difficulty levels 1-3 and one level-4 problem in ten: `pretrain_levels`,
see `world.LEVELS`): warmup, a constant learning rate, then a linear decay to
zero over the last 40% of the steps. Muon (`torch.optim.Muon`) updates the
hidden weight matrices and AdamW the embedding and norms: the build has to fit
a first run's minutes, and AdamW alone takes about three times the steps to
the same accuracy (docs/lab.md, "Alternatives tried").
Loss is on the response only, inputs tokenized exactly as every engine
tokenizes them.

The corpus (`pretraining_corpus`) is a mixture like a real model's: mostly
the student's native style with its paraphrases and habits
(`styles.student_solution`), plus `oracle_fraction` oracle-style,
`gold_fraction` reference-style and `edited_fraction` partly teacher-rewritten
(`styles.edited_solution`) solutions of other pretraining problems, so
every token a stream uses has been a training target (`TRAINED_TOKENS`
records which were; `untrained_token_share` checks a stream against it).
Most of the foreign documents are seen under a system message of their own,
so the student's answer to its bare prompt stays its native style.

What makes the student fallible is what it has not learned, never noise at
sampling: copying the right number for the right person out of a longer
question, then doing its arithmetic, come late in training (docs/lab.md), so
accuracy falls with difficulty (level 4 is rare in its corpus, level 5 longer
than anything it pretrained on). Measured greedy accuracy and pretraining time
are in `benchmarks/lab.py` and docs/lab.md. A build with one thread and one
with two give byte-identical weights, so a build does not depend on the
machine's thread count.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stylealign.engines.base import Request, encode_prompt_response
from stylealign.lab.styles import edited_solution, oracle_solution, student_solution
from stylealign.lab.world import PRETRAIN_LEVELS, load_lab_problems
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
        "pretrain_levels": list(PRETRAIN_LEVELS),
        "vocab_size": 600,
        "hidden_size": 96,
        "intermediate_size": 288,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "optimizer": "muon",
        "steps": 800,
        "batch_size": 32,
        "learning_rate": 8e-3,
        "warmup_steps": 20,
        "decay_fraction": 0.4,
        "weight_decay": 0.01,
        "oracle_fraction": 0.015,
        "gold_fraction": 0.06,
        "edited_fraction": 0.0,
        "foreign_plain_fraction": 0.3,
        "seed": 0,
    }
}


def recipe_hash(recipe: dict[str, Any]) -> str:
    return content_id(recipe, "v5")[:10]


def student_dir(name: str = "student") -> Path:
    from stylealign.cache import cache_dir

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
    """A byte-level BPE trained on `corpus` with Qwen2's own pre-tokenization and normalizer.

    transformers loads the tokenizer of a qwen2 model directory as `Qwen2Tokenizer`, which keeps the
    vocabulary and merges but rebuilds the pre-tokenizer; training with any other pre-tokenizer would give
    the engines a tokenization the model never saw (digits and LaTeX split differently).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<|end|>", pad_token="<|pad|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


@dataclass(frozen=True)
class Document:
    """One pretraining example: a question, a solution in some style, and the context it was seen in."""

    question: str
    solution: str
    style: str = "student"
    system: str | None = None

    def request(self) -> Request:
        return Request.from_prompt(self.question, system=self.system)


FOREIGN_CONTEXTS = {
    "oracle": "A worked solution from a textbook.",
    "gold": "A solution with calculator notes.",
    "edited": "A solution a teacher has partly rewritten.",
}
"""The system message a foreign-style document is seen under, when it is not seen under the student's prompt."""


def pretraining_corpus(recipe: dict[str, Any]) -> list[Document]:
    """The student's pretraining mixture over `pretrain`-split problems (never train or test).

    Mostly the student's native style with its paraphrases and habits; `oracle_fraction`,
    `gold_fraction` and `edited_fraction` of the problems are written instead in the oracle's style, the
    dataset's, or the student's partly rewritten by a teacher, so every token a stream can use has been a
    training target. A real model has read polished prose and LaTeX but answers its own prompt in its own way: most foreign documents are seen under a system message of their
    own, and only `foreign_plain_fraction` of them under the bare prompt the student answers.
    The oracle-style documents are textbook solutions in the oracle's words, step by step: the student has
    read polished prose, never this oracle's shortcuts (`styles.oracle_merged`), as a real student has not.
    """
    levels = tuple(recipe["pretrain_levels"])
    problems = load_lab_problems("pretrain", limit=recipe["problems"], seed=recipe["world_seed"], levels=levels)
    rng = random.Random(f"corpus:{recipe['seed']}")
    documents = []
    for problem in problems:
        graph, draw, edge = problem.metadata, rng.random(), 0.0
        style = "student"
        for name in FOREIGN_CONTEXTS:
            edge += recipe.get(f"{name}_fraction", 0.0)
            if draw < edge:
                style = name
                break
        if style == "student":
            documents.append(Document(problem.question, student_solution(graph, rng)))
            continue
        if style == "oracle":
            solution = oracle_solution(graph, problem.question + str(rng.random()), merge=0.0)
        else:
            solution = edited_solution(graph, rng) if style == "edited" else problem.reference_solution or ""
        plain = rng.random() < recipe.get("foreign_plain_fraction", 1.0)
        documents.append(Document(problem.question, solution, style, None if plain else FOREIGN_CONTEXTS[style]))
    return documents


def encode_examples(tokenizer, documents: list[Document] | list[tuple[str, str]]) -> list[tuple[list[int], int]]:
    """(token ids, prompt length) per example: the rendered prompt, the solution, EOS (the engines' tokenization)."""
    examples = []
    for doc in documents:
        doc = doc if isinstance(doc, Document) else Document(*doc)
        ids, prompt_len = encode_prompt_response(tokenizer, doc.request(), doc.solution)
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
    documents = pretraining_corpus(recipe)
    tokenizer = _tokenizer([d.question for d in documents] + [d.solution for d in documents], recipe["vocab_size"])
    examples = encode_examples(tokenizer, documents)
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
    optimizers = _optimizers(model, recipe)
    steps, warmup = recipe["steps"], recipe["warmup_steps"]
    decay_start = steps - int(steps * recipe.get("decay_fraction", 0.0))

    def lr_at(step: int) -> float:
        """Linear warmup, constant, then a linear decay to zero over the last `decay_fraction` of the steps."""
        return min((step + 1) / warmup, 1.0, (steps - step) / max(steps - decay_start, 1))

    schedulers = [torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at) for optimizer in optimizers]
    batches = _batches(examples, recipe["batch_size"], rng)
    for step in range(steps):
        input_ids, mask, labels = collate(next(batches), tokenizer.pad_token_id)
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        for optimizer, scheduler in zip(optimizers, schedulers, strict=True):
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
    trained = sorted({t for ids, prompt_len in examples for t in ids[prompt_len:]})
    (out / TRAINED_TOKENS).write_text(json.dumps(trained), encoding="utf-8")
    (out / "recipe.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    return info


def _optimizers(model, recipe: dict[str, Any]) -> list:
    """AdamW for every parameter, or (`optimizer: "muon"`) Muon for the hidden weight matrices and AdamW for
    the embedding and the norms, Muon's learning rate scaled to match AdamW's update size."""
    import torch

    adamw = {"lr": recipe["learning_rate"], "weight_decay": recipe["weight_decay"], "betas": (0.9, 0.98)}
    optimizer = recipe.get("optimizer", "adamw")
    if optimizer not in ("adamw", "muon"):
        raise ValueError(f"lab recipe: unknown optimizer {optimizer!r}; choose adamw or muon")
    if optimizer == "adamw":
        return [torch.optim.AdamW(model.parameters(), **adamw)]
    matrices, rest = [], []
    for name, p in model.named_parameters():
        (matrices if p.ndim == 2 and "embed_tokens" not in name else rest).append(p)
    muon = torch.optim.Muon(
        matrices, lr=recipe["learning_rate"], weight_decay=recipe["weight_decay"], adjust_lr_fn="match_rms_adamw"
    )
    return [muon, torch.optim.AdamW(rest, **adamw)]


TRAINED_TOKENS = "trained_tokens.json"
"""The token ids that were a training target in pretraining, written beside the model."""


def untrained_token_share(model_dir: str | Path, texts: list[str]) -> float | None:
    """Share of the tokens of `texts` that were never a training target of the lab model in `model_dir`
    (None for a model without that record). Such tokens carry an arbitrary loss: a stream full of them
    measures the vocabulary, not the student's taste."""
    record = Path(model_dir) / TRAINED_TOKENS
    if not record.is_file():
        return None
    from transformers import AutoTokenizer

    trained = set(json.loads(record.read_text(encoding="utf-8")))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = [t for text in texts for t in tokenizer(text, add_special_tokens=False)["input_ids"]]
    return sum(t not in trained for t in ids) / len(ids) if ids else 0.0
