"""Paired contrasts between models and the verdict on the paper's claim they support.

The paper's claim is an ordering in accuracy after fine-tuning:
Oracle-Synth < Oracle-Refined < SLM-RFT < SAR. Each link is one paired
contrast (`better` minus `worse`, the direction the paper predicts); the
verdict is "reproduced" only when all three are resolved in that direction,
"contradicted" as soon as one is resolved against it, and "not_resolved"
otherwise. Rank correlation between reward and accuracy stays descriptive.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stylealign.evaluation import ScoreTable, paired_contrast

PAPER_CLAIM = (("oracle_refine", "oracle_synth"), ("rft", "oracle_refine"), ("sar", "rft"))
Z_TWO_SIDED_5 = 1.96
Z_POWER_80 = 0.84


def contrasts(
    scores: dict[str, ScoreTable], pairs: Sequence[Sequence[str]], *, resamples: int = 2000
) -> list[dict[str, Any]]:
    """One paired contrast per configured [better, worse] pair whose two models were both evaluated."""
    out = []
    for better, worse in pairs:
        if better in scores and worse in scores:
            result = paired_contrast(scores[better], scores[worse], resamples=resamples)
            if result is not None:
                out.append({"better": better, "worse": worse, **result})
    return out


def _label(pair: Sequence[str]) -> str:
    return f"{pair[0]} > {pair[1]}"


def _find(rows: Sequence[dict[str, Any]], better: str, worse: str) -> dict[str, Any] | None:
    """The contrast of (better, worse), turned around when it was configured the other way."""
    for row in rows:
        if (row["better"], row["worse"]) == (better, worse):
            return row
        if (row["better"], row["worse"]) == (worse, better):
            return {**row, "better": better, "worse": worse, "diff": -row["diff"],
                    "ci_low": -row["ci_high"], "ci_high": -row["ci_low"]}
    return None


def minimum_detectable(rows: Sequence[dict[str, Any]]) -> float | None:
    """The difference this run would resolve 80% of the time (5% two-sided), from its median contrast spread."""
    spreads = sorted(row["se"] for row in rows if row.get("se") is not None)
    if not spreads:
        return None
    return (Z_TWO_SIDED_5 + Z_POWER_80) * spreads[len(spreads) // 2]


def verdict(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """reproduced / contradicted / not_resolved from the paper's three contrasts, with a sentence saying why."""
    found = {pair: row for pair in PAPER_CLAIM if (row := _find(rows, *pair)) is not None}
    against = [pair for pair, row in found.items() if row["resolved"] and row["diff"] < 0]
    confirmed = [pair for pair, row in found.items() if row["resolved"] and row["diff"] > 0]
    unresolved = [pair for pair, row in found.items() if not row["resolved"]]
    missing = [pair for pair in PAPER_CLAIM if pair not in found]
    detectable = minimum_detectable(list(found.values()))
    if against:
        outcome = "contradicted"
        sentence = (
            "The paper's ordering is contradicted: "
            + "; ".join(_resolved_text(found[pair], against=True) for pair in against)
            + "."
        )
    elif len(confirmed) == len(PAPER_CLAIM):
        outcome = "reproduced"
        sentence = (
            "The paper's ordering oracle_synth < oracle_refine < rft < sar is reproduced: every step is resolved ("
            + "; ".join(_resolved_text(found[pair]) for pair in confirmed)
            + ")."
        )
    else:
        outcome = "not_resolved"
        parts = []
        if confirmed:
            parts.append("resolved in the paper's direction: " + "; ".join(_resolved_text(found[p]) for p in confirmed))
        if unresolved:
            parts.append(
                "not resolved (the 95% interval holds 0): "
                + "; ".join(f"{_label(p)} by {_points(found[p])}" for p in unresolved)
            )
        if missing:
            parts.append("not measured (a model was not trained or evaluated): " + ", ".join(_label(p) for p in missing))
        sentence = "The paper's ordering is not resolved by this run. " + ". ".join(p[0].upper() + p[1:] for p in parts) + "."
    if detectable is not None and outcome != "reproduced":
        sentence += (
            f" The smallest difference this run could detect is about {100 * detectable:.1f} points"
            " (80% power, 5% level, from the spread of its paired differences over its problems, samples and seeds)."
        )
    return {
        "verdict": outcome,
        "sentence": sentence,
        "unresolved": [_label(p) for p in unresolved + missing],
        "minimum_detectable_difference": detectable,
    }


def _points(row: dict[str, Any]) -> str:
    return f"{100 * row['diff']:+.1f} points (95% CI {100 * row['ci_low']:+.1f} to {100 * row['ci_high']:+.1f})"


def _resolved_text(row: dict[str, Any], against: bool = False) -> str:
    if against:
        return f"{row['worse']} beats {row['better']}: {_label((row['better'], row['worse']))} by {_points(row)}"
    return f"{_label((row['better'], row['worse']))} by {_points(row)}"
