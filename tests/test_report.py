"""The report from a synthetic run directory: its numbers equal the records', and its verdict follows the numbers.

The verdict is tested on constructed accuracy tables: reproduced, not resolved, contradicted, and reward ties."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from stylealign.cli import app
from stylealign.config import PAPER_CONTRASTS, ExperimentConfig
from stylealign.engines.base import SamplingParams, TokenScores
from stylealign.evaluation import accuracy_summary, dataset_label, model_fingerprint
from stylealign.grading.verdicts import grading_sentence
from stylealign.metrics.adaptation import cost_from_scores
from stylealign.records import Problem, Trace
from stylealign.report.browser import MAX_BYTES, MAX_PROBLEMS, browser_data, nll_deciles, word_diff
from stylealign.report.serve import report_server
from stylealign.report.table import benchmark_table, headline, kendall_tau, paradox, spearman_rho
from stylealign.report.verdict import contrasts, minimum_detectable, verdict
from stylealign.run.context import RunContext
from stylealign.stages.report import report_stage
from stylealign.store import RunStore
from stylealign.streams.listing import write_listing
from stylealign.training import TRAINING_INFO

K = 4
STREAMS = ("oracle_synth", "oracle_refine", "rft", "sar")
REWARD = {"oracle_synth": 1.88, "oracle_refine": 1.60, "rft": 1.47, "sar": 1.37}


def stream_row(stream: str) -> dict:
    ppl = {"oracle_synth": 2.69, "oracle_refine": 2.1, "rft": 1.52, "sar": 1.46}[stream]
    return {
        "stream": stream,
        "traces": 30,
        "coverage": 0.6,
        "correctness": 1.0,
        "reward": REWARD[stream],
        "ppl": ppl,
        **{f"ppl_q{q}": ppl + q / 10 for q in range(1, 5)},
        "js_drift": 0.1,
        "edit_distance": None,
        "top_loss_tokens": [
            {"token": "Therefore", "nll": 12.0, "share": 0.2},
            {"token": " =", "nll": 6.0, "share": 0.1},
        ],
    }


def make_run(root: Path, hits: dict[str, list[int]], seeds: int = 1) -> RunContext:
    """A run directory as the earlier stages leave it: streams.json, trained models of each seed, eval records.

    `hits[model][p]` correct samples of K on problem p, for every seed (seed s shifts one hit from problem s).
    """
    config = ExperimentConfig.model_validate(
        {
            "name": "synthetic",
            "student": {"engine": {"type": "hf", "model": "base-student"}},
            "training": {"seeds": list(range(seeds))},
            "evaluation": {"datasets": [{"source": "lab", "split": "test"}], "k": K},
            "report": {"resamples": 500},
        }
    )
    store = RunStore(root, config=config.model_dump(mode="json"))
    store.write_json("streams.json", [stream_row(s) for s in STREAMS])
    store.write_json(
        "train/summary.json",
        {"match_problems": False, "matched_problems": None, "budget": {"epochs": 1.0}, "seeds": list(range(seeds)),
         "warnings": [], "streams": {s: {"examples": 30, "steps": 4, "epochs": 1.0, "tokens_trained": 900} for s in STREAMS}},
    )
    label = dataset_label(config.evaluation.datasets[0])
    for name, per_problem in hits.items():
        for seed in range(seeds):
            model = "base-student"
            if name != "base":
                model_dir = root / "train" / name / f"seed-{seed}" / "model"
                model_dir.mkdir(parents=True)
                (model_dir / TRAINING_INFO).write_text(json.dumps({"key": f"key-{name}-{seed}"}))
                model = model_fingerprint(str(model_dir))
            shifted = [h - (p == seed and h > 0) for p, h in enumerate(per_problem)] if seed else per_problem
            traces = [
                Trace(
                    id=f"{name}-{seed}-{p}-{i}",
                    problem_id=f"p{p}",
                    text="...",
                    stream="eval",
                    model=model,
                    template="student",
                    sampling=SamplingParams.from_config(config.evaluation, seed=config.seed + seed).to_dict(),
                    seed=config.seed + seed,
                    correct=i < h,
                    metrics={"dataset": label, "sample": i, "k": K, "training_seed": seed,
                             "finish_reason": "length" if i == K - 1 else "stop"},
                )
                for p, h in enumerate(shifted)
                for i in range(K)
            ]
            store.stage(f"eval_{name}").commit(traces, [f"{name}-{seed}"])
    return RunContext(config=config, store=store, console=Console(record=True, width=250), streams=STREAMS)


WORDS = re.compile(r"\S+")
SCORED = ("rft", "oracle_synth", "oracle_refine", "sar")
COST = {"rft": 0.6, "sar": 0.7, "oracle_refine": 1.6, "oracle_synth": 2.4}
"""Mean NLL added per stream, so the synthetic costs rank as the paper's do."""


