"""Avg@k and pass@k of the student before and after fine-tuning on each stream, with 95% intervals.

Every sample is kept as a graded `Trace` (stream "eval", `metrics` holding
`dataset`, `sample`, `k`, `finish_reason` and `training_seed`), so each
figure, and each paired comparison, can be recomputed from the records.

Each model is evaluated once per entry of `training.seeds` (a stream's model
trained with that seed; the base student, again, as a replicate), and the
evaluation sampling seed of seed s is `seed + s` for every model, so two
models' samples for one seed are drawn alike and can be paired.

The interval is a two-level stratified bootstrap: inside each test set,
problems (not samples, which are correlated within a problem) are resampled
with replacement, and the seeds are resampled with replacement; the statistic
is the mean over test sets of the mean over seeds of the per-set mean of
per-problem accuracy: the point estimate's statistic (the paper's mean Avg@k
over benchmarks, averaged over seeds). A paired contrast bootstraps the
per-problem, per-seed *difference* of two models the same way, so the problems'
shared difficulty cancels. Percentile intervals, fixed seed, so reruns agree.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stylealign.config import DatasetConfig, EvaluationConfig
from stylealign.engines.base import Engine, SamplingParams
from stylealign.prompts import PromptTemplate
from stylealign.records import Problem, Trace, content_id
from stylealign.run.work import work_key
from stylealign.store import Stage

CHUNK = 32
"""Test problems per engine call and per committed chunk (x k samples: 128 rows at the demo's k=4)."""


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


def bootstrap_means(
    tables: Sequence[np.ndarray], *, resamples: int = 2000, seed: int = 0
) -> np.ndarray:
    """Bootstrap replicates of the mean over tables of (seeds × problems) tables, resampling problems and seeds."""
    rng = np.random.default_rng(seed)
    total = np.zeros(resamples)
    for table in tables:
        n_seeds, n_problems = table.shape
        problems = rng.integers(0, n_problems, size=(resamples, n_problems))
        seeds = rng.integers(0, n_seeds, size=(resamples, n_seeds))
        per_seed = table[:, problems].mean(axis=2).T  # resamples × seeds
        total += np.take_along_axis(per_seed, seeds, axis=1).mean(axis=1)
    return total / len(tables)


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    tail = (1 - level) / 2
    low, high = np.quantile(replicates, [tail, 1 - tail])
    return float(low), float(high)


def bootstrap_ci(
    groups: Sequence[Sequence[float]], *, level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of the mean of group means, resampling items within each group."""
    tables = [np.asarray([list(g)], dtype=float) for g in groups if g]
    if not tables:
        raise ValueError("a confidence interval needs at least one value")
    return percentile_interval(bootstrap_means(tables, resamples=resamples, seed=seed), level)


ScoreTable = dict[str, dict[int, dict[str, float]]]  # test set -> seed -> problem id -> share of samples correct


def problem_scores(traces: Iterable[Trace]) -> ScoreTable:
    """Per test set, seed and problem, the share of the samples that are correct: what pairing needs."""
    hits: dict[str, dict[int, dict[str, list[bool]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for trace in traces:
        hits[trace.metrics["dataset"]][trace.metrics.get("training_seed", 0)][trace.problem_id].append(bool(trace.correct))
    return {
        name: {seed: {pid: sum(c) / len(c) for pid, c in problems.items()} for seed, problems in seeds.items()}
        for name, seeds in hits.items()
    }


def _tables(scores: ScoreTable, others: Sequence[ScoreTable] = ()) -> list[np.ndarray]:
    """(seeds × problems) arrays per test set, on the seeds and problems that every one of `others` has too."""
    tables = []
    for name, by_seed in sorted(scores.items()):
        seeds = sorted(s for s in by_seed if all(s in o.get(name, {}) for o in others))
        if not seeds:
            continue
        problems = sorted(set.intersection(*(set(by_seed[s]) for s in seeds)))
        problems = [p for p in problems if all(p in o[name][s] for o in others for s in seeds)]
        if problems:
            tables.append(np.array([[by_seed[s][p] for p in problems] for s in seeds]))
    return tables


def paired_contrast(
    better: ScoreTable, worse: ScoreTable, *, level: float = 0.95, resamples: int = 2000
) -> dict[str, Any] | None:
    """acc(better) - acc(worse) on their common test sets, seeds and problems, with a paired bootstrap interval.

    None when the two share no evaluated problem. `se` is the bootstrap standard error of the difference.
    """
    a, b = _tables(better, [worse]), _tables(worse, [better])
    if not a:
        return None
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    replicates = bootstrap_means(diffs, resamples=resamples)
    low, high = percentile_interval(replicates, level)
    return {
        "diff": float(sum(d.mean() for d in diffs) / len(diffs)),
        "ci_low": low,
        "ci_high": high,
        "se": float(replicates.std()),
        "resolved": low > 0 or high < 0,
        "problems": sum(d.shape[1] for d in diffs),
        "seeds": max(d.shape[0] for d in diffs),
    }


def dataset_label(cfg: DatasetConfig) -> str:
    """A readable name for a test set, e.g. `math500:test` or `lab:test[:50]`."""
    window = (
        f"[{cfg.offset}:{cfg.offset + cfg.limit}]"
        if cfg.limit
        else (f"[{cfg.offset}:]" if cfg.offset else "")
    )
    return f"{Path(cfg.source).name if '/' in cfg.source else cfg.source}:{cfg.split}{window}"


def accuracy_summary(traces: Iterable[Trace], k: int | None = None, *, resamples: int = 2000) -> dict[str, Any]:
    """Avg@k, pass@k, the 95% interval (problems and seeds), per-seed accuracy and length cuts from eval traces.

    Accuracy is the mean over test sets of the mean over seeds; `length_cut` is the share of samples that
    stopped at `max_tokens` (graded wrong unless they state their answer explicitly before the cut).
    """
    traces = list(traces)
    by_set: dict[str, dict[int, dict[str, list[bool]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for trace in traces:
        seed = trace.metrics.get("training_seed", 0)
        by_set[trace.metrics["dataset"]][seed][trace.problem_id].append(bool(trace.correct))
    if not by_set:
        return {"accuracy": None, "ci_low": None, "ci_high": None, "pass_at_k": None, "k": k, "seeds": [],
                "length_cut": None, "datasets": {}}
    scores = problem_scores(traces)
    datasets: dict[str, Any] = {}
    for name, by_seed in sorted(by_set.items()):
        per_seed = {seed: list(problems.values()) for seed, problems in sorted(by_seed.items())}
        n = min(len(s) for samples in per_seed.values() for s in samples)
        kk = min(k or n, n)
        low, high = percentile_interval(bootstrap_means(_tables({name: scores[name]}), resamples=resamples))
        datasets[name] = {
            "problems": max(len(samples) for samples in per_seed.values()),
            "samples": sum(len(s) for samples in per_seed.values() for s in samples),
            "avg_at_k": sum(avg_at_k(samples) for samples in per_seed.values()) / len(per_seed),
            "pass_at_k": sum(
                sum(pass_at_k(len(s), sum(s), kk) for s in samples) / len(samples) for samples in per_seed.values()
            ) / len(per_seed),
            "seed_accuracy": {seed: avg_at_k(samples) for seed, samples in per_seed.items()},
            "k": kk,
            "ci_low": low,
            "ci_high": high,
        }
    low, high = percentile_interval(bootstrap_means(_tables(scores), resamples=resamples))
    seed_accuracy = [d.pop("seed_accuracy") for d in datasets.values()]
    seeds = sorted(set.intersection(*(set(acc) for acc in seed_accuracy)))
    cut = sum(t.metrics.get("finish_reason") == "length" for t in traces) / len(traces)
    return {
        "accuracy": sum(d["avg_at_k"] for d in datasets.values()) / len(datasets),
        "pass_at_k": sum(d["pass_at_k"] for d in datasets.values()) / len(datasets),
        "k": k,
        "ci_low": low,
        "ci_high": high,
        "seeds": [
            {"seed": seed, "accuracy": sum(acc[seed] for acc in seed_accuracy) / len(seed_accuracy)}
            for seed in seeds
        ],
        "length_cut": cut,
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
    training_seed: int = 0,
) -> None:
    """Sample k answers per test problem, grade them, commit per chunk; already committed chunks are skipped.

    `seed` draws the samples; `training_seed` is the entry of `training.seeds` they belong to.
    """
    from stylealign.run.work import sample_and_grade

    sampling = SamplingParams.from_config(cfg, seed=seed)
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
                    grading={"last_number": cfg.last_number, "cut_samples": "explicit_only"},
                )
                for p in chunk
            }
            todo = [p for p in chunk if keys[p.id] not in done]
            if todo:
                outputs = sample_and_grade(
                    engine, [template.request(question=p.question) for p in todo], [p.answer for p in todo], cfg.k, sampling,
                    training=False, last_number=cfg.last_number,
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
                        correct=verdict.correct,
                        metrics={
                            "dataset": label,
                            "sample": i,
                            "k": cfg.k,
                            "finish_reason": completion.finish_reason,
                            "training_seed": training_seed,
                        },
                    )
                    for p, completions in zip(todo, outputs, strict=True)
                    for i, (completion, verdict) in enumerate(completions)
                ]
                stage.commit(records, [keys[p.id] for p in todo])


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
