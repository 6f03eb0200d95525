"""Actual tokens per stage and engine, counted from a run's records, beside the plan."""

from __future__ import annotations

import json

import pytest
from streams_setup import make_config, make_ctx, scripted_student

from stylealign.oracles.engine import OracleEngine
from stylealign.records import Trace
from stylealign.report.usage import usage_sentence, usage_table
from stylealign.stages.sample import current_samples, sample_stage
from stylealign.stages.score import score_stage
from stylealign.stages.streams import streams_stage
from stylealign.streams.listing import stream_traces
from stylealign.usage import actual_usage, compare, measured_rates, usage_section


def words(texts):
    return [len(t.split()) for t in texts]


@pytest.fixture
def scored_run(tmp_path, tiny_model_dir, tiny_engine):
    cfg = make_config(tiny_model_dir, limit=3, streams={"enabled": ["gold", "rft", "oracle_synth", "oracle_refine", "sar"]})
    ctx = make_ctx(tmp_path, cfg, oracle=OracleEngine())
    ctx.use_engine(cfg.student.engine, scripted_student(tiny_engine, ctx.problems(), solved=2))
    ctx.streams = tuple(cfg.streams.enabled)
    sample_stage(ctx)
    streams_stage(ctx)
    score_stage(ctx)
    for stage in ("sample", "streams", "score"):
        ctx.store.mark_done(stage)
    return ctx


def row(rows, stage, step, engine):
    [found] = [r for r in rows if (r["stage"], r["step"], r["engine"]) == (stage, step, engine)]
    return found


def test_actual_rows_count_what_the_records_hold(scored_run) -> None:
    ctx = scored_run
    rows = actual_usage(ctx, count=words)["rows"]
    questions = {p.id: p.question for p in ctx.problems()}
    samples = current_samples(ctx)
    sample = row(rows, "sample", "sample", "student")
    assert (sample["requests"], sample["samples"]) == (3, 6)
    assert sample["prompt_tokens"] == sum(len(q.split()) for q in questions.values())
    assert sample["generated_tokens"] == sum(len(t.text.split()) for t in samples)  # the scripted student counts none

    synth = row(rows, "streams", "oracle_synth", "oracle")
    kept = stream_traces(ctx.store, "oracle_synth")
    assert synth["requests"] == 3 and synth["generated_tokens"] >= sum(len(t.text.split()) for t in kept)
    refine = row(rows, "streams", "oracle_refine", "oracle")
    assert refine["requests"] == len(stream_traces(ctx.store, "rft")) == 2

    for name in ("gold", "rft", "oracle_synth"):
        scored = ctx.store.stage(f"scored_{name}").records(Trace)
        got = row(rows, "score", name, "student")
        assert got["requests"] == len(scored)
        assert got["prompt_tokens"] == sum(len(questions[t.problem_id].split()) + len(t.metrics["token_nll"]) for t in scored)


def test_the_report_section_sets_the_plan_beside_the_run(scored_run) -> None:
    section = usage_section(scored_run)
    pairs = {(r["stage"], r["engine"]) for r in section["comparison"]}
    assert {("sample", "student"), ("streams", "oracle"), ("score", "student")} <= pairs
    sample = next(r for r in section["comparison"] if (r["stage"], r["engine"]) == ("sample", "student"))
    assert sample["plan_requests"] == sample["actual_requests"] == 3
    assert sample["error"] == pytest.approx(
        (sample["plan_prompt_tokens"] + sample["plan_generated_tokens"]) / (sample["actual_prompt_tokens"] + sample["actual_generated_tokens"]) - 1,
        abs=1e-3)
    headers, table = usage_table(section)
    assert len(table) == len(section["comparison"]) and "plan error" in headers
    assert "counted with" in usage_sentence(section) and "(sample, streams, score)" in usage_sentence(section)
    assert section["stages"] == ["sample", "streams", "score"]  # nothing trained or evaluated: not compared


def test_compare_lines_up_stages_and_engines_either_side_has() -> None:
    plan = [{"stage": "sample", "engine": "student", "requests": 2, "prompt_tokens": 10, "generated_tokens": 90}]
    actual = [{"stage": "sample", "engine": "student", "requests": 2, "prompt_tokens": 10, "generated_tokens": 40},
              {"stage": "sample", "engine": "student", "requests": 0, "prompt_tokens": 0, "generated_tokens": 30},
              {"stage": "train", "engine": "trainer", "requests": 4, "prompt_tokens": 8, "generated_tokens": 0}]
    rows = compare(plan, actual)
    assert rows[0]["actual_generated_tokens"] == 70 and rows[0]["error"] == pytest.approx(100 / 80 - 1)
    assert rows[1]["plan_requests"] == 0 and rows[1]["error"] == -1


def test_measured_rates_divide_a_stages_tokens_by_the_time_since_the_previous_stage_finished(tmp_path) -> None:
    stages = {"load": 100.0, "sample": 110.0, "streams": 150.0, "score": 150.0}
    (tmp_path / "manifest.json").write_text(json.dumps({"stages": {k: {"done": True, "time": t} for k, t in stages.items()}}))
    rows = [{"stage": "sample", "prompt_tokens": 30, "generated_tokens": 70},
            {"stage": "streams", "prompt_tokens": 200, "generated_tokens": 200},
            {"stage": "score", "prompt_tokens": 50, "generated_tokens": 0}]
    (tmp_path / "report.json").write_text(json.dumps({"usage": {"actual": {"rows": rows}}}))
    assert measured_rates(tmp_path) == {"sample": 10.0, "streams": 10.0}  # score took no measurable time
