"""The rehearsal's moving parts against a real loopback `stylealign serve`: start, answer, refuse, stop.

The whole rehearsal (SmolLM2-135M as oracle, ~30 minutes) is `make rehearsal`; here the tiny conftest
model stands in for SmolLM2 so the run is short: random weights make every oracle answer wrong, which
is exactly the failure path the rehearsal must survive and count.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import pytest
from rich.console import Console
from streams_setup import make_config, make_ctx, scripted_student

from stylealign.config import parse_config
from stylealign.engines.served import ServeError, served_model
from stylealign.records import Trace
from stylealign.rehearsal import rehearse
from stylealign.stages.sample import sample_stage
from stylealign.stages.streams import streams_stage
from stylealign.streams.listing import stream_traces

pytestmark = pytest.mark.slow  # each test starts a server process (imports torch and transformers)


def free_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/v1"


def test_served_model_answers_then_stops_and_a_busy_port_is_refused(tiny_model_dir, tmp_path) -> None:
    url = free_url()
    with served_model(str(tiny_model_dir), "oracle", url, tmp_path / "serve.log") as process:
        assert [m["id"] for m in httpx.get(f"{url}/models").json()["data"]] == ["oracle"]
        reply = httpx.post(
            f"{url}/chat/completions",
            json={"model": "oracle", "messages": [{"role": "user", "content": "2+2?"}], "max_tokens": 4},
            timeout=60,
        )
        assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"] is not None
        with pytest.raises(ValueError, match="already answers on port"):
            with served_model(str(tiny_model_dir), "oracle", url, tmp_path / "second.log"):
                pass
    assert process.returncode is not None
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/models", timeout=2)


def test_a_server_that_cannot_start_is_reported_with_its_log(tmp_path) -> None:
    with pytest.raises(ServeError, match=r"stylealign serve oracle exited with code 1 \(log .*serve\.log\):[\s\S]*no-such-model"):
        with served_model(str(tmp_path / "no-such-model"), "oracle", free_url(), tmp_path / "serve.log"):
            pass
    with pytest.raises(ValueError, match="loopback host with an explicit port"):
        with served_model("x", "oracle", "http://example.com/v1", tmp_path / "serve.log"):
            pass


def test_rehearsal_finishes_counts_every_failure_and_stops_the_server(tiny_model_dir, tmp_path: Path) -> None:
    url = free_url()
    config = parse_config(
        {
            "name": "rehearsal-tiny",
            "problems": [{"source": "gsm8k", "split": "train", "limit": 2},
                         {"source": "math500", "split": "test", "offset": 480, "limit": 1}],
            "student": {"engine": {"type": "hf", "model": str(tiny_model_dir), "device": "cpu"}},
            "oracle": {"engine": {"type": "openai", "base_url": url, "model": str(tiny_model_dir),
                                  "api_key_env": None, "max_retries": 0}, "template": "solve"},
            "sampling": {"k": 2, "temperature": 1.0, "max_tokens": 12},
            "streams": {"oracle_retries": 0, "sar_repair": {"continuations": 1, "locator": "oracle"}},
            "reward": {"type": "judge"},
            "training": {"lora": {"r": 4, "alpha": 8}, "batch_size": 2, "max_length": 256},
            "evaluation": {"datasets": [{"source": "aime24", "split": "test", "limit": 1},
                                        {"source": "olympiadbench", "split": "test", "limit": 1}],
                           "k": 1, "max_tokens": 8},
            "report": {"resamples": 100},
        }
    )
    summary = rehearse(config, tmp_path / "run", console=Console(record=True, width=200))
    saved = json.loads((tmp_path / "run" / "rehearsal.json").read_text(encoding="utf-8"))
    assert saved["streams"] == summary["streams"] and set(saved["stages"]) >= {"load", "streams", "evaluate", "report"}
    streams = summary["streams"]
    assert streams["gold"]["kept"] == 3 and streams["gold"]["oracle_failures"] == 0
    # a random-weight oracle never writes a verified answer: nothing oracle-made is kept
    assert streams["oracle_synth"]["kept"] == 0
    # and every one of its 3 problems is accounted for: a failed request (no final answer) or a wrong answer
    synth = streams["oracle_synth"]
    assert synth["oracle_failures"] + synth["this_run"].get("wrong_answer", 0) == 3
    assert summary["reward"]["type"] == "judge" and summary["reward"]["reward_errors"] == summary["reward"]["scored"] > 0
    assert summary["evaluation"]["headers"][2:4] == ["aime24:test[0:1]", "olympiadbench:test[0:1]"]
    assert summary["evaluation"]["headline"].startswith("Macro Avg@1 over 2 benchmark(s)")
    assert "## Evaluation" in (tmp_path / "run" / "report.md").read_text(encoding="utf-8")
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/models", timeout=2)


def test_sar_and_oracle_refine_through_the_llm_templates_reject_what_a_served_model_gets_wrong(
    tiny_model_dir, tiny_engine, tmp_path: Path
) -> None:
    """The paths the rehearsal's 135M student never reaches (it solves nothing, so its rft is empty):
    correct student traces refined through the `refine` and `sar` templates (with exemplars) by a model
    served over HTTP. A random-weight oracle never verifies, so the SAR gate must reject every attempt,
    keep no oracle text, and account for every parent."""
    url = free_url()
    model = str(tiny_model_dir)
    oracle = {"engine": {"type": "openai", "base_url": url, "model": model, "tokenizer": model, "api_key_env": None,
                         "max_retries": 0, "timeout": 120}, "template": "solve"}
    cfg = make_config(tiny_model_dir, limit=3, streams={"oracle_retries": 0, "sar": {"exemplars": 1, "max_attempts": 2}},
                      oracle=oracle)
    ctx = make_ctx(tmp_path / "run", cfg)
    ctx.use_engine(cfg.student.engine, scripted_student(tiny_engine, ctx.problems(), solved=2))
    sample_stage(ctx)
    ctx.streams, ctx.allow_failures = ("rft", "oracle_refine", "sar"), True
    with served_model(model, model, url, tmp_path / "serve.log"):
        streams_stage(ctx)
    rft = {t.id: t for t in stream_traces(ctx.store, "rft")}
    assert len(rft) == 2
    counts = ctx.store.read_json("streams/counts.json")
    refine_failures = len(ctx.store.stage("failures_stream_oracle_refine").records(Trace))
    assert stream_traces(ctx.store, "oracle_refine") == []
    assert refine_failures + counts["oracle_refine"].get("wrong_answer", 0) == 2
    sar = stream_traces(ctx.store, "sar")
    for trace in sar:  # an attempt answered, wrongly: the parent is kept, never the oracle's text
        assert trace.metrics["sar_outcome"] == "kept_parent" and trace.text == rft[trace.parent_id].text
        assert len(trace.metrics["rejections"]) == 2
        assert set(trace.metrics["rejections"]) <= {"wrong_answer", "oracle_failure", "length", "implicit_answer"}
    assert len(sar) + counts["sar"].get("left_undone", 0) == 2  # every attempt failed at the oracle: retried next run
    assert counts["sar"].get("accepted", 0) == 0
