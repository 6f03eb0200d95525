"""Avg@k and pass@k of the student before and after fine-tuning on each stream, with 95% intervals.

Every sample is kept as a graded `Trace` (stream "eval", `metrics` holding
`dataset`, `sample` and `k`), so each figure can be recomputed from the records.

The interval is a stratified cluster bootstrap: problems (not samples, which
are correlated within a problem) are resampled with replacement inside each
test set, and the statistic is the mean over test sets of the per-set mean of
per-problem accuracy — the same statistic as the point estimate (the paper's
mean Avg@k over benchmarks). Percentile interval, fixed seed, so reruns agree.
"""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from stylealign.config import DatasetConfig, EngineConfig, EvaluationConfig
from stylealign.engines.base import Engine, SamplingParams
from stylealign.prompts import PromptTemplate
from stylealign.records import Problem, Trace, content_id
from stylealign.store import Stage, work_key

CHUNK = 16


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021): 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def avg_at_k(correct: Sequence[Sequence[bool]]) -> float:
    """Mean over problems of the fraction of a problem's samples that are correct."""
    if not correct:
        raise ValueError("avg@k of no problems")
    return sum(sum(c) / len(c) for c in correct) / len(correct)


def bootstrap_ci(
    groups: Sequence[Sequence[float]], *, level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of the mean of group means, resampling items within each group."""
    groups = [list(g) for g in groups if g]
    if not groups:
        raise ValueError("a confidence interval needs at least one value")
    rng = random.Random(seed)
    stats = sorted(
        sum(sum(rng.choices(g, k=len(g))) / len(g) for g in groups) / len(groups) for _ in range(resamples)
    )
    tail = (1 - level) / 2
    low = stats[max(0, math.floor(tail * resamples))]
    high = stats[min(resamples - 1, math.ceil((1 - tail) * resamples) - 1)]
    return low, high


def dataset_label(cfg: DatasetConfig) -> str:
    """A readable name for a test set, e.g. `math500:test` or `lab:test[:50]`."""
    window = (
        f"[{cfg.offset}:{cfg.offset + cfg.limit}]"
        if cfg.limit
        else (f"[{cfg.offset}:]" if cfg.offset else "")
    )
    return f"{Path(cfg.source).name if '/' in cfg.source else cfg.source}:{cfg.split}{window}"


def summarize(traces: Iterable[Trace], k: int | None = None) -> dict[str, Any]:
    """Avg@k, pass@k and the 95% interval per test set and overall (mean over test sets) from eval traces."""
    by_problem: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for trace in traces:
        by_problem[trace.metrics["dataset"]][trace.problem_id].append(bool(trace.correct))
    if not by_problem:
        return {"accuracy": None, "ci_low": None, "ci_high": None, "pass_at_k": None, "k": k, "datasets": {}}
    datasets: dict[str, Any] = {}
    groups = []
    for name, problems in sorted(by_problem.items()):
        samples = list(problems.values())
        n = min(len(s) for s in samples)
        kk = min(k or n, n)
        per_problem = [sum(s) / len(s) for s in samples]
        low, high = bootstrap_ci([per_problem])
        datasets[name] = {
            "problems": len(samples),
            "samples": sum(len(s) for s in samples),
            "avg_at_k": avg_at_k(samples),
            "pass_at_k": sum(pass_at_k(len(s), sum(s), kk) for s in samples) / len(samples),
            "k": kk,
            "ci_low": low,
            "ci_high": high,
        }
        groups.append(per_problem)
    low, high = bootstrap_ci(groups)
    return {
        "accuracy": sum(d["avg_at_k"] for d in datasets.values()) / len(datasets),
        "pass_at_k": sum(d["pass_at_k"] for d in datasets.values()) / len(datasets),
        "k": k,
        "ci_low": low,
        "ci_high": high,
        "datasets": datasets,
    }


def evaluate_engine(
    engine: Engine,
    test_sets: Sequence[tuple[str, list[Problem]]],
    template: PromptTemplate,
    cfg: EvaluationConfig,
    stage: Stage,
    *,
    model: str,
    seed: int,
) -> None:
    """Sample k answers per test problem, grade them, commit per chunk; already committed chunks are skipped."""
    from stylealign.streams.sample import sample_and_grade

    sampling = sampling_params(cfg, seed)
    done = stage.done_keys()
    for label, problems in test_sets:
        for start in range(0, len(problems), CHUNK):
            chunk = problems[start : start + CHUNK]
            keys = {
                p.id: work_key(
                    stage.name,
                    model=model,
                    template=(template.name, template.system, template.user),
                    problem=p.id,
                    question=p.question,
                    answer=p.answer,
                    dataset=label,
                    k=cfg.k,
                    sampling=sampling.to_dict(),
                )
                for p in chunk
            }
            todo = [p for p in chunk if keys[p.id] not in done]
            if todo:
                outputs = sample_and_grade(
                    engine, [template.request(question=p.question) for p in todo], [p.answer for p in todo], cfg.k, sampling
                )
                records = [
                    Trace(
                        id=content_id(keys[p.id], i),
                        problem_id=p.id,
                        text=completion.text,
                        stream="eval",
                        model=model,
                        template=template.name,
                        sampling=sampling.to_dict(),
                        seed=seed,
                        correct=ok,
                        metrics={
                            "dataset": label,
                            "sample": i,
                            "k": cfg.k,
                            "finish_reason": completion.finish_reason,
                        },
                    )
                    for p, completions in zip(todo, outputs, strict=True)
                    for i, (completion, ok) in enumerate(completions)
                ]
                stage.commit(records, [keys[p.id] for p in todo])


def sampling_params(cfg: EvaluationConfig, seed: int) -> SamplingParams:
    return SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens, seed=seed)


def model_fingerprint(model: str) -> str:
    """What identifies a model's weights: a trained directory's training key, else the resolved model path or id.

    Resolving ties `lab:student` and `package:` specs to their recipe or file hash, so new weights are re-evaluated.
    """
    from stylealign.models import resolve_model
    from stylealign.training import TRAINING_INFO

    resolved = resolve_model(model)
    info = Path(resolved) / TRAINING_INFO
    if info.is_file():
        return f"trained:{json.loads(info.read_text(encoding='utf-8'))['key']}"
    return resolved


def eval_targets(ctx: Any) -> list[tuple[str, EngineConfig]]:
    """("base", the student's engine) and (stream, the same engine on DIR/train/<stream>/model) per trained stream."""
    from stylealign.training import finished_model, with_weights

    base = ctx.config.student.engine
    targets = [("base", base)]
    for stream in ctx.streams:
        model_dir = finished_model(ctx.store.root / "train" / stream)
        if model_dir is not None:
            targets.append((stream, with_weights(base, str(model_dir))))
    return targets


def eval_traces(ctx: Any, name: str, engine_cfg: EngineConfig) -> list[Trace]:
    """The records of stage `eval_<name>` made by this model, test sets, template and sampling (older runs' ignored)."""
    from stylealign.training import weights_spec

    cfg = ctx.config.evaluation
    labels = {dataset_label(d) for d in cfg.datasets}
    model = model_fingerprint(weights_spec(engine_cfg))
    sampling = sampling_params(cfg, ctx.config.seed).to_dict()
    template = ctx.student_template().name
    return [
        t
        for t in ctx.store.stage(f"eval_{name}").records(Trace)
        if t.model == model
        and t.metrics.get("dataset") in labels
        and t.sampling == sampling
        and t.template == template
        and t.metrics.get("k") == cfg.k
    ]


def evaluate_stage(ctx: Any) -> dict[str, Any]:
    """Evaluate the base student and every trained stream model on the configured test sets."""
    from stylealign.datasets import load_problems
    from stylealign.training import weights_spec

    cfg = ctx.config.evaluation
    test_sets = [(dataset_label(d), load_problems(d)) for d in cfg.datasets]
    total = sum(len(p) for _, p in test_sets)
    template = ctx.student_template()
    results: dict[str, Any] = {}
    ctx.release_engines()
    for name, engine_cfg in eval_targets(ctx):
        ctx.console.print(f"evaluating [bold]{name}[/] on {total} problems × {cfg.k} samples")
        evaluate_engine(
            ctx.engine(engine_cfg),
            test_sets,
            template,
            cfg,
            ctx.store.stage(f"eval_{name}"),
            model=model_fingerprint(weights_spec(engine_cfg)),
            seed=ctx.config.seed,
        )
        ctx.release_engines()
        results[name] = summarize(eval_traces(ctx, name, engine_cfg), cfg.k)
    ctx.store.write_json("eval.json", results)
    return {name: f"{r['accuracy']:.1%}" if r["accuracy"] is not None else "-" for name, r in results.items()}
