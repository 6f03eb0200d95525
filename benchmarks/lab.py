"""The lab as an instrument: is the student fallible by difficulty, stable, and is the cost gap realistic?

Builds the lab student into a temporary cache (and, unless --no-rebuilds, twice more: with one thread and
with another recipe seed), then measures on the same lab test problems: greedy accuracy overall and by
difficulty level, pass@k at T=1; and, on streams built from the same train problems (the student's own
correct samples, the lab oracle's SAR, Oracle-Refined and Oracle-Synthesized versions, the gold
reference), the student's perplexity on each, the share of SAR outputs identical to their parent, and the
share of tokens the student never trained on.

    .venv/bin/python benchmarks/lab.py [--problems 200] [--train-problems 100] [--no-rebuilds] [--student DIR]
                                       [--set oracle_fraction=0.03 ...]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from stylealign.engines.base import Request, SamplingParams
from stylealign.engines.hf import HFEngine
from stylealign.grading import grade
from stylealign.lab.student import RECIPES, pretrain, untrained_token_share
from stylealign.lab.world import load_lab_problems
from stylealign.oracles.lab import LabOracle
from stylealign.records import Problem


def build(recipe: dict[str, Any], root: Path, name: str) -> tuple[Path, dict[str, Any]]:
    out = root / name
    start = time.perf_counter()
    info = pretrain(out, recipe, log=lambda msg: print(f"[{name}] {msg}", flush=True))
    print(f"[{name}] built in {time.perf_counter() - start:.1f}s (final loss {info['final_loss']})", flush=True)
    return out, info


def greedy_by_level(engine: HFEngine, problems: list[Problem]) -> tuple[float, dict[int, float], list[str]]:
    requests = [Request.from_prompt(p.question) for p in problems]
    texts = [row[0].text for row in engine.generate(requests, 1, SamplingParams(temperature=0.0, max_tokens=300))]
    levels: dict[int, list[bool]] = defaultdict(list)
    for text, problem in zip(texts, problems, strict=True):
        levels[problem.metadata["level"]].append(grade(text, problem.answer))
    overall = sum(sum(v) for v in levels.values()) / len(problems)
    return overall, {k: sum(v) / len(v) for k, v in sorted(levels.items())}, texts


def ppl(engine: HFEngine, problems: list[Problem], texts: list[str]) -> float:
    scores = engine.score([Request.from_prompt(p.question) for p in problems], texts)
    return math.exp(-sum(sum(s.logprobs) for s in scores) / sum(len(s.logprobs) for s in scores))


def recipe_with(settings: list[str]) -> dict[str, Any]:
    """The shipped student recipe with `KEY=JSON` settings applied (and `threads`, the build's thread count)."""
    recipe = dict(RECIPES["student"])
    for setting in settings:
        key, _, value = setting.partition("=")
        if key not in recipe and key != "threads":
            raise SystemExit(f"--set {setting}: no recipe value {key!r}; choose from {sorted(recipe)}")
        recipe[key] = json.loads(value)
    return recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=200, help="lab test problems for accuracy")
    parser.add_argument("--train-problems", type=int, default=100, help="lab train problems the streams are built from")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--no-rebuilds", action="store_true", help="skip the one-thread and other-seed rebuilds")
    parser.add_argument("--student", type=Path, help="measure this built student (e.g. the cached one) instead of building it")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="change one recipe value for this run (the mixture sweep: --set oracle_fraction=0.03)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="stylealign-lab-"))
    os.environ["STYLEALIGN_CACHE"] = str(root)
    recipe = recipe_with(args.set)
    if args.student:
        path, info = args.student, json.loads((args.student / "recipe.json").read_text(encoding="utf-8"))
        if info["recipe"] != recipe:
            raise SystemExit(f"{args.student} was built with another recipe than this run's (RECIPES['student'] and --set)")
    else:
        path, info = build(recipe, root, "student")
    test = load_lab_problems("test", limit=args.problems)
    measures = measure(path, test, args.train_problems, args.k)

    rebuilt = {}
    if not args.no_rebuilds:
        for name, variant in (("threads1", {**recipe, "threads": 1}), ("seed1", {**recipe, "seed": 1})):
            other, _ = build(variant, root, name)
            same = (other / "model.safetensors").read_bytes() == (path / "model.safetensors").read_bytes()
            print(f"[{name}] weights byte-identical to the measured student: {same}")
            acc, levels, _ = greedy_by_level(HFEngine(str(other), device="cpu", batch_size=50, progress=False), test)
            print(f"[{name}] greedy by level: " + ", ".join(f"L{k} {v:.2f}" for k, v in levels.items()))
            rebuilt[name] = acc

    print("note: wall times on a shared 2-core machine are noisy")
    print(f"greedy_accuracy={measures.pop('greedy_accuracy'):.4f}")
    for name, acc in rebuilt.items():
        print(f"greedy_accuracy_{name}={acc:.4f}")
    for name, value in measures.items():
        print(f"{name}={value:.4f}")
    print(f"pretrain_seconds={info['seconds']:.1f}")


def measure(path: Path, test: list[Problem], train_problems: int, k: int) -> dict[str, float]:
    """The instrument's measures of the student in `path`, in the order the benchmark prints them."""
    engine = HFEngine(str(path), device="cpu", batch_size=50, progress=False)
    greedy, by_level, _ = greedy_by_level(engine, test)
    print("greedy accuracy by level: " + ", ".join(f"L{k} {v:.2f}" for k, v in by_level.items()))

    requests = [Request.from_prompt(p.question) for p in test]
    samples = engine.generate(requests, k, SamplingParams(temperature=1.0, max_tokens=300, seed=0))
    pass_k = sum(any(grade(c.text, p.answer) for c in row) for row, p in zip(samples, test, strict=True)) / len(test)

    train = load_lab_problems("train", limit=train_problems)
    train_samples = engine.generate([Request.from_prompt(p.question) for p in train], k,
                                    SamplingParams(temperature=1.0, max_tokens=300, seed=0))
    oracle = LabOracle()
    solved = [(p, next(c.text for c in row if grade(c.text, p.answer)))
              for p, row in zip(train, train_samples, strict=True) if any(grade(c.text, p.answer) for c in row)]
    solved_problems = [p for p, _ in solved]
    rft = [t for _, t in solved]
    streams = {
        "rft": (solved_problems, rft),
        "sar": (solved_problems, [oracle.refine_style_aligned(p, t, seed=0) for p, t in solved]),
        "oracle_refine": (solved_problems, [oracle.refine(p, t) for p, t in solved]),
        "oracle_synth": (train, [oracle.solve(p) for p in train]),
        "gold": (train, [p.reference_solution or "" for p in train]),
    }
    ppls = {name: ppl(engine, probs, texts) for name, (probs, texts) in streams.items()}
    untrained = {name: untrained_token_share(path, texts) or 0.0 for name, (_, texts) in streams.items()}
    identical = sum(s == t for s, t in zip(streams["sar"][1], rft, strict=True)) / max(len(rft), 1)
    print(f"{len(rft)} of {len(train)} train problems solved with k={k}")
    for name in streams:
        print(f"  {name:14s} ppl {ppls[name]:8.3f}  untrained tokens {untrained[name]:.4f}")

    return {
        "greedy_accuracy": greedy,
        f"pass_at_{k}": pass_k,
        **{f"ppl_{name}": value for name, value in ppls.items()},
        "ppl_ratio_synth_over_rft": ppls["oracle_synth"] / ppls["rft"],
        "sar_identical_share": identical,
        "untrained_token_share_max": max(untrained.values()),
    }


if __name__ == "__main__":
    main()