def solution(p: int, stream: str) -> str:
    a, b, c = p + 2, 2 * p + 3, p % 4 + 2
    if stream == "oracle_synth":
        return f"We are asked to evaluate ({a} + {b}) × {c}.\n\nFirst, {a} + {b} = {a + b}.\n\n" \
               f"Consequently, the product equals {(a + b) * c}.\n\nTherefore, the answer is {(a + b) * c}."
    if stream == "oracle_refine":
        return f"Adding gives {a} + {b} = {a + b}.\n\nMultiplying by {c}: {a + b} × {c} = {(a + b) * c}.\n\n" \
               f"Therefore, the answer is {(a + b) * c}."
    return f"{a} + {b} = {a + b}\n\n{a + b} * {c} = {(a + b) * c}\n\nThe answer is {(a + b) * c}"


def scored_trace(p: int, stream: str, text: str, parent_id: str | None, **extra: object) -> Trace:
    """A stream trace with its score-stage metrics from the real `cost_from_scores`: one token per word."""
    spans = [m.span() for m in WORDS.finditer(text)]
    nlls = [COST[stream] + ((7 * i + p) % 5) / 2 + (i == len(spans) - 1) for i in range(len(spans))]
    scores = TokenScores(tokens=[text[s:e] for s, e in spans], logprobs=[-v for v in nlls], offsets=spans)
    return Trace(id=f"{stream}-{p}", problem_id=f"train-{p}", text=text, stream=stream, parent_id=parent_id,
                 correct=True, metrics={**cost_from_scores(scores, text), "reward": 1.0, **extra})


def add_scored_traces(ctx: RunContext, problems: int = 12, texts: dict[tuple[int, str], str] | None = None) -> None:
    """Problems, samples and the scored traces of `SCORED` as the score stage leaves them.

    `texts[(p, stream)]` replaces the text of stream's trace for problem p.
    SAR keeps the student's trace (sar_outcome kept_parent) on every third problem; problem p's
    oracle_refine - sar cost gap grows with p, so the highest ids are the most informative.
    """
    store = ctx.store
    store.stage("problems").commit(
        [Problem(id=f"train-{p}", question=f"What is ({p + 2} + {2 * p + 3}) times {p % 4 + 2}?", answer="0")
         for p in range(problems)], ["problems"])
    samples = [Trace(id=f"sample-{p}", problem_id=f"train-{p}", text=solution(p, "rft") + " Done.", stream="sample")
               for p in range(problems)]
    store.stage("samples").commit(samples, ["samples"])
    for stream in SCORED:
        traces = []
        for p in range(problems):
            kept = stream == "sar" and p % 3 == 0
            text = solution(p, "rft") if kept else solution(p, stream)
            if stream == "sar" and not kept:
                text = text.replace("The answer", "So the answer")
            parent = {"rft": f"sample-{p}", "oracle_refine": f"rft-{p}", "sar": f"rft-{p}"}.get(stream)
            extra = {"sar_outcome": "kept_parent" if kept else "accepted"} if stream == "sar" else {}
            trace = scored_trace(p, stream, (texts or {}).get((p, stream), text), parent, **extra)
            if stream == "oracle_refine":
                trace.metrics["nll"] += p / 10
            traces.append(trace)
        store.stage(f"stream_{stream}").commit([dataclasses.replace(t, metrics={}) for t in traces], [stream])
        write_listing(store, stream, traces)
        store.stage(f"scored_{stream}").commit(traces, [stream])


PARADOX_HITS = {
    "base": [1, 0, 2, 0, 1, 3, 0, 1],
    "oracle_synth": [1, 1, 2, 0, 1, 2, 0, 1],
    "oracle_refine": [1, 1, 2, 1, 1, 2, 1, 1],
    "rft": [2, 1, 3, 1, 2, 3, 1, 2],
    "sar": [3, 2, 4, 2, 3, 4, 1, 3],
}


