"""report: the table, figures, verdict and trace browser of a run, from the run store only."""

from __future__ import annotations

from typing import Any

from stylealign.evaluation import accuracy_summary, problem_scores
from stylealign.grading.verdicts import grading_sentence
from stylealign.records import Problem, Trace
from stylealign.report import build_report, write_report
from stylealign.report.browser import browser_data, nll_deciles
from stylealign.report.predictors import predictor_check
from stylealign.report.table import data_sentence, headline, mode_sentence, rich_table
from stylealign.report.verdict import contrasts
from stylealign.run.context import RunContext
from stylealign.stages.evaluate import model_traces
from stylealign.stages.load import CONTAMINATION
from stylealign.streams.listing import stream_traces
from stylealign.training import loss_curves
from stylealign.usage import usage_section


def _scored(ctx: RunContext, stage: str) -> list[Trace]:
    """A stage's records, without creating its folder when the run never made it."""
    return ctx.store.stage(stage).records(Trace) if (ctx.store.root / stage).is_dir() else []


def trace_browser(ctx: RunContext) -> tuple[dict[str, Any], dict[str, list[float | None]]]:
    """The trace browser's data and every stream's NLL by decile of position, from the current scored traces."""
    traces = {}
    for name in ctx.streams:
        current = {t.id for t in stream_traces(ctx.store, name)} if (ctx.store.root / f"stream_{name}").is_dir() else set()
        traces[name] = [t for t in _scored(ctx, f"scored_{name}") if t.id in current]
    parents = {t.id: t for t in _scored(ctx, "samples")}
    parents.update({t.id: t for found in traces.values() for t in found})
    problems = ctx.store.stage("problems").records(Problem) if (ctx.store.root / "problems").is_dir() else []
    deciles = {name: nll_deciles(found) for name, found in traces.items() if found}
    return browser_data(problems, traces, parents), deciles


def report_stage(ctx: RunContext) -> dict[str, Any]:
    """Build the report from the run store; print the table, the verdict and the path of the HTML page."""
    streams_json = ctx.store.root / "streams.json"
    if not streams_json.is_file():
        raise FileNotFoundError(
            f"{streams_json}: missing; run the score stage first (stylealign run --only score)"
        )
    k, resamples = ctx.config.evaluation.k, ctx.config.report.resamples
    traces = model_traces(ctx)
    evaluations = {name: accuracy_summary(found, k, resamples=resamples) for name, found in traces.items()}
    scores = {name: problem_scores(found) for name, found in traces.items()}
    stream_rows = ctx.store.read_json("streams.json")
    report = build_report(
        ctx.config.name,
        stream_rows,
        evaluations,
        ctx.streams,
        k,
        contrasts=contrasts(scores, ctx.config.report.contrasts, resamples=resamples),
        training=ctx.store.read_json("train/summary.json", missing=None),
        grading=grading_sentence(ctx.config.evaluation.last_number),
        predictors=predictor_check(
            [row for row in stream_rows if row["stream"] in ctx.streams], scores, resamples=resamples
        ),
    )
    # per stream: failed oracle requests and sends
    report["oracle_failures"] = ctx.store.read_json("streams/failures.json", missing={})
    report["contamination"] = ctx.store.read_json(CONTAMINATION, missing=None)
    report["usage"] = usage_section(ctx)
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
    ctx.console.print(report["predictors"]["sentence"])
    ctx.console.print(mode_sentence(report))
    if sentence := data_sentence(report):
        ctx.console.print(sentence)
    ctx.console.print(f"[bold]Verdict: {report['verdict']['verdict']}.[/] {report['verdict']['sentence']}")
    ctx.console.print(f"HTML report: [bold]{paths['html'].resolve()}[/]")
    return {"html": str(paths["html"]), "verdict": report["verdict"]["verdict"]}
