"""A careless or hostile user (issues #15 and #37): bad input, a down or garbled oracle, a leaky server, two
writers, corrupt records, a full disk, files that must not be written.

Each failure must be one line naming the file, line, key, request or problem, with
a non-zero exit, and must lose nothing that finished. Servers are real loopback ones.
(Grading hostile text is in test_hostile_grading.py, `serve` under abuse in test_server.py.)
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml
from http_faults import chat_response, raw_server
from typer.testing import CliRunner

from stylealign.cli import app
from stylealign.config import PACKAGED_CONFIGS, ConfigError, DatasetConfig, load_config, parse_config
from stylealign.datasets import DatasetError, load_report
from stylealign.engines import EngineError, Request, SamplingParams
from stylealign.engines.openai_api import OpenAIEngine
from stylealign.records import Problem, Trace
from stylealign.run.context import RunContext
from stylealign.stages.train import length_warning
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


@pytest.fixture(autouse=True)
def _oracle_key(monkeypatch):
    """The key `_config`'s oracle names: an unset variable is an error of its own (tested below)."""
    monkeypatch.setenv("HOSTILE_TEST_KEY", SECRET)


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


# issue #37, 3: a 200 that is no usable answer is a malformed response: retried, counted, named


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ((200, b"<html>busy</html>", "text/plain"), "not JSON (content-type text/plain)"),
        ((200, chat_response([12345])), "choices[].message.content is int, not a string"),
        ((200, {"choices": [{"index": 0, "message": "hi"}]}), "choices[].message is str, not an object"),
        ((200, {"choices": "none"}), "no list of choices"),
        ((200, [1, 2]), "expected a JSON object, got list"),
        ((200, iter(lambda: b" " * 65_536, None)), "body over 1,048,576 bytes"),  # endless: never read whole
    ],
)
def test_a_garbled_200_is_a_malformed_response_retried_then_named(reply, message):
    with raw_server(lambda *_: reply) as (url, calls):
        engine = OpenAIEngine(url, "m", max_retries=1, backoff=0.01, timeout=60, max_response_bytes=1 << 20)
        with pytest.raises(EngineError, match=rf"request q1: gave up after 2 attempts: malformed response: .*{re.escape(message)}"):
            engine.generate([Request.from_prompt("hi", id="q1")], 1, SamplingParams())
    assert len(calls) == 2


def test_a_garbled_oracle_is_counted_as_failures_not_a_traceback(tmp_path, tiny_model_dir):
    with raw_server(lambda *_: (200, b"plain text, not JSON", "text/plain")) as (url, calls):
        config, out = _config(tmp_path, tiny_model_dir, url), tmp_path / "run"
        line = _error_line(_run(str(config), "--until", "streams", "--streams", "oracle_synth", "--limit", "2",
                                "--out", str(out)))
    assert "oracle_synth got no data because the oracle failed" in line and len(calls) == 2 * 4
    failures = RunStore(out).stage("failures_stream_oracle_synth").records(Trace)
    assert failures and all("malformed response: not JSON" in f.metrics["error"] for f in failures)


# 4. fewer completions than asked is a failed request; a rerun fills the gap


def test_fewer_choices_than_n_fail_the_request_and_a_rerun_fills_the_gap(tmp_path, tiny_model_dir):
    healthy = {"now": False}

    def respond(number: int, headers: dict, body: dict):
        n = body["n"] if healthy["now"] else body["n"] - 1
        return 200, chat_response([f"The answer is {number}." for _ in range(n)])

    with raw_server(respond) as (url, calls):
        student = {"engine": {"type": "openai", "base_url": url, "model": "m", "api_key_env": None, "max_retries": 1}}
        config, out = _config(tmp_path, tiny_model_dir, student=student, sampling={"k": 3, "max_tokens": 8}), tmp_path / "run"
        args = [str(config), "--until", "sample", "--limit", "2", "--out", str(out)]
        line = _error_line(_run(*args))
        assert "gave up after 2 attempts: malformed response: 2 choice(s) with indices [0, 1] for n=3" in line
        assert len(calls) >= 2  # the failed request was sent again
        assert RunStore(out).stage("samples").done_keys() == set()  # nothing half-done is marked done
        healthy["now"] = True
        done = _run(*args)
        assert done.exit_code == 0, done.output
    assert len(RunStore(out).stage("samples").records(Trace)) == 2 * 3


