"""Fine-tuning on the tiny model: response-only loss, both objectives, LoRA and full, resumable, keyed by content."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from stylealign.config import ExperimentConfig, LoraSettings, TrainingConfig
from stylealign.engines.base import Request, encode_prompt_response, render_prompt
from stylealign.pipeline import RunContext
from stylealign.records import Problem, Trace
from stylealign.store import RunStore
from stylealign.training import IGNORE_INDEX, TRAINING_INFO, encode_example, fine_tune, train_stage

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
    cfg = TrainingConfig(loss=loss, lora=lora, max_steps=10, batch_size=4, learning_rate=lr, save_steps=100)
    model_dir = fine_tune(tiny_model_dir, EXAMPLES, cfg, tmp_path / "run")
    assert model_dir == tmp_path / "run" / "model"
    assert not (model_dir / "adapter_config.json").exists(), (
        "LoRA must be merged into a plain model directory"
    )
    assert response_nll(model_dir) < response_nll(tiny_model_dir) - 0.05
    info = json.loads((model_dir / TRAINING_INFO).read_text())
    assert info["steps"] == 10 and info["examples"] == len(EXAMPLES)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_finished_training_is_skipped_and_new_data_retrains(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = TrainingConfig(loss="nll", max_steps=2, batch_size=4, learning_rate=1e-3)
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
    cfg = TrainingConfig(loss="dft", max_steps=4, save_steps=2, batch_size=4, learning_rate=3e-3, seed=7)
    with pytest.raises(Interrupt):
        fine_tune(tiny_model_dir, EXAMPLES, cfg, tmp_path / "killed", callbacks=[StopAfterFirstSave()])
    assert (tmp_path / "killed" / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file()
    assert not (tmp_path / "killed" / "model").exists()
    resumed = fine_tune(tiny_model_dir, EXAMPLES, cfg, tmp_path / "killed")
    assert json.loads((resumed / TRAINING_INFO).read_text())["resumed_from"] == "checkpoint-2"
    straight = fine_tune(tiny_model_dir, EXAMPLES, cfg, tmp_path / "straight")
    a, b, base = weights(resumed), weights(straight), weights(tiny_model_dir)
    assert any(not torch.equal(a[k], base[k]) for k in a)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


def test_partial_checkpoint_is_discarded(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = TrainingConfig(loss="nll", max_steps=2, batch_size=4, learning_rate=1e-3)
    broken = tmp_path / "checkpoints" / "checkpoint-1"
    broken.mkdir(parents=True)
    (broken / "model.safetensors").write_bytes(b"half a file")
    from stylealign.training import training_key

    (tmp_path / "training_key").write_text(training_key(str(tiny_model_dir), EXAMPLES, cfg))
    model_dir = fine_tune(tiny_model_dir, EXAMPLES, cfg, tmp_path)
    assert json.loads((model_dir / TRAINING_INFO).read_text())["resumed_from"] is None


def test_train_stage_trains_each_stream_with_traces(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = ExperimentConfig.model_validate(
        {
            "student": {"engine": {"type": "hf", "model": str(tiny_model_dir)}},
            "training": {"loss": "nll", "max_steps": 2, "batch_size": 2, "learning_rate": 1e-3},
        }
    )
    store = RunStore(tmp_path)
    problems = [Problem(id=f"p{i}", question=f"What is {i} + {i}?", answer=str(2 * i)) for i in range(3)]
    traces = [
        Trace(id=f"t{i}", problem_id=p.id, text=f"{i} + {i} = {2 * i}.", stream="rft")
        for i, p in enumerate(problems)
    ]
    store.stage("stream_rft").commit(traces, ["rft"])
    ctx = RunContext(config=config, store=store, streams=("gold", "rft"))
    ctx.set_problems(problems)
    summary = train_stage(ctx)
    assert summary["trained"] == "rft" and "gold" in summary["skipped (no traces)"]
    assert (tmp_path / "train" / "rft" / "model" / TRAINING_INFO).is_file()
    assert not (tmp_path / "train" / "gold").exists()
    details = store.read_json("train/summary.json")
    assert details["rft"]["examples"] == 3 and details["gold"] == {"skipped": "no traces"}
