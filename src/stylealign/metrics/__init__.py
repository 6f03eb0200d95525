"""Per-trace and per-stream measures of quality (correctness, reward) and compatibility (cost, drift); the score stage is `stages/score.py`."""