# 5. the problems' content keys the load stage


def test_an_edited_problems_file_is_read_again_and_only_its_changes_are_redone(tmp_path, tiny_model_dir):
    path = tmp_path / "problems.jsonl"
    first = [{"id": "p0", "question": "What is 1 + 1?", "answer": "2"}, {"id": "p1", "question": "What is 2 + 2?", "answer": "4"}]
    edited = [{**first[0], "answer": "3"}, first[1], {"id": "p2", "question": "What is 3 + 3?", "answer": "6"}]
    config, out = _config(tmp_path, tiny_model_dir, problems={"source": str(path)}), tmp_path / "run"

    def run_with(rows: list[dict]) -> list[tuple[str, str]]:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        done = _run(str(config), "--until", "sample", "--out", str(out))
        assert done.exit_code == 0, done.output
        return [(p.id, p.answer) for p in RunContext(config=load_config(config), store=RunStore(out)).problems()]

    assert run_with(first) == [("p0", "2"), ("p1", "4")]
    assert run_with(edited) == [("p0", "3"), ("p1", "4"), ("p2", "6")]
    assert len(RunStore(out).stage("samples").records(Trace)) == 4  # p1 was not sampled again
    assert run_with(first) == [("p0", "2"), ("p1", "4")]  # a file put back reads back as it was


# 6. a corrupt shard or manifest is named, set aside (never deleted) and its work redone; readers change nothing


def test_a_corrupt_shard_and_manifest_are_set_aside_and_their_work_redone(tmp_path, tiny_model_dir, caplog):
    config, out = _config(tmp_path, tiny_model_dir), tmp_path / "run"
    args = [str(config), "--until", "sample", "--limit", "3", "--out", str(out)]
    assert _run(*args).exit_code == 0
    shard = sorted((out / "samples").glob("shard-*.parquet"))[0]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    (out / "manifest.json").write_text('{"config": {"name"', encoding="utf-8")
    writing = out / "samples" / f".{shard.name}.99999999.0badc0de.tmp"  # another process's write in flight
    writing.write_bytes(b"partial")
    with pytest.raises(StoreError, match=rf"{re.escape(str(shard))}: cannot be read .*sets it aside"):
        RunStore(out).stage("samples").records(Trace)
    with pytest.raises(StoreError, match=r"manifest.json: cannot be read"):
        RunStore(out).manifest()
    assert shard.exists() and writing.exists()  # a reader names what is wrong and moves nothing

    with caplog.at_level(logging.WARNING, logger="stylealign.store"):
        done = _run(*args)
    assert done.exit_code == 0, done.output
    assert f"{shard}: cannot be read" in caplog.text and "its work is redone" in caplog.text
    assert (out / "quarantine" / "samples" / shard.name).is_file() and not shard.exists()
    assert (out / "quarantine" / "manifest.json").is_file() and RunStore(out).manifest()["config"]["name"] == "hostile"
    assert len(RunStore(out).stage("samples").records(Trace)) == 3  # its samples were drawn again
    assert not writing.exists()  # the writer cleans up temp files of dead processes


# 7. files you are told to write: never the input, never through a symlink you did not create


def test_grade_never_writes_its_input(tmp_path):
    preds = tmp_path / "preds.jsonl"
    preds.write_text('{"answer": "2", "output": "so 2"}\n', encoding="utf-8")
    before = preds.read_bytes()
    link = tmp_path / "link.jsonl"
    link.symlink_to(preds)

    def grade(*args: str):
        return runner.invoke(app, ["grade", str(preds), "--reference-field", "answer", "--prediction-field", "output", *args])

    assert f"--out {preds}: is the input file" in _error_line(grade("--out", str(preds)))
    assert "is the input file" in _error_line(grade("--out", str(link)))
    assert f"--out {tmp_path}: is a directory" in _error_line(grade("--out", str(tmp_path)))
    assert preds.read_bytes() == before