def test_report_json_matches_the_records(tmp_path: Path) -> None:
    ctx = make_run(tmp_path, PARADOX_HITS)
    summary = report_stage(ctx)
    report = json.loads((tmp_path / "report.json").read_text())
    rows = {r["stream"]: r for r in report["streams"]}
    base = accuracy_summary(ctx.store.stage("eval_base").records(Trace), K, resamples=500)
    for stream in STREAMS:
        truth = accuracy_summary(ctx.store.stage(f"eval_{stream}").records(Trace), K, resamples=500)
        assert rows[stream]["accuracy_after"] == pytest.approx(sum(PARADOX_HITS[stream]) / (K * 8))
        assert rows[stream]["accuracy_after"] == pytest.approx(truth["accuracy"])
        assert (rows[stream]["accuracy_ci_low"], rows[stream]["accuracy_ci_high"]) == (
            truth["ci_low"],
            truth["ci_high"],
        )
        assert rows[stream]["accuracy_before"] == pytest.approx(base["accuracy"])
        assert (
            rows[stream]["reward"] == REWARD[stream]
            and rows[stream]["ppl_q3"] == stream_row(stream)["ppl_q3"]
        )
        assert rows[stream]["seeds"] == [{"seed": 0, "accuracy": pytest.approx(truth["accuracy"])}]
        assert rows[stream]["length_cut"] == pytest.approx(1 / K)
        assert (rows[stream]["epochs"], rows[stream]["tokens_trained"]) == (1.0, 900)
    assert report["paradox"]["agree"] is False and "reproduced" not in report["paradox"]
    assert report["paradox"]["kendall_tau"] == pytest.approx(-1.0)
    assert "disagree" in report["paradox"]["sentence"] and "oracle_synth" in report["paradox"]["sentence"]
    pairs = [(c["better"], c["worse"]) for c in report["contrasts"]]
    assert pairs == [("oracle_refine", "oracle_synth"), ("rft", "oracle_refine"), ("sar", "rft")]
    refine = report["contrasts"][0]
    assert refine["diff"] == pytest.approx((10 - 8) / 32) and refine["problems"] == 8 and refine["seeds"] == 1
    assert refine["ci_low"] <= refine["diff"] <= refine["ci_high"]
    # 8 problems, 1 seed: the two-point refine-vs-synth gap has an interval holding 0, so no claim is made
    assert refine["resolved"] is False and report["verdict"]["verdict"] == "not_resolved" == summary["verdict"]
    assert "oracle_refine > oracle_synth" in report["verdict"]["sentence"]
    assert "smallest difference this run could detect" in report["verdict"]["sentence"]
    for name in ("reward_vs_accuracy", "cost_vs_accuracy", "ppl_quarters", "nll_deciles", "loss_tokens", "training_loss",
                 "predicted_vs_achieved"):
        assert (tmp_path / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "report.md").read_text()
    assert "| sar |" in md and f"{100 * rows['sar']['accuracy_after']:.1f}%" in md
    assert "Verdict: not_resolved" in md and "| oracle_refine | oracle_synth | +6.2 |" in md
    assert "## Evaluation" in md and "Macro Avg@4 over 1 benchmark(s)" in md and "| sar | Avg@4 |" in md
    assert report["evaluation"]["grading"] == grading_sentence(True) and grading_sentence(True) in md
    assert "evaluation.last_number: true" in grading_sentence(True) and "last_number: false" in grading_sentence(False)
    page = (tmp_path / "report.html").read_text()
    assert "evaluation.last_number: true" in page
    assert "Paired contrasts" in page and f"<td>{100 * refine['ci_low']:+.1f} to {100 * refine['ci_high']:+.1f}</td>" in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 7 and all(base64.b64decode(i)[:4] == b"\x89PNG" for i in images)
    assert "http://" not in page and "https://" not in page, "the page must be self-contained"
    out = ctx.console.export_text()
    assert "report.html" in out and "oracle_synth" in out and "Verdict: not_resolved" in out


def test_predictors_are_checked_against_accuracy_in_every_report_format(tmp_path: Path) -> None:
    ctx = make_run(tmp_path, PARADOX_HITS, seeds=2)
    report_stage(ctx)
    section = json.loads((tmp_path / "report.json").read_text())["predictors"]
    assert section["values"]["sar"]["ppl"] == 1.46 and section["values"]["sar"]["reward"] == REWARD["sar"]
    assert section["predicted_rank"]["sar"]["ppl"] == 1 and section["predicted_rank"]["sar"]["reward"] == 4
    rows = {r["stream"]: r for r in json.loads((tmp_path / "report.json").read_text())["streams"]}
    assert section["accuracy"] == {s: pytest.approx(rows[s]["accuracy_after"]) for s in STREAMS}
    ppl, reward = section["correlations"]["ppl"], section["correlations"]["reward"]
    # the synthetic ppl orders the streams as accuracy does, the reward against it
    assert ppl["spearman_rho"] == pytest.approx(1.0) and reward["spearman_rho"] == pytest.approx(-1.0)
    assert ppl["kendall_tau"] == pytest.approx(1.0) and reward["kendall_tau"] == pytest.approx(-1.0)
    assert ppl["spearman_ci"][0] <= 1.0 <= ppl["spearman_ci"][1] + 1e-9 and ppl["kendall_ci"][1] <= 1.0 + 1e-9
    assert (section["problems"], section["seeds"]) == (8, 2)
    assert section["correlations"]["rsr"]["outcome"] == "unavailable", "the synthetic streams have no ranks"
    md = (tmp_path / "report.md").read_text()
    assert "## Predicted before training, checked after" in md and section["sentence"] in md
    assert f"| student PPL | lower | sar > rft > oracle_refine > oracle_synth | {ppl['spearman_rho']:+.2f} |" in md
    page = (tmp_path / "report.html").read_text()
    assert "Predicted before training, checked after" in page and 'id="predicted_vs_achieved"' in page
    assert section["sentence"].split(":")[0] in ctx.console.export_text()


