"""A careless or hostile user (issue #15): bad input, a down oracle, a leaky server, two writers, a full disk.

Each failure must be one line naming the file, line, key, request or problem, with
a non-zero exit, and must lose nothing that finished. Servers are real loopback ones.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from http_faults import raw_server
from typer.testing import CliRunner

from stylealign.cli import app
from stylealign.config import ConfigError, DatasetConfig, parse_config
from stylealign.datasets import DatasetError, load_report
from stylealign.records import Problem, Trace
from stylealign.store import RunStore, StoreError

SECRET = "sk-hostile-secret-9876"
runner = CliRunner()


def _config(tmp_path: Path, model_dir: Path, oracle_url: str = "http://127.0.0.1:9/v1", **extra) -> Path:
    data = {
        "name": "hostile",
        "problems": {"source": "lab", "split": "train"},
        "student": {"engine": {"type": "hf", "model": str(model_dir), "device": "cpu", "batch_size": 8}},
        "oracle": {"engine": {"type": "openai", "base_url": oracle_url, "model": "lab-oracle", "timeout": 2,
                              "api_key_env": "HOSTILE_TEST_KEY"}},
        "sampling": {"k": 1, "max_tokens": 8},
        "streams": {"oracle_retries": 3},
        "reward": {"type": "lab"},
        **extra,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _run(*args: str):
    return runner.invoke(app, ["run", *args])


def _error_line(result) -> str:
    """The CLI's error as one logical line (rich wraps long lines at the terminal width)."""
    assert result.exit_code == 1, result.output
    assert "error:" in result.output and "Traceback" not in result.output, result.output
    return " ".join(result.output.split("error:", 1)[1].split())


# 1. an empty problem set


def test_an_empty_problem_set_is_refused_and_never_breaks_the_run_directory(tmp_path, tiny_model_dir):
    config, out = _config(tmp_path, tiny_model_dir), tmp_path / "run"
    for limit in ("0", "-3"):
        assert "--limit" in _error_line(_run(str(config), "--until", "load", "--limit", limit, "--out", str(out)))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    config = _config(tmp_path, tiny_model_dir, problems={"source": str(empty)})
    assert "gave no problems" in _error_line(_run(str(config), "--until", "load", "--out", str(out)))
    config = _config(tmp_path, tiny_model_dir)
    done = _run(str(config), "--until", "load", "--limit", "3", "--out", str(out))
    assert done.exit_code == 0, done.output
    # a shard that finished work without records carries no record type, so any reader can skip it
    stage = RunStore(out).stage("problems")
    stage.commit([], ["nothing"])
    assert len(stage.records(Problem)) == 3
    again = _run(str(config), "--until", "load", "--limit", "2", "--out", str(out))
    assert again.exit_code == 0, again.output


# 2. a down oracle; 4. the key never stored


def _echo_auth(number: int, headers: dict, body: dict):
    """A broken server that echoes the request's headers back in its error body."""
    return 500, {"error": {"message": f"backend down; you sent Authorization: {headers.get('Authorization')}",
                           "request": {"api_key": SECRET}}}


def test_a_down_oracle_costs_a_bounded_number_of_sends_and_the_run_fails_with_a_summary(
    tmp_path, tiny_model_dir, monkeypatch
):
    monkeypatch.setenv("HOSTILE_TEST_KEY", SECRET)
    with raw_server(_echo_auth) as (url, calls):
        config, out = _config(tmp_path, tiny_model_dir, url), tmp_path / "run"
        args = [str(config), "--until", "streams", "--streams", "oracle_synth", "--limit", "2", "--out", str(out)]
        line = _error_line(_run(*args))
        assert "oracle_synth got no data because the oracle failed" in line and "--allow-failures" in line
        assert len(calls) == 2 * 4  # oracle_retries + 1 sends per request, in all
        assert calls[0]["authorization"] == f"Bearer {SECRET}"

        partial = _run(*args, "--allow-failures")
        assert partial.exit_code == 0, partial.output
    failures = RunStore(out).stage("failures_stream_oracle_synth").records(Trace)
    assert failures and all("HTTP 500" in f.metrics["error"] and "[REDACTED]" in f.metrics["error"] for f in failures)
    assert json.loads((out / "streams" / "failures.json").read_text())["oracle_synth"]["failed_sends"] == 8
    assert len(RunStore(out).stage("samples").records(Trace)) == 2  # the student's finished work is kept
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_the_circuit_breaker_stops_asking_an_oracle_that_failed_ten_times_in_a_row(tmp_path, tiny_model_dir):
    with raw_server(lambda *_: (503, {"error": "down"})) as (url, calls):
        config, out = _config(tmp_path, tiny_model_dir, url), tmp_path / "run"
        line = _error_line(_run(str(config), "--until", "streams", "--streams", "oracle_synth", "--limit", "6",
                                "--out", str(out)))
    assert "circuit open" in line and "failed 12 requests in a row" in line
    assert len(calls) == 12  # two rounds of six, then the breaker is open: not 6 × 4


