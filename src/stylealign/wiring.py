"""What each registry holds: the built-in engines, reward types and model sources, one line each.

The registries live with the protocols they serve (`engines.ENGINES`, `run.rewards.REWARDS`,
`models.MODEL_SOURCES`); filling them here, at the top, keeps every lower layer free of the modules that
plug into it (an engine registry that knew the lab oracle would import upward). Every builder imports its
backend only when called. `import stylealign` runs this module, so a registry is full wherever
stylealign is used, Ray workers included; adding an engine, reward or source is one `register` line.
"""

from __future__ import annotations

from pathlib import Path

from stylealign.config import EngineConfig
from stylealign.engines import ENGINES, Engine
from stylealign.metrics.reward import RewardScorer
from stylealign.models import MODEL_SOURCES
from stylealign.run.context import RunContext
from stylealign.run.rewards import REWARDS, classifier_reward, judge_reward, no_reward


def hf_engine(config: EngineConfig) -> Engine:
    from stylealign.engines.hf import HFEngine

    return HFEngine.from_config(config)


def openai_engine(config: EngineConfig) -> Engine:
    """An OpenAI-compatible server; with `serve: true`, one this run starts (`stylealign serve`) and stops."""
    if config.serve:
        from stylealign.engines.served import ServedEngine

        return ServedEngine(config)
    from stylealign.engines.openai_api import OpenAIEngine

    return OpenAIEngine.from_config(config)


def vllm_engine(config: EngineConfig) -> Engine:
    from stylealign.engines.vllm import VLLMEngine

    return VLLMEngine.from_config(config)


def ray_engine(config: EngineConfig) -> Engine:
    from stylealign.engines.ray import RayEngine

    return RayEngine.from_config(config)


def lab_oracle_engine(config: EngineConfig) -> Engine:
    from stylealign.oracles.engine import OracleEngine

    return OracleEngine.from_config(config)


def lab_reward_scorer(ctx: RunContext) -> RewardScorer:
    from stylealign.lab.reward import LabReward

    return LabReward(ctx.config.reward.style_preference)


def gguf_source(path: str) -> Path:
    from stylealign.gguf import convert_gguf

    return convert_gguf(Path(path))


def package_source(name: str) -> Path:
    """`NAME`: one distribution shipping a GGUF file; `STEM*`: a GGUF split over `STEM1` ... `STEMN`."""
    from stylealign.gguf import convert_gguf, find_package_gguf
    from stylealign.gguf_parts import assemble, find_parts

    if name.endswith("*"):
        assembled = assemble(find_parts(name))
        return convert_gguf(assembled, digest=assembled.stem)  # named by its digest: not hashed again
    return convert_gguf(find_package_gguf(name))


def known_source(name: str) -> Path:
    from stylealign.known_models import resolve_known

    return resolve_known(name)


def lab_source(name: str) -> Path:
    from stylealign.lab.student import ensure_student

    return ensure_student(name)


ENGINES.register("hf", hf_engine)
ENGINES.register("openai", openai_engine)
ENGINES.register("vllm", vllm_engine)
ENGINES.register("ray", ray_engine)
ENGINES.register("lab-oracle", lab_oracle_engine)

REWARDS.register("none", no_reward)
REWARDS.register("lab", lab_reward_scorer)
REWARDS.register("orm", classifier_reward)
REWARDS.register("prm", classifier_reward)
REWARDS.register("judge", judge_reward)

MODEL_SOURCES.register("gguf", gguf_source)
MODEL_SOURCES.register("package", package_source)
MODEL_SOURCES.register("known", known_source)
MODEL_SOURCES.register("lab", lab_source)
