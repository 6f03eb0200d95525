"""Engines: one protocol (`Engine`), chosen by config, imported only when selected."""

from __future__ import annotations

from stylealign.config import EngineConfig
from stylealign.engines.base import (
    Completion,
    Engine,
    EngineError,
    Request,
    SamplingParams,
    TokenScores,
    render_prompt,
)
from stylealign.engines.in_process import load_in_process_engine

__all__ = [
    "Completion",
    "Engine",
    "EngineError",
    "Request",
    "SamplingParams",
    "TokenScores",
    "load_engine",
    "render_prompt",
]


def load_engine(config: EngineConfig) -> Engine:
    """Build the engine a config names: a Ray cluster of engines, or one engine in this process."""
    if config.type == "ray":
        from stylealign.engines.ray import RayEngine

        return RayEngine.from_config(config)
    return load_in_process_engine(config)
