"""The runner's own logic: problem selection per config, stage validation, config errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from stylealign.config import ConfigError, parse_config
from stylealign.run.context import RunContext
from stylealign.run.pipeline import run_experiment
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