# 6. smaller ones


def test_config_refuses_a_boolean_count_and_no_streams():
    base = {"student": {"engine": {"type": "hf", "model": "unused"}}}
    with pytest.raises(ConfigError, match=r"sampling\.k: .*boolean"):
        parse_config({**base, "sampling": {"k": True}})
    with pytest.raises(ConfigError, match=r"streams\.enabled"):
        parse_config({**base, "streams": {"enabled": []}})


def test_a_missing_model_or_problems_file_is_one_line_naming_it(tmp_path, tiny_model_dir):
    missing = tmp_path / "no-such-model"
    config = _config(tmp_path, tiny_model_dir, student={"engine": {"type": "hf", "model": str(missing)}})
    line = _error_line(_run(str(config), "--until", "sample", "--limit", "1", "--out", str(tmp_path / "a")))
    assert f"model '{missing}': cannot load it" in line and "Traceback" not in line
    config = _config(tmp_path, tiny_model_dir, problems={"source": str(tmp_path / "gone.jsonl")})
    line = _error_line(_run(str(config), "--until", "load", "--out", str(tmp_path / "b")))
    assert f"problems[0].source: no such file: {tmp_path / 'gone.jsonl'}" in line


def test_non_utf8_lines_are_named_and_skippable(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"question": "1+1?", "answer": "2"}\n{"question": "\xff\xfe", "answer": "3"}\n'
                     b'{"question": "2+2?", "answer": "4"}\n')
    with pytest.raises(DatasetError, match=rf"{path}:2: not UTF-8"):
        load_report(DatasetConfig(source=str(path)))
    report = load_report(DatasetConfig(source=str(path), skip_bad=True))
    assert [p.answer for p in report.problems] == ["2", "4"] and report.skipped[0].location == f"{path}:2"
    csv_path = tmp_path / "bad.csv"
    csv_path.write_bytes(b"question,answer\n1+1?,2\n\xff,3\n")
    with pytest.raises(DatasetError, match=rf"{csv_path}:3: not UTF-8"):
        load_report(DatasetConfig(source=str(csv_path)))


