"""gold: the dataset's reference solutions, graded like every other stream (but kept either way)."""

from __future__ import annotations

from stylealign.grading import grade_many
from stylealign.records import Trace, content_id
from stylealign.run.work import BatchResult, WorkItem
from stylealign.streams.context import StreamContext
from stylealign.streams.registry import Built, StreamSpec

NAME = "gold"


def plan(sc: StreamContext, built: Built) -> list[WorkItem]:
    key = sc.keyer(NAME)
    return [WorkItem(key(p, reference=content_id(p.reference_solution)), p) for p in sc.problems]


def build(sc: StreamContext, items: list[WorkItem], built: Built) -> BatchResult:
    result = BatchResult(done=[item.key for item in items])
    items = [item for item in items if item.problem.reference_solution.strip()]
    result.count("no_reference", len(result.done) - len(items))
    verdicts = grade_many([i.problem.reference_solution for i in items], [i.problem.answer for i in items])
    for item, correct in zip(items, verdicts, strict=True):
        p = item.problem
        result.keep(item, Trace(id=content_id(NAME, item.key), problem_id=p.id, text=p.reference_solution,
                                stream=NAME, model=p.source or "dataset", correct=correct))
    return result


SPEC = StreamSpec(NAME, plan, build, batch_size=256)
