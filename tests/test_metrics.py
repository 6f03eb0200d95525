"""Adaptation cost, drift, reward scorers and the score stage."""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml
from streams_setup import make_config, make_ctx, scripted_student
from typer.testing import CliRunner

from stylealign.cli import app
from stylealign.config import RewardConfig
from stylealign.engines.base import Completion, encode_prompt, encode_response, render_prompt
from stylealign.metrics.adaptation import QUARTERS, adaptation_cost
from stylealign.metrics.drift import (
    edit_distance,
    js_divergence,
    ngram_counts,
    normalized_edit_distance,
    regex_tokenize,
    text_profile,
)
from stylealign.metrics.reward import ClassifierReward, parse_judge_score
from stylealign.oracles.engine import OracleEngine
from stylealign.records import Problem, Trace
from stylealign.run.rewards import judge_reward
from stylealign.stages.sample import sample_stage
from stylealign.stages.score import score_stage
from stylealign.stages.streams import streams_stage
from stylealign.steps import split_steps

STREAM_KEYS = {"stream", "traces", "coverage", "correctness", "reward", "ppl", "ppl_q1", "ppl_q2", "ppl_q3", "ppl_q4",
               "js_drift", "edit_distance", "top_loss_tokens"}


def test_adaptation_cost_is_exp_mean_nll_of_a_direct_forward_pass(tiny_model_dir, tiny_engine):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from stylealign.prompts import load_template

    request = load_template("student").request(question="Tom has 3 apples and buys 4 more. How many?")
    response = "Tom has 3 + 4 = 7 apples.\n\nThe answer is 7."
    [cost] = adaptation_cost(tiny_engine, [request], [response])

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    prompt_ids = encode_prompt(tokenizer, render_prompt(tokenizer, request))
    response_ids, _ = encode_response(tokenizer, response)
    ids = torch.tensor([prompt_ids + response_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
    targets = ids[0, len(prompt_ids):]
    nlls = -logprobs[len(prompt_ids) - 1:].gather(1, targets.unsqueeze(1)).squeeze(1)
    assert cost["tokens"] == len(response_ids)
    assert cost["ppl"] == pytest.approx(math.exp(nlls.mean().item()), rel=1e-4)
    assert cost["nll"] == pytest.approx(nlls.mean().item(), rel=1e-4)
    quarter_total = sum(cost[f"nll_{q}"] * n for q, n in zip(QUARTERS, cost["quarter_tokens"], strict=True))
    assert quarter_total / cost["tokens"] == pytest.approx(cost["nll"], rel=1e-6)
    assert cost["ppl_q1"] == pytest.approx(math.exp(nlls[: cost["quarter_tokens"][0]].mean().item()), rel=1e-4)
    assert len(cost["step_nll"]) == len(split_steps(response)) == 2
    assert sum(cost["loss_by_token"].values()) == pytest.approx(nlls.sum().item(), rel=1e-3)


def test_drift_measures():
    a = ngram_counts(["a b a b"], regex_tokenize, 1)
    assert js_divergence(a, a) == 0
    assert js_divergence(ngram_counts(["xy\n"], regex_tokenize, 1), ngram_counts(["1 2"], regex_tokenize, 1)) == pytest.approx(1.0)
    b = ngram_counts(["a b c"], regex_tokenize, 1)
    assert 0 < js_divergence(a, b) < 1 and js_divergence(a, b) == pytest.approx(js_divergence(b, a))
    assert edit_distance("kitten", "sitting") == 3 and edit_distance("", "abc") == 3
    assert normalized_edit_distance("abcd", "abcd") == 0 and normalized_edit_distance("ab", "cd") == 1


def test_text_profile_counts_every_text_whether_or_not_it_repeats() -> None:
    """The profile reuses recent tokenizations; counts must be those of tokenizing every text afresh."""
    rng = random.Random(3)
    texts = [f"Step {rng.randrange(400)}: x = {rng.randrange(9)}\n\nSo {rng.randrange(3)}." for _ in range(1500)]
    profile = text_profile(iter(texts), regex_tokenize)
    tokens = [regex_tokenize(t) for t in texts]
    assert profile.unigrams == Counter(tok for ts in tokens for tok in ts)
    assert profile.bigrams == Counter(pair for ts in tokens for pair in zip(ts, ts[1:], strict=False))
    assert profile.count == 1500 and len(set(texts)) > 256  # past the reuse window, and repeats within it
    assert profile.mean_steps == pytest.approx(sum(len(split_steps(t)) for t in texts) / 1500)
    assert profile.mean_length == pytest.approx(sum(map(len, texts)) / 1500)


def textbook_levenshtein(a: str, b: str) -> int:
    """The reference: Wagner–Fischer dynamic programming, one full row per character of `a`."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row = row, [i]
        for j, cb in enumerate(b, 1):
            row.append(min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (ca != cb)))
    return row[-1]


def test_edit_distance_equals_the_textbook_definition_on_random_pairs() -> None:
    rng = random.Random(7)
    alphabet = "ab c\n12+=é∑😀"  # spaces, newlines and characters outside the BMP, as traces have
    for _ in range(300):
        a = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
        b = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
        expected = textbook_levenshtein(a, b)
        assert edit_distance(a, b) == expected
        longest = max(len(a), len(b))
        assert normalized_edit_distance(a, b) == pytest.approx(expected / longest if longest else 0.0)


def test_js_divergence_is_the_same_number_in_every_process():
    """Set order follows string hashing, which differs per process: a sum over a set would change the last
    digits of the drift from run to run."""
    import os
    import subprocess
    import sys

    code = ("from collections import Counter; from stylealign.metrics.drift import js_divergence; "
            "words = [f'w{i}' for i in range(300)]; "
            "print(repr(js_divergence(Counter({w: i + 1 for i, w in enumerate(words)}), "
            "Counter({w: 301 - i for i, w in enumerate(words[50:] + ['x', 'y'])}))))")
    outputs = {
        subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed},
                       capture_output=True, text=True, check=True).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outputs) == 1


def test_score_stage_measures_every_stream_and_writes_streams_json(tmp_path, tiny_model_dir, tiny_engine):
    ctx = make_ctx(tmp_path, make_config(tiny_model_dir), oracle=OracleEngine())
    ctx.use_engine(ctx.config.student.engine, scripted_student(tiny_engine, ctx.problems(), 2))
    sample_stage(ctx)
    streams_stage(ctx)
    summary = score_stage(ctx)
    rows = {r["stream"]: r for r in json.loads((tmp_path / "streams.json").read_text())}
    assert set(rows) == {"gold", "rft", "oracle_synth", "oracle_refine", "sar", "sar_repair"}
    assert summary["traces"] == sum(r["traces"] for r in rows.values())
    for name, row in rows.items():
        assert STREAM_KEYS <= row.keys(), name
        assert row["ppl"] > 1 and all(row[f"ppl_{q}"] > 1 for q in QUARTERS)
        assert 0 <= row["reward"] <= 2 and row["reward_model"] == "lab"  # checker + polish preference
        assert row["drift_tokenizer"] == "student" and 0 <= row["js_drift"] <= 1
        assert sum(t["share"] for t in row["top_loss_tokens"]) <= 1 + 1e-9
    assert rows["gold"]["edit_distance"] is None and rows["rft"]["edit_distance"] is None
    assert rows["oracle_synth"]["edit_distance"] is None
    assert rows["oracle_refine"]["edit_distance"] > 0 and rows["sar_repair"]["edit_distance"] > 0
    assert rows["rft"]["coverage"] == pytest.approx(2 / 3) and rows["oracle_synth"]["coverage"] == 1
    assert rows["sar_repair"]["coverage"] == pytest.approx(1 / 3)
    assert rows["oracle_synth"]["js_drift"] > rows["rft"]["js_drift"]

    scored = ctx.store.stage("scored_rft").records(Trace)
    for t in scored:
        assert {"nll", "ppl", "ppl_q1", "ppl_q4", "reward"} <= t.metrics.keys()
        assert t.metrics["ppl"] == pytest.approx(math.exp(t.metrics["nll"]))
    tokens = sum(t.metrics["tokens"] for t in scored)
    weighted = sum(t.metrics["nll"] * t.metrics["tokens"] for t in scored) / tokens
    assert rows["rft"]["ppl"] == pytest.approx(math.exp(weighted))
    assert "oracle_refine" in ctx.console.file.getvalue()

    shards = sorted(ctx.store.stage("scored_sar").dir.glob("shard-*"))
    first = json.loads((tmp_path / "streams.json").read_text())
    score_stage(ctx)
    assert sorted(ctx.store.stage("scored_sar").dir.glob("shard-*")) == shards
    assert json.loads((tmp_path / "streams.json").read_text()) == first  # every trace read back from the store

    gold = ctx.store.stage("scored_gold")  # as if a run was killed after scoring two of gold's three traces
    kept = gold.records(Trace)[:2]
    gold.clear()
    gold.commit(kept, [t.metrics["score_key"] for t in kept])
    score_stage(ctx)
    assert json.loads((tmp_path / "streams.json").read_text()) == first  # two read back, one scored again

    ctx.config = ctx.config.model_copy(update={"reward": RewardConfig(type="none")})
    score_stage(ctx)
    rows = {r["stream"]: r for r in json.loads((tmp_path / "streams.json").read_text())}
    assert rows["sar"]["reward"] is None and rows["sar"]["reward_model"] == "none" and rows["sar"]["traces"] == 2


@pytest.fixture(scope="module")
def tiny_classifier(tiny_model_dir: Path, tmp_path_factory) -> Path:
    from transformers import AutoTokenizer, Qwen2ForSequenceClassification

    out = tmp_path_factory.mktemp("tiny-rm")
    torch.manual_seed(0)
    model = Qwen2ForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


def test_orm_and_prm_rewards(tiny_classifier):
    problem = Problem(id="p", question="What is 3 + 4?", answer="7")
    texts = ["3 + 4 = 7.\n\nThe answer is 7.", "3 + 4 = 8.\n\nThe answer is 8.\n\nDone."]
    orm = ClassifierReward(str(tiny_classifier), per_step=False).score([problem] * 2, texts)
    assert all(isinstance(r["reward"], float) for r in orm) and orm[0]["reward"] != orm[1]["reward"]
    prm = ClassifierReward(str(tiny_classifier), per_step=True).score([problem] * 2, texts)
    assert [len(r["reward_steps"]) for r in prm] == [2, 3]
    assert all(r["reward"] == min(r["reward_steps"]) for r in prm)
    # the last prefix is the whole solution: the PRM's last step score is the ORM's score
    assert prm[0]["reward_steps"][-1] == pytest.approx(orm[0]["reward"], rel=1e-4)


CUSTOM_RM_CODE = """
from transformers import Qwen2ForSequenceClassification


class TinyRewardModel(Qwen2ForSequenceClassification):
    \"\"\"A reward model registered only under AutoModel, as Qwen2.5-Math-RM-72B is.\"\"\"
"""


def test_custom_code_reward_model_loads_only_with_trust_remote_code(tiny_classifier, tmp_path):
    import shutil

    custom = tmp_path / "custom-rm"
    shutil.copytree(tiny_classifier, custom)
    (custom / "modeling_tiny_rm.py").write_text(CUSTOM_RM_CODE, encoding="utf-8")
    config = json.loads((custom / "config.json").read_text(encoding="utf-8"))
    config["auto_map"] = {"AutoModel": "modeling_tiny_rm.TinyRewardModel"}
    (custom / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ValueError, match=r"ships its own code \(modeling_tiny_rm.TinyRewardModel\).*trust_remote_code: true"):
        ClassifierReward(str(custom), per_step=False)
    problem = Problem(id="p", question="What is 3 + 4?", answer="7")
    texts = ["3 + 4 = 7.\n\nThe answer is 7.", "3 + 4 = 8."]
    trusted = ClassifierReward(str(custom), per_step=False, trust_remote_code=True)
    assert type(trusted.model).__name__ == "TinyRewardModel"
    plain = ClassifierReward(str(tiny_classifier), per_step=False).score([problem] * 2, texts)
    assert [r["reward"] for r in trusted.score([problem] * 2, texts)] == pytest.approx([r["reward"] for r in plain])


def test_judge_reward_parses_scores_and_survives_garbage(tmp_path, tiny_model_dir):
    class Judge:
        name = "judge"

        def __init__(self):
            self.calls = 0

        def generate(self, requests, n, sampling):
            self.calls += 1
            text = "no score here" if self.calls == 1 else "Clear and correct. \\boxed{8}"
            return [[Completion(text)] * n for _ in requests]

        def close(self):
            pass

    cfg = make_config(tiny_model_dir, limit=1, reward={"type": "judge", "engine": {"type": "openai", "model": "judge"}})
    ctx = make_ctx(tmp_path, cfg)
    ctx.use_engine(cfg.reward.engine, Judge())
    scorer = judge_reward(ctx)
    [result] = scorer.score(ctx.problems(), ["The answer is 7."])
    assert result["reward"] == 8.0 and scorer.name == "judge:judge"
    with pytest.raises(ValueError, match="boxed"):
        parse_judge_score("seven out of ten")
    with pytest.raises(ValueError, match="off the 0-10 scale"):
        parse_judge_score("She pays \\boxed{14} dollars, so I rate it \\boxed{14}")
    assert parse_judge_score("\\boxed{14} dollars; rating \\boxed{9.5}") == 9.5
    assert parse_judge_score("8") == parse_judge_score(" 8/10.") == 8.0  # the whole answer is the score
    with pytest.raises(ValueError, match="boxed"):
        parse_judge_score("The solution is correct, rigorous, and clear; it takes 3 steps")


def test_judge_asks_once_per_solution_however_many_streams_hold_it(tmp_path, tiny_model_dir):
    class Judge:
        name = "judge"

        def __init__(self):
            self.asked: list[str] = []

        def generate(self, requests, n, sampling):
            self.asked += [r.messages[-1]["content"] for r in requests]
            return [[Completion(f"\\boxed{{{len(self.asked) % 10}}}")] * n for _ in requests]

        def close(self):
            pass

    cfg = make_config(tiny_model_dir, limit=2, reward={"type": "judge", "engine": {"type": "openai", "model": "judge"}})
    ctx = make_ctx(tmp_path, cfg)
    judge = ctx.use_engine(cfg.reward.engine, Judge())
    scorer = judge_reward(ctx)
    first, second = ctx.problems()
    rft = scorer.score([first, second, first], ["The answer is 7.", "The answer is 7.", "The answer is 7."])
    mix = scorer.score([second, first], ["The answer is 7.", "So 7."])  # a copy of an rft trace, and one new text
    assert len(judge.asked) == 3  # (first, 7), (second, 7), (first, "So 7."): the same text on another problem is asked
    assert rft[0] == rft[2] and mix[0] == rft[1] and mix[1]["reward"] is not None


def test_run_until_score_on_tiny_model_and_lab_oracle(tmp_path, tiny_model_dir):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "name": "tiny",
        "problems": {"source": "lab", "split": "train"},
        "student": {"engine": {"type": "hf", "model": str(tiny_model_dir), "device": "cpu"}},
        "oracle": {"engine": {"type": "lab-oracle"}},
        "sampling": {"k": 2, "max_tokens": 16},
        "streams": {"sar_repair": {"continuations": 2}},
        "reward": {"type": "lab"},
    }))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(config), "--until", "score", "--limit", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "streams.json").read_text())
    assert [r["stream"] for r in rows] == ["gold", "rft", "oracle_synth", "oracle_refine", "sar", "sar_repair"]
    assert all(STREAM_KEYS <= r.keys() for r in rows)
    by_name = {r["stream"]: r for r in rows}
    assert by_name["gold"]["traces"] == 3 and by_name["oracle_synth"]["coverage"] == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(manifest["stages"][s]["done"] for s in ("load", "sample", "streams", "score"))