def test_seeds_are_averaged_and_paired(tmp_path: Path) -> None:
    ctx = make_run(tmp_path, PARADOX_HITS, seeds=3)
    report_stage(ctx)
    report = json.loads((tmp_path / "report.json").read_text())
    sar = next(r for r in report["streams"] if r["stream"] == "sar")
    per_seed = [(sum(PARADOX_HITS["sar"]) - (seed > 0)) / 32 for seed in range(3)]
    assert [s["accuracy"] for s in sar["seeds"]] == pytest.approx(per_seed)
    assert sar["accuracy_after"] == pytest.approx(sum(per_seed) / 3)
    sar_rft = next(c for c in report["contrasts"] if c["better"] == "sar")
    assert sar_rft["seeds"] == 3 and sar_rft["problems"] == 8
    rft = next(r for r in report["streams"] if r["stream"] == "rft")
    assert sar_rft["diff"] == pytest.approx(sar["accuracy_after"] - rft["accuracy_after"])

def test_the_rank_correlation_flips_when_the_numbers_flip(tmp_path: Path) -> None:
    flipped = {**PARADOX_HITS, "oracle_synth": PARADOX_HITS["sar"], "sar": PARADOX_HITS["oracle_synth"]}
    report_stage(make_run(tmp_path, flipped))
    described = json.loads((tmp_path / "report.json").read_text())["paradox"]
    assert described["agree"] is True and "agree (" in described["sentence"]


def test_untrained_stream_has_no_accuracy_and_is_left_out_of_the_ranking(tmp_path: Path) -> None:
    hits = {k: v for k, v in PARADOX_HITS.items() if k != "rft"}
    report_stage(make_run(tmp_path, hits))
    report = json.loads((tmp_path / "report.json").read_text())
    rft = next(r for r in report["streams"] if r["stream"] == "rft")
    assert rft["accuracy_after"] is None and rft["accuracy_ci_low"] is None
    assert report["paradox"]["streams"] == ["oracle_synth", "oracle_refine", "sar"]
    assert [(c["better"], c["worse"]) for c in report["contrasts"]] == [("oracle_refine", "oracle_synth")]
    assert report["verdict"]["verdict"] == "not_resolved"
    assert "Not measured" in report["verdict"]["sentence"] and "rft > oracle_refine" in report["verdict"]["sentence"]


def test_report_without_streams_json_names_the_missing_file(tmp_path: Path) -> None:
    ctx = make_run(tmp_path, PARADOX_HITS)
    (tmp_path / "streams.json").unlink()
    with pytest.raises(FileNotFoundError, match="streams.json"):
        report_stage(ctx)


def test_rank_statistics() -> None:
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman_rho([1, 2, 3, 4], [10, 20, 40, 30]) == pytest.approx(0.8)
    assert kendall_tau([1, 2, 3], [5, 5, 5]) is None
    rows = [
        {"stream": s, "reward": 1.0, "ppl": 1.0, "accuracy_after": a} for s, a in (("a", 0.1), ("b", 0.2))
    ]
    assert paradox(rows)["agree"] is None and "same for all" in paradox(rows)["sentence"]
    assert "Too few" in paradox(rows[:1])["sentence"]


def test_records_of_other_models_or_settings_are_ignored(tmp_path: Path) -> None:
    ctx = make_run(tmp_path, PARADOX_HITS)
    current = ctx.store.stage("eval_sar").records(Trace)
    stale = [
        dataclasses.replace(t, id=f"stale-{field}-{t.id}", correct=True, **change)
        for t in current
        for field, change in (
            ("model", {"model": "trained:older-weights"}),
            ("k", {"metrics": {**t.metrics, "k": 8}}),
            ("dataset", {"metrics": {**t.metrics, "dataset": "gsm8k:test"}}),
        )
    ]
    ctx.store.stage("eval_sar").commit(stale, ["stale"])
    report_stage(ctx)
    sar = next(
        r for r in json.loads((tmp_path / "report.json").read_text())["streams"] if r["stream"] == "sar"
    )
    assert sar["accuracy_after"] == pytest.approx(sum(PARADOX_HITS["sar"]) / (K * 8))


