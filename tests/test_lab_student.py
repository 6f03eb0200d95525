"""The lab student: a real tiny causal LM, built by the recipe, loaded by the hf engine, and fallible."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from stylealign.engines.base import Request, SamplingParams, encode_prompt_response, render_prompt
from stylealign.grading import grade
from stylealign.lab.student import (
    RECIPES,
    TRAINED_TOKENS,
    ensure_student,
    pretrain,
    student_dir,
    untrained_token_share,
)
from stylealign.lab.world import load_lab_problems


def test_micro_recipe_builds_a_loadable_chat_model(tmp_path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    recipe = {**RECIPES["student"], "problems": 40, "steps": 2, "batch_size": 4, "vocab_size": 300}
    info = pretrain(tmp_path, recipe)
    assert info["parameters"] > 0 and json.loads((tmp_path / "recipe.json").read_text())["recipe"] == recipe
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert model.config.model_type == "qwen2" and model.config.eos_token_id == tokenizer.eos_token_id
    assert [t.strip("Ġ") for t in tokenizer.tokenize(" 1234")] == ["", "1", "2", "3", "4"]
    # the tokenizer the engines load (transformers rebuilds a qwen2 model's pre-tokenizer) is the trained one
    from stylealign.lab.student import _tokenizer, pretraining_corpus
    from stylealign.lab.styles import oracle_solution

    corpus = pretraining_corpus(recipe)
    trained = _tokenizer([d.question for d in corpus] + [d.solution for d in corpus], recipe["vocab_size"])
    problem = load_lab_problems("test", limit=1)[0]
    for text in (problem.question, oracle_solution(problem.metadata, problem.question), problem.reference_solution):
        assert tokenizer(text, add_special_tokens=False)["input_ids"] == trained(text, add_special_tokens=False)["input_ids"]
    request = Request.from_prompt("Tom has 3 apples.")
    assert render_prompt(tokenizer, request) == "<|user|>\nTom has 3 apples.\n<|assistant|>\n"
    ids, prompt_len = encode_prompt_response(tokenizer, request, "The answer is 3.")
    assert tokenizer.decode(ids[prompt_len:]) == "The answer is 3."
    trained = set(json.loads((tmp_path / TRAINED_TOKENS).read_text()))
    assert tokenizer.eos_token_id in trained and tokenizer.convert_tokens_to_ids("<|user|>") not in trained
    assert untrained_token_share(tmp_path, ["<|user|><|system|>"]) == 1.0
    assert untrained_token_share(tmp_path / "missing", ["x"]) is None


def test_pretraining_mixture_holds_every_style_and_keeps_the_student_prompt_native():
    from collections import Counter

    from stylealign.lab.student import FOREIGN_CONTEXTS, pretraining_corpus

    recipe = {**RECIPES["student"], "problems": 600, "edited_fraction": 0.05, "pretrain_levels": [1, 2, 3, 1, 2, 3, 4]}
    corpus = pretraining_corpus(recipe)
    styles = Counter(d.style for d in corpus)
    for style in ("oracle", "gold", "edited"):
        assert styles[style] / len(corpus) == pytest.approx(recipe[f"{style}_fraction"], abs=0.04), style
    edited = [d.solution for d in corpus if d.style == "edited"]
    assert all("\\boxed" in t or "answer is" in t for t in edited) and any("\\(" in t for t in edited)
    levels = Counter(p.metadata["level"] for p in load_lab_problems("pretrain", limit=700, levels=(1, 2, 3, 1, 2, 3, 4)))
    assert levels[4] / 700 == pytest.approx(1 / 7, abs=0.03) and levels[1] / 700 == pytest.approx(2 / 7, abs=0.03)
    under_plain_prompt = [d for d in corpus if d.system is None]
    assert sum(d.style != "student" for d in under_plain_prompt) / len(under_plain_prompt) < 0.1
    assert {d.system for d in corpus if d.style != "student"} <= {None, *FOREIGN_CONTEXTS.values()}
    assert corpus == pretraining_corpus(recipe)
    # the oracle documents are step by step: the oracle's shortcuts are never pretraining text
    problems = {p.question: p for p in load_lab_problems("pretrain", limit=600, levels=tuple(recipe["pretrain_levels"]))}
    oracle_docs = [d for d in corpus if d.style == "oracle"]
    for doc in oracle_docs:
        assert all(f"= {n['value']} \\)" in doc.solution for n in problems[doc.question].metadata["nodes"])
    assert len(oracle_docs) > 5


def test_muon_takes_the_hidden_matrices_and_adamw_the_rest():
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from stylealign.lab.student import _optimizers

    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True))
    muon, adamw = _optimizers(model, RECIPES["student"])
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    owned = [p for opt in (muon, adamw) for group in opt.param_groups for p in group["params"]]
    assert sorted(map(id, owned)) == sorted(id(p) for p in model.parameters())
    in_muon = {id(p) for group in muon.param_groups for p in group["params"]}
    assert id(model.model.embed_tokens.weight) not in in_muon and id(model.model.norm.weight) not in in_muon
    assert id(model.model.layers[0].mlp.gate_proj.weight) in in_muon
    (only,) = _optimizers(model, {**RECIPES["student"], "optimizer": "adamw"})
    assert isinstance(only, torch.optim.AdamW)
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
        _optimizers(model, {**RECIPES["student"], "optimizer": "sgd"})


def test_unknown_recipe_is_an_error():
    with pytest.raises(ValueError, match="unknown lab model 'teacher'"):
        student_dir("teacher")


@pytest.mark.slow
@pytest.mark.timeout(1200)  # a fresh cache pretrains the student here: 800 steps, 3-6 minutes on 2 cores
def test_student_loads_through_the_hf_engine_and_is_fallible_by_difficulty():
    """Pretrains once into the default cache (minutes on 2 cores), then a small fixed-seed evaluation:
    greedy accuracy in the 20-60% band, falling with difficulty; its native format with its own habits;
    and sampling solving clearly more."""
    from stylealign.engines.hf import HFEngine
    from stylealign.oracles.lab import LabOracle

    path = ensure_student()
    built = (path / "recipe.json").stat().st_mtime_ns
    assert ensure_student() == path and (path / "recipe.json").stat().st_mtime_ns == built
    engine = HFEngine("lab:student", device="cpu", batch_size=50, progress=False)
    problems = load_lab_problems("test", limit=200)
    requests = [Request.from_prompt(p.question) for p in problems]
    greedy = engine.generate(requests, 1, SamplingParams(temperature=0.0, max_tokens=300))
    texts = [row[0].text for row in greedy]
    solved = [grade(t, p.answer) for t, p in zip(texts, problems, strict=True)]
    assert 0.2 <= sum(solved) / len(problems) <= 0.6, sum(solved) / len(problems)
    by_level = {lvl: [s for s, p in zip(solved, problems, strict=True) if p.metadata["level"] == lvl] for lvl in range(1, 6)}
    easy, hard = by_level[1] + by_level[2], by_level[4] + by_level[5]
    assert sum(easy) / len(easy) > sum(hard) / len(hard) + 0.3, {k: sum(v) / len(v) for k, v in by_level.items()}
    assert sum(bool(re.search(r"answer is \d+\.$", t.rstrip())) for t in texts) >= 0.9 * len(texts)
    native = [t for t in texts if re.search(r"\d+ [-+*/] \d+ = \d+", t) and "\\(" not in t]
    assert len(native) >= 0.9 * len(texts)

    # the benchmark's set (200 problems, k=8, T=1, seed 0); the target there is pass@8 >= greedy + 0.1
    # (measured +0.125, the seed-1 rebuild +0.145); on 40-problem windows of it the gap runs 0.025-0.25, so the
    # test asks for half the target on all 200: 10 problems more, where the two builds solved 25 and 29 more
    samples = engine.generate(requests, 8, SamplingParams(temperature=1.0, max_tokens=300, seed=0))
    pass_at_8 = sum(any(grade(c.text, p.answer) for c in row) for row, p in zip(samples, problems, strict=True))
    assert pass_at_8 / len(problems) >= sum(solved) / len(problems) + 0.05, (pass_at_8, sum(solved))
    # its own correct samples carry the habits a careful teacher would correct, so SAR has work
    oracle = LabOracle(style_leak=0.0)
    correct = [(p, c.text) for row, p in zip(samples, problems, strict=True) for c in row if grade(c.text, p.answer)]
    improved = sum(oracle.refine_style_aligned(p, t) != t for p, t in correct)
    assert 0.3 * len(correct) <= improved < len(correct), (improved, len(correct))
