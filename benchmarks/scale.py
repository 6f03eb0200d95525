"""Framework overhead at scale: load -> sample -> streams -> score on N generated problems with k = 8.

    PYTHONPATH=src .venv/bin/python benchmarks/scale.py                 # 10K, 30K, 100K
    PYTHONPATH=src .venv/bin/python benchmarks/scale.py --sizes 2000    # a quick run

The stages are the library's own (`load_stage`, `sample_stage`, `streams_stage`, `score_stage`) on a real
run store; only the student is an instant engine (`CannedStudent`: canned samples, canned per-token
log-probs, no model), so what is measured is the framework: store, grading, stream bookkeeping, scoring.
The problems are GSM8K-like (integer answers, `####` reference solutions) in a JSONL file; three of every
eight samples are right, in two wordings, the rest wrong. The oracle streams use the programmatic
reference oracle (`lab-oracle` engine with the problems file as `references`), so they do real work too.

Each size runs in a fresh subprocess; its peak RSS is that process's `ru_maxrss`. Targets on 2 cores:
100K x 8 in <= 600 s, peak RSS <= 4 GiB, seconds_100k <= 12 x seconds_10k.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

STAGES = ("load", "sample", "streams", "score")
DEFAULT_STREAMS = ("gold", "rft", "oracle_synth", "oracle_refine", "mix")
K = 8
NAMES = ("Ann", "Ben", "Cara", "Dev", "Eli", "Fay", "Gus", "Hana")
ITEMS = ("apples", "stamps", "marbles", "books", "coins", "shells")


def write_problems(path: Path, n: int, seed: int = 0) -> None:
    """`n` two-step word problems with integer answers and GSM8K-style reference solutions."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            who, item = NAMES[i % len(NAMES)], ITEMS[(i // len(NAMES)) % len(ITEMS)]
            a, b, c = rng.randint(10, 999), rng.randint(2, 99), rng.randint(1, 9)
            total = a + b
            left = total - c
            question = (f"Problem {i}: {who} has {a} {item} and gets {b} more. Then {who} gives away {c}. "
                        f"How many {item} does {who} have now?")
            answer = (f"{who} has {a} + {b} = {total} {item}.\nAfter giving away {c}, {who} has "
                      f"{total} - {c} = {left} {item}.\n#### {left}")
            f.write(json.dumps({"question": question, "answer": answer}) + "\n")


class CannedStudent:
    """An `Engine` with canned answers: samples 0, 3 and 5 of a problem are right (two wordings), the rest wrong.

    Scores are canned too: one token per whitespace-separated word, log-prob drawn from the word's length,
    with exact character offsets, so every cost metric has its real inputs.
    """

    name = "canned-student"

    def __init__(self, problems_file: Path):
        self.answers: dict[str, tuple[str, str]] = {}
        for line in problems_file.open(encoding="utf-8"):
            row = json.loads(line)
            steps, answer = row["answer"].split("\n#### ")
            self.answers[row["question"]] = (steps, answer)

    def _sample(self, question: str, j: int) -> str:
        steps, answer = self.answers[question]
        if j in (0, 5):
            return f"{steps}\nThe answer is {answer}."
        if j == 3:
            return f"Let me think step by step.\n{steps}\nSo the final answer is {answer}."
        return f"{steps}\nI think the answer is {int(answer) + j}."

    def generate(self, requests, n, sampling):
        from stylealign.engines.base import Completion

        out = []
        for request in requests:
            question = request.messages[-1]["content"]
            texts = [self._sample(question, j)[len(request.prefix):] for j in range(n)]
            out.append([Completion(text, "stop", len(text.split())) for text in texts])
        return out

    def score(self, requests: Sequence, responses: Sequence[str]):
        from stylealign.engines.base import TokenScores

        scored = []
        for text in responses:
            tokens, offsets, start = [], [], 0
            for word in text.split():
                start = text.index(word, start)
                tokens.append(word)
                offsets.append((start, start + len(word)))
                start += len(word)
            scored.append(TokenScores(tokens, [-0.05 * (1 + len(w) % 7) for w in tokens], offsets))
        return scored

    def close(self) -> None:
        pass


