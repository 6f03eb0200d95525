"""The report's figures as PNGs (matplotlib Agg): quality vs utility, cost vs utility, quarters, loss by position,
tokens, training loss, predicted vs achieved.

Every figure is always written; one without data says so on its canvas, so the
page has the same shape whatever a run produced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from stylealign.metrics.predictors import PREDICTORS  # noqa: E402

FIGURES = {
    "reward_vs_accuracy": "Reward vs accuracy after fine-tuning",
    "cost_vs_accuracy": "Adaptation cost (student PPL) vs accuracy after fine-tuning",
    "ppl_quarters": "Student perplexity per quarter of the response",
    "nll_deciles": "Student NLL along the response (mean per tenth of its tokens)",
    "loss_tokens": "Tokens carrying most of the student's loss, per stream",
    "training_loss": "Training loss per optimizer step, per stream (one line per seed)",
    "predicted_vs_achieved": "Each predictor's place for a stream before training against its accuracy after",
}
Curves = dict[str, dict[int, list[tuple[int, float]]]]  # stream -> seed -> (step, loss)
QUARTERS = ("ppl_q1", "ppl_q2", "ppl_q3", "ppl_q4")


def _empty(ax: Any, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def _scatter(rows: list[dict[str, Any]], key: str, xlabel: str, base: float | None, ax: Any) -> None:
    points = [r for r in rows if r.get(key) is not None and r.get("accuracy_after") is not None]
    if not points:
        _empty(ax, f"no stream has both {xlabel.lower()} and accuracy")
        return
    for r in points:
        y = 100 * r["accuracy_after"]
        low, high = r.get("accuracy_ci_low"), r.get("accuracy_ci_high")
        yerr = [[y - 100 * low], [100 * high - y]] if low is not None and high is not None else None
        ax.errorbar(r[key], y, yerr=yerr, fmt="o", capsize=4, markersize=8)
        ax.annotate(r["stream"], (r[key], y), textcoords="offset points", xytext=(6, 6))
    if base is not None:
        ax.axhline(100 * base, linestyle="--", color="grey", label=f"base student {100 * base:.1f}%")
        ax.legend(loc="best")
    xs = [r[key] for r in points]
    if min(xs) > 0 and max(xs) / min(xs) > 50:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy after fine-tuning (%)")
    ax.grid(alpha=0.3)


def _quarters(rows: list[dict[str, Any]], ax: Any) -> None:
    bars = [r for r in rows if all(r.get(q) is not None for q in QUARTERS)]
    if not bars:
        _empty(ax, "no per-quarter perplexity")
        return
    width = 0.8 / len(bars)
    for i, r in enumerate(bars):
        xs = [q + (i - (len(bars) - 1) / 2) * width for q in range(4)]
        ax.bar(xs, [r[q] for q in QUARTERS], width=width, label=r["stream"])
    values = [r[q] for r in bars for q in QUARTERS]
    if max(values) / max(min(values), 1e-9) > 50:
        ax.set_yscale("log")
    else:
        ax.set_ylim(0, 1.3 * max(values))
    ax.set_xticks(range(4), ["Q1", "Q2", "Q3", "Q4"])
    ax.set_ylabel("student perplexity")
    ax.legend(loc="upper left", ncol=min(3, len(bars)))
    ax.grid(axis="y", alpha=0.3)


def _deciles(rows: list[dict[str, Any]], ax: Any) -> None:
    lines = [r for r in rows if any(v is not None for v in r.get("nll_deciles") or [])]
    if not lines:
        _empty(ax, "no per-token NLL (run the score stage again)")
        return
    for r in lines:
        points = [(10 * d + 5, v) for d, v in enumerate(r["nll_deciles"]) if v is not None]
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", label=r["stream"])
    for q in (25, 50, 75):
        ax.axvline(q, color="grey", alpha=0.3, linestyle=":")
    ax.set_xlim(0, 100)
    ax.set_xlabel("position in the response (% of its tokens; dotted: quarter bounds)")
    ax.set_ylabel("mean student NLL (nats/token)")
    ax.legend(loc="best", ncol=min(3, len(lines)))
    ax.grid(alpha=0.3)


def _token_items(value: Any, top: int) -> list[tuple[str, float]]:
    """(token, share of loss) pairs from `top_loss_tokens`: dicts with token + share/nll, or pairs."""
    items = []
    for item in value or []:
        if isinstance(item, dict):
            weight = item.get("share", item.get("nll"))
            items.append((str(item.get("token")), float(weight or 0.0)))
        else:
            items.append((str(item[0]), float(item[1])))
    return items[:top]


def _panel_grid(count: int, panel_height: float, margin: float, empty: str) -> tuple[Any, list[Any]]:
    """A figure of `count` panels, three to a row (the cells left over blank), and its `count` axes; with no
    panel, one axis saying `empty` and no axes to draw on."""
    if not count:
        fig, ax = plt.subplots(figsize=(7, 3))
        _empty(ax, empty)
        return fig, []
    cols = min(3, count)
    nrows = -(-count // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, panel_height * nrows + margin), squeeze=False)
    for ax in list(axes.flat)[count:]:
        ax.axis("off")
    return fig, list(axes.flat)[:count]


def _loss_tokens(rows: list[dict[str, Any]], top: int = 8) -> Any:
    streams = [(r["stream"], _token_items(r.get("top_loss_tokens"), top)) for r in rows]
    streams = [(s, items) for s, items in streams if items]
    fig, axes = _panel_grid(len(streams), 0.35 * top, 1.2, "no loss attribution")
    for ax, (stream, items) in zip(axes, streams, strict=True):
        labels = [repr(token) for token, _ in items][::-1]
        ax.barh(labels, [100 * w for _, w in items][::-1], color="tab:red")
        ax.set_title(stream)
        ax.set_xlabel("share of loss (%)")
    return fig


def _training_loss(curves: Curves, ax: Any) -> None:
    if not curves:
        _empty(ax, "no training log")
        return
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (stream, seeds) in enumerate(sorted(curves.items())):
        for j, (_, points) in enumerate(sorted(seeds.items())):
            steps, losses = zip(*points, strict=True)
            ax.plot(steps, losses, color=colours[i % len(colours)], alpha=0.85, label=stream if j == 0 else None)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)


def _predicted_vs_achieved(rows: list[dict[str, Any]], section: dict[str, Any] | None) -> Any:
    """One panel per predictor: predicted place (1 = predicted best) against accuracy after training, with ρ."""
    panels = [p for p in PREDICTORS if section and section["correlations"][p.name]["spearman_rho"] is not None]
    fig, axes = _panel_grid(len(panels), 3.4, 0.6, "no predictor with three trained streams to check")
    by_stream = {r["stream"]: r for r in rows}
    for ax, predictor in zip(axes, panels, strict=True):
        check = section["correlations"][predictor.name]
        for stream in check["streams"]:
            place, row = section["predicted_rank"][stream][predictor.name], by_stream[stream]
            y = 100 * section["accuracy"][stream]
            low, high = row.get("accuracy_ci_low"), row.get("accuracy_ci_high")
            yerr = [[max(y - 100 * low, 0)], [max(100 * high - y, 0)]] if low is not None and high is not None else None
            ax.errorbar(place, y, yerr=yerr, fmt="o", capsize=3, markersize=6)
            ax.annotate(stream, (place, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        low, high = check["spearman_ci"]
        ax.set_title(f"{predictor.label}: ρ {check['spearman_rho']:+.2f} [{low:+.2f}, {high:+.2f}]", fontsize=9)
        ax.set_xticks(range(1, len(check["streams"]) + 1))
        ax.set_xlabel("predicted place (1 = best)")
        ax.set_ylabel("accuracy after (%)")
        ax.grid(alpha=0.3)
    return fig


def make_figures(
    rows: list[dict[str, Any]],
    base_accuracy: float | None,
    out_dir: str | Path,
    curves: Curves | None = None,
    predictors: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write the PNGs into `out_dir`; returns name -> path. `predictors` is the report's predictor check."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, title in FIGURES.items():
        if name == "loss_tokens":
            fig = _loss_tokens(rows)
        elif name == "predicted_vs_achieved":
            fig = _predicted_vs_achieved(rows, predictors)
        else:
            fig, ax = plt.subplots(figsize=(7, 4.5))
            if name == "reward_vs_accuracy":
                _scatter(rows, "reward", "Reward", base_accuracy, ax)
            elif name == "cost_vs_accuracy":
                _scatter(rows, "ppl", "Student PPL on the stream", base_accuracy, ax)
            elif name == "training_loss":
                _training_loss(curves or {}, ax)
            elif name == "nll_deciles":
                _deciles(rows, ax)
            else:
                _quarters(rows, ax)
        fig.suptitle(title)
        fig.tight_layout()
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths[name] = path
    return paths