def test_export_never_writes_through_a_symlink(tmp_path, tiny_model_dir):
    config, run_dir = _config(tmp_path, tiny_model_dir), tmp_path / "run"
    assert _run(str(config), "--until", "streams", "--streams", "gold", "--limit", "2", "--out", str(run_dir)).exit_code == 0
    out, outside, elsewhere = tmp_path / "export", tmp_path / "outside", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep me", encoding="utf-8")
    (out / "dataset_info.json").symlink_to(outside / "info.json")  # dangling: exists() says no
    (out / "dataset").symlink_to(elsewhere)

    def export(*args: str):
        return runner.invoke(app, ["export", str(run_dir), "--stream", "gold", "--out", str(out), *args])

    assert "already holds dataset_info.json, dataset; pass --force" in _error_line(export())
    done = export("--force")
    assert done.exit_code == 0, done.output
    assert not outside.exists() and (elsewhere / "keep.txt").read_text(encoding="utf-8") == "keep me"
    assert list(elsewhere.iterdir()) == [elsewhere / "keep.txt"]
    assert not (out / "dataset_info.json").is_symlink() and not (out / "dataset").is_symlink()
    assert json.loads((out / "dataset_info.json").read_text(encoding="utf-8"))["stylealign"]["file_name"] == "train.jsonl"


