"""The engines that answer in this process (hf, openai, vllm, lab-oracle): what a Ray actor holds.

Kept apart from `load_engine` so the ray engine can build its actors' engines
without importing the module that imports it.
"""

from __future__ import annotations

from stylealign.config import EngineConfig
from stylealign.engines.base import Engine


def load_in_process_engine(config: EngineConfig) -> Engine:
    """Build the in-process engine a config names; heavy backends are imported here, not at package import."""
    if config.type == "hf":
        from stylealign.engines.hf import HFEngine

        return HFEngine.from_config(config)
    if config.type == "openai" and config.serve:
        from stylealign.engines.served import ServedEngine

        return ServedEngine(config)
    if config.type == "openai":
        from stylealign.engines.openai_api import OpenAIEngine

        return OpenAIEngine.from_config(config)
    if config.type == "vllm":
        from stylealign.engines.vllm import VLLMEngine

        return VLLMEngine.from_config(config)
    if config.type == "lab-oracle":
        from stylealign.oracles.engine import OracleEngine

        return OracleEngine.from_config(config)
    if config.type == "ray":
        raise ValueError("engine type 'ray' inside a Ray actor: the actor's engine must run in its process (hf, openai, vllm, lab-oracle)")
    raise ValueError(f"unknown engine type {config.type!r}")
