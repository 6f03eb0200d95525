"""sar: Style-Aligned Refinement — the oracle repairs each rft trace while imitating the student.

The oracle sees the trace plus `streams.sar.exemplars` of the student's own
correct traces (template `sar`). The acceptance gate keeps a refinement only
if its answer verifies *and* the student's mean NLL on it exceeds the
parent's by at most `cost_margin` nats/token; otherwise it asks again (up to
`max_attempts`) and finally keeps the parent. `metrics["sar_outcome"]` says
which ("accepted" / "kept_parent"), with the attempts and why each was
rejected. Items whose every attempt failed at the oracle are left undone, so
a rerun tries them again instead of silently keeping the parent. The gate's
counters (`sar_accepted`, ...) are in the stream's `streams.json` row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field

from stylealign.config import StreamSettings
from stylealign.metrics.adaptation import adaptation_cost
from stylealign.progress import counts_text
from stylealign.records import Trace, content_id
from stylealign.run.work import BatchResult, WorkItem
from stylealign.streams.context import StreamContext
from stylealign.streams.registry import Built, StreamSpec, settings_of
from stylealign.streams.verified import oracle_traces

NAME = "sar"
TEMPLATE = "sar"


class Settings(StreamSettings):
    """`streams.sar`."""

    exemplars: int = Field(3, ge=0)
    cost_margin: float = Field(0.1, ge=0, description="max allowed rise of student NLL over the parent, in nats/token")
    max_attempts: int = Field(2, ge=1)


def plan(sc: StreamContext, built: Built) -> list[WorkItem]:
    problems = sc.problem_by_id
    key = sc.keyer(NAME, **sc.oracle_parts(TEMPLATE), sar=settings_of(sc, NAME).model_dump())
    return [WorkItem(key(problems[t.problem_id], parent=t), problems[t.problem_id], t) for t in built["rft"]]


def _kept_parent(item: WorkItem, metrics: dict) -> Trace:
    parent = item.parent
    return Trace(
        id=content_id(NAME, item.key, "parent"), problem_id=parent.problem_id, text=parent.text, stream=NAME,
        parent_id=parent.id, model=parent.model, template=parent.template, sampling=parent.sampling,
        seed=parent.seed, correct=parent.correct, metrics={**metrics, "sar_outcome": "kept_parent"},
    )


def build(sc: StreamContext, items: list[WorkItem], built: Built) -> BatchResult:
    cfg = settings_of(sc, NAME)
    template = sc.oracle_template(TEMPLATE)
    student = sc.student()
    result = BatchResult()
    parent_nll = [c["nll"] for c in adaptation_cost(student, [sc.student_request(i.problem) for i in items], [i.parent.text for i in items])]
    rejections: list[list[str]] = [[] for _ in items]
    pending = list(range(len(items)))
    for attempt in range(cfg.max_attempts):
        if not pending:
            break
        batch = [items[i] for i in pending]
        requests = [
            template.request(question=it.problem.question, solution=it.parent.text, exemplars=sc.exemplars(built["rft"], it.problem, cfg.exemplars), id=it.parent.id)
            for it in batch
        ]
        traces = oracle_traces(sc, NAME, batch, requests, TEMPLATE, result, attempt)
        verified = [(i, t) for i, t in zip(pending, traces, strict=True) if t is not None and t.correct]
        costs = adaptation_cost(student, [sc.student_request(items[i].problem) for i, _ in verified], [t.text for _, t in verified])
        cost_of = {i: c["nll"] for (i, _), c in zip(verified, costs, strict=True)}
        still = []
        for i, trace in zip(pending, traces, strict=True):
            if trace is None:
                rejections[i].append("oracle_failure")
            elif not trace.correct:
                rejections[i].append(trace.metrics.get("excluded", "wrong_answer"))
                if "excluded" in trace.metrics:
                    result.exclude(items[i], trace)
            elif cost_of[i] - parent_nll[i] > cfg.cost_margin:
                rejections[i].append(f"cost_rise:{cost_of[i] - parent_nll[i]:.4f}")
            else:
                trace.metrics.update(
                    sar_outcome="accepted", sar_attempts=attempt + 1, rejections=rejections[i],
                    nll=cost_of[i], parent_nll=parent_nll[i], nll_delta=cost_of[i] - parent_nll[i],
                )
                result.keep(items[i], trace)
                result.done.append(items[i].key)
                result.count("accepted")
                continue
            still.append(i)
        pending = still
    for i in pending:
        if all(r == "oracle_failure" for r in rejections[i]):
            continue
        result.keep(items[i], _kept_parent(items[i], {"sar_attempts": len(rejections[i]), "rejections": rejections[i], "parent_nll": parent_nll[i]}))
        result.done.append(items[i].key)
        result.count("kept_parent")
    return result


def summarize(traces: Sequence[Trace]) -> dict[str, Any]:
    """What the gate did: refinements accepted (and of them, after a retry), parents kept, traces equal to their
    parent (the score stage's edit distance 0), and the rejected attempts per reason."""
    accepted = [t for t in traces if t.metrics.get("sar_outcome") == "accepted"]
    return {
        "sar_accepted": len(accepted),
        "sar_retried": sum(t.metrics.get("sar_attempts", 1) > 1 for t in accepted),
        "sar_kept_parent": sum(t.metrics.get("sar_outcome") == "kept_parent" for t in traces),
        "sar_identical_to_parent": sum(t.metrics.get("edit_distance") == 0 for t in traces),
        "sar_rejections": dict(sorted(Counter(
            reason.split(":")[0] for t in traces for reason in t.metrics.get("rejections", [])
        ).items())),
    }


def describe(row: Mapping[str, Any]) -> str:
    return (
        f"SAR gate: {row['sar_accepted']} accepted ({row['sar_retried']} after a retry), {row['sar_kept_parent']} "
        f"kept the parent, {row['sar_identical_to_parent']} of {row['traces']} equal their parent; attempts "
        f"rejected: {counts_text(row['sar_rejections'])}"
    )


SPEC = StreamSpec(NAME, plan, build, edits="rft", settings=Settings, summarize=summarize, describe=describe)
