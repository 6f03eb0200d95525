"""Predictors of a stream's utility that need no training, from the student's one teacher-forced pass.

Training every stream under every seed is the expensive part of an experiment; these numbers come from the
score stage's single forward pass of the student over each trace (log-prob and rank of every response token)
and the reward, and each predicts an ordering of the streams before any training. The report then checks each
ordering against the accuracy training produced (`report/predictors.py`).

Per trace, with token t's student log-prob lp_t, surprisal s_t = -lp_t, rank r_t (1 = the student's most
likely token) and the mean NLL L = mean_t s_t:

- PPL (the paper's adaptation cost): exp(L); per stream exp of the token-weighted mean NLL. Lower predicts better.
- mean token rank: mean_t r_t; per stream weighted by tokens, like PPL. Lower predicts better.
- RSR, the rank-surprisal ratio (arXiv 2601.14249): sum_t min(r_t, RSR_RANK_CLIP) / sum_t s_t, the mean rank
  over the mean surprisal; per stream the mean over traces. Low means informative (surprising) tokens the
  student nonetheless ranks high; lower predicts better. The clip bounds the weight of one token the student
  ranks among tens of thousands; it is this tool's choice, not taken from the paper.
- CAR, the compatibility-adjusted reward (Xu et al., NAACL 2025, arXiv 2411.07133): reward / L^CAR_LOSS_POWER,
  the reward discounted by the student's loss on the response (L floored at CAR_MIN_LOSS); per stream the mean
  over traces. Higher predicts better. With a reward that can be negative (a logit) the discount turns into a
  bonus; the lab's reward is not.
- GRAPE likelihood (Zhang, Dai & Peng 2025): the length-normalised log-likelihood mean_t lp_t = -L; per stream
  the mean over traces (each response counts once, as GRAPE compares responses). Higher predicts better.
- reward: the reward scorer's value; per stream the mean over traces. Higher predicts better.

A predictor the engine cannot give (ranks from an OpenAI-compatible server, CAR without a reward) is None,
never a guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

RSR_RANK_CLIP = 100
CAR_LOSS_POWER = 1.0
CAR_MIN_LOSS = 1e-6
"""A response the student predicts to the last bit would divide by zero."""


@dataclass(frozen=True)
class Predictor:
    name: str
    """Its key in a `streams.json` row."""
    label: str
    better: Literal["lower", "higher"]
    formula: str


PREDICTORS = (
    Predictor("ppl", "student PPL", "lower", "exp(token-weighted mean NLL of the response tokens)"),
    Predictor("mean_rank", "mean token rank", "lower", "token-weighted mean rank of each response token (1 = top)"),
    Predictor("rsr", "RSR", "lower", f"per trace sum(min(rank, {RSR_RANK_CLIP})) / sum(surprisal); mean over traces"),
    Predictor("car", "CAR", "higher", f"per trace reward / NLL^{CAR_LOSS_POWER:g}; mean over traces"),
    Predictor("grape_likelihood", "GRAPE likelihood", "higher", "per trace mean token log-prob; mean over traces"),
    Predictor("reward", "reward", "higher", "mean reward over traces"),
)
PREDICTOR_BY_NAME = {predictor.name: predictor for predictor in PREDICTORS}


def rank_surprisal_ratio(logprobs: Sequence[float], ranks: Sequence[int]) -> float | None:
    """RSR of one response: its mean clipped token rank over its mean surprisal (None without surprisal)."""
    surprisal = -sum(logprobs)
    if not ranks or surprisal <= 0:
        return None
    return sum(min(rank, RSR_RANK_CLIP) for rank in ranks) / surprisal


def compatibility_adjusted_reward(reward: float | None, nll: float | None) -> float | None:
    """CAR of one response: its reward over the student's mean NLL on it, to the power CAR_LOSS_POWER."""
    if reward is None or nll is None:
        return None
    return reward / max(nll, CAR_MIN_LOSS) ** CAR_LOSS_POWER


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def stream_predictors(metrics: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """A stream's mean_rank, rsr, car and grape_likelihood from its traces' metrics (PPL and reward are the
    stream summary's own)."""
    ranked = [(m["mean_rank"], m.get("tokens", 0)) for m in metrics if m.get("mean_rank") is not None]
    tokens = sum(n for _, n in ranked)
    cars = [compatibility_adjusted_reward(m.get("reward"), m.get("nll")) for m in metrics]
    return {
        "mean_rank": sum(rank * n for rank, n in ranked) / tokens if tokens else None,
        "rsr": _mean([m["rsr"] for m in metrics if m.get("rsr") is not None]),
        "car": _mean([c for c in cars if c is not None]),
        "grape_likelihood": _mean([-m["nll"] for m in metrics if m.get("nll") is not None]),
    }


def goodness(predictor: Predictor, value: float) -> float:
    """The value turned so that larger always predicts better training data."""
    return value if predictor.better == "higher" else -value


def predicted_ranks(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, int | None]]:
    """Per stream, its predicted place under each predictor (1 = predicted to train best; tied streams share
    the best place of their tie; None where the stream has no value)."""
    out: dict[str, dict[str, int | None]] = {row["stream"]: {} for row in rows}
    for predictor in PREDICTORS:
        scored = {row["stream"]: goodness(predictor, row[predictor.name]) for row in rows
                  if row.get(predictor.name) is not None}
        for stream in out:
            mine = scored.get(stream)
            out[stream][predictor.name] = None if mine is None else 1 + sum(v > mine for v in scored.values())
    return out


def ranking_text(places: dict[str, int | None]) -> str | None:
    """Streams from predicted best to predicted worst (`=` joins a tie), from stream -> predicted place."""
    groups: dict[int, list[str]] = {}
    for stream, place in places.items():
        if place is not None:
            groups.setdefault(place, []).append(stream)
    return " > ".join(" = ".join(groups[p]) for p in sorted(groups)) or None


def ranking_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """One line per predictor: its ranking of the streams (`predicted_rank` of each row), or that it has none."""
    return [
        f"{p.label} ({p.better} is better): "
        + (ranking_text({r["stream"]: r["predicted_rank"].get(p.name) for r in rows})
           or "unavailable (no stream has a value)")
        for p in PREDICTORS
    ]