# 9. each of these inputs is a one-line error naming the file and line, key or argument


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"question": ["a", "b"], "answer": "2"}', "field 'question' is a list, not text or a number"),
        ('{"question": "q", "answer": {"a": 1}}', "field 'answer' is a dict, not text or a number"),
        ('{"question": "q", "answer": false}', "field 'answer' is a bool, not text or a number"),
        ('{"question": "q", "answer": NaN}', "not valid JSON: NaN is not JSON"),
        ('{"question": "q", "answer": -Infinity}', "not valid JSON: -Infinity is not JSON"),
        ('{"question": "q", "answer": 1e999999}', "not valid JSON: number 1e999999 is out of range"),
        ('{"question": "q", "answer": ' + "[" * 100_000 + "]" * 100_000 + "}", "not valid JSON: nested too deeply"),
        ('{"question": "q", "answer": ' + "9" * 1_000_000 + "}", "answer is 1,000,000 characters, over max_field_chars"),
    ],
)
def test_bad_values_in_a_problems_file_are_named_by_line_and_skippable(tmp_path, line, reason):
    path = tmp_path / "problems.jsonl"
    path.write_text('{"question": "1+1?", "answer": "2"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=rf"^{re.escape(str(path))}:2: {re.escape(reason)}"):
        load_report(DatasetConfig(source=str(path)))
    report = load_report(DatasetConfig(source=str(path), skip_bad=True))
    assert len(report.problems) == 1 and report.skipped[0].location == f"{path}:2"


def test_csv_fields_past_the_csv_modules_limit_are_read_then_capped(tmp_path):
    path = tmp_path / "problems.csv"
    path.write_text(f"question,answer\n{'q' * 150_000},2\n{'r' * 300_000},3\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=rf"{re.escape(str(path))}:3: question is 300,000 characters"):
        load_report(DatasetConfig(source=str(path)))
    report = load_report(DatasetConfig(source=str(path), skip_bad=True))
    assert [len(p.question) for p in report.problems] == [150_000] and report.skipped[0].location == f"{path}:3"


def test_seeds_past_32_bits_and_a_config_that_is_not_utf8_are_named(tmp_path):
    base = {"student": {"engine": {"type": "hf", "model": "unused"}}}
    with pytest.raises(ConfigError, match=r"\n  seed: Input should be less than or equal to 4294967295"):
        parse_config({**base, "seed": 2**64})
    with pytest.raises(ConfigError, match=r"training\.seeds\.1: Input should be less than or equal to 4294967295"):
        parse_config({**base, "training": {"seeds": [0, 2**40]}})
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: not UTF-8 text \(byte 9\)$"):
        load_config(path)


def test_an_unset_api_key_variable_is_named_before_any_request(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.delenv("HOSTILE_UNSET_KEY", raising=False)
    with raw_server(lambda *_: (200, chat_response(["4"]))) as (url, calls):
        oracle = {"engine": {"type": "openai", "base_url": url, "model": "m", "api_key_env": "HOSTILE_UNSET_KEY"}}
        config = _config(tmp_path, tiny_model_dir, oracle=oracle)
        line = _error_line(_run(str(config), "--until", "streams", "--streams", "oracle_synth", "--limit", "1",
                                "--out", str(tmp_path / "run")))
    assert "engine.api_key_env: the environment variable HOSTILE_UNSET_KEY is unset or empty" in line and not calls


def test_grade_refuses_a_timeout_of_zero(tmp_path):
    preds = tmp_path / "preds.jsonl"
    preds.write_text('{"answer": "2", "output": "2"}\n', encoding="utf-8")
    result = runner.invoke(app, ["grade", str(preds), "--reference-field", "answer", "--prediction-field", "output",
                                 "--timeout", "0"])
    assert "--timeout 0: must be above 0 seconds" in _error_line(result)


TRAIN = """
import resource, signal, sys
from stylealign.config import TrainingConfig
from stylealign.engines import Request
from stylealign.store import StoreError
from stylealign.training import fine_tune

examples = [(Request.from_prompt(f"What is {i} + 1?"), f"{i} + 1 = {i + 1}.") for i in range(4)]
cfg = TrainingConfig(batch_size=2, budget={"steps": 2}, max_length=64, save_steps=1)
if sys.argv[3] != "0":
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]), int(sys.argv[3])))
try:
    fine_tune(sys.argv[1], examples, cfg, sys.argv[2])
except StoreError as err:
    print(f"error: {err}")
"""


def _train(model_dir: Path, out: Path, file_limit: int) -> subprocess.CompletedProcess:
    """fine_tune in a fresh process whose stderr is a pipe, not a terminal; `file_limit` bytes per file written."""
    return subprocess.run([sys.executable, "-c", TRAIN, str(model_dir), str(out), str(file_limit)], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")})


def test_a_full_disk_during_training_is_one_error_naming_the_model_folder(tmp_path, tiny_model_dir):
    done = _train(tiny_model_dir, tmp_path / "model", 16_384)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith(f"error: {tmp_path / 'model'}: cannot write the model: "), done.stdout + done.stderr[-3000:]
    assert "Traceback" not in done.stdout


# 10. a log gets no library progress bars; the package and the demo ship without warnings


def test_training_draws_no_progress_bar_into_a_log(tmp_path, tiny_model_dir):
    done = _train(tiny_model_dir, tmp_path / "model", 0)
    assert done.returncode == 0 and not done.stdout, done.stdout + done.stderr[-3000:]
    assert "it/s" not in done.stderr and "\r" not in done.stderr, done.stderr[-3000:]
    assert (tmp_path / "model" / "model" / "stylealign_training.json").is_file()


def test_the_package_metadata_draws_no_setuptools_warning():
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    pyproject = Path(__file__).parents[1] / "pyproject.toml"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_configuration(Distribution(), str(pyproject))
    assert not [str(w.message) for w in caught if "license" in str(w.message).lower()]


@pytest.mark.parametrize("name", ["demo", "lab-full"])
def test_the_lab_configs_never_warn_about_their_own_max_tokens(name):
    cfg = load_config(PACKAGED_CONFIGS / f"{name}.yaml")
    # no training trace is longer than training.max_length tokens, so this bounds every run of the config
    assert length_warning(cfg.training.max_length, cfg.evaluation.max_tokens) is None
