"""grape: GRAPE (Zhang, Dai & Peng 2025) — per problem, the verified response the student finds most likely.

The pool (`streams.grape.pool`, default gold, rft, oracle_synth, oracle_refine)
gives each problem its correct candidates: every correct student sample for
`rft` (what rft selects from, cleaned the same way, not only the one rft keeps)
and the correct traces of each other pool stream. Each candidate is scored
under the student with the adaptation-cost scorer, and the one with the highest
length-normalised log-likelihood (mean token log-prob, i.e. the lowest `nll`)
is kept. Ties (equal to the last bit, e.g. an oracle_refine that changed
nothing) go to the shorter response in tokens, then to the stream whose name
sorts first, then to the smaller trace id. It fits the data to the student by
*selecting* only: set beside sar, which fits by *editing*, it shows how much
of a gain selection alone explains.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from stylealign.metrics.adaptation import adaptation_cost
from stylealign.records import Trace, content_id
from stylealign.run.work import BatchResult, WorkItem
from stylealign.streams import rft
from stylealign.streams.context import StreamContext
from stylealign.streams.registry import Built, StreamSpec

NAME = "grape"


def _pools(sc: StreamContext, built: Built, problem_ids: list[str]) -> list[list[Trace]]:
    """Per problem, the pool streams' correct candidates, in pool order."""
    pools: list[list[Trace]] = [[] for _ in problem_ids]
    index = {problem_id: i for i, problem_id in enumerate(problem_ids)}
    for name in sc.config.streams.grape.pool:
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
    key = sc.keyer(NAME)
    return [
        WorkItem(key(p, candidates=[content_id(t.id, t.text) for t in pool]), p)
        for p, pool in zip(problems, pools, strict=True) if pool
    ]


def _preference(candidate: tuple[Trace, dict[str, Any]]) -> tuple[float, int, str, str]:
    """Sort key, best first: lowest mean NLL, then fewest tokens, then stream name, then trace id.

    NLLs equal to 1e-9 nats are a tie: means over different token counts differ in the last float bits.
    """
    trace, cost = candidate
    return round(cost["nll"], 9), cost["tokens"], trace.stream, trace.id


def build(sc: StreamContext, items: list[WorkItem], built: Built) -> BatchResult:
    pools = _pools(sc, built, [item.problem.id for item in items])
    flat = [(item, trace) for item, pool in zip(items, pools, strict=True) for trace in pool]
    costs = adaptation_cost(sc.student(), [sc.student_request(item.problem) for item, _ in flat], [t.text for _, t in flat])
    scored: dict[str, list[tuple[Trace, dict[str, Any]]]] = {item.key: [] for item in items}
    for (item, trace), cost in zip(flat, costs, strict=True):
        if cost["nll"] is not None:
            scored[item.key].append((trace, cost))
    result = BatchResult(done=[item.key for item in items])
    for item in items:
        candidates = scored[item.key]
        if not candidates:
            result.count("no_candidate")
            continue
        chosen, cost = min(candidates, key=_preference)
        pool_nll: dict[str, float] = {}
        for trace, c in candidates:
            pool_nll[trace.stream] = min(pool_nll.get(trace.stream, c["nll"]), c["nll"])
        result.keep(item, Trace(
            id=content_id(NAME, item.key, chosen.id), problem_id=chosen.problem_id, text=chosen.text, stream=NAME,
            parent_id=chosen.id, model=chosen.model, template=chosen.template, sampling=chosen.sampling,
            seed=chosen.seed, correct=chosen.correct,
            metrics={"grape_source": chosen.stream, "grape_candidates": len(candidates), "nll": cost["nll"],
                     "mean_logprob": -cost["nll"], "pool_nll": pool_nll},
        ))
        result.count(f"from_{chosen.stream}")
    return result


def summarize(traces: Sequence[Trace]) -> dict[str, Any]:
    """Which pool stream supplied how many of the selected traces."""
    return {"grape_sources": dict(Counter(t.metrics.get("grape_source") for t in traces))}


SPEC = StreamSpec(
    NAME, plan, build, needs=lambda config: tuple(n for n in config.streams.grape.pool if n != "rft"),
    summarize=summarize,
)
