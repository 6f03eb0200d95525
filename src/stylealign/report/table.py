"""The report's numbers: one row per stream, rank agreement between reward and accuracy, and text tables.

Everything said about the outcome is computed here from the rows, so a run
where high-reward data wins says so, and a run where it loses says that.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich import box
from rich.table import Table

COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    # key, header, short header (terminal), kind
    ("stream", "stream", "stream", "text"),
    ("traces", "examples", "n", "num"),
    ("coverage", "coverage", "cov", "num"),
    ("correctness", "correct", "corr", "num"),
    ("reward", "reward", "reward", "num"),
    ("ppl", "PPL", "PPL", "num"),
    ("ppl_q1", "Q1", "Q1", "num"),
    ("ppl_q2", "Q2", "Q2", "num"),
    ("ppl_q3", "Q3", "Q3", "num"),
    ("ppl_q4", "Q4", "Q4", "num"),
    ("js_drift", "JS drift", "JS", "num"),
    ("edit_distance", "edit dist", "edit", "num"),
    ("accuracy_before", "acc before", "before", "pct"),
    ("accuracy_after", "acc after", "after", "pct"),
    ("accuracy_ci", "95% CI", "95% CI", "ci"),
)


def fmt(row: dict[str, Any], key: str, kind: str) -> str:
    if kind == "ci":
        low, high = row.get("accuracy_ci_low"), row.get("accuracy_ci_high")
        return "–" if low is None or high is None else f"{100 * low:.1f}–{100 * high:.1f}"
    value = row.get(key)
    if value is None:
        return "–"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for m in range(i, j + 1):
            out[order[m]] = (i + j) / 2 + 1
        i = j + 1
    return out


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b (ties allowed); None when either side is constant."""
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denom = ((concordant + discordant + ties_x) * (concordant + discordant + ties_y)) ** 0.5
    return (concordant - discordant) / denom if denom else None


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson correlation of the ranks; None when either side is constant."""
    rx, ry = ranks(x), ranks(y)
    n = len(x)
    mx, my = sum(rx) / n, sum(ry) / n
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    var = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return cov / var if var else None


def _relation(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    pairs = [r for r in rows if r.get(key) is not None and r.get("accuracy_after") is not None]
    x = [float(r[key]) for r in pairs]
    y = [float(r["accuracy_after"]) for r in pairs]
    return {
        "streams": [r["stream"] for r in pairs],
        "kendall_tau": kendall_tau(x, y) if len(pairs) >= 2 else None,
        "spearman_rho": spearman_rho(x, y) if len(pairs) >= 2 else None,
    }


def _accuracy_rank(rows: list[dict[str, Any]], stream: str) -> int:
    ordered = sorted(rows, key=lambda r: -r["accuracy_after"])
    return 1 + [r["stream"] for r in ordered].index(stream)


def _separated(rows: list[dict[str, Any]]) -> bool:
    """Whether at least two streams' accuracy confidence intervals do not overlap."""
    bounds = [(r.get("accuracy_ci_low"), r.get("accuracy_ci_high")) for r in rows]
    bounds = [(lo, hi) for lo, hi in bounds if lo is not None and hi is not None]
    return any(hi_a < lo_b for _, hi_a in bounds for lo_b, _ in bounds)


def paradox(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Do higher-reward streams train a more accurate student? Kendall/Spearman over streams with both figures."""
    rel = _relation(rows, "reward")
    cost = _relation(rows, "ppl")
    pairs = [r for r in rows if r["stream"] in rel["streams"]]
    n, tau, rho = len(pairs), rel["kendall_tau"], rel["spearman_rho"]
    agree: bool | None = None
    if n < 2:
        sentence = f"Too few streams have both a reward and an accuracy after fine-tuning ({n}) to compare the rankings."
    elif tau is None:
        constant = "reward" if len({r["reward"] for r in pairs}) == 1 else "accuracy after fine-tuning"
        sentence = f"The rankings cannot be compared: the {constant} is the same for all {n} streams."
    else:
        top_reward = max(pairs, key=lambda r: r["reward"])
        top_acc = max(pairs, key=lambda r: r["accuracy_after"])
        stats = f"Kendall τ = {tau:+.2f}, Spearman ρ = {rho:+.2f}, {n} streams"
        detail = (
            f"the highest-reward stream, {top_reward['stream']} (reward {top_reward['reward']:.3g}), ranks "
            f"{_accuracy_rank(pairs, top_reward['stream'])} of {n} in accuracy, and the most accurate is "
            f"{top_acc['stream']} ({100 * top_acc['accuracy_after']:.1f}%)"
        )
        if tau > 0:
            agree = True
            sentence = (
                f"The reward ranking and the accuracy ranking agree ({stats}): {detail}. Higher-reward data "
                "trained a more accurate student here; the quality–utility paradox is not reproduced."
            )
        elif tau < 0:
            agree = False
            sentence = (
                f"The reward ranking and the accuracy ranking disagree ({stats}): {detail}. Higher-reward data "
                "trained a less accurate student; the quality–utility paradox is reproduced."
            )
        else:
            sentence = f"The reward ranking and the accuracy ranking are unrelated ({stats}): {detail}."
        if not _separated(pairs):
            sentence += (
                " Caution: the 95% confidence intervals of all these accuracies overlap, so the ranking itself"
                " is not statistically resolved; use more test problems or samples."
            )
    ctau = cost["kendall_tau"]
    if ctau is None:
        cost_sentence = "Adaptation cost and accuracy cannot be compared with these streams."
    else:
        direction = "lower" if ctau < 0 else "higher"
        cost_sentence = (
            f"Across {len(cost['streams'])} streams, {direction} student perplexity on the training data goes "
            f"with higher accuracy after fine-tuning (Kendall τ = {ctau:+.2f})."
        )
    return {
        "agree": agree,
        "reproduced": None if agree is None else not agree,
        "kendall_tau": tau,
        "spearman_rho": rho,
        "streams": rel["streams"],
        "sentence": sentence,
        "cost_kendall_tau": ctau,
        "cost_spearman_rho": cost["spearman_rho"],
        "cost_sentence": cost_sentence,
    }


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| " + " | ".join(header for _, header, _, _ in COLUMNS) + " |",
        "|" + "|".join("---" if kind == "text" else "---:" for *_, kind in COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(fmt(row, key, kind) for key, _, _, kind in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def rich_table(rows: list[dict[str, Any]], title: str) -> Table:
    """Short headers and no vertical rules, so the whole table fits a ~110-column terminal."""
    table = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False)
    for _, _, short, kind in COLUMNS:
        table.add_column(short, justify="left" if kind == "text" else "right", no_wrap=True)
    for row in rows:
        table.add_row(*(fmt(row, key, kind) for key, _, _, kind in COLUMNS))
    return table
