"""The train stage: one model per selected stream and training seed, all under one budget rule.

The trainer itself (`stylealign.training.fine_tune`) knows nothing of runs; this stage picks each stream's
examples from the run store (on the problems every stream covers, with `streams.match_problems`), trains
every seed into DIR/train/<stream>/seed-<seed>/model and writes `train/summary.json`.
"""

from __future__ import annotations

import json
from typing import Any

from stylealign.distributed import is_main_process
from stylealign.engines.base import Request
from stylealign.models import resolve_model
from stylealign.progress import library_bars
from stylealign.run.context import RunContext
from stylealign.streams.listing import stream_traces
from stylealign.training import TRAINING_INFO, fine_tune, seed_dir, weights_spec


def stream_examples(ctx: RunContext, stream: str, problem_ids: set[str] | None = None) -> list[tuple[Request, str]]:
    """The (student request, trace text) pairs of the current traces of one stream (on `problem_ids` when given)."""
    problems = ctx.problem_by_id()
    template = ctx.student_template()
    examples = []
    for trace in stream_traces(ctx.store, stream):
        problem = problems.get(trace.problem_id)
        if problem is None:
            raise ValueError(
                f"stream {stream!r}: trace {trace.id} names unknown problem {trace.problem_id!r}"
            )
        if problem_ids is None or problem.id in problem_ids:
            examples.append((template.request(question=problem.question), trace.text))
    return examples


def matched_problems(ctx: RunContext) -> set[str] | None:
    """With `streams.match_problems`, the problem ids every non-empty selected stream covers; else None (all)."""
    if not ctx.config.streams.match_problems:
        return None
    covered = [{t.problem_id for t in stream_traces(ctx.store, stream)} for stream in ctx.streams]
    covered = [ids for ids in covered if ids]
    return set.intersection(*covered) if covered else set()


def _mean_last_loss(infos: Any) -> float | None:
    losses = [info["last_loss"] for info in infos if info.get("last_loss") is not None]
    return sum(losses) / len(losses) if losses else None


def length_warning(longest_response: int, max_tokens: int) -> str | None:
    """A warning when evaluation may cut answers as long as the training traces (a cut answer is graded wrong)."""
    if max_tokens >= 1.5 * longest_response:
        return None
    return (
        f"evaluation.max_tokens={max_tokens} is below 1.5x the longest training trace ({longest_response} tokens): "
        "a model that imitates its stream well may be cut off and graded wrong; see each model's length-cut share"
    )


def train_stage(ctx: RunContext) -> dict[str, Any]:
    """One model per selected stream and seed into DIR/train/<stream>/seed-<seed>/model, all under one budget rule."""
    ctx.release_engines()
    cfg = ctx.config.training
    base = resolve_model(weights_spec(ctx.config.student.engine))
    common = matched_problems(ctx)
    trained, skipped, streams = [], [], {}
    for stream in ctx.streams:
        examples = stream_examples(ctx, stream, common)
        if not examples:
            skipped.append(stream)
            streams[stream] = {"skipped": "no traces"}
            continue
        seeds = {}
        for seed in cfg.seeds:
            if library_bars():  # the trainer's bar follows on a terminal; a log gets the summary line alone
                ctx.console.print(f"training on [bold]{stream}[/] ({len(examples)} examples, seed {seed})")
            model_dir = fine_tune(base, examples, cfg, seed_dir(ctx.store.root, stream, seed), seed=seed)
            info = json.loads((model_dir / TRAINING_INFO).read_text(encoding="utf-8"))
            info.pop("config", None)
            seeds[str(seed)] = info
            loss = "-" if info.get("last_loss") is None else f"{info['last_loss']:.4f}"
            ctx.console.print(
                f"trained [bold]{stream}[/] seed {seed}: {len(examples)} examples, {info['steps']} steps, "
                f"final loss {loss}, {info['seconds']} s"
            )
        first = next(iter(seeds.values()))
        streams[stream] = {
            key: first[key] for key in ("examples", "tokens", "longest_response_tokens", "steps", "epochs", "tokens_trained")
        } | {"final_loss": _mean_last_loss(seeds.values()), "seeds": seeds}
        trained.append(stream)
    longest = max((s["longest_response_tokens"] for s in streams.values() if "seeds" in s), default=0)
    warning = length_warning(longest, ctx.config.evaluation.max_tokens) if longest else None
    if warning:
        ctx.console.print(f"[yellow]warning:[/] {warning}")
    if is_main_process():
        ctx.store.write_json(
            "train/summary.json",
            {
                "match_problems": ctx.config.streams.match_problems,
                "matched_problems": None if common is None else len(common),
                "budget": cfg.budget.model_dump(exclude_none=True),
                "seeds": cfg.seeds,
                "warnings": [warning] if warning else [],
                "streams": streams,
            },
        )
    return {"trained": ",".join(trained) or "-", "skipped (no traces)": ",".join(skipped) or "-", "seeds": len(cfg.seeds)}
