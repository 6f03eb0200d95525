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
    """Build the engine a config names; heavy backends are imported here, not at package import."""
    if config.type == "hf":
        from stylealign.engines.hf import HFEngine

        return HFEngine.from_config(config)
    if config.type == "openai":
        from stylealign.engines.openai_api import OpenAIEngine

        return OpenAIEngine.from_config(config)
    if config.type == "vllm":
        from stylealign.engines.vllm import VLLMEngine

        return VLLMEngine.from_config(config)
    if config.type == "ray":
        from stylealign.engines.ray import RayEngine

        return RayEngine.from_config(config)
    if config.type == "lab-oracle":
        from stylealign.lab.oracle import LabOracleEngine

        return LabOracleEngine.from_config(config)
    raise ValueError(f"unknown engine type {config.type!r}")
