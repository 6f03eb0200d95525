"""Data-parallel training: `torchrun --nproc_per_node 2 -m stylealign.cli run CFG --only train` on CPU (gloo).

Both runs see the same global batch of 4 in the same order: one process takes
all 4, two processes take 2 each and DDP averages their gradients (the loss of
each half is weighted by its share of the batch's response tokens, so halves
of different lengths still add up to the one-process loss). The per-step
losses and the trained weights must then agree up to float summation order:
measured here within 7e-8 relative, asserted within 1e-4.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from rich.console import Console
from transformers import AutoModelForCausalLM

import stylealign
from stylealign.config import load_config
from stylealign.pipeline import run_experiment
from stylealign.records import Problem, Trace
from stylealign.run.context import RunContext
from stylealign.store import RunStore
from stylealign.training import TRAINING_INFO, TRAINING_LOG, seed_dir

LAUNCH_TIMEOUT = 600
"""Seconds for the 2-process run (the whole test call, both runs: 427 s measured at load 15, nice 19)."""
STEPS = 4
PROBLEMS = [Problem(id=f"p{i}", question=f"Tom has {i} apples and buys {i + 3} more. How many?", answer=str(2 * i + 3)) for i in range(8)]


def _built_run(run_dir: Path, config_path: Path) -> None:
    """A run directory whose `rft` stream is already built: traces of different lengths, one per problem."""
    ctx = RunContext(config=load_config(config_path), store=RunStore(run_dir))
    ctx.set_problems(PROBLEMS)
    traces = [
        Trace(id=f"rft-{p.id}", problem_id=p.id, stream="rft",
              text=f"{i} + {i + 3} = {2 * i + 3}." + " Check: the sum is right." * (i % 3) + f" The answer is {p.answer}.")
        for i, p in enumerate(PROBLEMS)
    ]
    ctx.store.stage("stream_rft").commit(traces, ["rft"])


@pytest.fixture
def config_path(tmp_path: Path, tiny_model_dir: Path) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({
        "name": "ddp",
        "problems": {"source": "lab", "limit": len(PROBLEMS)},
        "student": {"engine": {"type": "hf", "model": str(tiny_model_dir), "device": "cpu"}},
        "streams": {"enabled": ["rft"]},
        "training": {"loss": "dft", "batch_size": 4, "learning_rate": 3e-3, "budget": {"steps": STEPS},
                     "max_length": 96, "save_steps": 100},
    }))
    return path


def _losses(model_dir: Path) -> list[float]:
    log = json.loads((model_dir / TRAINING_LOG).read_text())
    assert [e["step"] for e in log if "loss" in e] == list(range(1, STEPS + 1))
    return [e["loss"] for e in log if "loss" in e]


@pytest.mark.slow
def test_two_processes_train_what_one_does_with_the_same_global_batch(
    config_path: Path, tmp_path: Path, tiny_model_dir: Path
) -> None:
    single, parallel = tmp_path / "single", tmp_path / "ddp"
    for run_dir in (single, parallel):
        _built_run(run_dir, config_path)
    run_experiment(load_config(config_path), single, only="train", console=Console(file=io.StringIO()))

    env = {
        **os.environ, "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(Path(stylealign.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    launch = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "stylealign.cli", "run", str(config_path), "--only", "train", "--out", str(parallel)],
        env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT,
    )
    assert launch.returncode == 0, launch.stdout[-3000:] + launch.stderr[-3000:]
    assert launch.stdout.count("✓ train") == 1, "process 1 prints nothing; process 0 reports the stage once"

    one, two = seed_dir(single, "rft", 0) / "model", seed_dir(parallel, "rft", 0) / "model"
    info_one, info_two = (json.loads((d / TRAINING_INFO).read_text()) for d in (one, two))
    assert (info_one["processes"], info_two["processes"]) == (1, 2)
    assert info_one["steps"] == info_two["steps"] == STEPS and info_one["key"] == info_two["key"]
    losses_one, losses_two = _losses(one), _losses(two)
    assert losses_two == pytest.approx(losses_one, rel=1e-4)
    trained_one, trained_two, base = (
        AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).state_dict() for d in (one, two, tiny_model_dir)
    )
    assert any(not torch.equal(trained_one[name], base[name]) for name in base), "training moved the weights"
    for name, weights in trained_one.items():
        torch.testing.assert_close(trained_two[name], weights, rtol=1e-4, atol=1e-5)
    manifest = json.loads((parallel / "manifest.json").read_text())
    assert manifest["stages"]["train"]["done"] and len(manifest["config_history"]) == 1
    assert json.loads((parallel / "train" / "summary.json").read_text())["streams"]["rft"]["steps"] == STEPS
    assert not (seed_dir(parallel, "rft", 0) / "checkpoints").exists()


def test_a_data_parallel_launch_runs_only_the_train_stage(config_path: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    for stages in ({"until": "load"}, {"only": "sample"}, {}):
        with pytest.raises(ValueError, match="runs `--only train`; run the other stages in one process"):
            run_experiment(load_config(config_path), tmp_path / "run", **stages)
    assert not (tmp_path / "run").exists(), "refused before touching the run directory"
