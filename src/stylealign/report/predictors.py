"""Did the predictors rank the streams as training did? Each predictor's ordering against accuracy, with intervals.

Every predictor of `metrics/predictors.py` orders the streams before training. After training, each ordering is
compared with the accuracy the streams reached: Spearman's rho and Kendall's tau-b between the predictor's value,
turned so that larger predicts better, and accuracy (+1: the predictor ranked the streams exactly as training
did). The 95% intervals come from the evaluation's paired bootstrap: each replicate resamples the test problems
(within each test set) and the training seeds once, the same draw for every stream, and the correlation is
recomputed on the streams' replicate accuracies; the predictor values are fixed (they are measured on the
training data, before training). A predictor is *supported* when its Spearman interval lies above 0, and
*contradicted* when it lies below. Two predictors are *told apart* when the paired bootstrap difference of their
Spearman rho excludes 0; otherwise the run cannot tell them apart.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from stylealign.evaluation import ScoreTable, _tables, bootstrap_means, percentile_interval
from stylealign.metrics.predictors import (
    PREDICTOR_BY_NAME,
    PREDICTORS,
    goodness,
    predicted_ranks,
    ranking_text,
)
from stylealign.report.table import kendall_tau, spearman_rho

NOTE = (
    "ρ and τ compare each predictor's ordering of the streams (turned so that larger predicts better) with accuracy "
    "after fine-tuning: +1 is the order training produced. 95% CI: paired bootstrap over test problems and training "
    "seeds, one draw for every stream."
)
"""What the predictor tables mean, under them in report.md and report.html."""
MIN_STREAMS = 3
"""Fewer streams than this give a correlation of +-1 or nothing: no ordering to check."""


def paired_accuracy_replicates(
    scores: dict[str, ScoreTable], *, resamples: int
) -> tuple[dict[str, float], dict[str, np.ndarray], int, int]:
    """Each stream's accuracy on the test problems and seeds every stream has, and its bootstrap replicates.

    The replicates are paired across streams: `bootstrap_means` draws its problems and seeds from a generator
    with a fixed seed, and every stream's tables have the same shapes (the common problems and seeds), so every
    stream's replicate b uses the same draw. Returns the point values, the replicates, and the problems and
    seeds they rest on.
    """
    tables = {name: _tables(table, [other for o, other in scores.items() if o != name]) for name, table in scores.items()}
    tables = {name: found for name, found in tables.items() if found}
    points = {name: sum(t.mean() for t in found) / len(found) for name, found in tables.items()}
    replicates = {name: bootstrap_means(found, resamples=resamples) for name, found in tables.items()}
    any_tables = next(iter(tables.values()), [])
    problems = sum(t.shape[1] for t in any_tables)
    seeds = max((t.shape[0] for t in any_tables), default=0)
    return points, replicates, problems, seeds


def _correlations(x: Sequence[float], accuracy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spearman and Kendall of `x` against each row of `accuracy` (replicates x streams); NaN where undefined."""
    rho = np.array([np.nan if (r := spearman_rho(x, row.tolist())) is None else r for row in accuracy])
    tau = np.array([np.nan if (t := kendall_tau(x, row.tolist())) is None else t for row in accuracy])
    return rho, tau


def _interval(values: np.ndarray) -> list[float] | None:
    finite = values[np.isfinite(values)]
    return list(percentile_interval(finite)) if finite.size else None


def _outcome(ci: list[float] | None) -> str:
    if ci is None:
        return "unavailable"
    return "supported" if ci[0] > 0 else "contradicted" if ci[1] < 0 else "not_resolved"


def predictor_check(
    rows: Sequence[dict[str, Any]], scores: dict[str, ScoreTable], *, resamples: int
) -> dict[str, Any]:
    """The report's `predictors` section: per stream each predictor's value and predicted place, per predictor
    its correlations with accuracy after training (95% intervals) and outcome, which predictor pairs the run
    tells apart, and a sentence saying so."""
    by_stream = {row["stream"]: row for row in rows}
    trained = {name: table for name, table in scores.items() if name in by_stream}
    points, replicates, problems, seeds = paired_accuracy_replicates(trained, resamples=resamples)
    streams = [row["stream"] for row in rows if row["stream"] in points]
    correlations: dict[str, dict[str, Any]] = {}
    spearman_replicates: dict[str, tuple[list[str], np.ndarray]] = {}
    for predictor in PREDICTORS:
        have = [s for s in streams if by_stream[s].get(predictor.name) is not None]
        entry: dict[str, Any] = {"streams": have, "spearman_rho": None, "spearman_ci": None,
                                 "kendall_tau": None, "kendall_ci": None, "outcome": "unavailable"}
        x = [goodness(predictor, by_stream[s][predictor.name]) for s in have]
        point = [points[s] for s in have]
        if len(have) >= MIN_STREAMS and spearman_rho(x, point) is not None:
            rho, tau = _correlations(x, np.column_stack([replicates[s] for s in have]))
            entry.update(spearman_rho=spearman_rho(x, point), spearman_ci=_interval(rho),
                         kendall_tau=kendall_tau(x, point), kendall_ci=_interval(tau))
            entry["outcome"] = _outcome(entry["spearman_ci"])
            spearman_replicates[predictor.name] = (have, rho)
        correlations[predictor.name] = entry
    told_apart, not_told_apart = _pairs(spearman_replicates, correlations)
    section = {
        "definitions": {p.name: {"label": p.label, "better": p.better, "formula": p.formula} for p in PREDICTORS},
        "values": {s: {p.name: by_stream[s].get(p.name) for p in PREDICTORS} for s in by_stream},
        "predicted_rank": predicted_ranks(rows),
        "accuracy": {s: points[s] for s in streams},
        "correlations": correlations,
        "told_apart": told_apart,
        "not_told_apart": not_told_apart,
        "problems": problems,
        "seeds": seeds,
        "resamples": resamples,
    }
    section["sentence"] = predictor_sentence(section)
    return section


