"""The ray engine on a local cluster with 2 actors, each holding the hf engine on the tiny model (one cluster start)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stylealign.config import EngineConfig
from stylealign.engines import Request, SamplingParams, load_engine
from stylealign.engines.hf import HFEngine

ray = pytest.importorskip("ray")
from stylealign.engines.ray import RayEngine  # noqa: E402

pytestmark = pytest.mark.slow

REQUESTS = [Request.from_prompt(f"Tom has {k} apples and buys {k + 1} more.", id=f"r{k}") for k in range(5)]
RESPONSES = [f"{k} + {k + 1} = {2 * k + 1}. The answer is {2 * k + 1}." for k in range(5)]


@pytest.fixture(scope="module")
def cluster(tiny_model_dir) -> Iterator[RayEngine]:
    engine = load_engine(
        EngineConfig(
            type="ray", num_actors=2, actor=EngineConfig(type="hf", model=str(tiny_model_dir), device="cpu")
        )
    )
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def hf(tiny_model_dir) -> HFEngine:
    return HFEngine(str(tiny_model_dir), progress=False)


def texts(rows):
    return [[c.text for c in row] for row in rows]


def test_results_in_request_order_equal_hf(cluster, hf):
    greedy = SamplingParams(temperature=0.0, max_tokens=8)
    assert texts(cluster.generate(REQUESTS, 1, greedy)) == texts(hf.generate(REQUESTS, 1, greedy))
    sampled = SamplingParams(temperature=1.0, max_tokens=8, seed=2)
    assert texts(cluster.generate(REQUESTS, 2, sampled)) == texts(hf.generate(REQUESTS, 2, sampled))
    for ours, theirs in zip(cluster.score(REQUESTS, RESPONSES), hf.score(REQUESTS, RESPONSES), strict=True):
        assert ours.logprobs == pytest.approx(theirs.logprobs, abs=1e-5)


def test_killed_actor_share_is_retried(cluster, hf):
    greedy = SamplingParams(temperature=0.0, max_tokens=8)
    restarts = cluster.restarts
    ray.kill(cluster.actors[1], no_restart=True)
    assert texts(cluster.generate(REQUESTS, 1, greedy)) == texts(hf.generate(REQUESTS, 1, greedy))
    assert cluster.restarts == restarts + 1
