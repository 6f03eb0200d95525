"""grape: GRAPE (Zhang, Dai & Peng 2025) — per problem, the verified response the student finds most likely.

The pool (`streams.grape.pool`, default gold, rft, oracle_synth, oracle_refine)
gives each problem its correct candidates: every correct student sample for
`rft` (what rft selects from, cleaned the same way, not only the one rft keeps)
and the correct traces of each other pool stream. Each candidate is scored
under the student with the adaptation-cost scorer, and the best by
`streams.grape.criterion` is kept: `likelihood` (GRAPE's: the highest
length-normalised log-likelihood, i.e. the lowest `nll`), `rank_surprisal`
(the lowest RSR) or `car` (the highest compatibility-adjusted reward, which
scores each candidate's reward too); metrics/predictors.py defines RSR and
CAR. One selecting stream serves every criterion, so "train on the
best-predicted trace per problem" is a setting, not a stream per predictor.
Ties (equal to 1e-9, e.g. an oracle_refine that changed nothing) go to the
shorter response in tokens, then to the stream whose name sorts first, then
to the smaller trace id. It fits the data to the student by *selecting* only:
set beside sar, which fits by *editing*, it shows how much of a gain
selection alone explains.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, field_validator

from stylealign.config import ExperimentConfig, StreamSettings, known_streams
from stylealign.metrics.adaptation import adaptation_cost
from stylealign.metrics.predictors import (
    PREDICTOR_BY_NAME,
    Predictor,
    compatibility_adjusted_reward,
    goodness,
)
from stylealign.records import Trace, content_id
from stylealign.run.rewards import run_scorer
from stylealign.run.work import BatchResult, WorkItem, key_dump, trace_part
from stylealign.streams import rft
from stylealign.streams.context import StreamContext
from stylealign.streams.registry import Built, StreamSpec, settings_of, stream_settings

NAME = "grape"


class Settings(StreamSettings):
    """`streams.grape`: per problem, the verified candidate the student finds most likely, or the one another
    predictor of utility rates best."""

    pool: list[str] = Field(
        default_factory=lambda: ["gold", "rft", "oracle_synth", "oracle_refine"], min_length=1,
        description="streams whose correct traces compete per problem; `rft` means every correct student sample "
        "(what rft selects from), not only the one rft keeps",
    )
    criterion: Literal["likelihood", "rank_surprisal", "car"] = Field(
        "likelihood",
        description="what picks a problem's candidate: likelihood (GRAPE's highest mean token log-prob), "
        "rank_surprisal (lowest RSR) or car (highest compatibility-adjusted reward; needs a reward)",
    )

    @field_validator("pool")
    @classmethod
    def _pool(cls, names: list[str]) -> list[str]:
        return known_streams(names, besides=NAME)


def check(config: ExperimentConfig, settings: Settings) -> None:
    """The `car` criterion discounts each candidate's reward, so it needs one."""
    if settings.criterion == "car" and config.reward.type == "none":
        raise ValueError("streams.grape.criterion 'car' discounts each candidate's reward: set a reward.type")


def _pools(sc: StreamContext, built: Built, problem_ids: list[str]) -> list[list[Trace]]:
    """Per problem, the pool streams' correct candidates, in pool order."""
    pools: list[list[Trace]] = [[] for _ in problem_ids]
    index = {problem_id: i for i, problem_id in enumerate(problem_ids)}
    for name in settings_of(sc, NAME).pool:
        if name == "rft":
            for pool, samples in zip(pools, rft.correct_samples(sc, problem_ids), strict=True):
                pool.extend(samples)
            continue
        for trace in built[name]:
            if trace.correct and trace.problem_id in index:
                pools[index[trace.problem_id]].append(trace)
    return pools


def plan(sc: StreamContext, built: Built) -> list[WorkItem]:
    problems = sc.problems
    pools = _pools(sc, built, [p.id for p in problems])
    criterion = settings_of(sc, NAME).criterion
    rewarded = {"reward": key_dump(sc.config.reward)} if criterion == "car" else {}
    key = sc.keyer(NAME, criterion=criterion, **rewarded)
    return [
        WorkItem(key(p, candidates=[trace_part(t) for t in pool]), p)
        for p, pool in zip(problems, pools, strict=True) if pool
    ]


