"""Fine-tuning on the tiny model: response-only loss, both objectives, LoRA and full, resumable, keyed by content."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from stylealign.config import BudgetConfig, ExperimentConfig, LoraSettings, TrainingConfig
from stylealign.engines.base import Request, encode_prompt_response, render_prompt
from stylealign.records import Problem, Trace
from stylealign.run.context import RunContext
from stylealign.stages.train import length_warning, matched_problems, train_stage
from stylealign.store import RunStore
from stylealign.training import (
    IGNORE_INDEX,
    TRAINING_INFO,
    TRAINING_LOG,
    budget_steps,
    encode_example,
    fine_tune,
    steps_per_epoch,
    training_key,
)

EXAMPLES = [
    (
        Request.from_prompt(f"Tom has {i} apples and buys {i + 1} more. How many?"),
        f"{i} + {i + 1} = {2 * i + 1}.",
    )
    for i in range(12)
]


def response_nll(model_dir: Path, examples=EXAMPLES) -> float:
    """Mean NLL of the response tokens (+EOS) by a direct forward pass."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for req, resp in examples:
            enc = encode_example(tok, req, resp)
            labels = torch.tensor([enc["labels"]])
            out = model(input_ids=torch.tensor([enc["input_ids"]]), labels=labels)
            n = int((labels[:, 1:] != IGNORE_INDEX).sum())
            total += float(out.loss) * n
            count += n
    return total / count


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).state_dict()