def _pairs(
    replicates: dict[str, tuple[list[str], np.ndarray]], correlations: dict[str, dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """Paired bootstrap of the difference in Spearman rho for every two predictors rated on the same streams."""
    told, not_told = [], []
    for a, b in itertools.combinations(replicates, 2):
        (streams_a, rho_a), (streams_b, rho_b) = replicates[a], replicates[b]
        if streams_a != streams_b:
            continue
        ci = _interval(rho_a - rho_b)
        if ci is None or ci[0] <= 0 <= ci[1]:
            not_told.append([a, b])
            continue
        better, worse, ci = (a, b, ci) if ci[0] > 0 else (b, a, [-ci[1], -ci[0]])
        diff = correlations[better]["spearman_rho"] - correlations[worse]["spearman_rho"]
        told.append({"better": better, "worse": worse, "diff": diff, "ci": ci})
    return told, not_told


def _label(name: str) -> str:
    return PREDICTOR_BY_NAME[name].label


def _ci(ci: list[float] | None) -> str:
    return "–" if ci is None else f"{ci[0]:+.2f} to {ci[1]:+.2f}"


OUTCOMES = {
    "supported": "The run supports {} (interval above 0).",
    "contradicted": "It contradicts {} (interval below 0: the predictor ranked the streams against training).",
    "not_resolved": "It does not resolve {} (interval holds 0).",
}


def predictor_sentence(section: dict[str, Any]) -> str:
    """Which predictor the run supports, contradicts or leaves open, and which it cannot tell apart."""
    rated = {name: c for name, c in section["correlations"].items() if c["outcome"] != "unavailable"}
    if not rated:
        return f"No predictor can be checked: fewer than {MIN_STREAMS} trained and evaluated streams have its value."
    parts = [
        f"Predicted before training against accuracy after it (Spearman ρ, 95% interval over "
        f"{section['problems']} problems and {section['seeds']} seed(s)): "
        + "; ".join(f"{_label(n)} {c['spearman_rho']:+.2f} ({_ci(c['spearman_ci'])})" for n, c in rated.items())
        + "."
    ]
    for outcome, text in OUTCOMES.items():
        names = [_label(n) for n, c in rated.items() if c["outcome"] == outcome]
        if names:
            parts.append(text.format(", ".join(names)))
    if section["told_apart"]:
        parts.append("It tells apart " + "; ".join(
            f"{_label(t['better'])} over {_label(t['worse'])} (Δρ {t['diff']:+.2f}, {_ci(t['ci'])})"
            for t in section["told_apart"]
        ) + ("; it cannot tell apart any other pair." if section["not_told_apart"] else "."))
    elif section["not_told_apart"]:
        parts.append("It cannot tell any two of them apart (every paired difference in ρ holds 0).")
    unavailable = [_label(n) for n, c in section["correlations"].items() if c["outcome"] == "unavailable"]
    if unavailable:
        parts.append(f"Unavailable: {', '.join(unavailable)}.")
    return " ".join(parts)


def predictor_table(section: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the per-predictor table, shared by the markdown and HTML pages."""
    headers = ["predictor", "better", "predicted ranking (best first)", "Spearman ρ", "95% CI", "Kendall τ",
               "95% CI", "outcome"]
    rows = []
    for predictor in PREDICTORS:
        c = section["correlations"][predictor.name]
        places = {stream: ranks[predictor.name] for stream, ranks in section["predicted_rank"].items()}
        rows.append([
            predictor.label, predictor.better, ranking_text(places) or "–",
            "–" if c["spearman_rho"] is None else f"{c['spearman_rho']:+.2f}", _ci(c["spearman_ci"]),
            "–" if c["kendall_tau"] is None else f"{c['kendall_tau']:+.2f}", _ci(c["kendall_ci"]),
            c["outcome"].replace("_", " "),
        ])
    return headers, rows


def values_table(section: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of each stream's predictor values beside its accuracy after training."""
    headers = ["stream", *(p.label for p in PREDICTORS), "accuracy after"]
    rows = []
    for stream, values in section["values"].items():
        accuracy = section["accuracy"].get(stream)
        rows.append([
            stream, *("–" if values[p.name] is None else f"{values[p.name]:.4g}" for p in PREDICTORS),
            "–" if accuracy is None else f"{100 * accuracy:.1f}%",
        ])
    return headers, rows
