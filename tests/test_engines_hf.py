"""The hf engine on a tiny model built from a config: sampling, continuation, stop strings, scoring."""

from __future__ import annotations

import importlib.util
import re

import pytest
import torch

from stylealign.config import EngineConfig
from stylealign.engines import EngineError, Request, SamplingParams, load_engine, render_prompt
from stylealign.engines.base import encode_prompt, encode_prompt_response, encode_response
from stylealign.engines.hf import HFEngine

REQUESTS = [
    Request.from_prompt("Tom has 3 apples and buys 4 more. How many?", id="a"),
    Request.from_prompt("What is 2 + 2?", system="Answer step by step.", id="b"),
    Request.from_prompt("A pen costs 5 dollars. Anna buys 6 pens.", id="c"),
]


@pytest.fixture(scope="module")
def engine(tiny_model_dir) -> HFEngine:
    return HFEngine(str(tiny_model_dir), batch_size=4, progress=False)


def texts(rows):
    return [[c.text for c in row] for row in rows]


def test_same_seed_same_samples_and_seeds_differ(engine):
    sampling = SamplingParams(temperature=1.0, max_tokens=12, seed=7)
    first = engine.generate(REQUESTS, 3, sampling)
    assert texts(first) == texts(engine.generate(REQUESTS, 3, sampling))
    assert all(len(set(row)) == 3 for row in texts(first))
    other = engine.generate(REQUESTS, 3, SamplingParams(temperature=1.0, max_tokens=12, seed=8))
    assert texts(other) != texts(first)


def test_samples_do_not_depend_on_batch_composition(tiny_model_dir, engine):
    sampling = SamplingParams(temperature=0.8, top_p=0.9, max_tokens=12, seed=3)
    together = engine.generate(REQUESTS, 2, sampling)
    alone = HFEngine(str(tiny_model_dir), batch_size=1, progress=False).generate(REQUESTS[2:], 2, sampling)
    assert texts(alone) == texts(together)[2:]


def test_greedy_matches_model_generate(engine):
    sampling = SamplingParams(temperature=0.0, max_tokens=10)
    ours = engine.generate(REQUESTS[:1], 2, sampling)[0]
    ids = torch.tensor([encode_prompt(engine.tokenizer, render_prompt(engine.tokenizer, REQUESTS[0]))])
    raw = engine.model.generate(ids, max_new_tokens=10, do_sample=False)[0, ids.shape[1] :]
    assert ours[0].text == ours[1].text == engine.tokenizer.decode(raw, skip_special_tokens=True)
    assert ours[0].num_tokens == 10 and ours[0].finish_reason == "length"


def test_tiny_top_p_is_greedy(engine):
    sampled = engine.generate(REQUESTS, 1, SamplingParams(temperature=1.0, top_p=1e-6, max_tokens=8, seed=5))
    assert texts(sampled) == texts(
        engine.generate(REQUESTS, 1, SamplingParams(temperature=0.0, max_tokens=8))
    )


def test_continuation_returns_only_new_text(engine):
    prefix = "Step 1: 3 + 4"
    request = Request(messages=REQUESTS[0].messages, prefix=prefix)
    sampling = SamplingParams(temperature=0.0, max_tokens=6)
    (completion,) = engine.generate([request], 1, sampling)[0]
    prompt = render_prompt(engine.tokenizer, request)
    assert prompt == render_prompt(engine.tokenizer, REQUESTS[0]) + prefix
    assert completion.text == engine.generate_text([prompt], 1, sampling)[0][0].text
    ids = torch.tensor([encode_prompt(engine.tokenizer, prompt)])
    next_token = engine.model(ids).logits[0, -1].argmax().item()
    assert completion.text.startswith(engine.tokenizer.decode([next_token]))
    assert not completion.text.startswith(prefix)


