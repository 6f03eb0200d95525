"""The plan before a run: rows that follow from the problems, the config and the stated assumptions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stylealign.cli import app
from stylealign.config import load_config, parse_config
from stylealign.plan import Assumptions, plan_config, plan_run
from stylealign.records import Problem
from stylealign.run.work import engine_id

A = Assumptions(chars_per_token=1.0)  # a character is a token: every count below can be read off the texts

PROBLEMS = [Problem("p0", "q" * 10, "1", reference_solution="r" * 30), Problem("p1", "q" * 20, "2", reference_solution="r" * 500)]
TESTS = {"t": [Problem("t0", "x" * 7, "3", reference_solution="y" * 40)]}


def config(**extra: object):
    return parse_config({
        "student": {"engine": {"model": "unused"}, "template": "student"},
        "oracle": {"engine": {"type": "lab-oracle"}},
        "sampling": {"k": 4, "max_tokens": 100},
        "streams": {"enabled": ["gold", "rft", "oracle_synth"]},
        "reward": {"type": "lab"},
        "evaluation": {"k": 2, "max_tokens": 50},
        **extra,
    })


def rows(plan: dict, stage: str, engine: str | None = None) -> list[dict]:
    return [r for r in plan["rows"] if r["stage"] == stage and (engine is None or r["engine"] == engine)]


def test_sampling_and_evaluation_rows_follow_from_the_texts_and_max_tokens() -> None:
    plan = plan_run(config(), PROBLEMS, TESTS, A)
    [sample] = rows(plan, "sample")
    assert (sample["requests"], sample["samples"]) == (2, 8)
    assert sample["prompt_tokens"] == 10 + 20  # the student template is the bare question
    assert sample["generated_tokens"] == 4 * (30 + 100)  # as long as the reference, cut at max_tokens
    longer = plan_run(config(), PROBLEMS, TESTS, Assumptions(chars_per_token=1.0, answer_to_reference=2.0))
    assert rows(longer, "sample")[0]["generated_tokens"] == 4 * (60 + 100)
    [evaluate] = rows(plan, "evaluate")
    models = 1 + 3  # the base student and one model per stream, one training seed
    assert (evaluate["requests"], evaluate["samples"]) == (models, models * 2)
    assert evaluate["generated_tokens"] == models * 2 * 40


def test_stream_rows_scale_with_the_stated_rates() -> None:
    plan = plan_run(config(), PROBLEMS, TESTS, A)
    [synth] = rows(plan, "streams", "oracle")
    assert synth["step"] == "oracle_synth" and synth["requests"] == 2
    solved = plan_run(config(), PROBLEMS, TESTS, Assumptions(chars_per_token=1.0, oracle_accuracy=0.5))
    scored = {r["step"]: r["requests"] for r in rows(solved, "score")}
    assert scored == {"gold": 2, "rft": 2 * 0.7, "oracle_synth": 2 * 0.5}
    assert any("solve_rate = 0.7" in line for line in plan["assumptions"])


def test_sar_repair_gets_the_unsolved_share_and_nothing_when_every_problem_is_solved() -> None:
    cfg = config(streams={"enabled": ["rft", "sar_repair"], "sar_repair": {"continuations": 3}})
    plan = plan_run(cfg, PROBLEMS, TESTS, A)
    continuations = next(r for r in rows(plan, "streams", "student") if r["samples"] != r["requests"])
    assert continuations["requests"] == pytest.approx(2 * 0.3) and continuations["samples"] == pytest.approx(2 * 0.3 * 3)
    solved = plan_run(cfg, PROBLEMS, TESTS, Assumptions(solve_rate=1.0))
    assert not [r for r in solved["rows"] if r["step"] == "sar_repair"]


def test_prices_and_throughput_give_cost_and_time_and_stay_out_of_the_work_keys() -> None:
    cfg = config(student={"engine": {"model": "unused", "price_per_million_tokens": {"prompt": 1, "generated": 3},
                                     "tokens_per_second": 10}})
    plan = plan_run(cfg, PROBLEMS, TESTS, A)
    [sample] = rows(plan, "sample")
    assert sample["cost"] == pytest.approx((30 * 1 + 520 * 3) / 1e6)
    assert sample["seconds"] == pytest.approx((30 + 520) / 10)
    assert plan["totals"]["oracle"]["cost"] is None and plan["totals"]["student"]["cost"] is not None
    assert engine_id(cfg.student.engine) == engine_id(config().student.engine)
    assert "price_per_million_tokens" not in cfg.model_dump(mode="json")["student"]["engine"]


def test_measured_rates_time_what_the_config_does_not() -> None:
    plan = plan_run(config(), PROBLEMS, TESTS, A, measured_rates={"sample": 55.0})
    [sample] = rows(plan, "sample")
    assert sample["seconds"] == pytest.approx((30 + 520) / 55)
    assert rows(plan, "evaluate")[0]["seconds"] is None and plan["timed_from_earlier_run"] == ["sample"]


def test_an_unreadable_source_is_stood_in_for_and_said_so(tmp_path: Path) -> None:
    cfg = config(problems={"source": str(tmp_path / "absent.jsonl"), "limit": 7},
                 evaluation={"datasets": [{"source": "aime24", "split": "test"}]})
    plan = plan_config(cfg)
    assert plan["problems"] == 7 and plan["eval_problems"] == 30
    assert "absent.jsonl could not be read" in plan["assumptions"][0]
    with pytest.raises(OSError):
        plan_config(config(problems={"source": str(tmp_path / "absent.jsonl")}))


def test_plan_demo_runs_no_model_and_prints_rows_and_assumptions(tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    result = CliRunner().invoke(app, ["plan", "demo", "--limit", "20", "--assume", "solve_rate=0.5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "assumptions" in result.output and "solve_rate = 0.5" in result.output
    plan = json.loads(out.read_text())
    assert plan["problems"] == 20 and {r["stage"] for r in plan["rows"]} == {"sample", "streams", "score", "train", "evaluate"}
    assert plan_config(load_config("demo"), 20)["rows"] != plan["rows"]  # the override changed the plan
