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
    ("epochs", "epochs", "ep", "num"),
    ("tokens_trained", "tokens trained", "tok", "num"),
    ("final_loss", "final loss", "loss", "num"),
    ("accuracy_before", "acc before", "before", "pct"),
    ("accuracy_after", "acc after", "after", "pct"),
    ("accuracy_ci", "95% CI", "95% CI", "ci"),
    ("seeds", "per seed", "seeds", "seeds"),
    ("length_cut", "length cut", "cut", "pct"),
)


def fmt(row: dict[str, Any], key: str, kind: str) -> str:
    if kind == "seeds":
        return "/".join(f"{100 * s['accuracy']:.1f}" for s in row.get(key) or []) or "–"
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
    """1-based rank in accuracy; tied streams share the best rank of their tie."""
    mine = next(r["accuracy_after"] for r in rows if r["stream"] == stream)
    return 1 + sum(r["accuracy_after"] > mine for r in rows)


def _top(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Every row holding the highest `key`: a tie is named as a tie, never broken by list order."""
    best = max(r[key] for r in rows)
    return [r for r in rows if r[key] == best]


def _names(rows: list[dict[str, Any]]) -> str:
    names = [r["stream"] for r in rows]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def paradox(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How reward and accuracy rank the streams (Kendall/Spearman): descriptive; the verdict rests on contrasts."""
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
        top_reward, top_acc = _top(pairs, "reward"), _top(pairs, "accuracy_after")
        stats = f"Kendall τ = {tau:+.2f}, Spearman ρ = {rho:+.2f}, {n} streams"
        if len(top_reward) == 1:
            reward_part = (
                f"the highest-reward stream, {top_reward[0]['stream']} (reward {top_reward[0]['reward']:.3g}), "
                f"ranks {_accuracy_rank(pairs, top_reward[0]['stream'])} of {n} in accuracy"
            )
        else:
            reward_part = (
                f"{_names(top_reward)} tie for the highest reward ({top_reward[0]['reward']:.3g}) and rank "
                + ", ".join(str(_accuracy_rank(pairs, r["stream"])) for r in top_reward)
                + f" of {n} in accuracy"
            )
        acc_part = (
            f"the most accurate is {top_acc[0]['stream']}" if len(top_acc) == 1 else f"{_names(top_acc)} tie as the most accurate"
        )
        detail = f"{reward_part}, and {acc_part} ({100 * top_acc[0]['accuracy_after']:.1f}%)"
        relation = "agree" if tau > 0 else "disagree" if tau < 0 else "are unrelated"
        agree = True if tau > 0 else False if tau < 0 else None
        sentence = (
            f"Descriptively, the reward ranking and the accuracy ranking {relation} ({stats}): {detail}. "
            "A rank correlation over streams is no test; the verdict rests on the paired contrasts."
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
        "kendall_tau": tau,
        "spearman_rho": rho,
        "streams": rel["streams"],
        "sentence": sentence,
        "cost_kendall_tau": ctau,
        "cost_spearman_rho": cost["spearman_rho"],
        "cost_sentence": cost_sentence,
    }


def contrast_table(contrasts: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the paired-contrast table (points of accuracy), shared by the markdown and HTML pages."""
    headers = ["better (predicted)", "worse (predicted)", "difference", "95% CI", "problems × seeds", "resolved"]
    rows = [
        [
            c["better"],
            c["worse"],
            f"{100 * c['diff']:+.1f}",
            f"{100 * c['ci_low']:+.1f} to {100 * c['ci_high']:+.1f}",
            f"{c['problems']} × {c['seeds']}",
            ("yes, as predicted" if c["diff"] > 0 else "yes, against") if c["resolved"] else "no",
        ]
        for c in contrasts
    ]
    return headers, rows


def benchmark_table(evaluations: dict[str, dict[str, Any]], k: int) -> tuple[list[str], list[list[str]]]:
    """The paper's table: per model an Avg@k row (with its 95% CI) and a pass@k row, one column per
    benchmark, and the macro average over benchmarks (the headline) last."""
    names = sorted({name for e in evaluations.values() for name in e.get("datasets", {})})
    headers = ["model", "metric", *names, "macro average"]
    rows = []
    for model, e in sorted(evaluations.items(), key=lambda item: (item[0] != "base", item[0])):
        sets = e.get("datasets", {})
        avg = [
            f"{100 * sets[n]['avg_at_k']:.1f} ({100 * sets[n]['ci_low']:.1f}–{100 * sets[n]['ci_high']:.1f})"
            if n in sets else "–"
            for n in names
        ]
        passes = [f"{100 * sets[n]['pass_at_k']:.1f}" if n in sets else "–" for n in names]
        macro = (
            f"**{100 * e['accuracy']:.1f}** ({100 * e['ci_low']:.1f}–{100 * e['ci_high']:.1f})"
            if e.get("accuracy") is not None else "–"
        )
        rows.append([model, f"Avg@{k}", *avg, macro])
        rows.append(["", f"pass@{k}", *passes, "–" if e.get("pass_at_k") is None else f"{100 * e['pass_at_k']:.1f}"])
    return headers, rows


def headline(evaluations: dict[str, dict[str, Any]], k: int) -> str:
    """One sentence per model: the macro Avg@k over benchmarks, as the paper reports it."""
    parts = [
        f"{model} {100 * e['accuracy']:.1f}% ({100 * e['ci_low']:.1f}–{100 * e['ci_high']:.1f})"
        for model, e in sorted(evaluations.items(), key=lambda item: (item[0] != "base", item[0]))
        if e.get("accuracy") is not None
    ]
    if not parts:
        return "No model was evaluated."
    sets = len({name for e in evaluations.values() for name in e.get("datasets", {})})
    return f"Macro Avg@{k} over {sets} benchmark(s), 95% CI: " + "; ".join(parts) + "."


def mode_sentence(report: dict[str, Any]) -> str:
    """Which problems the streams trained on, with what budget and how many seeds, and the run's warnings."""
    training = report["training"]
    if not training:
        return "No training summary was found."
    matched = training.get("matched_problems")
    problems = (
        f"every stream trained on the same {matched} problems (streams.match_problems)"
        if training.get("match_problems")
        else "each stream trained on the problems it covers (problem sets differ between streams)"
    )
    budget = ", ".join(f"{key} {value}" for key, value in training.get("budget", {}).items())
    seeds = training.get("seeds", [])
    return " ".join(
        [f"Training: {problems}; budget {budget} per stream; {len(seeds)} seed(s) {seeds}.",
         *(f"Warning: {w}." for w in training.get("warnings", []))]
    )


def data_sentence(report: dict[str, Any]) -> str:
    """What the SAR cost gate did, and the streams whose cost measures the vocabulary rather than the style."""
    parts = []
    for row in report["streams"]:
        if row.get("sar_accepted") is not None:
            parts.append(
                f"SAR gate: {row['sar_accepted']} refinements accepted ({row.get('sar_retried', 0)} after a retry), "
                f"{row.get('sar_kept_parent', 0)} fell back to the parent; "
                f"{row.get('sar_identical_to_parent', 0)} of {row.get('traces', 0)} sar traces equal their parent"
                + (f"; attempts rejected: {', '.join(f'{k} {v}' for k, v in row['sar_rejections'].items())}."
                   if row.get("sar_rejections") else ".")
            )
        parts += [f"Warning ({row['stream']}): {w}." for w in row.get("warnings", [])]
    return " ".join(parts)


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
