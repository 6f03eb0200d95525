"""The six streams on a tiny setup: lab problems, a scripted student scored by a tiny model, the lab oracle."""

from __future__ import annotations

from pathlib import Path

import pytest
from streams_setup import (
    FlakyOracle,
    ScriptedStudent,
    correct_text,
    make_config,
    make_ctx,
    scripted_student,
    wrong_text,
)

from stylealign.metrics.adaptation import adaptation_cost
from stylealign.oracles.engine import OracleEngine
from stylealign.records import Trace
from stylealign.stages.sample import sample_stage
from stylealign.stages.streams import StreamsFailed, streams_stage
from stylealign.steps import split_steps
from stylealign.streams.cleaning import clean_text
from stylealign.streams.listing import stream_traces
from stylealign.streams.rft import reasoning_signature


def _build(tmp_path: Path, model_dir: Path, engine, *, solved: int = 2, limit: int = 3, oracle=None, **streams):
    cfg = make_config(model_dir, limit=limit, streams=streams)
    ctx = make_ctx(tmp_path, cfg, oracle=oracle or OracleEngine())
    student = scripted_student(engine, ctx.problems(), solved)
    ctx.use_engine(cfg.student.engine, student)
    sample_stage(ctx)
    return ctx, student


def test_sample_stage_with_tiny_model_records_provenance_and_resumes(tmp_path, tiny_model_dir):
    ctx = make_ctx(tmp_path, make_config(tiny_model_dir, limit=2))
    summary = sample_stage(ctx)
    traces = ctx.store.stage("samples").records(Trace)
    assert summary["samples"] == len(traces) == 4
    assert {t.problem_id for t in traces} == {p.id for p in ctx.problems()}
    for t in traces:
        assert t.stream == "sample" and t.model == str(tiny_model_dir) and t.template == "student"
        assert t.sampling["temperature"] == 1.0 and t.sampling["max_tokens"] == 16 and t.seed == 0
        assert isinstance(t.correct, bool)
    shards = sorted(ctx.store.stage("samples").dir.glob("shard-*"))
    assert sample_stage(ctx)["new"] == 0
    assert sorted(ctx.store.stage("samples").dir.glob("shard-*")) == shards


def test_all_six_streams_on_the_lab(tmp_path, tiny_model_dir, tiny_engine):
    ctx, student = _build(tmp_path, tiny_model_dir, tiny_engine, sar={"cost_margin": 100.0})
    problems = ctx.problems()
    summary = streams_stage(ctx)
    assert set(summary) == {"gold", "rft", "oracle_synth", "oracle_refine", "sar", "sar_repair"}
    samples = {t.id: t for t in ctx.store.stage("samples").records(Trace)}
    streams = {name: stream_traces(ctx.store, name) for name in summary}

    assert len(streams["gold"]) == 3 and all(t.correct for t in streams["gold"])
    rft = streams["rft"]
    assert len(rft) == 2 and all(t.parent_id in samples and samples[t.parent_id].correct for t in rft)
    assert {t.problem_id for t in rft} == {p.id for p in problems[:2]}
    synth = streams["oracle_synth"]
    assert len(synth) == 3 and all(t.correct and t.template == "solve" and t.model == "lab:oracle" for t in synth)
    rft_ids = {t.id for t in rft}
    for name in ("oracle_refine", "sar"):
        assert len(streams[name]) == 2 and all(t.parent_id in rft_ids and t.correct for t in streams[name])
    assert {t.metrics["sar_outcome"] for t in streams["sar"]} == {"accepted"}
    assert all(t.template == "sar" for t in streams["sar"])

    [repair] = streams["sar_repair"]
    unsolved = problems[2]
    assert repair.problem_id == unsolved.id and repair.correct and repair.template == "repair_step"
    parent = samples[repair.parent_id]
    prefix = "".join(split_steps(parent.text)[: repair.metrics["error_step"]])
    assert repair.metrics["error_step"] == len(split_steps(parent.text)) - 2
    assert repair.text.encode()[: len(prefix.encode())] == prefix.encode()
    assert repair.text.endswith(f"The answer is {unsolved.answer}.")
    assert all(p.startswith(prefix) for p in student.continued)

    shards = {name: sorted(ctx.store.stage(f"stream_{name}").dir.glob("shard-*")) for name in summary}
    streams_stage(ctx)
    assert {name: sorted(ctx.store.stage(f"stream_{name}").dir.glob("shard-*")) for name in summary} == shards


def test_sar_repair_with_the_lab_locator_keeps_the_prefix(tmp_path, tiny_model_dir, tiny_engine):
    ctx, _ = _build(tmp_path, tiny_model_dir, tiny_engine, solved=1, limit=2, sar_repair={"locator": "lab", "continuations": 2},
                    enabled=["sar_repair"])
    ctx.streams = ("sar_repair",)
    streams_stage(ctx)
    [repair] = stream_traces(ctx.store, "sar_repair")
    wrong = wrong_text(ctx.problems()[1])
    steps = split_steps(wrong)
    assert repair.metrics["locator"] == "lab"
    assert repair.text.startswith("".join(steps[:-2])) and repair.text != wrong
    assert 0 < repair.metrics["native_fraction"] < 1


