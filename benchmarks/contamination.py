"""Decontamination: false flags on clean data, precision and recall on planted copies, speed at 100K problems.

    .venv/bin/python benchmarks/contamination.py [--planted 250] [--size 100000] [--write-planted PATH]

1. Clean data: GSM8K train (7,473) against GSM8K test and MATH-500, and each of the paper's five benchmarks
   against the other four (competition phrasing they share must not count as a copy).
2. Planted copies: GSM8K train plus `--planted` questions of the paper's five benchmarks, a fifth each
   copied verbatim, re-typeset (case, spacing, punctuation, `\\frac` <-> `\\dfrac`, `$` dropped), embedded
   between an added first and last sentence, cut to their first half of words (questions of at least 26
   words, so the half is still a 13-word passage; "Simplify the following expression" is nobody's copy),
   and rewritten with every number changed; checked against the five benchmarks. The first four kinds are copies (positives), GSM8K
   train the negatives: precision and recall over them. Rewrites are reported apart (recall only): a
   problem with other numbers is a judgement call, which word n-grams catch only in its unchanged runs.
   `--write-planted PATH` writes this file (JSONL) for `stylealign contamination CONFIG --problems PATH`.
3. Speed: wall and CPU seconds (CPU time is what a busy machine does not inflate) for `--size` synthetic problems (GSM8K train questions with their numbers redrawn and sentences
   shuffled, so lengths and vocabulary are realistic and nearly none is a copy) against the five benchmarks.

Ends with `name=value` lines.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from pathlib import Path

from stylealign.config import DatasetConfig
from stylealign.contamination import NGRAM, contamination_report, words
from stylealign.datasets import BUNDLED_TEST_SETS, load_problems
from stylealign.records import Problem

_NUMBER = re.compile(r"\d+")
_SENTENCE = re.compile(r"(?<=[.?!])\s+")


def retypeset(text: str, rng: random.Random) -> str:
    text = text.replace("\\dfrac", "\\FRAC").replace("\\frac", "\\dfrac").replace("\\FRAC", "\\frac").replace("$", "")
    text = re.sub(r"\s+", lambda m: rng.choice(["  ", "\n", " "]), text)
    text = re.sub(r"[,;:]", lambda m: rng.choice([" ,", "", ";"]), text)
    return text.upper() if rng.random() < 0.5 else text.lower()


def first_half(text: str) -> str:
    """The text up to the space after which half of its words (as the checker counts them) are written."""
    half, parts = len(words(text)) / 2, text.split(" ")
    return next(cut for cut in (" ".join(parts[:i]) for i in range(1, len(parts) + 1)) if len(words(cut)) >= half)


def renumber(text: str, rng: random.Random) -> str:
    return _NUMBER.sub(lambda m: str(int(m.group()) + rng.randint(1, 9)), text)


KINDS = {
    "verbatim": lambda q, rng: q,
    "retypeset": retypeset,
    "embedded": lambda q, rng: f"Read the problem below carefully. {q} Explain every step of your reasoning.",
    "first_half": lambda q, rng: first_half(q),
    "renumbered": renumber,
}
COPIES = ("verbatim", "retypeset", "embedded", "first_half")


def benchmarks() -> dict[str, list[Problem]]:
    return {name: load_problems(DatasetConfig(source=name, split="test")) for name in BUNDLED_TEST_SETS}


def planted(train: list[Problem], sets: dict[str, list[Problem]], count: int, seed: int = 0) -> tuple[list[Problem], dict[str, str]]:
    """GSM8K train with `count` planted questions mixed in; and the kind of each planted id."""
    rng = random.Random(seed)
    pool = [p for found in sets.values() for p in found]
    long = [p for p in pool if len(words(p.question)) >= 2 * NGRAM]
    kinds: dict[str, str] = {}
    problems = list(train)
    for i in range(count):
        kind = list(KINDS)[i % len(KINDS)]
        source = rng.choice(long if kind == "first_half" else pool)
        pid = f"planted-{i}-{kind}"
        kinds[pid] = kind
        problems.insert(rng.randrange(len(problems) + 1), Problem(pid, KINDS[kind](source.question, rng), source.answer))
    return problems, kinds


def synthetic(train: list[Problem], size: int, seed: int = 1) -> list[Problem]:
    rng = random.Random(seed)
    out = []
    for i in range(size):
        sentences = _SENTENCE.split(rng.choice(train).question)
        rng.shuffle(sentences)
        out.append(Problem(f"synthetic-{i}", renumber(" ".join(sentences), rng), "0"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planted", type=int, default=250)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--write-planted", type=Path)
    args = parser.parse_args()

    train = load_problems(DatasetConfig(source="gsm8k", split="train"))
    sets = benchmarks()
    clean = contamination_report(train, {
        "gsm8k:test": load_problems(DatasetConfig(source="gsm8k", split="test")), "math500:test": sets["math500"],
    })
    for label, entry in clean["benchmarks"].items():
        print(f"gsm8k train vs {label}: {entry['training_problems_flagged']} flagged, {entry['questions_hit']} questions hit")
        for ex in entry["examples"]:
            print(f"  coverage {ex['coverage']:.0%}: {ex['question'][:90]!r} ~ {ex['benchmark_question'][:90]!r}")

    cross = 0
    for name, found in sets.items():
        flagged_here = contamination_report(found, {k: v for k, v in sets.items() if k != name})["flagged"]
        print(f"{name} against the other four: {len(flagged_here)} flagged")
        cross += len(flagged_here)

    problems, kinds = planted(train, sets, args.planted)
    if args.write_planted:
        args.write_planted.write_text(
            "".join(json.dumps({"id": p.id, "question": p.question, "answer": p.answer}) + "\n" for p in problems),
            encoding="utf-8",
        )
        print(f"wrote {len(problems)} problems ({args.planted} planted) to {args.write_planted}")
    flagged = set(contamination_report(problems, sets)["flagged"])
    copies = {pid for pid, kind in kinds.items() if kind in COPIES}
    true_flags = len(flagged & copies)
    precision = true_flags / len(flagged - {pid for pid, kind in kinds.items() if kind not in COPIES}) if flagged else 1.0
    recall = true_flags / len(copies)
    for kind in KINDS:
        ids = [pid for pid, k in kinds.items() if k == kind]
        print(f"planted {kind}: {sum(pid in flagged for pid in ids)}/{len(ids)} flagged")
    print(f"false flags among {len(train)} GSM8K train problems: {len(flagged - set(kinds))}")

    many = synthetic(train, args.size)
    start, cpu = time.perf_counter(), time.process_time()
    report = contamination_report(many, sets)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    questions = sum(len(found) for found in sets.values())
    print(f"{args.size:,} synthetic problems against {questions:,} questions of {len(sets)} benchmarks: "
          f"{seconds:.1f} s wall, {cpu:.1f} s CPU (one thread), {len(report['flagged'])} flagged")

    print(f"clean_gsm8k_test_flags={clean['benchmarks']['gsm8k:test']['training_problems_flagged']}")
    print(f"clean_math500_flags={clean['benchmarks']['math500:test']['training_problems_flagged']}")
    print(f"cross_benchmark_flags={cross}")
    print(f"planted_precision={precision:.3f}")
    print(f"planted_recall={recall:.3f}")
    print(f"renumbered_recall={sum(pid in flagged for pid, k in kinds.items() if k == 'renumbered') / max(1, list(kinds.values()).count('renumbered')):.3f}")
    print(f"seconds_{args.size}={seconds:.2f}")
    print(f"cpu_seconds_{args.size}={cpu:.2f}")


if __name__ == "__main__":
    main()
