"""Per-trace and per-stream measures of quality (correctness, reward) and compatibility (cost, drift)."""

from stylealign.metrics.score import score_stage

__all__ = ["score_stage"]
