"""Edit-distance throughput: 1,000 pairs of lab-length traces and 1,000 pairs of 4,000-character traces.

    .venv/bin/python benchmarks/metrics.py [--pairs 1000]

A pair is a lab reference solution (or, for the long set, 4,000 characters of concatenated solutions) and
the same text with ~5% of its characters substituted, deleted or inserted: the shape of a refinement
measured against its parent (`stages/score.py` does this for oracle_refine, sar and sar_repair).

Measured on a shared 2-core machine (nice 10, load ~4.7): rapidfuzz, which `metrics/drift.py` uses, does 126,194
lab-length and 607 4,000-character pairs/s; a numpy row-at-a-time Levenshtein, with the same mean
distances, does 188 and 2.3 (431.6 s for 1,000).
"""

from __future__ import annotations

import argparse
import random
import time

from stylealign.config import DatasetConfig
from stylealign.datasets import load_problems
from stylealign.metrics.drift import normalized_edit_distance

LONG = 4000


def mutate(text: str, rng: random.Random, rate: float = 0.05) -> str:
    out = []
    for ch in text:
        roll = rng.random()
        if roll < rate / 3:
            out.append(rng.choice("0123456789 abcde+=\n"))
        elif roll < 2 * rate / 3:
            continue
        elif roll < rate:
            out.append(ch + rng.choice("xyz "))
        else:
            out.append(ch)
    return "".join(out)


def pairs(count: int, long: bool, rng: random.Random) -> list[tuple[str, str]]:
    texts = [p.reference_solution or "" for p in load_problems(DatasetConfig(source="lab", split="train", limit=2000))]
    out = []
    for i in range(count):
        if long:
            start = rng.randrange(len(texts))
            text = "\n".join(texts[start:] + texts[:start])[:LONG]
        else:
            text = texts[i % len(texts)]
        out.append((text, mutate(text, rng)))
    return out


def throughput(name: str, items: list[tuple[str, str]]) -> float:
    start = time.perf_counter()
    total = sum(normalized_edit_distance(a, b) for a, b in items)
    seconds = time.perf_counter() - start
    rate = len(items) / seconds
    mean_chars = sum(len(a) for a, _ in items) / len(items)
    print(f"{name}: {len(items)} pairs of ~{mean_chars:.0f} chars in {seconds:.3f}s, mean distance {total / len(items):.4f}")
    print(f"edit_distance_pairs_per_s={rate:.0f} ({name})")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1000)
    args = parser.parse_args()
    rng = random.Random(0)
    throughput("lab-length", pairs(args.pairs, False, rng))
    throughput(f"{LONG}-char", pairs(args.pairs, True, rng))


if __name__ == "__main__":
    main()
