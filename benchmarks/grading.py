"""Grading throughput on 2 worker processes against raw math-verify, and agreement with math-verify's
own regression suite (tests/data/mathverify_cases.jsonl).

    .venv/bin/python benchmarks/grading.py

Sets: GSM8K-style numbers; MATH-500-style LaTeX answers (1,000 items, no repetition); and a MATH-style
set of k=8 samples for each of 100 MATH-500 problems, where (as with real samples) the same answers
recur: five right answers in three wordings and three wrong ones from two other problems. Half or more
of the predictions are wrong, in the answer formats models use. Each MATH set starts with nothing
memoized and the workers up (a run starts them once; the start-up is printed apart).

"Raw" is math-verify's `verify(parse(gold), parse(prediction))` called directly, the best of one process or
two processes splitting the list, in fresh interpreters timed after their imports (see `_raw_throughput`). Targets: >= 500 items/s for
GSM8K; math_ratio_vs_raw >= 0.9; math_ratio_vs_raw_repeated >= 1.5; mathverify_suite_agreement
>= 0.97 (math-verify's own default reaches 0.98 on those cases).

Worst-case extraction: the slowest of `HOSTILE` (shapes a naive extractor reads in quadratic time: nested boxes, unclosed math
delimiters, long runs of spaces, thousands of formulas in one sentence), each `HOSTILE_CHARS` long, extracted
in this process (CPU seconds, one item). Target: extraction_worst_case_s <= 0.5, and
extraction_scaling (the worst at HOSTILE_CHARS over the worst at a quarter of it) <= 6 (linear is 4).
"""

from __future__ import annotations

import json
import time
from multiprocessing import get_context
from pathlib import Path

from stylealign.datasets import DATA_DIR, clean_gsm8k_solution
from stylealign.grading import close_workers, extract_answer, grade_batch, reference_answer, start_workers

MATHVERIFY_CASES = Path(__file__).resolve().parents[1] / "tests" / "data" / "mathverify_cases.jsonl"

PROCESSES = 2
K = 8
REPEATED_PROBLEMS = 100
FORMS = ("So the answer is {}.", "Therefore the total is $\\boxed{{{}}}$.", "Work...\n#### {}", "Answer: {}")
MATH_FORMS = (
    "Hence the answer is $\\boxed{{{}}}$.",
    "Final Answer: The final answer is $\\boxed{{{}}}$. I hope it is correct.",
    "Putting it together we get \\boxed{{{}}}.",
)


