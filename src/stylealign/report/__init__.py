"""The report: per-stream quality, compatibility and utility side by side, and what the numbers say.

`report_stage` joins `DIR/streams.json` (the score stage's per-stream
metrics), `DIR/train/summary.json` (budgets actually spent) and the
evaluation records (accuracy over seeds, paired contrasts, the verdict), and
the scored traces (per-token NLLs: the trace browser and loss by position),
and writes `report.json`, `report.md`, `report.html` (one self-contained
page) and `figures/*.png`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stylealign.records import Problem, Trace
from stylealign.report.browser import browser_data, nll_deciles
from stylealign.report.figures import Curves, make_figures
from stylealign.report.html import render_html
from stylealign.report.table import (
    benchmark_table,
    contrast_table,
    data_sentence,
    headline,
    markdown_table,
    mode_sentence,
    paradox,
    rich_table,
)
from stylealign.report.verdict import verdict

__all__ = ["build_report", "report_run", "report_stage", "trace_browser", "write_report"]

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
) -> dict[str, Any]:
    """Join per-stream metrics with the budget spent and accuracy before ("base") and after each stream."""
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
        "training": {key: value for key, value in (training or {}).items() if key != "streams"},
        "evaluation": {"metric": f"Avg@{k}", "k": k, "models": evaluations},
    }


def _markdown(headers: list[str], rows: list[list[str]]) -> str:
    return "\n".join(
        ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        + ["| " + " | ".join(row) + " |" for row in rows]
    )


def write_report(
    report: dict[str, Any], run_dir: str | Path, curves: Curves | None = None, browser: dict[str, Any] | None = None
) -> dict[str, Path]:
    """Write report.json, report.md, report.html and figures/*.png into `run_dir`.

    `curves` are the training losses; `browser` the trace browser's problems (`browser_data`), embedded in the page.
    """
    import json

    run_dir = Path(run_dir)
    base = report["evaluation"]["models"].get("base", {}).get("accuracy")
    figures = make_figures(report["streams"], base, run_dir / "figures", curves)
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
        f"Avg@{k} in percent with its 95% CI; pass@{k} unbiased (Chen et al. 2021).\n\n"
        f"## Paired contrasts (points of accuracy)\n\n{_markdown(*contrast_table(report['contrasts']))}\n\n"
        f"## Streams\n\n{report['paradox']['sentence']}\n\n"
        f"{report['paradox']['cost_sentence']}\n\n{markdown_table(report['streams'])}\n\n"
        f"Accuracy: {report['evaluation']['metric']}, mean over test sets and seeds; 95% CI by a bootstrap "
        f"that resamples problems (within test sets) and seeds.\n\n{images}\n",
        encoding="utf-8",
    )
    paths["html"].write_text(render_html(report, figures, browser), encoding="utf-8")
    return paths


def _scored(ctx: Any, stage: str) -> list[Trace]:
    """A stage's records, without creating its folder when the run never made it."""
    return ctx.store.stage(stage).records(Trace) if (ctx.store.root / stage).is_dir() else []


def trace_browser(ctx: Any) -> tuple[dict[str, Any], dict[str, list[float | None]]]:
    """The trace browser's data and every stream's NLL by decile of position, from the current scored traces."""
    from stylealign.streams.listing import stream_traces

    traces = {}
    for name in ctx.streams:
        current = {t.id for t in stream_traces(ctx.store, name)} if (ctx.store.root / f"stream_{name}").is_dir() else set()
        traces[name] = [t for t in _scored(ctx, f"scored_{name}") if t.id in current]
    parents = {t.id: t for t in _scored(ctx, "samples")}
    parents.update({t.id: t for found in traces.values() for t in found})
    problems = ctx.store.stage("problems").records(Problem) if (ctx.store.root / "problems").is_dir() else []
    deciles = {name: nll_deciles(found) for name, found in traces.items() if found}
    return browser_data(problems, traces, parents), deciles


def report_stage(ctx: Any) -> dict[str, Any]:
    """Build the report from the run store; print the table, the verdict and the path of the HTML page."""
    from stylealign.evaluation import model_traces, problem_scores, summarize
    from stylealign.report.verdict import contrasts
    from stylealign.training import loss_curves

    streams_json = ctx.store.root / "streams.json"
    if not streams_json.is_file():
        raise FileNotFoundError(
            f"{streams_json}: missing; run the score stage first (stylealign run --only score)"
        )
    k, resamples = ctx.config.evaluation.k, ctx.config.report.resamples
    traces = model_traces(ctx)
    evaluations = {name: summarize(found, k, resamples=resamples) for name, found in traces.items()}
    scores = {name: problem_scores(found) for name, found in traces.items()}
    training_json = ctx.store.root / "train" / "summary.json"
    report = build_report(
        ctx.config.name,
        ctx.store.read_json("streams.json"),
        evaluations,
        ctx.streams,
        k,
        contrasts=contrasts(scores, ctx.config.report.contrasts, resamples=resamples),
        training=ctx.store.read_json("train/summary.json") if training_json.is_file() else None,
    )
    failures = ctx.store.root / "streams" / "failures.json"  # per stream: failed oracle requests and sends
    report["oracle_failures"] = ctx.store.read_json("streams/failures.json") if failures.is_file() else {}
    browser, deciles = trace_browser(ctx)
    for row in report["streams"]:
        row["nll_deciles"] = deciles.get(row["stream"])
    report["trace_browser"] = {key: value for key, value in browser.items() if key != "problems"}
    report["trace_browser"]["problems"] = len(browser["problems"])
    curves = loss_curves(ctx.store.root, ctx.streams, ctx.config.training.seeds)
    paths = write_report(report, ctx.store.root, curves, browser)
    ctx.console.print(
        rich_table(report["streams"], f"{ctx.config.name}: which data makes the student better")
    )
    ctx.console.print(headline(evaluations, k))
    ctx.console.print(report["paradox"]["sentence"])
    ctx.console.print(report["paradox"]["cost_sentence"])
    ctx.console.print(mode_sentence(report))
    if sentence := data_sentence(report):
        ctx.console.print(sentence)
    ctx.console.print(f"[bold]Verdict: {report['verdict']['verdict']}.[/] {report['verdict']['sentence']}")
    ctx.console.print(f"HTML report: [bold]{paths['html'].resolve()}[/]")
    return {"html": str(paths["html"]), "verdict": report["verdict"]["verdict"]}


def report_run(run_dir: str | Path, console: Any = None) -> Path:
    """Rebuild the report of an existing run directory from the config its manifest recorded; returns report.html."""
    from stylealign.config import ExperimentConfig
    from stylealign.pipeline import run_experiment
    from stylealign.store import RunStore

    manifest = RunStore(run_dir).manifest()
    if "config" not in manifest:
        raise ValueError(f"{Path(run_dir) / 'manifest.json'}: no recorded config; not a stylealign run directory")
    config = ExperimentConfig.model_validate(manifest["config"])
    run_experiment(config, run_dir, only="report", console=console)
    return Path(run_dir) / "report.html"
