"""The predictors of utility (PPL, mean rank, RSR, CAR, GRAPE likelihood, reward) on hand-computed numbers, and the
check of their orderings against accuracy: paired bootstrap draws, outcomes, which pairs a run tells apart."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stylealign.engines.base import TokenScores
from stylealign.metrics.adaptation import cost_from_scores
from stylealign.metrics.aggregate import stream_summary
from stylealign.metrics.predictors import (
    RSR_RANK_CLIP,
    compatibility_adjusted_reward,
    predicted_ranks,
    rank_surprisal_ratio,
    ranking_lines,
)
from stylealign.records import Trace
from stylealign.report.predictors import paired_accuracy_replicates, predictor_check


def test_rank_surprisal_ratio_is_mean_clipped_rank_over_mean_surprisal() -> None:
    logprobs, ranks = [-0.5, -1.5, -2.0], [1, 3, 5000]
    assert rank_surprisal_ratio(logprobs, ranks) == pytest.approx((1 + 3 + RSR_RANK_CLIP) / 4.0)
    assert rank_surprisal_ratio([0.0, 0.0], [1, 1]) is None, "no surprisal: the ratio is undefined"


def test_car_discounts_the_reward_by_the_students_loss() -> None:
    assert compatibility_adjusted_reward(1.5, 0.5) == pytest.approx(3.0)
    assert compatibility_adjusted_reward(1.5, 3.0) == pytest.approx(0.5)
    assert compatibility_adjusted_reward(None, 0.5) is None and compatibility_adjusted_reward(1.0, None) is None
    assert math.isfinite(compatibility_adjusted_reward(1.0, 0.0))


def test_trace_and_stream_predictors_come_from_one_scoring() -> None:
    text = "a b c d"
    spans = [(0, 1), (2, 3), (4, 5), (6, 7)]
    ranked = TokenScores(list("abcd"), [-0.1, -0.2, -1.0, -2.7], spans, ranks=[1, 1, 4, 30])
    cost = cost_from_scores(ranked, text)
    assert cost["mean_rank"] == pytest.approx(9.0) and cost["rsr"] == pytest.approx(36 / 4.0)
    unranked = cost_from_scores(TokenScores(list("abcd"), ranked.logprobs, spans), text)
    assert unranked["mean_rank"] is None and unranked["rsr"] is None and unranked["nll"] == cost["nll"]

    short = cost_from_scores(TokenScores(["a"], [-2.0], [(0, 1)], ranks=[3]), "a")
    traces = [Trace(id=str(i), problem_id=str(i), text="", stream="s", metrics={**m, "reward": r})
              for i, (m, r) in enumerate([(cost, 2.0), (short, 1.0)])]
    row = stream_summary(traces, ["0", "1"])
    assert row["mean_rank"] == pytest.approx((4 * 9.0 + 1 * 3) / 5), "token-weighted, like PPL"
    assert row["rsr"] == pytest.approx((9.0 + 1.5) / 2), "one value per trace"
    assert row["car"] == pytest.approx((2.0 / 1.0 + 1.0 / 2.0) / 2)
    assert row["grape_likelihood"] == pytest.approx(-(1.0 + 2.0) / 2)


def test_predicted_ranks_turn_each_predictor_so_that_one_is_best_and_ties_share() -> None:
    rows = [
        {"stream": "a", "ppl": 1.2, "reward": 1.0, "car": None},
        {"stream": "b", "ppl": 2.5, "reward": 2.0, "car": None},
        {"stream": "c", "ppl": 1.2, "reward": 1.5, "car": None},
    ]
    places = predicted_ranks(rows)
    assert {s: p["ppl"] for s, p in places.items()} == {"a": 1, "b": 3, "c": 1}
    assert {s: p["reward"] for s, p in places.items()} == {"a": 3, "b": 1, "c": 2}
    assert all(p["car"] is None for p in places.values())
    for row in rows:
        row["predicted_rank"] = places[row["stream"]]
    lines = ranking_lines(rows)
    assert "student PPL (lower is better): a = c > b" in lines
    assert "reward (higher is better): b > c > a" in lines
    assert "CAR (higher is better): unavailable (no stream has a value)" in lines


def table(values: list[list[float]]) -> dict:
    """A ScoreTable of one test set: values[seed][problem]."""
    return {"lab:test": {seed: {f"p{i}": v for i, v in enumerate(row)} for seed, row in enumerate(values)}}


def test_every_stream_gets_the_same_bootstrap_draw() -> None:
    rng = np.random.default_rng(1)
    base = rng.random((3, 40))
    scores = {"a": table(base.tolist()), "b": table((base + 0.25).tolist()), "c": table(rng.random((3, 40)).tolist())}
    points, replicates, problems, seeds = paired_accuracy_replicates(scores, resamples=300)
    assert (problems, seeds) == (40, 3)
    assert points["b"] - points["a"] == pytest.approx(0.25)
    # paired: b is a shifted everywhere, so every replicate is shifted alike; unpaired draws would scatter
    assert np.allclose(replicates["b"] - replicates["a"], 0.25)
    assert np.std(replicates["c"] - replicates["a"]) > 0.01


def rows_and_scores(accuracy: dict[str, float], spread: float = 0.0) -> tuple[list[dict], dict]:
    """Streams whose per-problem accuracies centre on `accuracy` (noise of `spread`) over 60 problems x 3 seeds,
    with predictor values: ppl agrees with accuracy, reward disagrees, and rsr is missing (no ranks)."""
    rng = np.random.default_rng(0)
    order = sorted(accuracy, key=accuracy.get)
    rows, scores = [], {}
    for place, stream in enumerate(order):
        rows.append({"stream": stream, "ppl": 3.0 - place / 2, "reward": 4.0 - place, "mean_rank": None,
                     "rsr": None, "car": 2.0 + place, "grape_likelihood": -1.0 + place / 10})
        noise = rng.normal(0, spread, (3, 60))
        scores[stream] = table(np.clip(accuracy[stream] + noise, 0, 1).tolist())
    return rows, scores


def test_a_clear_run_supports_and_contradicts_and_tells_apart() -> None:
    rows, scores = rows_and_scores({"s1": 0.2, "s2": 0.4, "s3": 0.6, "s4": 0.8}, spread=0.05)
    section = predictor_check(rows, {**scores, "base": table([[0.1] * 60] * 3)}, resamples=300)
    c = section["correlations"]
    assert c["ppl"]["spearman_rho"] == pytest.approx(1.0) and c["ppl"]["outcome"] == "supported"
    assert c["reward"]["spearman_rho"] == pytest.approx(-1.0) and c["reward"]["outcome"] == "contradicted"
    assert c["reward"]["kendall_ci"][1] < 0
    assert c["rsr"]["outcome"] == "unavailable" and c["rsr"]["spearman_ci"] is None
    assert {"better": "ppl", "worse": "reward"} in [{k: t[k] for k in ("better", "worse")} for t in section["told_apart"]]
    assert ["ppl", "car"] in section["not_told_apart"], "two predictors giving one ordering cannot be told apart"
    assert "base" not in section["accuracy"] and section["values"]["s4"]["ppl"] == 1.5
    assert section["predicted_rank"]["s4"] == {"ppl": 1, "mean_rank": None, "rsr": None, "car": 1,
                                               "grape_likelihood": 1, "reward": 4}
    sentence = section["sentence"]
    assert "The run supports student PPL" in sentence and "It contradicts reward" in sentence
    assert "Unavailable: mean token rank, RSR." in sentence


def test_a_noisy_run_resolves_nothing_and_says_so() -> None:
    rows, scores = rows_and_scores({"s1": 0.50, "s2": 0.51, "s3": 0.52, "s4": 0.53}, spread=0.4)
    section = predictor_check(rows, scores, resamples=300)
    low, high = section["correlations"]["ppl"]["spearman_ci"]
    assert low < 0 < high and section["correlations"]["ppl"]["outcome"] == "not_resolved"
    assert "It does not resolve" in section["sentence"]
    assert not any(t["better"] in ("ppl", "reward") and t["worse"] in ("ppl", "reward") for t in section["told_apart"])
