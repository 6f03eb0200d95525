"""The report: per-stream quality, compatibility and utility side by side, and what the numbers say.

The `report` stage (`stages/report.py`) joins `DIR/streams.json` (the score stage's per-stream
metrics), `DIR/train/summary.json` (budgets actually spent) and the
evaluation records (accuracy over seeds, paired contrasts, the verdict), and
the scored traces (per-token NLLs: the trace browser and loss by position),
and writes `report.json`, `report.md`, `report.html` (one self-contained
page) and `figures/*.png`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stylealign.report.figures import Curves, make_figures
from stylealign.report.html import render_html
from stylealign.report.predictors import NOTE, predictor_table, values_table
from stylealign.report.table import (
    benchmark_table,
    contrast_table,
    data_sentence,
    headline,
    markdown_table,
    mode_sentence,
    paradox,
)
from stylealign.report.usage import usage_sentence, usage_table
from stylealign.report.verdict import verdict

__all__ = ["build_report", "write_report"]

TRAINED = ("examples", "steps", "epochs", "tokens_trained", "final_loss")


def build_report(
    name: str,
    stream_rows: list[dict[str, Any]],
    evaluations: dict[str, dict[str, Any]],
    streams: tuple[str, ...] | list[str],
    k: int,
    *,
    contrasts: list[dict[str, Any]] | None = None,
    training: dict[str, Any] | None = None,
    predictors: dict[str, Any] | None = None,
    grading: str | None = None,
) -> dict[str, Any]:
    """Join per-stream metrics with the budget spent and accuracy before ("base") and after each stream;
    `predictors` is the check of the predictions made before training (`report.predictors.predictor_check`)."""
    by_stream = {row["stream"]: row for row in stream_rows}
    trained = (training or {}).get("streams", {})
    base = evaluations.get("base", {})
    rows = []
    for stream in streams:
        after = evaluations.get(stream, {})
        spent = trained.get(stream, {})
        rows.append(
            {
                **by_stream.get(stream, {"stream": stream}),
                **{key: spent.get(key) for key in TRAINED},
                "accuracy_before": base.get("accuracy"),
                "accuracy_after": after.get("accuracy"),
                "accuracy_ci_low": after.get("ci_low"),
                "accuracy_ci_high": after.get("ci_high"),
                "pass_at_k_after": after.get("pass_at_k"),
                "seeds": after.get("seeds", []),
                "length_cut": after.get("length_cut"),
            }
        )
    contrasts = contrasts or []
    return {
        "name": name,
        "verdict": verdict(contrasts),
        "contrasts": contrasts,
        "streams": rows,
        "paradox": paradox(rows),
        "predictors": predictors,
        "training": {key: value for key, value in (training or {}).items() if key != "streams"},
        "evaluation": {"metric": f"Avg@{k}", "k": k, "models": evaluations, "grading": grading},
    }


def _markdown(headers: list[str], rows: list[list[str]]) -> str:
    return "\n".join(
        ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        + ["| " + " | ".join(row) + " |" for row in rows]
    )


def _predictors_markdown(section: dict[str, Any] | None) -> str:
    if section is None:
        return ""
    return (
        f"## Predicted before training, checked after\n\n{section['sentence']}\n\n"
        f"{_markdown(*predictor_table(section))}\n\n{_markdown(*values_table(section))}\n\n{NOTE}\n\n"
    )


def _usage_markdown(section: dict[str, Any] | None) -> str:
    if section is None:
        return ""
    return f"## Tokens: plan and actual\n\n{usage_sentence(section)}\n\n{_markdown(*usage_table(section))}\n\n"


def write_report(
    report: dict[str, Any], run_dir: str | Path, curves: Curves | None = None, browser: dict[str, Any] | None = None
) -> dict[str, Path]:
    """Write report.json, report.md, report.html and figures/*.png into `run_dir`.

    `curves` are the training losses; `browser` the trace browser's problems (`browser_data`), embedded in the page.
    """
    import json

    run_dir = Path(run_dir)
    base = report["evaluation"]["models"].get("base", {}).get("accuracy")
    figures = make_figures(report["streams"], base, run_dir / "figures", curves, report.get("predictors"))
    report = {**report, "figures": {name: str(p.relative_to(run_dir)) for name, p in figures.items()}}
    paths = {"json": run_dir / "report.json", "md": run_dir / "report.md", "html": run_dir / "report.html"}
    paths["json"].write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    images = "\n".join(f"![{name}]({rel})" for name, rel in report["figures"].items())
    k = report["evaluation"]["k"]
    paths["md"].write_text(
        f"# stylealign report — {report['name']}\n\n**Verdict: {report['verdict']['verdict']}.** "
        f"{report['verdict']['sentence']}\n\n{mode_sentence(report)}\n\n{data_sentence(report)}\n\n"
        f"## Evaluation\n\n{headline(report['evaluation']['models'], k)}\n\n"
        f"{_markdown(*benchmark_table(report['evaluation']['models'], k))}\n\n"
        f"Avg@{k} in percent with its 95% CI; pass@{k} unbiased (Chen et al. 2021). "
        f"{report['evaluation'].get('grading') or ''}\n\n"
        f"## Paired contrasts (points of accuracy)\n\n{_markdown(*contrast_table(report['contrasts']))}\n\n"
        f"{_predictors_markdown(report.get('predictors'))}"
        f"## Streams\n\n{report['paradox']['sentence']}\n\n"
        f"{report['paradox']['cost_sentence']}\n\n{markdown_table(report['streams'])}\n\n"
        f"Accuracy: {report['evaluation']['metric']}, mean over test sets and seeds; 95% CI by a bootstrap "
        f"that resamples problems (within test sets) and seeds.\n\n{_usage_markdown(report.get('usage'))}{images}\n",
        encoding="utf-8",
    )
    paths["html"].write_text(render_html(report, figures, browser), encoding="utf-8")
    return paths
