"""The report from a synthetic run directory: its numbers equal the records', and its verdict follows the numbers."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from stylealign.config import ExperimentConfig
from stylealign.evaluation import dataset_label, model_fingerprint, sampling_params, summarize
from stylealign.pipeline import RunContext
from stylealign.records import Trace
from stylealign.report import report_stage
from stylealign.report.table import kendall_tau, paradox, spearman_rho
from stylealign.store import RunStore
from stylealign.training import TRAINING_INFO

K = 4
STREAMS = ("oracle_synth", "rft", "sar")
REWARD = {"oracle_synth": 1.88, "rft": 1.47, "sar": 1.37}


def stream_row(stream: str) -> dict:
    ppl = {"oracle_synth": 2.69, "rft": 1.52, "sar": 1.46}[stream]
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


def make_run(root: Path, hits: dict[str, list[int]]) -> RunContext:
    """A run directory as the earlier stages leave it: streams.json, trained models, eval records."""
    config = ExperimentConfig.model_validate(
        {
            "name": "synthetic",
            "student": {"engine": {"type": "hf", "model": "base-student"}},
            "evaluation": {"datasets": [{"source": "lab", "split": "test"}], "k": K},
        }
    )
    store = RunStore(root, config=config.model_dump(mode="json"))
    store.write_json("streams.json", [stream_row(s) for s in STREAMS])
    label = dataset_label(config.evaluation.datasets[0])
    sampling = sampling_params(config.evaluation, config.seed).to_dict()
    for name, per_problem in hits.items():
        model = "base-student"
        if name != "base":
            model_dir = root / "train" / name / "model"
            model_dir.mkdir(parents=True)
            (model_dir / TRAINING_INFO).write_text(json.dumps({"key": f"key-{name}"}))
            model = model_fingerprint(str(model_dir))
        traces = [
            Trace(
                id=f"{name}-{p}-{i}",
                problem_id=f"p{p}",
                text="...",
                stream="eval",
                model=model,
                template="student",
                sampling=sampling,
                seed=0,
                correct=i < h,
                metrics={"dataset": label, "sample": i, "k": K},
            )
            for p, h in enumerate(per_problem)
            for i in range(K)
        ]
        store.stage(f"eval_{name}").commit(traces, [name])
    return RunContext(config=config, store=store, console=Console(record=True, width=200), streams=STREAMS)


PARADOX_HITS = {
    "base": [1, 0, 2, 0, 1, 3, 0, 1],
    "oracle_synth": [1, 1, 2, 0, 1, 2, 0, 1],
    "rft": [2, 1, 3, 1, 2, 3, 1, 2],
    "sar": [3, 2, 4, 2, 3, 4, 1, 3],
}


def test_report_json_matches_the_records(tmp_path: Path) -> None:
    ctx = make_run(tmp_path, PARADOX_HITS)
    summary = report_stage(ctx)
    report = json.loads((tmp_path / "report.json").read_text())
    rows = {r["stream"]: r for r in report["streams"]}
    base = summarize(ctx.store.stage("eval_base").records(Trace), K)
    for stream in STREAMS:
        truth = summarize(ctx.store.stage(f"eval_{stream}").records(Trace), K)
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
    assert report["paradox"]["agree"] is False and report["paradox"]["reproduced"] is True
    assert report["paradox"]["kendall_tau"] == pytest.approx(-1.0)
    assert "disagree" in report["paradox"]["sentence"] and "oracle_synth" in report["paradox"]["sentence"]
    assert summary["paradox_reproduced"] is True
    for name in ("reward_vs_accuracy", "cost_vs_accuracy", "ppl_quarters", "loss_tokens"):
        assert (tmp_path / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "report.md").read_text()
    assert "| sar |" in md and f"{100 * rows['sar']['accuracy_after']:.1f}%" in md
    page = (tmp_path / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 4 and all(base64.b64decode(i)[:4] == b"\x89PNG" for i in images)
    assert "http://" not in page and "https://" not in page, "the page must be self-contained"
    out = ctx.console.export_text()
    assert "report.html" in out and "oracle_synth" in out


def test_the_verdict_flips_when_the_numbers_flip(tmp_path: Path) -> None:
    flipped = {**PARADOX_HITS, "oracle_synth": PARADOX_HITS["sar"], "sar": PARADOX_HITS["oracle_synth"]}
    report_stage(make_run(tmp_path, flipped))
    verdict = json.loads((tmp_path / "report.json").read_text())["paradox"]
    assert verdict["agree"] is True and verdict["reproduced"] is False
    assert "agree (" in verdict["sentence"] and "not reproduced" in verdict["sentence"]


def test_untrained_stream_has_no_accuracy_and_is_left_out_of_the_ranking(tmp_path: Path) -> None:
    hits = {k: v for k, v in PARADOX_HITS.items() if k != "rft"}
    report_stage(make_run(tmp_path, hits))
    report = json.loads((tmp_path / "report.json").read_text())
    rft = next(r for r in report["streams"] if r["stream"] == "rft")
    assert rft["accuracy_after"] is None and rft["accuracy_ci_low"] is None
    assert report["paradox"]["streams"] == ["oracle_synth", "sar"]


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


def test_verdict_warns_when_confidence_intervals_overlap() -> None:
    def row(stream: str, reward: float, acc: float, half_width: float) -> dict:
        return {"stream": stream, "reward": reward, "ppl": 1.0 + reward, "accuracy_after": acc,
                "accuracy_ci_low": acc - half_width, "accuracy_ci_high": acc + half_width}

    wide = [row("gold", 1.0, 0.10, 0.2), row("rft", 0.5, 0.30, 0.2)]
    narrow = [row("gold", 1.0, 0.10, 0.02), row("rft", 0.5, 0.30, 0.02)]
    assert "Caution" in paradox(wide)["sentence"]
    assert "Caution" not in paradox(narrow)["sentence"]
    assert paradox(wide)["reproduced"] is True and paradox(narrow)["reproduced"] is True