def scores_table(per_problem: list[float], seeds: int = 3) -> dict:
    """A constructed accuracy table: the same per-problem accuracy for every seed of one test set."""
    return {"lab:test": {seed: {f"p{i}": a for i, a in enumerate(per_problem)} for seed in range(seeds)}}


def constructed_contrasts(accuracy: dict[str, float], problems: int = 400) -> list[dict]:
    """Paired contrasts of the paper's pairs on tables where model m answers round(accuracy[m]·n) problems.

    The models share their solved problems (a better model solves a superset), as paired data would.
    """
    tables = {
        name: scores_table([1.0 if i < round(acc * problems) else 0.0 for i in range(problems)])
        for name, acc in accuracy.items()
    }
    return contrasts(tables, [list(p) for p in PAPER_CONTRASTS], resamples=500)


def test_verdict_reproduced_when_every_paper_comparison_is_resolved_its_way() -> None:
    rows = constructed_contrasts({"oracle_synth": 0.20, "oracle_refine": 0.30, "rft": 0.40, "sar": 0.50})
    result = verdict(rows)
    assert all(r["resolved"] and r["ci_low"] > 0 for r in rows)
    assert result["verdict"] == "reproduced" and result["unresolved"] == []
    assert "sar > rft by +10.0 points" in result["sentence"]


def test_verdict_not_resolved_names_the_open_comparison_and_the_detectable_difference() -> None:
    rows = constructed_contrasts({"oracle_synth": 0.20, "oracle_refine": 0.30, "rft": 0.40, "sar": 0.40})
    result = verdict(rows)
    assert [r["resolved"] for r in rows] == [True, True, False]
    assert result["verdict"] == "not_resolved" and result["unresolved"] == ["sar > rft"]
    assert "sar > rft by +0.0 points" in result["sentence"]
    detectable = result["minimum_detectable_difference"]
    assert detectable == pytest.approx(minimum_detectable(rows)) and 0 < detectable < 0.1
    assert f"about {100 * detectable:.1f} points" in result["sentence"]


def test_verdict_contradicted_when_one_comparison_is_resolved_against_the_paper() -> None:
    rows = constructed_contrasts({"oracle_synth": 0.20, "oracle_refine": 0.30, "rft": 0.50, "sar": 0.40})
    result = verdict(rows)
    assert result["verdict"] == "contradicted"
    assert "rft beats sar" in result["sentence"]
    # configured the other way round, the same numbers give the same verdict
    swapped = [{**r, "better": r["worse"], "worse": r["better"], "diff": -r["diff"],
                "ci_low": -r["ci_high"], "ci_high": -r["ci_low"]} for r in rows]
    assert verdict(swapped)["verdict"] == "contradicted"


def test_verdict_follows_contrasts_not_the_rank_correlation() -> None:
    """Every interval overlapping: a perfect negative τ must not make a 'reproduced' verdict."""
    rows = constructed_contrasts({"oracle_synth": 0.20, "oracle_refine": 0.21, "rft": 0.22, "sar": 0.23}, problems=60)
    assert not any(r["resolved"] for r in rows)
    assert verdict(rows)["verdict"] == "not_resolved"
    assert verdict([])["verdict"] == "not_resolved" and "Not measured" in verdict([])["sentence"]


def test_reward_ties_are_said_as_ties() -> None:
    def row(stream: str, reward: float, acc: float) -> dict:
        return {"stream": stream, "reward": reward, "ppl": 1.0 + acc, "accuracy_after": acc}

    tied = paradox([row("gold", 2.0, 0.10), row("oracle_synth", 2.0, 0.20), row("rft", 1.0, 0.30)])
    assert "gold and oracle_synth tie for the highest reward" in tied["sentence"]
    assert "highest-reward stream," not in tied["sentence"]
    reordered = paradox([row("oracle_synth", 2.0, 0.20), row("gold", 2.0, 0.10), row("rft", 1.0, 0.30)])
    assert "tie for the highest reward" in reordered["sentence"], "list order must not pick a winner"
    assert "rank 2, 3 of 3 in accuracy" in reordered["sentence"]
    both = paradox([row("gold", 2.0, 0.30), row("rft", 1.0, 0.30), row("sar", 0.5, 0.10)])
    assert "gold and rft tie as the most accurate" in both["sentence"]


