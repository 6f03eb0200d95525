"""The lab student: a real tiny causal LM, built by the recipe, loaded by the hf engine, and fallible."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from stylealign.engines.base import Request, SamplingParams, encode_prompt_response, render_prompt
from stylealign.grading import grade
from stylealign.lab.student import RECIPES, ensure_student, pretrain, student_dir
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
    request = Request.from_prompt("Tom has 3 apples.")
    assert render_prompt(tokenizer, request) == "<|user|>\nTom has 3 apples.\n<|assistant|>\n"
    ids, prompt_len = encode_prompt_response(tokenizer, request, "The answer is 3.")
    assert tokenizer.decode(ids[prompt_len:]) == "The answer is 3."


def test_unknown_recipe_is_an_error():
    with pytest.raises(ValueError, match="unknown lab model 'teacher'"):
        student_dir("teacher")


@pytest.mark.slow
def test_student_loads_through_the_hf_engine_and_is_fallible():
    """Pretrains once into the default cache (minutes on 2 cores), then a small fixed-seed evaluation:
    greedy accuracy in the issue's 20-60% band, its native format, and sampling solving clearly more."""
    from stylealign.engines.hf import HFEngine

    path = ensure_student()
    built = (path / "recipe.json").stat().st_mtime_ns
    assert ensure_student() == path and (path / "recipe.json").stat().st_mtime_ns == built
    engine = HFEngine("lab:student", device="cpu", batch_size=50, progress=False)
    problems = load_lab_problems("test", limit=100)
    requests = [Request.from_prompt(p.question) for p in problems]
    greedy = engine.generate(requests, 1, SamplingParams(temperature=0.0, max_tokens=200))
    texts = [row[0].text for row in greedy]
    solved = [grade(t, p.answer) for t, p in zip(texts, problems, strict=True)]
    assert 0.2 <= sum(solved) / len(problems) <= 0.6, sum(solved) / len(problems)
    native = [t for t in texts if re.search(r", so \w+ has \d+ [-+*/] \d+ = \d+ \w+\.\n\n", t)]
    assert sum(bool(re.search(r"\n\nThe answer is \d+\.$", t.rstrip())) for t in texts) >= 0.9 * len(texts)
    assert len(native) >= 0.8 * len(texts)
    few = problems[:32]
    samples = engine.generate(requests[: len(few)], 8, SamplingParams(temperature=1.0, max_tokens=200, seed=0))
    pass_at_8 = sum(any(grade(c.text, p.answer) for c in row) for row, p in zip(samples, few, strict=True)) / len(few)
    greedy_few = sum(solved[: len(few)]) / len(few)
    assert pass_at_8 >= greedy_few + 0.1, (pass_at_8, greedy_few)
