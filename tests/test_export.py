"""Streams exported as chat JSONL and a Hugging Face dataset directory, from Python and from the CLI."""

from __future__ import annotations

import json

from streams_setup import make_config, make_ctx, scripted_student
from typer.testing import CliRunner

from stylealign.cli import app
from stylealign.oracles.engine import OracleEngine
from stylealign.stages.sample import sample_stage
from stylealign.stages.streams import streams_stage
from stylealign.streams.export import export_stream
from stylealign.streams.listing import stream_traces


def test_export_stream_chat_jsonl_and_dataset(tmp_path, tiny_model_dir, tiny_engine):
    from datasets import load_from_disk

    ctx = make_ctx(tmp_path / "run", make_config(tiny_model_dir), oracle=OracleEngine())
    ctx.use_engine(ctx.config.student.engine, scripted_student(tiny_engine, ctx.problems(), 2))
    ctx.streams = ("sar",)
    sample_stage(ctx)
    streams_stage(ctx)
    traces = stream_traces(ctx.store, "sar")
    questions = {p.id: p.question for p in ctx.problems()}

    result = export_stream(traces, ctx.problems(), ctx.student_template(), tmp_path / "out")
    lines = [json.loads(line) for line in (tmp_path / "out" / "train.jsonl").read_text().splitlines()]
    assert result["examples"] == len(lines) == len(traces) == 2
    for line, trace in zip(lines, traces, strict=True):
        assert line["messages"] == [
            {"role": "user", "content": questions[trace.problem_id]},
            {"role": "assistant", "content": trace.text},
        ]
    dataset = load_from_disk(str(tmp_path / "out" / "dataset"))
    assert dataset.num_rows == 2 and {"prompt", "completion"} <= set(dataset.column_names)
    assert dataset[0]["completion"] == [{"role": "assistant", "content": traces[0].text}]
    assert dataset[0]["prompt"][-1]["content"] == questions[traces[0].problem_id]
    info = json.loads((tmp_path / "out" / "dataset_info.json").read_text())
    assert info["stylealign"]["file_name"] == "train.jsonl"

    runner = CliRunner()
    cli_out = tmp_path / "cli"
    done = runner.invoke(app, ["export", str(tmp_path / "run"), "--stream", "rft", "--out", str(cli_out)])
    assert done.exit_code == 0, done.output
    rft = stream_traces(ctx.store, "rft")
    exported = [json.loads(line) for line in (cli_out / "train.jsonl").read_text().splitlines()]
    assert [e["messages"][-1]["content"] for e in exported] == [t.text for t in rft]

    missing = runner.invoke(app, ["export", str(tmp_path / "run"), "--stream", "oracle_synth", "--out", str(cli_out)])
    assert missing.exit_code == 1 and "no traces" in missing.output