def test_data_sentence_reports_the_sar_gate_and_vocabulary_warnings():
    from stylealign.report.table import data_sentence

    report = {"streams": [
        {"stream": "gold", "warnings": ["PPL 9e+05 exceeds the vocabulary size 600"]},
        {"stream": "sar", "traces": 10, "sar_accepted": 6, "sar_retried": 2, "sar_kept_parent": 4,
         "sar_identical_to_parent": 5, "sar_rejections": {"cost_rise": 3, "length": 1}, "warnings": []},
    ]}
    sentence = data_sentence(report)
    assert "6 refinements accepted (2 after a retry), 4 fell back" in sentence
    assert "5 of 10 sar traces equal their parent; attempts rejected: cost_rise 3, length 1." in sentence
    assert "Warning (gold): PPL 9e+05 exceeds the vocabulary size 600." in sentence
    assert data_sentence({"streams": [{"stream": "rft"}]}) == ""


def test_benchmark_table_has_avg_pass_and_ci_per_benchmark_and_the_macro_average_as_headline() -> None:
    def traces(model: str, hits: dict[str, list[int]]) -> list[Trace]:
        return [
            Trace(id=f"{model}-{d}-{p}-{i}", problem_id=f"{d}-{p}", text="", stream="eval", model=model,
                  correct=i < h, metrics={"dataset": d, "sample": i, "k": K})
            for d, per_problem in hits.items() for p, h in enumerate(per_problem) for i in range(K)
        ]

    evaluations = {
        "sar": accuracy_summary(traces("sar", {"aime24:test": [0, 0, 4, 0], "math500:test": [4, 4, 2, 0]}), K, resamples=200),
        "base": accuracy_summary(traces("base", {"aime24:test": [0, 0, 1, 0], "math500:test": [4, 2, 2, 0]}), K, resamples=200),
    }
    headers, rows = benchmark_table(evaluations, K)
    assert headers == ["model", "metric", "aime24:test", "math500:test", "macro average"]
    assert [r[:2] for r in rows] == [["base", "Avg@4"], ["", "pass@4"], ["sar", "Avg@4"], ["", "pass@4"]]
    sar_aime = evaluations["sar"]["datasets"]["aime24:test"]
    assert rows[2][2] == f"25.0 ({100 * sar_aime['ci_low']:.1f}–{100 * sar_aime['ci_high']:.1f})"
    assert rows[2][3].startswith("62.5 (") and rows[3][2:4] == ["25.0", "75.0"]
    assert rows[2][4].startswith("**43.8**")  # (25 + 62.5) / 2: benchmarks weigh alike, whatever their size
    assert rows[0][2].startswith("6.2 (") and rows[1][2] == "25.0"
    sentence = headline(evaluations, K)
    assert sentence.startswith("Macro Avg@4 over 2 benchmark(s)") and "base 28.1%" in sentence and "sar 43.8%" in sentence


