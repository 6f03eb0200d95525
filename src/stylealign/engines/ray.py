"""Many engines on a Ray cluster: requests are sharded across actors, each holding `load_engine(cfg.actor)`.

`engine.address` names a running cluster to join (`auto`, `HOST:PORT` of the
head's GCS, or `ray://HOST:10001` through Ray Client); without it the cluster
in `RAY_ADDRESS` is joined, and without that a small local cluster starts in
this process. Each actor gets a contiguous share of the
requests; results come back in request order. If an actor dies, it is
replaced and its share is sent again (up to `max_restarts` times per call).
Because the hf engine seeds samples per request, the result does not depend
on how requests are sharded.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import ray
from ray.exceptions import RayActorError

from stylealign.config import EngineConfig
from stylealign.engines.base import Completion, EngineError, Request, SamplingParams, TokenScores


class EngineActor:
    """Holds one engine inside a Ray worker process."""

    def __init__(self, config: dict[str, Any]):
        from stylealign.engines import load_engine

        self.engine = load_engine(EngineConfig.model_validate(config))

    def generate(self, requests: list[Request], n: int, sampling: SamplingParams) -> list[list[Completion]]:
        return self.engine.generate(requests, n, sampling)

    def score(self, requests: list[Request], responses: list[str]) -> list[TokenScores]:
        return self.engine.score(requests, responses)


def init_ray(num_cpus: int, address: str | None = None) -> bool:
    """Join the cluster at `address` (or `RAY_ADDRESS`), or start a quiet local one; True if this call connected
    this process to Ray (so `close()` disconnects it).

    Joining never starts a cluster: an address nobody answers is an error, not a silent local run.
    """
    if ray.is_initialized():
        return False
    address = address or ("auto" if os.environ.get("RAY_ADDRESS") else None)
    if address:
        try:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        except (ConnectionError, RuntimeError) as err:
            raise EngineError(f"ray engine: cannot join the cluster at {address!r}: {err}") from err
    else:
        ray.init(
            num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False
        )
    return True


class RayEngine:
    def __init__(
        self,
        actor: EngineConfig,
        *,
        num_actors: int = 2,
        actor_options: dict[str, Any] | None = None,
        max_restarts: int = 2,
        name: str | None = None,
        address: str | None = None,
    ):
        if actor.type == "ray":
            raise ValueError("a ray engine's actors cannot themselves be ray engines")
        self.actor_config = actor.model_dump()
        self.actor_options = actor_options or {"num_cpus": 1}
        self.max_restarts = max_restarts
        self.name = name or actor.model or actor.type
        self.restarts = 0
        self._started_ray = init_ray(num_cpus=max(num_actors, os.cpu_count() or 1), address=address)
        self._remote = ray.remote(EngineActor).options(**self.actor_options)
        self.actors = [self._spawn() for _ in range(num_actors)]

    @classmethod
    def from_config(cls, cfg: EngineConfig) -> RayEngine:
        if cfg.actor is None:
            raise ValueError("the ray engine needs engine.actor: the engine config each actor loads")
        options = {"num_gpus": 1} if cfg.actor.type == "vllm" else None
        return cls(cfg.actor, num_actors=cfg.num_actors, actor_options=options, address=cfg.address)

    def generate(
        self, requests: Sequence[Request], n: int, sampling: SamplingParams
    ) -> list[list[Completion]]:
        return self._sharded(
            list(requests), lambda actor, lo, hi: actor.generate.remote(list(requests[lo:hi]), n, sampling)
        )

    def score(self, requests: Sequence[Request], responses: Sequence[str]) -> list[TokenScores]:
        if len(requests) != len(responses):
            raise ValueError(f"score: {len(requests)} requests but {len(responses)} responses")
        return self._sharded(
            list(requests),
            lambda actor, lo, hi: actor.score.remote(list(requests[lo:hi]), list(responses[lo:hi])),
        )

    def close(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        if self._started_ray:
            ray.shutdown()

    def _spawn(self) -> Any:
        return self._remote.remote(self.actor_config)

    def _sharded(self, requests: list[Request], submit: Callable[[Any, int, int], Any]) -> list:
        """Contiguous shares, one per actor; a dead actor is replaced and its share resubmitted."""
        size = -(-len(requests) // len(self.actors)) if requests else 0
        shares = [(k, k * size, min(len(requests), (k + 1) * size)) for k in range(len(self.actors))]
        shares = [s for s in shares if s[1] < s[2]]
        pending = {submit(self.actors[k], lo, hi): (k, lo, hi, 0) for k, lo, hi in shares}
        results: list = [None] * len(requests)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            k, lo, hi, attempt = pending.pop(done[0])
            try:
                results[lo:hi] = ray.get(done[0])
            except RayActorError as err:
                if attempt >= self.max_restarts:
                    raise EngineError(
                        f"{self.name}: actor {k} died {attempt + 1} times on requests {lo}..{hi - 1}: {err}"
                    ) from err
                self.restarts += 1
                self.actors[k] = self._spawn()
                pending[submit(self.actors[k], lo, hi)] = (k, lo, hi, attempt + 1)
        return results
