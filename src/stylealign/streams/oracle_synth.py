"""oracle_synth: the oracle solves each problem from scratch (template `solve`); correct solutions are kept."""

from __future__ import annotations

from stylealign.run.work import BatchResult, WorkItem
from stylealign.streams.context import StreamContext
from stylealign.streams.registry import Built, StreamSpec
from stylealign.streams.verified import keep_correct, oracle_traces

NAME = "oracle_synth"
TEMPLATE = "solve"


def plan(sc: StreamContext, built: Built) -> list[WorkItem]:
    key = sc.keyer(NAME, **sc.oracle_parts(TEMPLATE))
    return [WorkItem(key(p), p) for p in sc.problems]


def build(sc: StreamContext, items: list[WorkItem], built: Built) -> BatchResult:
    template = sc.oracle_template(TEMPLATE)
    requests = [template.request(question=i.problem.question, id=i.problem.id) for i in items]
    result = BatchResult()
    return keep_correct(items, oracle_traces(sc, NAME, items, requests, TEMPLATE, result), result)


SPEC = StreamSpec(NAME, plan, build)