def embedded_browser(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="tb-data">(.*?)</script>', page, re.S)
    assert match, "the trace browser's data is not in the page"
    return json.loads(match.group(1))


def test_trace_browser_embeds_per_token_nll_most_informative_first(tmp_path: Path) -> None:
    ctx = make_run(tmp_path, PARADOX_HITS)
    add_scored_traces(ctx)
    report_stage(ctx)
    page = (tmp_path / "report.html").read_text()
    data = embedded_browser(page)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["trace_browser"]["problems"] == len(data["problems"]) == 12
    assert data["bytes"] <= MAX_BYTES and data["max_problems"] == MAX_PROBLEMS
    # oracle_refine - sar gap grows with the problem number
    assert [p["id"] for p in data["problems"][:3]] == ["train-11", "train-10", "train-9"]
    scored = {t.id: t for s in SCORED for t in ctx.store.stage(f"scored_{s}").records(Trace)}
    for problem in data["problems"]:
        assert {t["stream"] for t in problem["traces"]} == set(SCORED)
        for packed in problem["traces"]:
            trace = scored[packed["id"]]
            assert packed["nll"] == [round(1000 * v) for v in trace.metrics["token_nll"]]
            assert [packed["text"][s:e] for s, e in packed["spans"]] == WORDS.findall(trace.text)
            assert sum(packed["nll"]) / len(packed["nll"]) / 1000 == pytest.approx(
                scored_trace(int(problem["id"][6:]), packed["stream"], trace.text, None).metrics["nll"], abs=1e-3)
            labels = [label for _, label, _ in packed["marks"]]
            # in text order: a step mark where each paragraph after the first begins, one per quarter of the words
            last = ["step 4"] if packed["stream"] == "oracle_synth" else []  # its solutions have four paragraphs
            assert labels == ["Q2", "step 2", "Q3", "step 3", "Q4", *last]
            assert all(packed["text"][at - 2 : at] == "\n\n" for at, _, kind in packed["marks"] if kind == "step")
            parent_id = {"rft": "sample", "sar": "rft", "oracle_refine": "rft"}.get(packed["stream"])
            assert (packed.get("parent") or {}).get("id", "").split("-")[0] == (parent_id or "")
    rows = {r["stream"]: r for r in report["streams"]}
    assert rows["oracle_synth"]["nll_deciles"][0] > rows["rft"]["nll_deciles"][0]
    assert len(rows["sar"]["nll_deciles"]) == 10


def test_trace_browser_picks_gaps_then_sar_fallbacks_and_keeps_its_caps(tmp_path: Path) -> None:
    ctx = make_run(tmp_path, PARADOX_HITS)
    add_scored_traces(ctx)
    problems = ctx.store.stage("problems").records(Problem)
    traces = {s: ctx.store.stage(f"scored_{s}").records(Trace) for s in SCORED}
    traces["oracle_refine"] = [t for t in traces["oracle_refine"] if int(t.problem_id[6:]) < 6]
    data = browser_data(problems, traces, {})
    why = [(p["id"], p["why"].split()[0]) for p in data["problems"]]
    assert why[:6] == [(f"train-{p}", "largest") for p in (5, 4, 3, 2, 1, 0)]
    assert why[6:8] == [("train-6", "SAR"), ("train-9", "SAR")]  # kept the parent, no refine to compare with
    assert len(why) == 12 and all(w == "widest" for _, w in why[8:])
    assert len(browser_data(problems, traces, {}, max_problems=2)["problems"]) == 2
    first = len(json.dumps(data["problems"][0], ensure_ascii=False).encode())
    capped = browser_data(problems, traces, {}, max_bytes=first + 10)
    assert len(capped["problems"]) == 1 and capped["bytes"] <= first + 10 and capped["available"] == 12


def test_word_diff_rebuilds_both_texts_and_marks_the_changes() -> None:
    parent, text = "13 + 25 = 38\n\nThe answer is 38", "Adding: 13 + 25 = 38.\n\nSo the answer is 38"
    ops = word_diff(parent, text)
    assert "".join(w for op, w in ops if op != "+") == parent and "".join(w for op, w in ops if op != "-") == text
    assert ["+", "Adding: "] in ops and ["-", "The"] in ops and ["+", "So the"] in ops
    assert word_diff(parent, parent) == [["=", parent]]


def test_nll_deciles_average_each_trace_per_tenth_of_its_tokens() -> None:
    def trace(nlls: list[float]) -> Trace:
        return Trace(id=str(len(nlls)), problem_id="p", text="", stream="s", metrics={"token_nll": nlls})

    assert nll_deciles([trace([float(i) for i in range(20)])]) == [2 * d + 0.5 for d in range(10)]
    # a 5-token trace reaches every other decile; each trace weighs the same, whatever its length
    assert nll_deciles([trace([0.0] * 20), trace([1.0] * 5)])[:2] == [0.5, 0.0]
    assert nll_deciles([trace([])]) == [None] * 10


def test_trace_text_cannot_break_out_of_the_page(tmp_path: Path) -> None:
    ctx = make_run(tmp_path, PARADOX_HITS)
    add_scored_traces(ctx, problems=2, texts={(0, "rft"): "x </script><script>alert(1)</script> <!-- y"})
    report_stage(ctx)
    page = (tmp_path / "report.html").read_text()
    assert "alert(1)</script>" not in page and "<!-- y" not in page
    texts = [t["text"] for p in embedded_browser(page)["problems"] for t in p["traces"] if t["stream"] == "rft"]
    assert "x </script><script>alert(1)</script> <!-- y" in texts


def test_report_cli_rebuilds_and_serves_only_the_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_run(tmp_path / "run", PARADOX_HITS)
    add_scored_traces(ctx, problems=3)
    ctx.store.close()
    result = CliRunner().invoke(app, ["report", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert result.output.index("Verdict:") < result.output.index("HTML report:"), "the verdict, then the page"
    assert embedded_browser((tmp_path / "run" / "report.html").read_text())["problems"]

    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", opened.append)  # no desktop browser in a test
    shown = CliRunner().invoke(app, ["report", str(tmp_path / "run"), "--no-rebuild", "--open"])
    assert shown.exit_code == 0 and opened == [(tmp_path / "run" / "report.html").resolve().as_uri()]

    missing = CliRunner().invoke(app, ["report", str(tmp_path), "--no-rebuild"])
    assert missing.exit_code == 1 and "report.html: missing" in " ".join(missing.output.split())

    server = report_server(tmp_path / "run", port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        with urllib.request.urlopen(f"{base}/") as reply:
            assert reply.read() == (tmp_path / "run" / "report.html").read_bytes()
        with urllib.request.urlopen(f"{base}/figures/nll_deciles.png") as reply:
            assert reply.read()[:4] == b"\x89PNG"
        for private in ("/manifest.json", "/streams.json", "/figures/../manifest.json", "/scored_rft/"):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(f"{base}{private}")
            assert err.value.code == 404, private
    finally:
        server.shutdown()
        server.server_close()


def test_scored_run_of_a_real_model_feeds_the_browser_and_stays_quiet(tmp_path: Path, tiny_model_dir: Path) -> None:
    """Through the score stage of a real (tiny) model: the page's per-token NLLs average to each trace's NLL."""
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps({
        "name": "tiny", "problems": {"source": "lab", "split": "train"},
        "student": {"engine": {"type": "hf", "model": str(tiny_model_dir), "device": "cpu", "batch_size": 2}},
        "oracle": {"engine": {"type": "lab-oracle"}}, "sampling": {"k": 2, "max_tokens": 16},
        "streams": {"enabled": ["gold", "rft", "oracle_synth"]}, "reward": {"type": "lab"},
    }))
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(config), "--until", "score", "--limit", "3", "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert "Loading weights" not in result.output and "it/s" not in result.output, result.output
    assert [line.split()[1] for line in result.output.splitlines() if line.startswith("✓")] == [
        "load", "sample", "streams", "score"]
    # the predictions come before any training, from the score stage's one pass: ranks included
    streams = {r["stream"]: r for r in json.loads((run / "streams.json").read_text())}
    for name in ("gold", "oracle_synth"):
        assert streams[name]["mean_rank"] >= 1 and streams[name]["rsr"] > 0 and streams[name]["car"] is not None
    places = {name: streams[name]["predicted_rank"]["ppl"] for name in ("gold", "oracle_synth")}
    assert sorted(places.values()) == [1, 2] and (places["gold"] == 1) == (streams["gold"]["ppl"] < streams["oracle_synth"]["ppl"])
    printed = result.output[result.output.index("Predicted before training"):]
    assert all(f"{label} (" in printed for label in ("student PPL", "mean token rank", "RSR", "CAR", "GRAPE likelihood"))
    report = CliRunner().invoke(app, ["report", str(run)])
    assert report.exit_code == 0, report.output
    data = embedded_browser((run / "report.html").read_text())
    scored = {t.id: t for s in ("gold", "oracle_synth") for t in RunStore(run).stage(f"scored_{s}").records(Trace)}
    drawn = [t for p in data["problems"] for t in p["traces"]]
    assert len(data["problems"]) == 3 and {t["stream"] for t in drawn} == {"gold", "oracle_synth"}
    for packed in drawn:
        assert len(packed["nll"]) == len(packed["spans"]) == scored[packed["id"]].metrics["tokens"] > 0
        assert sum(packed["nll"]) / len(packed["nll"]) / 1000 == pytest.approx(scored[packed["id"]].metrics["nll"], abs=2e-3)
        assert all(0 <= s <= e <= len(packed["text"]) for s, e in packed["spans"])
    rows = {r["stream"]: r for r in json.loads((run / "report.json").read_text())["streams"]}
    assert all(v is not None for v in rows["gold"]["nll_deciles"])
    assert json.loads((run / "report.json").read_text())["predictors"]["sentence"].startswith("No predictor can be checked")


def test_trace_browser_shows_the_student_trace_that_was_refined() -> None:
    def trace(tid: str, stream: str, parent: str | None = None) -> Trace:
        return Trace(id=tid, problem_id="p", text=tid, stream=stream, parent_id=parent, metrics={"nll": 1.0})

    traces = {"rft": [trace("a-rft", "rft"), trace("b-rft", "rft")], "sar": [trace("s", "sar", "b-rft")]}
    data = browser_data([Problem(id="p", question="q", answer="1")], traces, {t.id: t for v in traces.values() for t in v})
    shown = {t["stream"]: t for t in data["problems"][0]["traces"]}
    assert shown["rft"]["id"] == "b-rft" and shown["sar"]["parent"] == {"stream": "rft", "id": "b-rft"}
