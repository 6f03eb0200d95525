"""The run's reward scorer: `reward.type` looked up in `REWARDS`, built once per run from its settings.

A builder takes the run context (the reward config, the judge's engine and template, the sampling
defaults) and returns a `RewardScorer`; `stylealign.wiring` registers the built-in types (none, lab, orm,
prm, judge). The score stage and GRAPE's CAR criterion share the scorer, so a reward model loads once.
"""

from __future__ import annotations

from collections.abc import Callable

from stylealign.engines.base import SamplingParams
from stylealign.metrics.reward import ClassifierReward, JudgeReward, NoReward, RewardScorer
from stylealign.models import resolve_model
from stylealign.registry import Registry
from stylealign.run.context import RunContext

REWARDS: Registry[Callable[[RunContext], RewardScorer]] = Registry("reward.type")


def run_scorer(ctx: RunContext) -> RewardScorer:
    cfg = ctx.config.reward
    return ctx.memo(f"reward_scorer:{cfg.model_dump_json()}", lambda: REWARDS.get(cfg.type)(ctx))


def no_reward(ctx: RunContext) -> RewardScorer:
    return NoReward()


def classifier_reward(ctx: RunContext) -> RewardScorer:
    cfg = ctx.config.reward
    if not cfg.model:
        raise ValueError(f"reward.type {cfg.type!r} needs reward.model (a sequence-classification model)")
    return ClassifierReward(
        resolve_model(cfg.model),
        per_step=cfg.type == "prm",
        separator=cfg.step_separator,
        batch_size=cfg.batch_size,
        trust_remote_code=cfg.trust_remote_code,
        name=cfg.model,
    )


def judge_reward(ctx: RunContext) -> RewardScorer:
    cfg = ctx.config.reward
    engine_config = cfg.engine or (ctx.config.oracle.engine if ctx.config.oracle else None)
    if engine_config is None:
        raise ValueError("reward.type 'judge' needs reward.engine (or an oracle) to run the judge")
    sampling = SamplingParams.from_config(
        ctx.config.sampling, seed=ctx.config.seed, temperature=0.0, top_p=1.0, max_tokens=cfg.max_tokens
    )
    return JudgeReward(
        lambda: ctx.engine(engine_config),
        ctx.template("judge"),
        sampling,
        retries=ctx.config.streams.oracle_retries,
        name=f"judge:{engine_config.model or engine_config.type}",
    )
