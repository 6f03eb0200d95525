"""The report: per-stream quality, compatibility and utility side by side, and what the numbers say.

`report_stage` joins `DIR/streams.json` (the score stage's per-stream
metrics) with the evaluation records, and writes `report.json`, `report.md`,
`report.html` (one self-contained page) and `figures/*.png`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stylealign.report.figures import make_figures
from stylealign.report.html import render_html
from stylealign.report.table import markdown_table, paradox, rich_table

__all__ = ["build_report", "report_stage", "write_report"]


def build_report(
    name: str,
    stream_rows: list[dict[str, Any]],
    evaluations: dict[str, dict[str, Any]],
    streams: tuple[str, ...] | list[str],
    k: int,
) -> dict[str, Any]:
    """Join per-stream metrics with accuracy before ("base") and after fine-tuning on each stream."""
    by_stream = {row["stream"]: row for row in stream_rows}
    base = evaluations.get("base", {})
    rows = []
    for stream in streams:
        after = evaluations.get(stream, {})
        rows.append(
            {
                **by_stream.get(stream, {"stream": stream}),
                "accuracy_before": base.get("accuracy"),
                "accuracy_after": after.get("accuracy"),
                "accuracy_ci_low": after.get("ci_low"),
                "accuracy_ci_high": after.get("ci_high"),
                "pass_at_k_after": after.get("pass_at_k"),
            }
        )
    return {
        "name": name,
        "streams": rows,
        "paradox": paradox(rows),
        "evaluation": {"metric": f"Avg@{k}", "k": k, "models": evaluations},
    }


def write_report(report: dict[str, Any], run_dir: str | Path) -> dict[str, Path]:
    """Write report.json, report.md, report.html and figures/*.png into `run_dir`."""
    import json

    run_dir = Path(run_dir)
    base = report["evaluation"]["models"].get("base", {}).get("accuracy")
    figures = make_figures(report["streams"], base, run_dir / "figures")
    report = {**report, "figures": {name: str(p.relative_to(run_dir)) for name, p in figures.items()}}
    paths = {"json": run_dir / "report.json", "md": run_dir / "report.md", "html": run_dir / "report.html"}
    paths["json"].write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    images = "\n".join(f"![{name}]({rel})" for name, rel in report["figures"].items())
    paths["md"].write_text(
        f"# stylealign report — {report['name']}\n\n{report['paradox']['sentence']}\n\n"
        f"{report['paradox']['cost_sentence']}\n\n{markdown_table(report['streams'])}\n\n"
        f"Accuracy: {report['evaluation']['metric']}, mean over test sets; 95% CI by stratified bootstrap "
        f"over problems.\n\n{images}\n",
        encoding="utf-8",
    )
    paths["html"].write_text(render_html(report, figures), encoding="utf-8")
    return paths


def report_stage(ctx: Any) -> dict[str, Any]:
    """Build the report from the run store, print the table and the path of the HTML page."""
    from stylealign.evaluation import eval_targets, eval_traces, summarize

    streams_json = ctx.store.root / "streams.json"
    if not streams_json.is_file():
        raise FileNotFoundError(
            f"{streams_json}: missing; run the score stage first (stylealign run --only score)"
        )
    k = ctx.config.evaluation.k
    evaluations = {name: summarize(eval_traces(ctx, name, cfg), k) for name, cfg in eval_targets(ctx)}
    evaluations = {name: s for name, s in evaluations.items() if s["accuracy"] is not None}
    report = build_report(ctx.config.name, ctx.store.read_json("streams.json"), evaluations, ctx.streams, k)
    failures = ctx.store.root / "streams" / "failures.json"  # per stream: failed oracle requests and sends
    report["oracle_failures"] = ctx.store.read_json("streams/failures.json") if failures.is_file() else {}
    paths = write_report(report, ctx.store.root)
    ctx.console.print(
        rich_table(report["streams"], f"{ctx.config.name}: which data makes the student better")
    )
    ctx.console.print(report["paradox"]["sentence"])
    ctx.console.print(report["paradox"]["cost_sentence"])
    ctx.console.print(f"HTML report: [bold]{paths['html'].resolve()}[/]")
    return {"html": str(paths["html"]), "paradox_reproduced": report["paradox"]["reproduced"]}
