"""Grading throughput on 2 worker processes: GSM8K-style numbers and MATH-500-style LaTeX answers,
and agreement with math-verify's own regression suite (tests/data/mathverify_cases.jsonl).

    .venv/bin/python benchmarks/grading.py

Half of the predictions are right, half wrong, in the answer formats models use.
Wall time includes starting the worker processes. Targets: >= 500 items/s for GSM8K;
mathverify_suite_agreement >= 0.97 (math-verify's own default verify(parse(gold), parse(pred)) reaches 0.98).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from stylealign.datasets import DATA_DIR, clean_gsm8k_solution
from stylealign.grading import grade_batch, reference_answer

MATHVERIFY_CASES = Path(__file__).resolve().parents[1] / "tests" / "data" / "mathverify_cases.jsonl"

PROCESSES = 2
FORMS = ("So the answer is {}.", "Therefore the total is $\\boxed{{{}}}$.", "Work...\n#### {}", "Answer: {}")


def _rows(path):
    return [json.loads(line) for line in path.open(encoding="utf-8")]


def _throughput(name: str, predictions: list[str], references: list[str]) -> float:
    start = time.perf_counter()
    result = grade_batch(predictions, references, processes=PROCESSES, timeout=10.0)
    seconds = time.perf_counter() - start
    rate = len(predictions) / seconds
    print(
        f"{name}: {len(predictions)} items in {seconds:.2f}s = {rate:.0f} items/s "
        f"(accuracy {sum(result.verdicts) / len(predictions):.3f}, timeouts {len(result.timed_out)})"
    )
    return rate


def _mathverify_agreement() -> float:
    """Share of math-verify's regression cases where stylealign's verdict is the expected one."""
    cases = _rows(MATHVERIFY_CASES)
    result = grade_batch(
        [c["pred"] for c in cases], [reference_answer(c["gold"]) for c in cases], processes=PROCESSES, timeout=10.0
    )
    agree = [verdict == c["expected"] for verdict, c in zip(result.verdicts, cases, strict=True)]
    for case, ok in zip(cases, agree, strict=True):
        if not ok:
            print(f"differs ({case['group']}): gold {case['gold'][:60]!r} expected {case['expected']}")
    return sum(agree) / len(cases)


def main() -> None:
    answers = [
        clean_gsm8k_solution(row["answer"])[0]
        for split in ("train", "test")
        for row in _rows(DATA_DIR / "gsm8k" / f"{split}.jsonl")
    ]
    predictions = [
        FORMS[i % len(FORMS)].format(a if i % 2 == 0 else int(a.replace(",", "")) + 1)
        for i, a in enumerate(answers)
    ]
    gsm8k = _throughput("gsm8k-style", predictions, answers)

    math_answers = [row["answer"] for row in _rows(DATA_DIR / "math500" / "test.jsonl")]
    references = math_answers * 2
    predictions = [f"Hence the answer is $\\boxed{{{a}}}$." for a in math_answers] + [
        f"Hence the answer is $\\boxed{{{a}}}$." for a in math_answers[1:] + math_answers[:1]
    ]
    math500 = _throughput("math500-style", predictions, references)
    agreement = _mathverify_agreement()
    print(f"gsm8k_items_per_s={gsm8k:.1f}")
    print(f"math500_items_per_s={math500:.1f}")
    print(f"mathverify_suite_agreement={agreement:.3f}")


if __name__ == "__main__":
    main()
