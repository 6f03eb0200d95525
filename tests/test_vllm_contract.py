"""Contract test of the vllm engine: its requests and its reading of responses, against vLLM's documented API.

vLLM cannot be installed on the machines this project is developed on, so `tests/vllm_stub/vllm` stands in
for it: the documented shapes of `LLM`, `SamplingParams`, `RequestOutput` / `CompletionOutput` and
`prompt_logprobs`, running a tiny real model. The stub is on `sys.path` only inside these tests. A pass
says the engine speaks the documented API; it says nothing about vLLM's speed or numerics on a GPU.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from transformers import AutoTokenizer

from stylealign.config import EngineConfig
from stylealign.engines import load_engine
from stylealign.engines.base import Request, SamplingParams, encode_prompt, encode_response, render_prompt
from stylealign.engines.hf import HFEngine

ROOT = Path(__file__).resolve().parents[1]
STUB = Path(__file__).resolve().parent / "vllm_stub"
REQUESTS = [
    Request.from_prompt("What is 2 + 3?"),
    Request.from_prompt("Add 7 and 8.", system="Be brief.", prefix="7 + 8 ="),
]


@pytest.fixture
def vllm_stub(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(STUB))
    monkeypatch.delitem(sys.modules, "vllm", raising=False)
    import vllm

    yield vllm
    sys.modules.pop("vllm", None)


def test_the_stub_follows_a_vllm_version_the_extra_allows(vllm_stub) -> None:
    extra = re.search(r'^vllm = \["(vllm[^"]*)"\]$', (ROOT / "pyproject.toml").read_text(encoding="utf-8"), re.MULTILINE)
    assert extra, "pyproject.toml: no `vllm = [\"vllm...\"]` extra"
    requirement = Requirement(extra.group(1))
    assert requirement.specifier.contains(vllm_stub.__version__), (str(requirement), vllm_stub.__version__)


def test_generate_maps_requests_and_reads_request_outputs(vllm_stub, tiny_model_dir) -> None:
    engine = load_engine(
        EngineConfig(type="vllm", model=str(tiny_model_dir), dtype="float32", max_model_len=512,
                     gpu_memory_utilization=0.5)
    )
    assert engine.llm.init_args == {"model": str(tiny_model_dir), "dtype": "float32", "max_model_len": 512,
                                    "tensor_parallel_size": 1, "gpu_memory_utilization": 0.5}
    sampling = SamplingParams(temperature=0.8, top_p=0.9, max_tokens=6, stop=("\n",), seed=5)
    results = engine.generate(REQUESTS, 3, sampling)
    (call,) = engine.llm.calls
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert call.prompts == [{"prompt_token_ids": encode_prompt(tokenizer, render_prompt(tokenizer, r))} for r in REQUESTS]
    assert REQUESTS[1].prefix and render_prompt(tokenizer, REQUESTS[1]).endswith(REQUESTS[1].prefix)
    params = call.params
    assert (params.n, params.temperature, params.top_p, params.max_tokens, params.stop, params.seed) == (
        3, 0.8, 0.9, 6, ["\n"], 5
    )
    assert params.prompt_logprobs is None
    assert [len(r) for r in results] == [3, 3]
    outputs = engine.llm.generate(call.prompts, params)  # the stub is deterministic per seed
    for completions, out in zip(results, outputs, strict=True):
        for completion, raw in zip(completions, out.outputs, strict=True):
            assert completion.text == raw.text and completion.num_tokens == len(raw.token_ids)
            assert completion.finish_reason == ("length" if raw.finish_reason == "length" else "stop")
    assert {c.finish_reason for r in results for c in r} <= {"stop", "length"}


def test_scoring_reads_prompt_logprobs_and_agrees_with_the_hf_engine(vllm_stub, tiny_model_dir) -> None:
    engine = load_engine(EngineConfig(type="vllm", model=str(tiny_model_dir)))
    responses = ["2 + 3 = 5.\nThe answer is 5.", " 15, so the answer is 15."]
    scored = engine.score(REQUESTS, responses)
    (call,) = engine.llm.calls
    assert (call.params.prompt_logprobs, call.params.max_tokens, call.params.temperature) == (0, 1, 0)
    tokenizer = engine.tokenizer
    for prompt, request, response in zip(call.prompts, REQUESTS, responses, strict=True):
        ids, _ = encode_response(tokenizer, response)
        assert prompt["prompt_token_ids"] == encode_prompt(tokenizer, render_prompt(tokenizer, request)) + ids
    reference = HFEngine(str(tiny_model_dir), batch_size=2, progress=False).score(REQUESTS, responses)
    for got, want in zip(scored, reference, strict=True):
        assert got.tokens == want.tokens and got.offsets == want.offsets
        assert got.logprobs == pytest.approx(want.logprobs, abs=1e-4)
        assert got.ranks == want.ranks and max(got.ranks) > 1
        assert got.nll > 0


def test_mismatched_score_inputs_are_refused(vllm_stub, tiny_model_dir) -> None:
    engine = load_engine(EngineConfig(type="vllm", model=str(tiny_model_dir)))
    with pytest.raises(ValueError, match="2 requests but 1 responses"):
        engine.score(REQUESTS, ["only one"])
