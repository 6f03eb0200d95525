"""The streams from the related literature (grape, sdft, mix) and the registry that orders every stream.

The students here are real `Engine`s with fixed samples; the grape student's
scores are constructed (a known mean token log-prob per text), so which
candidate GRAPE must pick is known in advance.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from streams_setup import (
    ScriptedStudent,
    correct_text,
    make_config,
    make_ctx,
    scripted_student,
    wrong_text,
)

from stylealign.config import ConfigError
from stylealign.engines.base import Completion, EngineError, TokenScores
from stylealign.oracles.engine import OracleEngine
from stylealign.records import Trace
from stylealign.stages.sample import sample_stage
from stylealign.stages.score import score_stage
from stylealign.stages.streams import streams_stage
from stylealign.streams.listing import stream_traces
from stylealign.streams.mix import assign
from stylealign.streams.registry import build_order, check_stream_settings

POOL = ("gold", "rft", "oracle_synth", "oracle_refine")


def constructed_nll(text: str, ties: dict[str, float]) -> float:
    """Every token of `text` gets log-prob -nll: a per-text value in [0.5, 2.5), or the one `ties` fixes."""
    if text in ties:
        return ties[text]
    return 0.5 + 2 * int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 2**32


class ConstructedScores(ScriptedStudent):
    """Scripted samples; each response scored as whitespace tokens that all carry log-prob -constructed_nll(text)."""

    ties: dict[str, float] = {}

    def score(self, requests, responses):
        out = []
        for text in responses:
            spans = [m.span() for m in re.finditer(r"\S+", text)]
            out.append(TokenScores([text[a:b] for a, b in spans], [-constructed_nll(text, self.ties)] * len(spans), spans))
        return out


def test_grape_picks_the_most_likely_verified_candidate_and_never_costs_more_than_the_pool(tmp_path, tiny_model_dir, tiny_engine):
    # the pool listed against the tie-break order, so list order would pick otherwise
    cfg = make_config(tiny_model_dir, limit=4, streams={"grape": {"pool": ["rft", "oracle_refine", "oracle_synth", "gold"]}})
    ctx = make_ctx(tmp_path, cfg, oracle=OracleEngine())
    problems = ctx.problems()
    longer = {p.id: "So we compute it.\n\n" + correct_text(p) for p in problems}
    samples = {p.question: [longer[p.id], correct_text(p)] for p in problems[:3]}
    samples[problems[3].question] = [wrong_text(problems[3])] * 2
    # problem 0: the reference and a sample with as many tokens tie at the best cost: the stream named first wins;
    # problem 1: two samples tie at the best cost: the one with fewer tokens wins
    same_length = problems[0].reference_solution.replace("\n", "\n\n")
    samples[problems[0].question] = [same_length, correct_text(problems[0])]
    student = ConstructedScores(tiny_engine, problems, samples)
    student.ties = {problems[0].reference_solution: 0.1, same_length: 0.1, correct_text(problems[1]): 0.1,
                    longer[problems[1].id]: 0.1}
    ctx.use_engine(cfg.student.engine, student)
    ctx.streams = (*POOL, "grape")
    sample_stage(ctx)
    streams_stage(ctx)
    score_stage(ctx)

    candidates: dict[str, list[tuple[str, str]]] = {p.id: [] for p in problems}
    for t in ctx.store.stage("samples").records(Trace):
        if t.correct:
            candidates[t.problem_id].append(("rft", t.text))
    for name in ("gold", "oracle_synth", "oracle_refine"):
        for t in stream_traces(ctx.store, name):
            if t.correct:
                candidates[t.problem_id].append((name, t.text))
    grape = {t.problem_id: t for t in stream_traces(ctx.store, "grape")}
    assert set(grape) == {p.id for p in problems}  # the unsolved problem still has gold and oracle traces
    for problem_id, chosen in grape.items():
        best = min(constructed_nll(text, student.ties) for _, text in candidates[problem_id])
        assert chosen.metrics["nll"] == pytest.approx(best)
        assert chosen.metrics["mean_logprob"] == pytest.approx(-best)
        assert (chosen.metrics["grape_source"], chosen.text) in candidates[problem_id]
        assert chosen.metrics["grape_candidates"] == len(candidates[problem_id])
        assert chosen.correct
    assert (grape[problems[0].id].metrics["grape_source"], grape[problems[0].id].text) == ("gold", problems[0].reference_solution)
    assert (grape[problems[1].id].metrics["grape_source"], grape[problems[1].id].text) == ("rft", correct_text(problems[1]))

    scored = {name: ctx.store.stage(f"scored_{name}").records(Trace) for name in (*POOL, "grape")}
    for t in scored["grape"]:
        pool_ppl = [s.metrics["ppl"] for name in POOL for s in scored[name] if s.problem_id == t.problem_id and s.correct]
        assert pool_ppl and t.metrics["ppl"] <= min(pool_ppl) + 1e-9
    rows = {r["stream"]: r for r in json.loads((tmp_path / "streams.json").read_text())}
    assert sum(rows["grape"]["grape_sources"].values()) == rows["grape"]["traces"] == 4
    assert rows["grape"]["edit_distance"] is None and rows["grape"]["coverage"] == 1


def constructed_rank(text: str) -> int:
    """Every token of `text` gets this rank (1 to 40), independent of its constructed NLL."""
    return 1 + int(hashlib.sha256(b"rank" + text.encode()).hexdigest()[:8], 16) % 40


class RankedScores(ConstructedScores):
    """ConstructedScores with every token of a text at rank `constructed_rank(text)`."""

    def score(self, requests, responses):
        out = super().score(requests, responses)
        for scores, text in zip(out, responses, strict=True):
            scores.ranks = [constructed_rank(text)] * len(scores.logprobs)
        return out


def grape_run(tmp_path, tiny_model_dir, tiny_engine, criterion: str, student_class=RankedScores, **extra):
    cfg = make_config(tiny_model_dir, limit=4, streams={"grape": {"criterion": criterion}}, **extra)
    ctx = make_ctx(tmp_path, cfg, oracle=OracleEngine())
    problems = ctx.problems()
    samples = {p.question: [f"So we compute it.\n\n{correct_text(p)}", correct_text(p)] for p in problems}
    student = ctx.use_engine(cfg.student.engine, student_class(tiny_engine, problems, samples))
    # the student's own texts cost 1 nat a token: below most oracle texts, whose reward is twice theirs
    student.ties = {text: 1.0 for texts in samples.values() for text in texts}
    ctx.streams = (*POOL, "grape")
    sample_stage(ctx)
    streams_stage(ctx)
    candidates: dict[str, list[Trace]] = {p.id: [] for p in problems}
    for t in ctx.store.stage("samples").records(Trace):
        if t.correct:
            candidates[t.problem_id].append(t)
    for name in ("gold", "oracle_synth", "oracle_refine"):
        for t in stream_traces(ctx.store, name):
            if t.correct:
                candidates[t.problem_id].append(t)
    return student, problems, candidates, {t.problem_id: t for t in stream_traces(ctx.store, "grape")}


@pytest.mark.parametrize("criterion", ["rank_surprisal", "car"])
def test_grape_selects_by_the_configured_predictor(tmp_path, tiny_model_dir, tiny_engine, criterion):
    from stylealign.lab.reward import lab_reward

    student, problems, candidates, grape = grape_run(tmp_path, tiny_model_dir, tiny_engine, criterion)
    by_id = {p.id: p for p in problems}

    def value(problem_id: str, text: str) -> float:
        nll = constructed_nll(text, student.ties)
        if criterion == "rank_surprisal":  # every token alike: sum(min(rank, 100)) / sum(nll) = rank / nll
            return constructed_rank(text) / nll
        return -lab_reward(by_id[problem_id], text, 1.0) / nll  # CAR = reward / nll, higher is better

    assert set(grape) == {p.id for p in problems}
    picked_other_than_likelihood = 0
    for problem_id, chosen in grape.items():
        texts = [t.text for t in candidates[problem_id]]
        assert value(problem_id, chosen.text) == pytest.approx(min(value(problem_id, t) for t in texts))
        assert chosen.metrics["grape_criterion"] == criterion
        expected = value(problem_id, chosen.text)
        assert chosen.metrics["grape_value"] == pytest.approx(expected if criterion == "rank_surprisal" else -expected)
        picked_other_than_likelihood += chosen.text != min(texts, key=lambda t: constructed_nll(t, student.ties))
    assert picked_other_than_likelihood, "the constructed scores must make the criteria disagree somewhere"


def test_grape_by_rank_surprisal_needs_ranks_and_car_needs_a_reward(tmp_path, tiny_model_dir, tiny_engine):
    with pytest.raises(ValueError, match="needs token ranks, which the student's engine"):
        grape_run(tmp_path, tiny_model_dir, tiny_engine, "rank_surprisal", student_class=ConstructedScores)
    with pytest.raises(ConfigError, match="criterion 'car' discounts each candidate's reward"):
        check_stream_settings(make_config(
            tiny_model_dir, streams={"enabled": ["grape"], "grape": {"criterion": "car"}}, reward={"type": "none"}
        ))


class SelfRewriter(ScriptedStudent):
    """Scripted samples; asked to restate a reference (the sdft prompt) it answers what `rewrites` says."""

    def __init__(self, *args, rewrites: dict[str, str | Exception], **kwargs):
        super().__init__(*args, **kwargs)
        self.rewrites, self.prompts = rewrites, []

    def generate(self, requests, n, sampling):
        plain = [r for r in requests if "[Reference solution]" not in r.messages[-1]["content"]]
        if plain:
            return super().generate(requests, n, sampling)
        out = []
        for r in requests:
            self.prompts.append(r.messages[-1]["content"])
            question = next(q for q in self.rewrites if f"[Problem]\n{q}\n" in r.messages[-1]["content"])
            answer = self.rewrites[question]
            if isinstance(answer, Exception):
                raise answer
            out.append([Completion(answer)] * n)
        return out


def test_sdft_keeps_the_reference_unless_the_students_rewrite_verifies(tmp_path, tiny_model_dir, tiny_engine):
    cfg = make_config(tiny_model_dir, limit=4)
    ctx = make_ctx(tmp_path, cfg)
    problems = ctx.problems()
    own_words = f"I restate it my way.\n\n{correct_text(problems[0])}"
    rewrites = {
        problems[0].question: own_words,
        problems[1].question: wrong_text(problems[1]),
        problems[2].question: "I am not sure how to do this one.",
        problems[3].question: EngineError("prompt too long for the student's context"),
    }
    samples = {p.question: [correct_text(p)] * 2 for p in problems}
    student = SelfRewriter(tiny_engine, problems, samples, rewrites=rewrites)
    ctx.use_engine(cfg.student.engine, student)
    ctx.streams = ("sdft",)
    sample_stage(ctx)
    summary = streams_stage(ctx)
    assert set(summary) == {"gold", "sdft"}  # gold is built because sdft rewrites it; no oracle was asked
    gold = {t.problem_id: t for t in stream_traces(ctx.store, "gold")}
    sdft = {t.problem_id: t for t in stream_traces(ctx.store, "sdft")}
    assert len(sdft) == 4 and all(t.parent_id == gold[pid].id for pid, t in sdft.items())
    for p in problems:  # the student saw each problem with its reference
        assert any(f"[Problem]\n{p.question}\n" in s and f"[Reference solution]\n{gold[p.id].text}" in s for s in student.prompts)

    accepted = sdft[problems[0].id]
    assert accepted.metrics["sdft_outcome"] == "rewritten" and accepted.text == own_words
    assert accepted.model == student.name and accepted.template == "sdft" and accepted.correct
    outcomes = {pid: (t.metrics["sdft_outcome"], t.metrics.get("sdft_rejection", "")) for pid, t in sdft.items()}
    assert outcomes[problems[1].id] == ("kept_reference", "wrong_answer")
    assert outcomes[problems[2].id] == ("kept_reference", "no_answer")
    assert outcomes[problems[3].id][0] == "kept_reference" and "prompt too long" in outcomes[problems[3].id][1]
    for p in problems[1:]:
        kept = sdft[p.id]
        assert kept.text == p.reference_solution and kept.correct == gold[p.id].correct
    assert sdft[problems[1].id].metrics["sdft_rewrite"] == wrong_text(problems[1])

    asked = len(student.prompts)
    streams_stage(ctx)
    assert len(student.prompts) == asked  # finished work is not asked again
    score_stage(ctx)
    [row] = json.loads((tmp_path / "streams.json").read_text())
    assert row["sdft_rewritten"] == 1 and row["sdft_acceptance"] == pytest.approx(1 / 4)
    kept_edits = [t.metrics["edit_distance"] for t in ctx.store.stage("scored_sdft").records(Trace)]
    assert sorted(kept_edits)[:3] == [0.0, 0.0, 0.0] and max(kept_edits) > 0
    assert row["edit_distance"] == pytest.approx(sum(kept_edits) / 4)


def test_mix_assignment_keeps_the_ratio_and_is_deterministic_by_seed():
    weights = {"rft": 4.0, "oracle_synth": 1.0}
    both = {f"p{i:02d}": ["rft", "oracle_synth"] for i in range(20)}
    chosen = assign(weights, both, seed=0)
    assert Counter(chosen.values()) == {"rft": 16, "oracle_synth": 4}
    assert assign(weights, both, seed=0) == chosen
    assert len({tuple(sorted(assign(weights, both, seed=s).items())) for s in range(6)}) > 1
    # problems only one component covers go to it, and the rest make up for it as far as they can
    partial = {**{f"a{i}": ["rft", "oracle_synth"] for i in range(6)}, **{f"s{i}": ["oracle_synth"] for i in range(3)}}
    counts = Counter(assign(weights, partial, seed=1).values())
    assert counts == {"rft": 6, "oracle_synth": 3}
    assert Counter(assign({"rft": 1.0, "oracle_synth": 1.0}, both, seed=2).values()) == {"rft": 10, "oracle_synth": 10}


def test_mix_stream_copies_each_problems_trace_from_one_component(tmp_path, tiny_model_dir, tiny_engine):
    ctx = make_ctx(tmp_path, make_config(tiny_model_dir, limit=5), oracle=OracleEngine())
    ctx.use_engine(ctx.config.student.engine, scripted_student(tiny_engine, ctx.problems(), 4))
    ctx.streams = ("mix",)
    sample_stage(ctx)
    streams_stage(ctx)
    sources = {name: {t.id: t for t in stream_traces(ctx.store, name)} for name in ("rft", "oracle_synth")}
    mix = stream_traces(ctx.store, "mix")
    assert len({t.problem_id for t in mix}) == len(mix) == 5
    for t in mix:
        parent = sources[t.metrics["mix_source"]][t.parent_id]
        assert (t.text, t.problem_id, t.model) == (parent.text, parent.problem_id, parent.model)
    unsolved = ctx.problems()[4].id
    assert next(t for t in mix if t.problem_id == unsolved).metrics["mix_source"] == "oracle_synth"
    score_stage(ctx)
    [row] = json.loads((tmp_path / "streams.json").read_text())
    assert row["mix_problems"] == {"rft": 4, "oracle_synth": 1} and row["edit_distance"] is None


def test_streams_are_built_after_what_they_need_and_bad_sections_are_refused(tiny_model_dir: Path):
    cfg = make_config(tiny_model_dir)
    assert build_order(cfg, ["mix", "sar"]) == ["rft", "sar", "oracle_synth", "mix"]
    assert build_order(cfg, ["grape"]) == ["gold", "oracle_synth", "rft", "oracle_refine", "grape"]
    assert build_order(cfg, ["sdft", "gold"]) == ["gold", "sdft"]
    cyclic = make_config(tiny_model_dir, streams={"grape": {"pool": ["mix"]}, "mix": {"components": {"grape": 1.0}}})
    with pytest.raises(ValueError, match="cycle: grape -> mix -> grape"):
        build_order(cyclic, ["grape"])
    for section, match in (
        ({"mix": {"components": {"rft": True}}}, r"streams.mix.components.rft"),
        ({"mix": {"components": {"mix": 1.0}}}, r"streams.mix.components: .*\['mix'\]"),
        ({"mix": {"components": {"rft": 0}}}, r"greater than 0"),
        ({"grape": {"pool": ["gold", "nope"]}}, r"streams.grape.pool: .*\['nope'\]"),
        ({"enabled": ["gold", "grap"]}, r"unknown streams \['grap'\]"),
    ):
        with pytest.raises(ConfigError, match=match):
            check_stream_settings(make_config(tiny_model_dir, streams=section))
