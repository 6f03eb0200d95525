"""Avg@k / pass@k math against hand-computed values, the bootstrap interval, and resumable evaluation records."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from stylealign.config import DatasetConfig, EvaluationConfig
from stylealign.engines.base import Completion, Request, SamplingParams, TokenScores
from stylealign.evaluation import (
    accuracy_summary,
    avg_at_k,
    bootstrap_ci,
    dataset_label,
    evaluate_engine,
    pass_at_k,
)
from stylealign.prompts import load_template
from stylealign.records import Problem, Trace
from stylealign.store import RunStore


def test_pass_at_k_matches_hand_computed_values() -> None:
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - 3 / 6)
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252)
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(5, 5, 1) == 1.0
    assert pass_at_k(5, 3, 3) == 1.0  # fewer than k wrong samples: some draw of k always holds a correct one
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)


def test_avg_at_k_is_mean_of_per_problem_accuracy() -> None:
    assert avg_at_k([[True, False, False, False], [True, True, False, False]]) == pytest.approx(0.375)
    assert avg_at_k([[True], [True, False]]) == pytest.approx(0.75)


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_problems() -> None:
    values = [0.0] * 50 + [1.0] * 50
    low, high = bootstrap_ci([values])
    assert low < 0.5 < high
    assert 0.35 < low and high < 0.65  # normal approx: ±1.96·0.05
    wide = bootstrap_ci([[0.0, 1.0] * 5])
    assert wide[1] - wide[0] > high - low
    assert bootstrap_ci([[0.7] * 20]) == (pytest.approx(0.7), pytest.approx(0.7))
    assert bootstrap_ci([values]) == (low, high), "a fixed seed makes the interval reproducible"


def _trace(dataset: str, problem: str, sample: int, correct: bool) -> Trace:
    return Trace(
        id=f"{dataset}-{problem}-{sample}",
        problem_id=problem,
        text="",
        stream="eval",
        correct=correct,
        metrics={"dataset": dataset, "sample": sample},
    )


def test_accuracy_summary_averages_test_sets_and_computes_pass_at_k() -> None:
    hits = {("a", "p1"): [1, 0, 0, 0], ("a", "p2"): [1, 1, 1, 1], ("b", "q1"): [0, 0, 0, 0]}
    traces = [_trace(d, p, i, bool(c)) for (d, p), cs in hits.items() for i, c in enumerate(cs)]
    s = accuracy_summary(traces, k=4)
    assert s["datasets"]["a"]["avg_at_k"] == pytest.approx(0.625)
    assert s["datasets"]["b"]["avg_at_k"] == 0.0
    assert s["accuracy"] == pytest.approx((0.625 + 0.0) / 2)
    assert s["datasets"]["a"]["pass_at_k"] == pytest.approx(1.0)
    assert accuracy_summary(traces, k=1)["datasets"]["a"]["pass_at_k"] == pytest.approx(0.625)
    assert s["ci_low"] <= s["accuracy"] <= s["ci_high"]
    assert accuracy_summary([], k=4)["accuracy"] is None


class ScriptedEngine:
    """Answers problem i correctly in its first `hits[i]` samples: a known truth to measure against."""

    name = "scripted"

    def __init__(self, hits: dict[str, int], answers: dict[str, str]):
        self.hits, self.answers, self.calls = hits, answers, 0

    def generate(
        self, requests: Sequence[Request], n: int, sampling: SamplingParams
    ) -> list[list[Completion]]:
        self.calls += 1
        out = []
        for req in requests:
            q = req.messages[-1]["content"]
            out.append(
                [
                    Completion(
                        text=f"So the answer is \\boxed{{{self.answers[q] if i < self.hits[q] else 'nope'}}}."
                    )
                    for i in range(n)
                ]
            )
        return out

    def score(self, requests: Sequence[Request], responses: Sequence[str]) -> list[TokenScores]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def test_evaluate_engine_grades_every_sample_and_resumes(tmp_path: Path) -> None:
    problems = [Problem(id=f"p{i}", question=f"What is {i} times 3?", answer=str(3 * i)) for i in range(20)]
    hits = {p.question: i % 5 for i, p in enumerate(problems)}
    engine = ScriptedEngine(hits, {p.question: p.answer for p in problems})
    cfg = EvaluationConfig(datasets=[DatasetConfig(source="lab", split="test")], k=4)
    label = dataset_label(cfg.datasets[0])
    stage = RunStore(tmp_path).stage("eval_base")
    template = load_template("student")
    evaluate_engine(engine, [(label, problems)], template, cfg, stage, model="m", seed=0)
    traces = stage.records(Trace)
    assert len(traces) == 20 * 4
    expected = sum(min(h, 4) / 4 for h in hits.values()) / 20
    assert accuracy_summary(traces, 4)["accuracy"] == pytest.approx(expected)
    by_problem = {p.id: sum(t.correct for t in traces if t.problem_id == p.id) for p in problems}
    assert by_problem == {p.id: min(hits[p.question], 4) for p in problems}
    calls = engine.calls
    evaluate_engine(engine, [(label, problems)], template, cfg, stage, model="m", seed=0)
    assert engine.calls == calls, "a finished evaluation is not redone"
    evaluate_engine(engine, [(label, problems)], template, cfg, stage, model="other", seed=0)
    assert engine.calls > calls, "another model is evaluated anew"


def test_dataset_label_names_the_window() -> None:
    assert dataset_label(DatasetConfig(source="math500", split="test")) == "math500:test"
    assert dataset_label(DatasetConfig(source="lab", split="test", limit=50, offset=10)) == "lab:test[10:60]"
