"""Shared fixtures: a tiny causal LM built from a config with a locally trained tokenizer.

Never downloads anything: the tokenizer is trained here with `tokenizers`,
the model is a randomly initialised Qwen2 saved with `save_pretrained`, and
tests load it back through the same code path users take (a model directory).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

CORPUS = [
    "Tom has 3 apples and buys 4 more. 3 + 4 = 7. The answer is 7.",
    "A pen costs 5 dollars. Anna buys 6 pens. 6 * 5 = 30. The answer is 30.",
    "Sara reads 12 pages a day for 3 days. 12 * 3 = 36 pages. The answer is \\boxed{36}.",
    "Let x be the number of marbles. Then x - 8 = 14, so x = 22.",
    "First, we compute \\( 48 / 6 = 8 \\). Therefore the answer is 8.",
    "What is 2 + 2? Question: Answer: Step 1: Step 2: total cost price each",
] * 20


def tiny_causal_lm(tokenizer: Any, *, architecture: str = "qwen2", seed: int = 0, **overrides: Any) -> Any:
    """A randomly initialised 2-layer causal LM (Qwen2 or Llama) sized for `tokenizer`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    config_cls, model_cls = {"qwen2": (Qwen2Config, Qwen2ForCausalLM), "llama": (LlamaConfig, LlamaForCausalLM)}[
        architecture
    ]
    settings = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": None,
        "tie_word_embeddings": True,
        **overrides,
    }
    torch.manual_seed(seed)
    return model_cls(config_cls(**settings))


def build_tiny_model(out: Path, *, chat_template: bool = True, seed: int = 0) -> Path:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    specials = ["<unk>", "<|end|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", eos_token="<|end|>", pad_token="<|pad|>"
    )
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    model = tiny_causal_lm(tokenizer, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_base_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tiny model without a chat template: exercises plain-text prompting."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-base-model"), chat_template=False)
