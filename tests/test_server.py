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
from fastapi import FastAPI

from stylealign.engines import Request, SamplingParams, render_prompt
from stylealign.engines.base import encode_prompt
from stylealign.engines.hf import HFEngine
from stylealign.server import BackgroundServer, ServerLimits, create_app, serve_key


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


LIMITS = ServerLimits(max_n=4, max_tokens=64, max_body_bytes=20_000, max_prompt_tokens=100)
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "What is 2 + 2?"}], "max_tokens": 4}


@pytest.fixture(scope="module")
def bounded(hf) -> Iterator[tuple[httpx.Client, FastAPI]]:
    app = create_app(hf, "tiny", limits=LIMITS, api_key="sk-serve-test")
    headers = {"Authorization": "Bearer sk-serve-test"}
    with BackgroundServer(app) as url, httpx.Client(base_url=url, timeout=60, headers=headers) as client:
        yield client, app


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/chat/completions", {**CHAT, "n": 5}, "n=5 is over this server's limit of 4"),
        ("/chat/completions", {**CHAT, "max_tokens": 65}, "max_tokens=65 is over this server's limit of 64"),
        ("/chat/completions", {**CHAT, "messages": [{"role": "user", "content": "7 " * 150}]}, "over this server's limit of 100"),
        ("/chat/completions", {**CHAT, "stream": True}, "stream=true is not supported"),
        ("/chat/completions", {**CHAT, "messages": []}, "messages: List should have at least 1 item"),
        ("/chat/completions", {**CHAT, "n": "many"}, "n: Input should be a valid integer"),
        ("/completions", {"prompt": [[]], "max_tokens": 2}, "prompt 0 is empty"),
        ("/completions", {"prompt": [5, 10**9], "max_tokens": 2}, "token ids outside the vocabulary"),
    ],
)
def test_requests_beyond_the_limits_or_malformed_get_400(bounded, path, body, message):
    client, _ = bounded
    response = client.post(path, json=body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]["message"]


def test_oversized_bodies_get_413_and_missing_keys_401(bounded):
    client, _ = bounded
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 30_000}]}
    response = client.post("/chat/completions", json=big)
    assert response.status_code == 413 and "over the limit of 20,000" in response.json()["error"]["message"]
    anonymous = httpx.post(f"{client.base_url}/chat/completions", json=CHAT, timeout=60)
    assert anonymous.status_code == 401
    wrong = httpx.post(f"{client.base_url}/chat/completions", json=CHAT, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401


def test_usage_counts_the_prompt_and_every_generated_token(hf, bounded):
    client, _ = bounded
    reply = client.post("/chat/completions", json={**CHAT, "n": 2}).json()
    request = Request.from_prompt("What is 2 + 2?")
    prompt = len(encode_prompt(hf.tokenizer, render_prompt(hf.tokenizer, request)))
    [completions] = hf.generate([request], 2, SamplingParams(max_tokens=4))
    assert reply["usage"] == {
        "prompt_tokens": prompt,
        "completion_tokens": sum(c.num_tokens for c in completions),
        "total_tokens": prompt + sum(c.num_tokens for c in completions),
    }


def give_up_then_ask(app: FastAPI, path: str, long: dict, then: dict, *, drop_within: float, answer_within: float) -> httpx.Response:
    """Send `long` to `path` and give up after 0.5 s; wait until the server has dropped it (an assertion fails
    after `drop_within` seconds), then send `then` and return its reply."""
    with BackgroundServer(app) as url:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}{path}", json=long, timeout=0.5)
        deadline = time.monotonic() + drop_within
        while app.state.batcher.abandoned == 0:
            assert time.monotonic() < deadline, "the abandoned request was never dropped"
            time.sleep(0.1)
        return httpx.post(f"{url}{path}", json=then, timeout=answer_within)


