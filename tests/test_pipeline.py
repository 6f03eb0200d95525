"""The runner's own logic: problem selection per config, stage validation, config errors."""

from __future__ import annotations

import dataclasses
import gc
from pathlib import Path

import pytest

from stylealign.config import ConfigError, parse_config
from stylealign.pipeline import run_experiment
from stylealign.run.context import RunContext
from stylealign.run.work import few_collections
from stylealign.stages.load import load_stage
from stylealign.store import RunStore

BASE = {"student": {"engine": {"type": "hf", "model": "unused"}}, "problems": {"source": "lab", "split": "train"}}


def test_a_run_directory_reused_with_a_smaller_limit_sees_only_its_problems(tmp_path: Path) -> None:
    config = parse_config(BASE)
    store = RunStore(tmp_path)
    assert load_stage(RunContext(config=config, store=store, limit=6)) == {"problems": 6}
    small = RunContext(config=config, store=store, limit=3)
    assert load_stage(small) == {"problems": 3}
    big_ids = [p.id for p in RunContext(config=config, store=store, limit=6).problems()]
    assert [p.id for p in small.problems()] == big_ids[:3]
    with pytest.raises(ValueError, match="load"):
        RunContext(config=config, store=store, limit=4).problems()


def test_problems_are_read_once_per_context_and_forgotten_when_replaced(tmp_path: Path) -> None:
    config = parse_config(BASE)
    ctx = RunContext(config=config, store=RunStore(tmp_path), limit=3)
    load_stage(ctx)
    first = ctx.problems()
    first.pop()  # the caller's copy: the context's stays whole
    assert len(ctx.problems()) == 3
    ctx.store.stage("problems").clear()  # read from memory now, not the store
    assert len(ctx.problems()) == 3
    replacement = [dataclasses.replace(p, id=f"new-{i}") for i, p in enumerate(first)]
    ctx.set_problems(replacement)
    assert [p.id for p in ctx.problems()] == ["new-0", "new-1"]


def test_stages_run_with_few_collections_and_restore_the_collector_after_a_failure() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), few_collections(12_345):
        assert gc.get_threshold()[0] == 12_345
        raise RuntimeError("stage failed")
    assert gc.get_threshold() == before


def test_unknown_stage_and_stream_are_rejected_before_any_work(tmp_path: Path) -> None:
    config = parse_config(BASE)
    with pytest.raises(ValueError, match="--until 'trian'"):
        run_experiment(config, tmp_path, until="trian")
    with pytest.raises(ValueError, match="unknown streams"):
        run_experiment(config, tmp_path, streams=("rtf",))
    assert not (tmp_path / "manifest.json").exists()


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"sampling\.temprature"):
        parse_config({**BASE, "sampling": {"temprature": 1.0}})
    with pytest.raises(ConfigError, match=r"training\.budget\.steps"):
        parse_config({**BASE, "training": {"budget": {"steps": 0}}})
    with pytest.raises(ConfigError, match=r"training\.seeds"):
        parse_config({**BASE, "training": {"seeds": [0, 0]}})
    with pytest.raises(ConfigError, match=r"report\.contrasts"):
        parse_config({**BASE, "report": {"contrasts": [["sar", "gpt"]]}})