CRITERIA = {"likelihood": "grape_likelihood", "rank_surprisal": "rsr", "car": "car"}
"""Each `streams.grape.criterion` and the predictor (metrics/predictors.py) it selects by."""


def _preference(candidate: tuple[Trace, dict[str, Any], float], predictor: Predictor) -> tuple[float, int, str, str]:
    """Sort key, best first: the predictor's best value, then fewest tokens, then stream name, then trace id.

    Values equal to 1e-9 are a tie: means over different token counts differ in the last float bits.
    """
    trace, cost, value = candidate
    return round(-goodness(predictor, value), 9), cost["tokens"], trace.stream, trace.id


def _values(sc: StreamContext, flat: list[tuple[WorkItem, Trace]], costs: list[dict[str, Any]]) -> list[float | None]:
    """Each candidate's value of the criterion's predictor; None where the candidate cannot be rated."""
    criterion = settings_of(sc, NAME).criterion
    if criterion == "likelihood":
        return [None if cost["nll"] is None else -cost["nll"] for cost in costs]
    if criterion == "rank_surprisal":
        if costs and all(cost["rsr"] is None for cost in costs):
            raise ValueError(
                f"streams.grape.criterion 'rank_surprisal' needs token ranks, which the student's engine "
                f"({sc.student().name}) does not give"
            )
        return [cost["rsr"] for cost in costs]
    rewards = run_scorer(sc.run).score([item.problem for item, _ in flat], [t.text for _, t in flat])
    return [compatibility_adjusted_reward(r["reward"], cost["nll"]) for r, cost in zip(rewards, costs, strict=True)]


def build(sc: StreamContext, items: list[WorkItem], built: Built) -> BatchResult:
    pools = _pools(sc, built, [item.problem.id for item in items])
    flat = [(item, trace) for item, pool in zip(items, pools, strict=True) for trace in pool]
    costs = adaptation_cost(sc.student(), [sc.student_request(item.problem) for item, _ in flat], [t.text for _, t in flat])
    criterion = settings_of(sc, NAME).criterion
    predictor = PREDICTOR_BY_NAME[CRITERIA[criterion]]
    scored: dict[str, list[tuple[Trace, dict[str, Any], float]]] = {item.key: [] for item in items}
    for (item, trace), cost, value in zip(flat, costs, _values(sc, flat, costs), strict=True):
        if cost["nll"] is not None and value is not None:
            scored[item.key].append((trace, cost, value))
    result = BatchResult(done=[item.key for item in items])
    for item in items:
        candidates = scored[item.key]
        if not candidates:
            result.count("no_candidate")
            continue
        chosen, cost, value = min(candidates, key=functools.partial(_preference, predictor=predictor))
        pool_nll: dict[str, float] = {}
        for trace, c, _ in candidates:
            pool_nll[trace.stream] = min(pool_nll.get(trace.stream, c["nll"]), c["nll"])
        result.keep(item, Trace(
            id=content_id(NAME, item.key, chosen.id), problem_id=chosen.problem_id, text=chosen.text, stream=NAME,
            parent_id=chosen.id, model=chosen.model, template=chosen.template, sampling=chosen.sampling,
            seed=chosen.seed, correct=chosen.correct,
            metrics={"grape_source": chosen.stream, "grape_candidates": len(candidates), "nll": cost["nll"],
                     "mean_logprob": -cost["nll"], "pool_nll": pool_nll,
                     "grape_criterion": criterion, "grape_value": value},
        ))
        result.count(f"from_{chosen.stream}")
    return result


def summarize(traces: Sequence[Trace]) -> dict[str, Any]:
    """Which pool stream supplied how many of the selected traces."""
    return {"grape_sources": dict(Counter(t.metrics.get("grape_source") for t in traces))}


SPEC = StreamSpec(
    NAME, plan, build, needs=lambda config: tuple(n for n in stream_settings(config, NAME).pool if n != "rft"),
    settings=Settings, check=check, summarize=summarize,
)
