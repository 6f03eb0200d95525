"""The openai engine against real servers on 127.0.0.1: `stylealign serve`'s app, and raw HTTP servers that misbehave."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from http_faults import raw_server

from stylealign.engines import EngineError, Request, SamplingParams
from stylealign.engines.hf import HFEngine
from stylealign.engines.openai_api import OpenAIEngine
from stylealign.server import BackgroundServer, create_app

REQUESTS = [
    Request.from_prompt("Tom has 3 apples and buys 4 more. How many?", id="apples"),
    Request.from_prompt("What is 2 + 2?", system="Answer step by step.", prefix="Step 1:", id="sum"),
]
RESPONSES = ["3 + 4 = 7. The answer is 7.", " 2 + 2 = 4.\n\nThe answer is \\boxed{4}."]


@pytest.fixture(scope="module")
def hf(tiny_model_dir) -> HFEngine:
    return HFEngine(str(tiny_model_dir), progress=False)


@pytest.fixture(scope="module")
def base_url(hf) -> Iterator[str]:
    with BackgroundServer(create_app(hf, "tiny")) as url:
        yield url


def texts(rows):
    return [[c.text for c in row] for row in rows]


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_loopback_generation_matches_hf(hf, base_url, tiny_model_dir, endpoint):
    client = OpenAIEngine(base_url, str(tiny_model_dir), endpoint=endpoint, concurrency=2)
    greedy = SamplingParams(temperature=0.0, max_tokens=12)
    assert texts(client.generate(REQUESTS, 1, greedy)) == texts(hf.generate(REQUESTS, 1, greedy))
    sampled = SamplingParams(temperature=1.0, max_tokens=12, seed=4, stop=("e",))
    assert texts(client.generate(REQUESTS, 3, sampled)) == texts(hf.generate(REQUESTS, 3, sampled))


def test_loopback_scores_match_hf(hf, base_url, tiny_model_dir):
    client = OpenAIEngine(base_url, "tiny", tokenizer=str(tiny_model_dir))
    for ours, theirs in zip(client.score(REQUESTS, RESPONSES), hf.score(REQUESTS, RESPONSES), strict=True):
        assert ours.tokens == theirs.tokens and ours.offsets == theirs.offsets
        assert ours.logprobs == pytest.approx(theirs.logprobs, abs=1e-5)


def test_scoring_without_a_tokenizer_is_a_clear_error(base_url):
    with pytest.raises(EngineError, match="engine.tokenizer"):
        OpenAIEngine(base_url, "hosted-model").score(REQUESTS[:1], RESPONSES[:1])


CHAT_OK = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 0,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
}


def test_retries_500_then_succeeds():
    with raw_server(lambda k, *_: (500, {"error": "busy"}) if k <= 2 else (200, CHAT_OK)) as (url, calls):
        engine = OpenAIEngine(url, "m", max_retries=3, backoff=0.01)
        assert texts(engine.generate(REQUESTS[:1], 1, SamplingParams())) == [["ok"]]
    assert len(calls) == 3


def test_gives_up_after_max_retries():
    with raw_server(lambda k, *_: (503, {"error": "down"})) as (url, calls):
        with pytest.raises(EngineError, match=r"apples.*3 attempts.*503"):
            OpenAIEngine(url, "m", max_retries=2, backoff=0.01).generate(REQUESTS[:1], 1, SamplingParams())
    assert len(calls) == 3


def test_hanging_server_times_out_clearly():
    def hang(*_: object) -> tuple[int, dict]:
        time.sleep(3)
        return 200, CHAT_OK

    with raw_server(hang) as (url, calls):
        with pytest.raises(EngineError, match=r"request apples.*timed out after 0.3 s"):
            OpenAIEngine(url, "m", timeout=0.3, max_retries=1, backoff=0.01).generate(
                REQUESTS[:1], 1, SamplingParams()
            )
    assert len(calls) == 2


def test_400_surfaces_body_and_never_the_key(monkeypatch):
    monkeypatch.setenv("STYLEALIGN_TEST_KEY", "sk-secret-123")
    body = {"error": {"message": "prompt too long for this model", "code": 400}}
    with raw_server(lambda k, *_: (400, body)) as (url, calls):
        engine = OpenAIEngine(url, "m", api_key_env="STYLEALIGN_TEST_KEY", max_retries=3)
        with pytest.raises(EngineError) as info:
            engine.generate(REQUESTS[:1], 1, SamplingParams())
    message = str(info.value)
    assert "HTTP 400" in message and "prompt too long for this model" in message and "apples" in message
    assert "sk-secret-123" not in message
    assert len(calls) == 1 and calls[0]["authorization"] == "Bearer sk-secret-123"


def test_a_key_across_the_excerpt_cut_is_redacted_whole(monkeypatch):
    """The answer is redacted before it is cut, so not even the first letters of a key reach the error."""
    monkeypatch.setenv("STYLEALIGN_TEST_KEY", "sk-secret-123")
    body = b"x" * 495 + b" sk-secret-123 echoed back"  # the key starts at byte 496, across the 500-character cut
    with raw_server(lambda *_: (200, body, "text/plain")) as (url, _):
        engine = OpenAIEngine(url, "m", api_key_env="STYLEALIGN_TEST_KEY", max_retries=0)
        with pytest.raises(EngineError, match="not JSON") as info:
            engine.generate(REQUESTS[:1], 1, SamplingParams())
    assert "sk-" not in str(info.value)