def test_duplicate_ids_are_errors_naming_both_lines(tmp_path):
    path = tmp_path / "dup.jsonl"
    rows = [{"id": "p0", "question": "1+1?", "answer": "2"}, {"id": "p0-2", "question": "2+2?", "answer": "4"},
            {"id": "p0", "question": "3+3?", "answer": "6"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(DatasetError, match=rf"{path}:3: problem id 'p0' already used at {path}:1"):
        load_report(DatasetConfig(source=str(path)))
    report = load_report(DatasetConfig(source=str(path), skip_bad=True))
    assert [p.id for p in report.problems] == ["p0", "p0-2"] and len(report.skipped) == 1


def test_grading_an_empty_file_is_an_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("", encoding="utf-8")
    result = runner.invoke(app, ["grade", str(path), "--reference-field", "a", "--prediction-field", "b"])
    assert "no rows to grade" in _error_line(result)


def test_a_second_writer_is_refused_naming_the_holder_and_a_dead_holders_lock_is_taken_over(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom stylealign.store import RunStore\n"
         "RunStore(sys.argv[1], {'a': 1}); print('held', flush=True); time.sleep(120)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreError, match=rf"in use by another run \(process {holder.pid} holds"):
            RunStore(tmp_path, {"a": 1})
        RunStore(tmp_path).stage("samples").records(Trace)  # readers are never refused
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    store = RunStore(tmp_path, {"a": 1})  # the lock died with its process
    assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())
    store.close()


def test_a_full_disk_is_one_error_naming_the_shard_and_leaves_no_temp_file(tmp_path):
    script = (
        "import resource, signal, sys\n"
        "from stylealign.records import Trace\n"
        "from stylealign.store import RunStore, StoreError\n"
        "stage = RunStore(sys.argv[1]).stage('samples')\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "try:\n"
        "    stage.commit([Trace(id='t', problem_id='p', text='x' * 100_000, stream='s')], ['k'])\n"
        "except StoreError as err:\n"
        "    print(err)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"{tmp_path / 'samples'}/shard-" in done.stdout and "cannot write" in done.stdout
    assert list((tmp_path / "samples").iterdir()) == []  # no shard, no temp file


def test_export_never_overwrites_without_force_and_names_unknown_streams(tmp_path, tiny_model_dir):
    config, run_dir = _config(tmp_path, tiny_model_dir), tmp_path / "run"
    done = _run(str(config), "--until", "streams", "--streams", "gold", "--limit", "2", "--out", str(run_dir))
    assert done.exit_code == 0, done.output
    out = tmp_path / "export"

    def export(*args: str):
        return runner.invoke(app, ["export", str(run_dir), "--out", str(out), *args])

    assert export("--stream", "gold").exit_code == 0
    first = (out / "train.jsonl").read_bytes()
    assert "already holds train.jsonl, dataset_info.json, dataset; pass --force" in _error_line(export("--stream", "gold"))
    assert export("--stream", "gold", "--force").exit_code == 0 and (out / "train.jsonl").read_bytes() == first
    assert "unknown stream 'glod'" in _error_line(export("--stream", "glod"))
    out = tmp_path / "a-file"
    out.write_text("keep me", encoding="utf-8")
    assert "exists and is not a directory" in _error_line(export("--stream", "gold"))
    assert out.read_text(encoding="utf-8") == "keep me"


# 3. input limits


def test_fields_over_the_size_cap_are_named_by_file_and_line(tmp_path):
    path = tmp_path / "long.jsonl"
    rows = [{"question": "1+1?", "answer": "2"}, {"question": "x" * 5_000, "answer": "3"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(DatasetError, match=rf"{path}:2: question is 5,000 characters, over max_field_chars = 4,000"):
        load_report(DatasetConfig(source=str(path), max_field_chars=4_000))
    report = load_report(DatasetConfig(source=str(path), max_field_chars=4_000, skip_bad=True))
    assert len(report.problems) == 1 and report.skipped[0].location == f"{path}:2"
    assert DatasetConfig().max_field_chars == 200_000 and len(load_report(DatasetConfig(source=str(path))).problems) == 2


def test_prompts_beyond_the_models_context_are_refused_naming_the_request(tiny_model_dir):
    from stylealign.engines import EngineError, Request, SamplingParams
    from stylealign.engines.hf import HFEngine

    engine = HFEngine(str(tiny_model_dir), device="cpu", progress=False)
    long = Request.from_prompt("7 " * 1100, id="lab-long-problem")
    with pytest.raises(EngineError, match=r"request lab-long-problem: prompt of \d+ tokens \+ max_tokens 16 exceeds the model's context of 2048"):
        engine.generate([Request.from_prompt("hi", id="short"), long], 1, SamplingParams(max_tokens=16))
    with pytest.raises(EngineError, match=r"request lab-long-problem: prompt of \d+ tokens"):
        engine.score([long], ["The answer is 7."])
    fits = Request.from_prompt("7 " * 900, id="fits")
    assert len(engine.score([fits], ["The answer is 7."])[0].logprobs) > 0
