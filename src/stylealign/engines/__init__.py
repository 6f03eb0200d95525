"""Engines: one protocol (`Engine`), chosen by `engine.type` from a registry, imported only when selected.

`ENGINES` maps a type to a builder `EngineConfig -> Engine`; `stylealign.wiring`
registers the built-in ones (hf, openai, vllm, ray, lab-oracle), each importing
its backend only when called.
"""

from __future__ import annotations

from collections.abc import Callable

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
from stylealign.registry import Registry

__all__ = [
    "ENGINES",
    "Completion",
    "Engine",
    "EngineError",
    "Request",
    "SamplingParams",
    "TokenScores",
    "load_engine",
    "render_prompt",
]

ENGINES: Registry[Callable[[EngineConfig], Engine]] = Registry("engine type")


def load_engine(config: EngineConfig) -> Engine:
    """Build the engine a config names."""
    return ENGINES.get(config.type)(config)