def run_size(n: int, workdir: Path, streams: Sequence[str]) -> dict:
    """The four stages on `n` problems in this process: per stage seconds and records, and peak RSS."""
    from rich.console import Console

    from stylealign.config import parse_config
    from stylealign.run.context import RunContext
    from stylealign.run.work import few_collections
    from stylealign.stages.load import load_stage
    from stylealign.stages.sample import sample_stage
    from stylealign.stages.score import score_stage
    from stylealign.stages.streams import streams_stage
    from stylealign.store import RunStore
    from stylealign.streams.listing import stream_traces

    problems_file = workdir / "problems.jsonl"
    write_problems(problems_file, n)
    config = parse_config({
        "name": f"scale-{n}",
        "problems": {"source": str(problems_file)},
        "student": {"engine": {"type": "hf", "model": "canned-student"}},
        "oracle": {"engine": {"type": "lab-oracle", "references": [{"source": str(problems_file)}]}},
        "sampling": {"k": K, "max_tokens": 256},
        "streams": {"enabled": list(streams)},
        "reward": {"type": "none"},
    })
    ctx = RunContext(config=config, store=RunStore(workdir / "run", config.model_dump(mode="json")),
                     console=Console(file=io.StringIO(), width=200), streams=tuple(streams))
    ctx.use_engine(config.student.engine, CannedStudent(problems_file))
    functions = {"load": load_stage, "sample": sample_stage, "streams": streams_stage, "score": score_stage}
    stages = {}
    try:
        for name in STAGES:
            start = time.perf_counter()
            with few_collections():  # as `run_experiment` runs every stage
                summary = functions[name](ctx)
            seconds = time.perf_counter() - start
            if name == "load":
                records = summary["problems"]
            elif name == "sample":
                records = summary["samples"]
            else:  # streams and score both handle every trace of the selected streams
                records = sum(len(stream_traces(ctx.store, s)) for s in streams)
            stages[name] = {"seconds": seconds, "records": records}
    finally:
        ctx.release_engines()
        ctx.store.close()
    shards = sum(1 for _ in (workdir / "run").rglob("shard-*.parquet"))
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"n": n, "stages": stages, "shards": shards, "peak_rss_gb": peak_kib / 2**20}


def _in_subprocess(n: int, streams: Sequence[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"scale-{n}-") as tmp:
        cmd = [sys.executable, __file__, "--one", str(n), "--dir", tmp, "--streams", ",".join(streams)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"size {n} failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def _print_table(result: dict) -> None:
    n = result["n"]
    print(f"\n{n:,} problems x {K} samples ({result['shards']} shards, peak RSS {result['peak_rss_gb']:.2f} GiB)")
    print(f"  {'stage':<8} {'records':>10} {'seconds':>9} {'records/s':>11}")
    for name, s in result["stages"].items():
        print(f"  {name:<8} {s['records']:>10,} {s['seconds']:>9.1f} {s['records'] / max(s['seconds'], 1e-9):>11,.0f}")
    print(f"  {'total':<8} {'':>10} {_seconds(result):>9.1f}")


def _seconds(result: dict) -> float:
    return sum(s["seconds"] for s in result["stages"].values())


def _label(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,30000,100000", help="comma-separated problem counts")
    parser.add_argument("--streams", default=",".join(DEFAULT_STREAMS), help="comma-separated streams to build")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    streams = tuple(s for s in args.streams.split(",") if s)
    if args.one:
        print(json.dumps(run_size(args.one, Path(args.dir), streams)))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    results = {}
    for n in sizes:
        results[n] = _in_subprocess(n, streams)
        _print_table(results[n])
    print()
    for n, result in results.items():
        print(f"seconds_{_label(n)}={_seconds(result):.1f}")
    largest = max(sizes)
    print(f"peak_rss_gb_{_label(largest)}={results[largest]['peak_rss_gb']:.2f}")
    if len(sizes) > 1:
        smallest = min(sizes)
        print(f"growth_{_label(largest)}_over_{_label(smallest)}={_seconds(results[largest]) / _seconds(results[smallest]):.2f}")


if __name__ == "__main__":
    main()
