"""evaluate: the base student and every trained stream model of every seed, sampled and graded on the test sets."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from stylealign.config import EngineConfig
from stylealign.datasets import load_problems
from stylealign.engines.base import SamplingParams
from stylealign.evaluation import (
    accuracy_summary,
    dataset_label,
    evaluate_engine,
    model_fingerprint,
)
from stylealign.records import Trace
from stylealign.run.context import RunContext
from stylealign.training import finished_model, seed_dir, weights_spec, with_weights


def eval_seed(ctx: RunContext, training_seed: int) -> int:
    """The evaluation sampling seed for one entry of `training.seeds`: the same for every model."""
    return ctx.config.seed + training_seed


def eval_targets(ctx: RunContext) -> list[tuple[str, int, EngineConfig]]:
    """(model name, training seed, engine): the base student once per seed, and each stream's model of each seed."""
    base = ctx.config.student.engine
    targets = []
    for seed in ctx.config.training.seeds:
        targets.append(("base", seed, base))
        for stream in ctx.streams:
            model_dir = finished_model(seed_dir(ctx.store.root, stream, seed))
            if model_dir is not None:
                targets.append((stream, seed, with_weights(base, str(model_dir))))
    return sorted(targets, key=lambda t: (t[0] != "base", t[0], t[1]))


def eval_traces(ctx: RunContext, name: str, seed: int, engine_cfg: EngineConfig) -> list[Trace]:
    """The records of stage `eval_<name>` made by this model, test sets, template, sampling and seed."""
    cfg = ctx.config.evaluation
    labels = {dataset_label(d) for d in cfg.datasets}
    model = model_fingerprint(weights_spec(engine_cfg))
    sampling = SamplingParams.from_config(cfg, seed=eval_seed(ctx, seed)).to_dict()
    template = ctx.student_template().name
    return [
        t
        for t in ctx.store.stage(f"eval_{name}").records(Trace)
        if t.model == model
        and t.metrics.get("dataset") in labels
        and t.sampling == sampling
        and t.template == template
        and t.metrics.get("k") == cfg.k
        and t.metrics.get("training_seed", 0) == seed
    ]


def model_traces(ctx: RunContext) -> dict[str, list[Trace]]:
    """Every evaluated model's current records over all its seeds, by model name ("base" or a stream)."""
    traces: dict[str, list[Trace]] = defaultdict(list)
    for name, seed, engine_cfg in eval_targets(ctx):
        traces[name] += eval_traces(ctx, name, seed, engine_cfg)
    return {name: found for name, found in traces.items() if found}


def evaluate_stage(ctx: RunContext) -> dict[str, Any]:
    """Evaluate the base student and every trained stream model of every seed on the configured test sets."""
    cfg = ctx.config.evaluation
    test_sets = [(dataset_label(d), load_problems(d)) for d in cfg.datasets]
    total = sum(len(p) for _, p in test_sets)
    template = ctx.student_template()
    ctx.release_engines()
    for name, seed, engine_cfg in eval_targets(ctx):
        ctx.console.print(f"evaluating [bold]{name}[/] (seed {seed}) on {total} problems × {cfg.k} samples")
        evaluate_engine(
            ctx.engine(engine_cfg),
            test_sets,
            template,
            cfg,
            ctx.store.stage(f"eval_{name}"),
            model=model_fingerprint(weights_spec(engine_cfg)),
            seed=eval_seed(ctx, seed),
            training_seed=seed,
        )
        ctx.release_engines()
    resamples = ctx.config.report.resamples
    results = {name: accuracy_summary(traces, cfg.k, resamples=resamples) for name, traces in model_traces(ctx).items()}
    ctx.store.write_json("eval.json", results)
    return {name: f"{r['accuracy']:.1%}" for name, r in results.items()}