def test_stop_strings_truncate_and_finish(engine):
    sampling = SamplingParams(temperature=1.0, max_tokens=40, seed=11)
    full = engine.generate(REQUESTS[:1], 1, sampling)[0][0].text
    stop = re.search(r"[A-Za-z]{2}", full[5:]).group(0)
    stopped = engine.generate(
        REQUESTS[:1], 1, SamplingParams(temperature=1.0, max_tokens=40, seed=11, stop=(stop,))
    )
    assert stopped[0][0].text == full[: full.find(stop)]
    assert stopped[0][0].finish_reason == "stop"
    assert stopped[0][0].num_tokens < 40


def test_score_equals_forward_pass(engine):
    responses = ["The answer is 7.", "2 + 2 = 4, so the answer is \\boxed{4}.\n\nDone", "6 * 5 = 30"]
    scores = engine.score(REQUESTS, responses)
    for request, response, got in zip(REQUESTS, responses, scores, strict=True):
        ids, n_prompt = encode_prompt_response(engine.tokenizer, request, response)
        with torch.no_grad():
            logits = engine.model(torch.tensor([ids])).logits[0].float()
        expected = torch.log_softmax(logits[n_prompt - 1 : -1], dim=-1).gather(
            1, torch.tensor(ids[n_prompt:])[:, None]
        )
        assert len(got.logprobs) == len(ids) - n_prompt
        assert torch.allclose(torch.tensor(got.logprobs), expected.squeeze(1), atol=1e-5, rtol=0)
        rows = logits[n_prompt - 1 : -1]
        targets = rows.gather(1, torch.tensor(ids[n_prompt:])[:, None])
        assert got.ranks == (rows >= targets).sum(dim=1).tolist()
        assert "".join(response[s:e] for s, e in got.offsets) == response
        assert "".join(got.tokens) == response
    assert {1} < {rank for got in scores for rank in got.ranks}, "ranks must tell the top token from the others"


def test_scoring_in_chunks_of_positions_changes_nothing(tiny_model_dir, engine):
    """The log-softmax is normalised a few positions at a time (memory); the numbers are those of one piece."""
    responses = ["2 + 2 = 4, so the answer is \\boxed{4}.\n\nDone", "6 * 5 = 30"]
    small = HFEngine(str(tiny_model_dir), batch_size=4, progress=False)
    small.score_chunk_elements = 3 * engine.model.config.vocab_size
    whole, chunked = engine.score(REQUESTS[1:], responses), small.score(REQUESTS[1:], responses)
    assert max(len(s.logprobs) for s in whole) > 3, "the responses must span several chunks"
    assert [(s.logprobs, s.ranks) for s in chunked] == [(s.logprobs, s.ranks) for s in whole]
    assert small.token_logprobs([[1, 2, 3, 4, 5]], [1]) == engine.token_logprobs([[1, 2, 3, 4, 5]], [1])


def test_encode_prompt_response_concatenates_separate_tokenizations(engine):
    request, response = REQUESTS[1], "2 + 2 = 4"
    ids, n_prompt = encode_prompt_response(engine.tokenizer, request, response)
    assert ids[:n_prompt] == encode_prompt(engine.tokenizer, render_prompt(engine.tokenizer, request))
    assert ids[n_prompt:] == encode_response(engine.tokenizer, response)[0]


def test_plain_prompt_for_model_without_chat_template(tiny_base_model_dir):
    engine = load_engine(EngineConfig(type="hf", model=str(tiny_base_model_dir)))
    request = Request.from_prompt("What is 2 + 2?", system="Be brief.", prefix="Step 1:")
    assert (
        render_prompt(engine.tokenizer, request) == "Be brief.\n\nQuestion: What is 2 + 2?\nAnswer: Step 1:"
    )
    rows = engine.generate([request], 2, SamplingParams(temperature=1.0, max_tokens=5, seed=1))
    assert len(rows[0]) == 2 and all(c.num_tokens == 5 for c in rows[0])
    assert len(engine.score([request], ["4"])[0].logprobs) == 1


def test_vllm_without_vllm_names_the_extra(tiny_model_dir):
    if importlib.util.find_spec("vllm"):
        pytest.skip("vllm is installed")
    with pytest.raises(EngineError, match=r"stylealign\[vllm\]"):
        load_engine(EngineConfig(type="vllm", model=str(tiny_model_dir)))
