"""The OpenAI-compatible server, spoken to over real HTTP on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from stylealign.engines import Request, SamplingParams, render_prompt
from stylealign.engines.base import encode_prompt
from stylealign.engines.hf import HFEngine
from stylealign.server import BackgroundServer, create_app


@pytest.fixture(scope="module")
def hf(tiny_model_dir) -> HFEngine:
    return HFEngine(str(tiny_model_dir), progress=False)


@pytest.fixture(scope="module")
def http(hf) -> Iterator[httpx.Client]:
    with BackgroundServer(create_app(hf, "tiny")) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


def test_models_lists_the_served_name(http):
    assert [m["id"] for m in http.get("/models").json()["data"]] == ["tiny"]


def test_chat_continue_final_message_continues_the_prefix(hf, http):
    request = Request.from_prompt("What is 2 + 2?", prefix="Step 1: 2")
    body = {
        "model": "tiny",
        "messages": [*request.messages, {"role": "assistant", "content": request.prefix}],
        "continue_final_message": True,
        "add_generation_prompt": False,
        "n": 2,
        "temperature": 0.9,
        "seed": 3,
        "max_tokens": 8,
    }
    choices = http.post("/chat/completions", json=body).json()["choices"]
    expected = hf.generate([request], 2, SamplingParams(temperature=0.9, seed=3, max_tokens=8))[0]
    assert [c["message"]["content"] for c in choices] == [c.text for c in expected]
    assert [c["finish_reason"] for c in choices] == ["length", "length"]


def test_completions_echo_returns_prompt_logprobs(hf, http):
    prompt = render_prompt(hf.tokenizer, Request.from_prompt("Tom has 3 apples.")) + "3 + 4 = 7"
    body = {"model": "tiny", "prompt": prompt, "echo": True, "logprobs": 0, "max_tokens": 0}
    (choice,) = http.post("/completions", json=body).json()["choices"]
    ids = encode_prompt(hf.tokenizer, prompt)
    logprobs = choice["logprobs"]
    assert choice["text"] == prompt
    assert logprobs["token_logprobs"][0] is None
    assert logprobs["token_logprobs"][1:] == pytest.approx(hf.token_logprobs([ids], [1])[0], abs=1e-5)
    assert "".join(logprobs["tokens"]) == prompt
    assert logprobs["text_offset"] == [len("".join(logprobs["tokens"][:k])) for k in range(len(ids))]


def test_completions_generate_from_raw_prompt(hf, http):
    prompt = "Question: What is 2 + 2?\nAnswer: "
    body = {"model": "tiny", "prompt": [prompt, prompt], "temperature": 0, "max_tokens": 6, "echo": True}
    choices = http.post("/completions", json=body).json()["choices"]
    expected = hf.generate_text([prompt], 1, SamplingParams(temperature=0, max_tokens=6))[0][0].text
    assert [c["text"] for c in choices] == [prompt + expected] * 2
    assert [c["index"] for c in choices] == [0, 1]


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/completions", {"prompt": "x", "logprobs": 1, "max_tokens": 4}, "echoed prompts only"),
        ("/completions", {"prompt": "x", "max_tokens": 0}, "only allowed with echo"),
        (
            "/chat/completions",
            {"messages": [{"role": "user", "content": "x"}], "continue_final_message": True},
            "assistant",
        ),
    ],
)
def test_bad_requests_get_400_with_a_reason(http, path, body, message):
    response = http.post(path, json={"model": "tiny", **body})
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


@pytest.mark.slow
def test_cli_serve_answers_over_http(tiny_model_dir):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "stylealign.cli",
        "serve",
        str(tiny_model_dir),
        "--port",
        str(port),
        "--name",
        "student",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "TQDM_DISABLE": "1"}
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "stylealign serve did not start within 120 s"
                time.sleep(0.5)
        assert response.json()["data"][0]["id"] == "student"
        chat = {"model": "student", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
        reply = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=chat, timeout=60).json()
        assert reply["choices"][0]["finish_reason"] == "length"
    finally:
        process.terminate()
        process.wait(timeout=30)