def test_encode_example_masks_the_prompt_and_appends_eos(tiny_model_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    req, resp = EXAMPLES[3]
    enc = encode_example(tok, req, resp)
    ids, prompt_len = encode_prompt_response(tok, req, resp)
    assert enc["input_ids"] == ids + [tok.eos_token_id]
    assert enc["labels"][:prompt_len] == [IGNORE_INDEX] * prompt_len
    assert enc["labels"][prompt_len:] == enc["input_ids"][prompt_len:]
    assert tok.decode(enc["input_ids"][:prompt_len]) == render_prompt(tok, req)
    assert tok.decode(enc["input_ids"][prompt_len:]) == resp + tok.eos_token
    assert encode_example(tok, req, resp, max_length=5)["input_ids"] == enc["input_ids"][:5]


@pytest.mark.parametrize(
    ("loss", "lora", "lr"),
    [
        ("nll", None, 3e-3),
        ("dft", None, 3e-3),
        ("nll", LoraSettings(r=8, alpha=16), 1e-2),
        ("dft", LoraSettings(r=8, alpha=16), 1e-2),
    ],
    ids=["nll-full", "dft-full", "nll-lora", "dft-lora"],
)
def test_fine_tune_lowers_response_loss(
    tiny_model_dir: Path, tmp_path: Path, loss: str, lora, lr: float
) -> None:
    cfg = TrainingConfig(loss=loss, lora=lora, budget={"steps": 10}, batch_size=4, learning_rate=lr, save_steps=100)
    model_dir = fine_tune(tiny_model_dir, EXAMPLES, cfg, tmp_path / "run")
    assert model_dir == tmp_path / "run" / "model"
    assert not (model_dir / "adapter_config.json").exists(), (
        "LoRA must be merged into a plain model directory"
    )
    assert response_nll(model_dir) < response_nll(tiny_model_dir) - 0.05
    info = json.loads((model_dir / TRAINING_INFO).read_text())
    assert info["steps"] == 10 and info["examples"] == len(EXAMPLES)
    log = json.loads((model_dir / TRAINING_LOG).read_text())
    logged = [e for e in log if "loss" in e]
    assert [e["step"] for e in logged] == list(range(1, 11)), "a loss per step (10 steps, logged every step)"
    assert all("learning_rate" in e and "grad_norm" in e for e in logged)
    assert info["last_loss"] == logged[-1]["loss"]
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_finished_training_is_skipped_and_new_data_retrains(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = TrainingConfig(loss="nll", budget={"steps": 2}, batch_size=4, learning_rate=1e-3)
    first = fine_tune(tiny_model_dir, EXAMPLES, cfg, tmp_path)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert (
        fine_tune(tiny_model_dir, EXAMPLES, cfg, tmp_path) / "model.safetensors"
    ).stat().st_mtime_ns == stamp
    fine_tune(tiny_model_dir, EXAMPLES[:6], cfg, tmp_path)
    info = json.loads((first / TRAINING_INFO).read_text())
    assert info["examples"] == 6


class Interrupt(Exception):
    pass


class StopAfterFirstSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        raise Interrupt(f"stopped at step {state.global_step}")


def test_interrupted_training_resumes_to_the_same_weights(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = TrainingConfig(loss="dft", budget={"steps": 4}, save_steps=2, batch_size=4, learning_rate=3e-3)
    with pytest.raises(Interrupt):
        fine_tune(tiny_model_dir, EXAMPLES, cfg, tmp_path / "killed", seed=7, callbacks=[StopAfterFirstSave()])
    assert (tmp_path / "killed" / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file()
    assert not (tmp_path / "killed" / "model").exists()
    resumed = fine_tune(tiny_model_dir, EXAMPLES, cfg, tmp_path / "killed", seed=7)
    assert json.loads((resumed / TRAINING_INFO).read_text())["resumed_from"] == "checkpoint-2"
    straight = fine_tune(tiny_model_dir, EXAMPLES, cfg, tmp_path / "straight", seed=7)
    a, b, base = weights(resumed), weights(straight), weights(tiny_model_dir)
    assert any(not torch.equal(a[k], base[k]) for k in a)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


class RecordCheckpointing(TrainerCallback):
    def __init__(self) -> None:
        self.seen: list[bool] = []

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        self.seen.append(model.is_activation_checkpointing)


def test_gradient_checkpointing_is_a_setting_that_changes_time_not_weights(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Off, the trainer does not recompute activations; on or off, the same weights, so the same training key."""
    on = TrainingConfig(loss="dft", budget={"steps": 3}, batch_size=4, learning_rate=3e-3)
    off = on.model_copy(update={"gradient_checkpointing": False})
    seen = {}
    for name, cfg in (("on", on), ("off", off)):
        probe = RecordCheckpointing()
        fine_tune(tiny_model_dir, EXAMPLES, cfg, tmp_path / name, seed=3, callbacks=[probe])
        seen[name] = set(probe.seen)
    assert seen == {"on": {True}, "off": {False}}
    a, b = weights(tmp_path / "on" / "model"), weights(tmp_path / "off" / "model")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert training_key("m", EXAMPLES, on, 0) == training_key("m", EXAMPLES, off, 0)
    assert training_key("m", EXAMPLES, on, 0) != training_key("m", EXAMPLES, on.model_copy(update={"learning_rate": 1e-3}), 0)


def test_partial_checkpoint_is_discarded(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = TrainingConfig(loss="nll", budget={"steps": 2}, batch_size=4, learning_rate=1e-3)
    broken = tmp_path / "checkpoints" / "checkpoint-1"
    broken.mkdir(parents=True)
    (broken / "model.safetensors").write_bytes(b"half a file")
    (tmp_path / "training_key").write_text(training_key(str(tiny_model_dir), EXAMPLES, cfg, 0))
    model_dir = fine_tune(tiny_model_dir, EXAMPLES, cfg, tmp_path)
    assert json.loads((model_dir / TRAINING_INFO).read_text())["resumed_from"] is None


def test_budget_counts_epochs_tokens_or_steps() -> None:
    cfg = TrainingConfig(batch_size=4, gradient_accumulation_steps=2)
    assert steps_per_epoch(17, cfg) == 3  # 5 batches (the last one short), 2 per optimizer step
    assert budget_steps(cfg.budget, 17, 1000, cfg) == 3, "the default budget is one epoch"
    assert budget_steps(BudgetConfig(epochs=2), 17, 1000, cfg) == 6
    assert budget_steps(BudgetConfig(tokens=1500), 17, 1000, cfg) == 5  # 1.5 epochs of 3 steps, rounded up
    assert budget_steps(BudgetConfig(steps=7), 17, 1000, cfg) == 7
    with pytest.raises(ValueError, match="not epochs and steps"):
        BudgetConfig(epochs=1, steps=3)


def _stream_run(tmp_path: Path, model: Path, training: dict, traces: dict[str, list[int]], **extra) -> RunContext:
    """A run with `traces[name]` = the problem indices that stream holds a trace for."""
    config = ExperimentConfig.model_validate(
        {"student": {"engine": {"type": "hf", "model": str(model)}}, "training": training, **extra}
    )
    store = RunStore(tmp_path)
    problems = [Problem(id=f"p{i}", question=f"What is {i} + {i}?", answer=str(2 * i)) for i in range(4)]
    for name, indices in traces.items():
        records = [
            Trace(id=f"{name}{i}", problem_id=f"p{i}", text=f"{i} + {i} = {2 * i}." + " So." * i, stream=name)
            for i in indices
        ]
        store.stage(f"stream_{name}").commit(records, [name])
    ctx = RunContext(config=config, store=store, streams=("gold", *traces))
    ctx.set_problems(problems)
    return ctx


def test_train_stage_trains_each_stream_and_seed_for_one_epoch(tiny_model_dir: Path, tmp_path: Path) -> None:
    training = {"loss": "nll", "batch_size": 2, "learning_rate": 1e-3, "seeds": [0, 1]}
    ctx = _stream_run(tmp_path, tiny_model_dir, training, {"rft": [0, 1, 2]})
    summary = train_stage(ctx)
    assert summary["trained"] == "rft" and "gold" in summary["skipped (no traces)"]
    for seed in (0, 1):
        assert (tmp_path / "train" / "rft" / f"seed-{seed}" / "model" / TRAINING_INFO).is_file()
    assert not (tmp_path / "train" / "gold").exists()
    details = ctx.store.read_json("train/summary.json")
    rft = details["streams"]["rft"]
    assert rft["examples"] == 3 and details["streams"]["gold"] == {"skipped": "no traces"}
    assert rft["steps"] == 2 and rft["epochs"] == pytest.approx(1.0), "one epoch: 3 examples in batches of 2"
    assert rft["tokens_trained"] == rft["tokens"] > 0
    assert set(rft["seeds"]) == {"0", "1"} and rft["seeds"]["0"]["key"] != rft["seeds"]["1"]["key"]
    assert details["match_problems"] is False and details["budget"] == {"epochs": 1.0}
    assert [rft["seeds"][s]["seed"] for s in ("0", "1")] == [0, 1]


def test_matched_problems_train_every_stream_on_the_intersection(tiny_model_dir: Path, tmp_path: Path) -> None:
    training = {"loss": "nll", "batch_size": 2, "learning_rate": 1e-3, "budget": {"steps": 1}}
    ctx = _stream_run(
        tmp_path, tiny_model_dir, training, {"rft": [0, 1, 2], "sar": [1, 2, 3]},
        streams={"match_problems": True},
    )
    assert matched_problems(ctx) == {"p1", "p2"}
    train_stage(ctx)
    details = ctx.store.read_json("train/summary.json")
    assert details["match_problems"] is True and details["matched_problems"] == 2
    assert details["streams"]["rft"]["examples"] == details["streams"]["sar"]["examples"] == 2


def test_length_warning_when_max_tokens_would_cut_training_length_answers() -> None:
    assert length_warning(100, 150) is None
    warning = length_warning(100, 149)
    assert warning is not None and "max_tokens=149" in warning and "100 tokens" in warning