HOSTILE_CHARS = 200_000
HOSTILE = {
    "nested open boxes": lambda n: "\\boxed{" * (n // 7),
    "nested closed boxes": lambda n: "\\boxed{" * (n // 16) + "7" + "}" * (n // 16),
    "boxes joined by \\text{ }": lambda n: "\\boxed{1}\\text{" + " " * n + "}\\boxed{2}",
    "unclosed \\(": lambda n: "\\(" * (n // 2),
    "unclosed \\[": lambda n: "\\[" * (n // 2),
    "dollar pairs": lambda n: "$x" * (n // 2),
    "spaces after ####": lambda n: "#### 5" + " " * n,
    "spaces after A:": lambda n: "A: 5" + " " * n,
    "formulas in one sentence": lambda n: "so " + "$1$ " * (n // 4),
    "numbers in one sentence": lambda n: "so " + "1 and " * (n // 6),
    "thousands groups": lambda n: "1" + ",111" * (n // 4) + ",1",
    "one long number": lambda n: "7" * n,
    "equations": lambda n: "1=" * (n // 2),
    "braces": lambda n: "{" * n,
    "mixed openers": lambda n: "$\\(\\[$$\\boxed{ {" * (n // 16),
}


def _extraction_worst_case(chars: int) -> float:
    """CPU seconds of the slowest `HOSTILE` shape of `chars` characters (extraction and reference reading)."""
    worst = 0.0
    for make in HOSTILE.values():
        text = make(chars)
        start = time.process_time()
        extract_answer(text)
        reference_answer(text)
        worst = max(worst, time.process_time() - start)
    return worst


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


def _raw_verdicts(pairs: list[tuple[str, str]]) -> list[bool]:
    from math_verify import parse, verify

    return [bool(verify(parse(f"\\boxed{{{reference}}}"), parse(prediction))) for prediction, reference in pairs]


def _timed_raw_verdicts(pairs: list[tuple[str, str]]) -> float:
    """Seconds raw math-verify takes on `pairs` in this process, after a warm-up item that imports it."""
    _raw_verdicts([("\\boxed{1}", "1")])
    start = time.perf_counter()
    _raw_verdicts(pairs)
    return time.perf_counter() - start


def _raw_throughput(name: str, predictions: list[str], references: list[str]) -> float:
    """Items/s of raw math-verify: the best of one process and two processes splitting the list, each a
    fresh interpreter (spawned) timed after its imports, as stylealign's workers start each set up and
    empty. Not forked from this process: its sympy and math-verify caches hold the earlier sets' answers,
    which made raw math-verify look up to three times faster on the repeated set than it is cold."""
    pairs = list(zip(predictions, references, strict=True))
    rates = []
    for processes in (1, PROCESSES):
        with get_context("spawn").Pool(processes) as pool:
            seconds = pool.map(_timed_raw_verdicts, [pairs[i::processes] for i in range(processes)], chunksize=1)
        rates.append(len(pairs) / max(seconds))
    print(f"{name} raw math-verify: {rates[0]:.0f} items/s in one process, {rates[1]:.0f} in {PROCESSES}")
    return max(rates)


def _math_ratio(name: str, predictions: list[str], references: list[str]) -> tuple[float, float]:
    """(stylealign items/s, that over raw math-verify's best items/s), both warmed up: stylealign's
    workers are started once per run, so each set starts with workers up and nothing memoized."""
    close_workers()
    start = time.perf_counter()
    start_workers(PROCESSES)
    print(f"{name}: {PROCESSES} grading workers started in {time.perf_counter() - start:.2f}s (once per run)")
    ours = _throughput(name, predictions, references)
    close_workers()
    return ours, ours / _raw_throughput(name, predictions, references)


def _repeated_set(answers: list[str]) -> tuple[list[str], list[str]]:
    """K samples for each of the first REPEATED_PROBLEMS problems: 5 right (3 wordings), 3 wrong (2 answers)."""
    predictions, references = [], []
    for p, answer in enumerate(answers[:REPEATED_PROBLEMS]):
        wrong = (answers[(p + 1) % len(answers)], answers[(p + 2) % len(answers)])
        sampled = (answer, answer, answer, wrong[0], answer, wrong[0], answer, wrong[1])
        predictions += [MATH_FORMS[j % len(MATH_FORMS)].format(a) for j, a in enumerate(sampled[:K])]
        references += [answer] * K
    return predictions, references


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
    math500, ratio = _math_ratio("math500-style", predictions, references)
    _, ratio_repeated = _math_ratio(f"math-style k={K}", *_repeated_set(math_answers))
    agreement = _mathverify_agreement()
    worst = _extraction_worst_case(HOSTILE_CHARS)
    scaling = worst / max(_extraction_worst_case(HOSTILE_CHARS // 4), 1e-9)
    print(f"mathverify_suite_agreement={agreement:.3f}")
    print(f"gsm8k_items_per_s={gsm8k:.1f}")
    print(f"math500_items_per_s={math500:.1f}")
    print(f"math_ratio_vs_raw={ratio:.2f}")
    print(f"math_ratio_vs_raw_repeated={ratio_repeated:.2f}")
    print(f"extraction_worst_case_s={worst:.3f}")
    print(f"extraction_scaling={scaling:.1f}")


if __name__ == "__main__":
    main()