def test_sar_gate_rejects_a_refinement_whose_cost_rises_past_the_margin(tmp_path, tiny_model_dir, tiny_engine):
    cfg = make_config(tiny_model_dir, limit=1)
    ctx = make_ctx(tmp_path / "probe", cfg)
    problem = ctx.problems()[0]
    request = ctx.student_template().request(question=problem.question)
    base = correct_text(problem)
    texts = [base] + [f"{junk * 8}\n\n{base}" for junk in ("§¶ ~~ ## ¤ ", "qz xj vv kk ", "}{ ]] [[ ^^ ", "0 0 0 0 ")]
    nll = [c["nll"] for c in adaptation_cost(tiny_engine, [request] * len(texts), texts)]
    parent, refined = texts[nll.index(min(nll))], texts[nll.index(max(nll))]
    delta = max(nll) - min(nll)
    assert delta > 0

    class FixedOracle:
        name = "fixed-oracle"

        def generate(self, requests, n, sampling):
            from stylealign.engines.base import Completion

            return [[Completion(refined)] * n for _ in requests]

        def close(self):
            pass

    outcomes = {}
    for margin in (delta / 2, delta + 1.0):
        run = tmp_path / f"margin-{margin:.3f}"
        ctx = make_ctx(run, make_config(tiny_model_dir, limit=1, streams={"sar": {"cost_margin": margin, "max_attempts": 2}}),
                       oracle=FixedOracle())
        ctx.use_engine(ctx.config.student.engine, ScriptedStudent(
            tiny_engine, ctx.problems(), {problem.question: [parent, parent]}
        ))
        ctx.streams = ("sar",)
        sample_stage(ctx)
        streams_stage(ctx)
        [trace] = stream_traces(ctx.store, "sar")
        outcomes[margin] = trace
    rejected, accepted = outcomes[delta / 2], outcomes[delta + 1.0]
    assert rejected.metrics["sar_outcome"] == "kept_parent" and rejected.text == parent
    assert rejected.metrics["sar_attempts"] == 2 and all(r.startswith("cost_rise") for r in rejected.metrics["rejections"])
    assert rejected.model == "scripted-student"
    assert accepted.metrics["sar_outcome"] == "accepted" and accepted.text == refined
    assert abs(accepted.metrics["nll_delta"] - delta) < 1e-4 and accepted.model == "fixed-oracle"


def test_oracle_failures_are_retried_and_recorded(tmp_path, tiny_model_dir, tiny_engine):
    ctx, _ = _build(tmp_path / "flaky", tiny_model_dir, tiny_engine, oracle=FlakyOracle(OracleEngine()))
    ctx.streams = ("oracle_synth", "sar")
    streams_stage(ctx)
    assert len(stream_traces(ctx.store, "oracle_synth")) == 3
    assert all(t.metrics["oracle_attempts"] >= 2 for t in stream_traces(ctx.store, "oracle_synth"))
    failures = ctx.store.stage("failures_stream_oracle_synth").records(Trace)
    assert failures == []  # retries succeeded: nothing left failed

    ctx, _ = _build(tmp_path / "dead", tiny_model_dir, tiny_engine, oracle=FlakyOracle(OracleEngine(), always_fail=True))
    ctx.streams = ("oracle_synth", "sar")
    with pytest.raises(StreamsFailed, match=r"streams oracle_synth, sar got no data.*3 requests failed.*--allow-failures"):
        streams_stage(ctx)
    assert len(stream_traces(ctx.store, "rft")) == 2  # what finished before the failing stream is kept
    failed = ctx.store.read_json("streams/failures.json")
    assert failed["oracle_synth"]["failed_requests"] == 3 and failed["oracle_synth"]["failed_sends"] == 9
    assert "circuit open" in failed["sar"]["last_error"]  # 10 failed sends in a row: the oracle is not asked again
    ctx.allow_failures = True
    summary = streams_stage(ctx)
    assert stream_traces(ctx.store, "oracle_synth") == [] and stream_traces(ctx.store, "sar") == []
    assert len(stream_traces(ctx.store, "rft")) == 2
    failures = ctx.store.stage("failures_stream_oracle_synth").records(Trace)
    assert len(failures) == 3 and all("EngineError" in f.metrics["error"] and f.metrics["attempts"] == 3 for f in failures)
    assert "left_undone=3" in summary["oracle_synth"]
    assert ctx.store.read_json("streams/counts.json")["oracle_synth"]["left_undone"] == 3
    assert ctx.store.stage("failures_stream_sar").records(Trace)

    ctx.use_engine(ctx.config.oracle.engine, OracleEngine())
    streams_stage(ctx)
    assert len(stream_traces(ctx.store, "oracle_synth")) == 3 and len(stream_traces(ctx.store, "sar")) == 2


