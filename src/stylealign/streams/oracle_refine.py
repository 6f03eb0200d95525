"""oracle_refine: the paper's Oracle-Refined baseline — a minimal, targeted fix of each rft trace (template `refine`)."""

from __future__ import annotations

from stylealign.run.work import BatchResult, WorkItem
from stylealign.streams.context import StreamContext
from stylealign.streams.registry import Built, StreamSpec
from stylealign.streams.verified import keep_correct, oracle_traces

NAME = "oracle_refine"
TEMPLATE = "refine"


def plan(sc: StreamContext, built: Built) -> list[WorkItem]:
    problems = sc.problem_by_id
    key = sc.keyer(NAME, **sc.oracle_parts(TEMPLATE))
    return [WorkItem(key(problems[t.problem_id], parent=t), problems[t.problem_id], t) for t in built["rft"]]


def build(sc: StreamContext, items: list[WorkItem], built: Built) -> BatchResult:
    template = sc.oracle_template(TEMPLATE)
    requests = [template.request(question=i.problem.question, solution=i.parent.text, id=i.parent.id) for i in items]
    result = BatchResult()
    return keep_correct(items, oracle_traces(sc, NAME, items, requests, TEMPLATE, result), result)


SPEC = StreamSpec(NAME, plan, build, edits="rft")