def test_a_client_that_gives_up_has_its_request_dropped(hf, tiny_model_dir):
    app = create_app(hf, "tiny", limits=ServerLimits(max_tokens=2000))
    long = {**CHAT, "n": 8, "max_tokens": 1900, "temperature": 1.0}
    reply = give_up_then_ask(app, "/chat/completions", long, CHAT, drop_within=120, answer_within=60)
    assert reply.status_code == 200
    hf.should_stop = lambda: True  # what the server sets while every client of a batch has gone
    try:
        [[completion]] = hf.generate([Request.from_prompt("hi")], 1, SamplingParams(max_tokens=50))
    finally:
        hf.should_stop = None
    assert completion.num_tokens <= 1


def test_serving_beyond_loopback_needs_a_key_or_insecure(monkeypatch):
    with pytest.raises(ValueError, match="--host 0.0.0.0: refusing to serve beyond this machine without a key"):
        serve_key("0.0.0.0", None, insecure=False)
    assert serve_key("0.0.0.0", None, insecure=True) is None and serve_key("::1", None, insecure=False) is None
    with pytest.raises(ValueError, match="--api-key-env SERVE_TEST_KEY: .* empty or unset"):
        serve_key("0.0.0.0", "SERVE_TEST_KEY", insecure=False)
    monkeypatch.setenv("SERVE_TEST_KEY", "k-123")
    assert serve_key("10.1.2.3", "SERVE_TEST_KEY", insecure=False) == "k-123"
    from typer.testing import CliRunner

    from stylealign.cli import app

    result = CliRunner().invoke(app, ["serve", "unused-model", "--host", "0.0.0.0"])
    assert result.exit_code == 1 and "refusing to serve" in result.output


# issue #37: prompts x n is capped, an abandoned request stops at the next engine batch, errors in OpenAI's shape


@pytest.mark.parametrize(
    ("prompts", "n", "message", "param"),
    [
        (400, 16, "400 prompts are over this server's limit of 32", "prompt"),
        (10, 16, "10 prompts x n=16 = 160 completions are over this server's limit of 64", "n"),
    ],
)
def test_many_prompts_cannot_bypass_the_cap_on_n(http, prompts, n, message, param):
    response = http.post("/completions", json={"model": "tiny", "prompt": ["2 + 2 ="] * prompts, "n": n, "max_tokens": 4})
    assert response.status_code == 400, response.text
    assert response.json() == {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": 400}}


def test_every_error_comes_in_the_openai_shape(http):
    replies = {
        "unknown path": http.post("/nowhere", json={}),
        "wrong method": http.get("/completions"),
        "not JSON": http.post("/chat/completions", content=b"{nope", headers={"content-type": "application/json"}),
        "nested too deeply": http.post("/chat/completions", content=b"[" * 100_000, headers={"content-type": "application/json"}),
        "wrong type": http.post("/chat/completions", json={"messages": [{"role": "user", "content": "x"}], "n": "many"}),
    }
    for what, reply in replies.items():
        assert 400 <= reply.status_code < 500, (what, reply.text)
        error = reply.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"], (what, error)
        assert error["code"] == reply.status_code, what
    assert replies["wrong type"].json()["error"]["param"] == "n"


class CountingHF(HFEngine):
    """The hf engine, counting the prompts each call starts on."""

    started = 0

    def generate_text(self, prompts, n, sampling, labels=None):
        self.started += len(prompts)
        return super().generate_text(prompts, n, sampling, labels)


def test_an_abandoned_request_starts_no_further_engine_batch(tiny_model_dir):
    engine = CountingHF(str(tiny_model_dir), progress=False, batch_size=2)  # one prompt of n=2 per engine batch
    app = create_app(engine, "tiny")
    body = {"model": "tiny", "prompt": ["Question: what is 2 + 2?\nAnswer:"] * 32, "n": 2, "max_tokens": 300,
            "temperature": 1.0}
    small = {"model": "tiny", "prompt": "hi", "max_tokens": 2}
    reply = give_up_then_ask(app, "/completions", body, small, drop_within=300, answer_within=120)
    assert reply.status_code == 200
    assert engine.started < 32 + 1  # the small request's prompt, and not every one of the 32 abandoned prompts