def test_garbage_answers_are_malformed_not_kept(tmp_path, tiny_model_dir, tiny_engine):
    class Garbage:
        name = "garbage"

        def generate(self, requests, n, sampling):
            from stylealign.engines.base import Completion

            return [[Completion("lorem ipsum dolor")] * n for _ in requests]

        def close(self):
            pass

    ctx, _ = _build(tmp_path, tiny_model_dir, tiny_engine, oracle=Garbage(), limit=2)
    ctx.streams = ("oracle_synth",)
    with pytest.raises(StreamsFailed, match="malformed: no final answer"):
        streams_stage(ctx)
    failures = ctx.store.stage("failures_stream_oracle_synth").records(Trace)
    assert stream_traces(ctx.store, "oracle_synth") == []
    assert len(failures) == 2 and all(f.metrics["error"].startswith("malformed") and f.text == "lorem ipsum dolor" for f in failures)


def test_rft_all_distinct_dedups_by_equations_and_cleans_debris(tmp_path, tiny_model_dir, tiny_engine):
    cfg = make_config(tiny_model_dir, limit=1, streams={"rft": {"selection": "all_distinct"}}, sampling={"k": 3, "max_tokens": 16})
    ctx = make_ctx(tmp_path, cfg)
    p = ctx.problems()[0]
    text = correct_text(p)
    same_equations = text.replace(" has ", " now has ")
    looped = text + "\nThe answer is " + p.answer + "." + ("\nThe answer is " + p.answer + ".") * 4
    ctx.use_engine(cfg.student.engine, ScriptedStudent(tiny_engine, [p], {p.question: [text, same_equations, looped]}))
    ctx.streams = ("rft",)
    sample_stage(ctx)
    streams_stage(ctx)
    rft = stream_traces(ctx.store, "rft")
    assert reasoning_signature(text) == reasoning_signature(same_equations)
    assert len(rft) == 1 and rft[0].text == text and rft[0].metrics["candidates"] == 3
    assert clean_text(looped).actions == ["repeated_tail"]
    assert clean_text(looped).text == text


def test_rft_lowest_cost_selection_picks_the_cheapest_correct_sample(tmp_path, tiny_model_dir, tiny_engine):
    cfg = make_config(tiny_model_dir, limit=1, streams={"rft": {"selection": "lowest_cost"}})
    ctx = make_ctx(tmp_path, cfg)
    p = ctx.problems()[0]
    texts = [correct_text(p), "So we compute it.\n\n" + correct_text(p)]
    ctx.use_engine(cfg.student.engine, ScriptedStudent(tiny_engine, [p], {p.question: texts}))
    ctx.streams = ("rft",)
    sample_stage(ctx)
    streams_stage(ctx)
    [chosen] = stream_traces(ctx.store, "rft")
    costs = adaptation_cost(tiny_engine, [ctx.student_template().request(question=p.question)] * 2, texts)
    cheapest = min(range(2), key=lambda i: costs[i]["nll"])
    assert chosen.text == texts[cheapest] and chosen.metrics["nll"] == costs[cheapest]["nll"]
    assert chosen.metrics["selection"] == "lowest_cost" and chosen.metrics["candidates"] == 2


def test_oracle_streams_over_a_loopback_server_survive_server_errors(tmp_path, tiny_model_dir, tiny_engine):
    from stylealign.server import BackgroundServer, create_app

    with BackgroundServer(create_app(FlakyOracle(OracleEngine()), "lab-oracle")) as url:
        oracle = {"engine": {"type": "openai", "base_url": url, "model": "lab-oracle", "max_retries": 0, "api_key_env": None}}
        cfg = make_config(tiny_model_dir, limit=2, oracle=oracle)
        ctx = make_ctx(tmp_path, cfg)
        ctx.use_engine(cfg.student.engine, scripted_student(tiny_engine, ctx.problems(), 1))
        ctx.streams = ("oracle_synth", "sar", "sar_repair")
        sample_stage(ctx)
        streams_stage(ctx)
    synth = stream_traces(ctx.store, "oracle_synth")
    assert len(synth) == 2 and all(t.model == "lab-oracle" and t.metrics["oracle_attempts"] >= 2 for t in synth)
    [sar_trace] = stream_traces(ctx.store, "sar")
    assert sar_trace.metrics["sar_outcome"] == "accepted"
    [repair] = stream_traces(ctx.store, "sar_repair")
    assert repair.problem_id == ctx.problems()[1].id and repair.metrics["oracle"] == "lab-oracle"


def test_exemplars_are_drawn_as_from_the_list_of_other_problems_traces():
    import random
    from types import SimpleNamespace

    from stylealign.records import Problem, content_id
    from stylealign.streams.context import StreamContext

    draw = random.Random(1)
    for seed in range(100):
        pool = [Trace(id=f"t{i}", problem_id=f"p{draw.randint(0, 5)}", text=f"text {i}", stream="rft")
                for i in range(draw.randint(0, 20))]
        exemplars = draw.randint(0, 5)
        sc = StreamContext(run=SimpleNamespace(config=SimpleNamespace(seed=seed)), problems=[], samples={})
        for j in range(7):
            problem = Problem(id=f"p{j}", question="q", answer="1")
            others = [t for t in pool if t.problem_id != problem.id]
            expected = random.Random(content_id(seed, problem.id)).sample(others, min(exemplars, len(others)))
            assert sc.exemplars(pool, problem, exemplars) == [t.text for t in expected]
