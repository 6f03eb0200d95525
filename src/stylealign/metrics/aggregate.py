"""Per-stream aggregates of per-trace metrics: coverage, correctness, reward, global and quarter PPL.

Stream PPL is corpus-level: exp of the token-weighted mean NLL over all of the
stream's response tokens (each quarter likewise over its quarter tokens), so
long and short traces count by the tokens the student must learn. The
predictors of utility (mean rank, RSR, CAR, GRAPE likelihood) are added per
stream as `metrics/predictors.py` defines them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from stylealign.metrics.adaptation import QUARTERS
from stylealign.metrics.predictors import stream_predictors
from stylealign.records import Trace


def coverage(traces: Sequence[Trace], problem_ids: Sequence[str]) -> float:
    """Share of problems with at least one kept trace."""
    wanted = set(problem_ids)
    return len({t.problem_id for t in traces} & wanted) / len(wanted) if wanted else 0.0


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _weighted_ppl(pairs: list[tuple[float | None, int]]) -> float | None:
    pairs = [(nll, n) for nll, n in pairs if nll is not None and n]
    tokens = sum(n for _, n in pairs)
    return math.exp(sum(nll * n for nll, n in pairs) / tokens) if tokens else None


def stream_summary(traces: Sequence[Trace], problem_ids: Sequence[str]) -> dict[str, Any]:
    m = [t.metrics for t in traces]
    row: dict[str, Any] = {
        "traces": len(traces),
        "problems": len({t.problem_id for t in traces}),
        "coverage": coverage(traces, problem_ids),
        "correctness": _mean([float(t.correct) for t in traces if t.correct is not None]),
        "reward": _mean([x["reward"] for x in m if x.get("reward") is not None]),
        "ppl": _weighted_ppl([(x.get("nll"), x.get("tokens", 0)) for x in m]),
    }
    for i, q in enumerate(QUARTERS):
        row[f"ppl_{q}"] = _weighted_ppl([(x.get(f"nll_{q}"), (x.get("quarter_tokens") or [0] * 4)[i]) for x in m])
    row["mean_trace_ppl"] = _mean([x["ppl"] for x in m if x.get("ppl") is not None])
    tokens = sum(x.get("tokens", 0) for x in m if "improbable_tokens" in x)
    row["improbable_token_share"] = sum(x.get("improbable_tokens", 0) for x in m) / tokens if tokens else None
    edits = [x["edit_distance"] for x in m if x.get("edit_distance") is not None]
    row["edit_distance"] = _mean(edits)
    row.update(stream_predictors(m))
    return row
