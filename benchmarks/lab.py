"""The lab student: is it fallible, and is the oracle's style foreign to it?

Prints the student's greedy accuracy and pass@8 (T=1.0) on lab test
problems, the mean token NLL under the student of its own style vs the
oracle's style for the same problems (the adaptation-cost gap), and how long
pretraining took (measured when the cached student was built; pass --fresh
to rebuild into a temporary cache and time it now).

    .venv/bin/python benchmarks/lab.py [--problems 100] [--fresh]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from stylealign.engines.base import Request, SamplingParams
from stylealign.engines.hf import HFEngine
from stylealign.grading import grade
from stylealign.lab.oracle import LabOracle
from stylealign.lab.student import ensure_student
from stylealign.lab.styles import student_solution
from stylealign.lab.world import load_lab_problems


def token_nll(engine: HFEngine, requests: list[Request], texts: list[str]) -> float:
    scores = engine.score(requests, texts)
    return -sum(sum(s.logprobs) for s in scores) / sum(len(s.logprobs) for s in scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=100)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--fresh", action="store_true", help="pretrain again in a temporary cache and time it")
    args = parser.parse_args()
    if args.fresh:
        os.environ["STYLEALIGN_CACHE"] = tempfile.mkdtemp(prefix="stylealign-lab-")
    start = time.perf_counter()
    path = ensure_student(log=print)
    info = json.loads((path / "recipe.json").read_text(encoding="utf-8"))
    print(f"student at {path}: {info['parameters']:,} parameters, ready in {time.perf_counter() - start:.1f}s now")

    engine = HFEngine(str(path), device="cpu", batch_size=32, progress=False)
    problems = load_lab_problems("test", limit=args.problems)
    requests = [Request.from_prompt(p.question) for p in problems]
    start = time.perf_counter()
    greedy = engine.generate(requests, 1, SamplingParams(temperature=0.0, max_tokens=200))
    greedy_acc = sum(grade(c[0].text, p.answer) for c, p in zip(greedy, problems, strict=True)) / len(problems)
    samples = engine.generate(requests, args.k, SamplingParams(temperature=1.0, max_tokens=200, seed=0))
    correct = [[grade(c.text, p.answer) for c in row] for row, p in zip(samples, problems, strict=True)]
    pass_k = sum(any(row) for row in correct) / len(problems)
    sample_acc = sum(map(sum, correct)) / (len(problems) * args.k)
    print(f"sampling took {time.perf_counter() - start:.1f}s; mean accuracy of a T=1 sample {sample_acc:.3f}")

    oracle = LabOracle()
    nll_student = token_nll(engine, requests, [student_solution(p.metadata) for p in problems])
    nll_oracle = token_nll(engine, requests, [oracle.solve(p) for p in problems])
    print("note: wall times on a shared 2-core machine are noisy")
    print(f"greedy_accuracy={greedy_acc:.4f}")
    print(f"pass_at_{args.k}={pass_k:.4f}")
    print(f"nll_student_style={nll_student:.4f}")
    print(f"nll_oracle_style={nll_oracle:.4f}")
    print(f"pretrain_seconds={info['seconds']:.1f}")


if __name__ == "__main__":
    main()
