"""Grading on the real bundled data, known non-equivalences, extraction, and the process-level timeout."""

from __future__ import annotations

import json
import time
from fractions import Fraction
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stylealign.cli import app
from stylealign.datasets import DATA_DIR, clean_gsm8k_solution
from stylealign.grade_files import grade_file
from stylealign.grading import (
    as_number,
    equivalent,
    extract_answer,
    grade,
    grade_batch,
    grade_many,
    reference_answer,
)

MATHVERIFY_CASES = Path(__file__).parent / "data" / "mathverify_cases.jsonl"
HANGS = r"so the answer is \boxed{9^{9^{9^{9}}}}"  # sympy tries to evaluate the power tower forever


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_every_gsm8k_answer_grades_equal_to_itself():
    answers = [clean_gsm8k_solution(row["answer"])[0] for row in _lines(DATA_DIR / "gsm8k" / "test.jsonl")]
    assert len(answers) == 1319
    outputs = [f"Adding it all up gives the total, so the answer is \\boxed{{{a}}}." for a in answers]
    assert all(grade_many(outputs, answers, processes=2))
    shifted = answers[1:] + answers[:1]
    verdicts = grade_many(outputs[1:] + outputs[:1], answers, processes=2)
    assert verdicts == [as_number(a) == as_number(b) for a, b in zip(shifted, answers, strict=True)]
    assert verdicts.count(False) > 1250


def test_every_math500_answer_grades_equal_to_itself():
    answers = [row["answer"] for row in _lines(DATA_DIR / "math500" / "test.jsonl")]
    assert len(answers) == 500
    outputs = [f"Putting the pieces together, so the answer is \\boxed{{{a}}}." for a in answers]
    result = grade_batch(outputs, answers, processes=2, timeout=60)
    assert result.timed_out == [] and result.failed == {}
    assert [answers[i] for i, ok in enumerate(result.verdicts) if not ok] == []


def test_math_verify_regression_suite():
    """math-verify's own cases (MIT, see tests/data/README.md): the expected verdict everywhere but the
    disagreements kept on purpose, which must stay the opposite one."""
    cases = _lines(MATHVERIFY_CASES)
    assert len(cases) == 190
    result = grade_batch([c["pred"] for c in cases], [reference_answer(c["gold"]) for c in cases], timeout=60)
    assert result.timed_out == [] and result.failed == {}
    wrong = [
        (c["group"], c["gold"], c["pred"][-80:])
        for c, verdict in zip(cases, result.verdicts, strict=True)
        if verdict != (c["expected"] != ("stylealign_differs" in c))
    ]
    assert wrong == []
    agreement = sum(v == c["expected"] for v, c in zip(result.verdicts, cases, strict=True)) / len(cases)
    assert agreement >= 0.97


NOT_EQUIVALENT = [
    ("17", "18"),
    ("-5", "5"),
    ("1000001", "1000000"),
    ("0.333", r"\frac{1}{3}"),
    (r"\frac{1}{3}", r"\frac{1}{2}"),
    (r"\sqrt{2}", "2"),
    (r"3\pi", "3"),
    ("x^2", "x^3"),
    ("32, 349", "32349"),
    (r"\text{even}", r"\text{odd}"),
    ("2x", "2"),
    ("(1,2)", "(2,1)"),
    ("[1,2)", "[1,2]"),
    (r"\{1,2\}", r"\{1,3\}"),
    (r"\text{Evelyn}", r"\text{Bob}"),
    ("100", "1,000"),
    (r"\left( 3, \frac{\pi}{2} \right)", r"\left( 3, \frac{\pi}{3} \right)"),
    ("", "5"),
]

EQUIVALENT = [
    ("1,000", "1000"),
    (r"\$18", "18"),
    ("18.00", "18"),
    ("0.5", r"\frac{1}{2}"),
    (r"\dfrac{3}{4}", "0.75"),
    ("3/4", r"\frac34"),
    ("0.333333", r"\frac{1}{3}"),
    (r"50\%", "50"),
    (r"10\text{ cm}", "10"),
    ("18 dollars", "18"),
    (r"\{2,1\}", r"\{1,2\}"),
    (r"(3,\pi/2)", r"\left( 3, \frac{\pi}{2} \right)"),
    ("x=2", "2"),
    (r"\frac{\sqrt{8}}{2}", r"\sqrt{2}"),
    ("1000,99", "1000.99"),
    ("0,111", "0.111"),
    (r"14{, }916", "14916"),
    (r"12,\!000,\!023", "12000023"),
    (r"\text{odd}", "odd"),
    ("-2, 1", "1,-2"),
    (r"(6, 2), (2, 2)", r"(2, 2), (6, 2)"),
    ("k = 45, n = 2", "n = 2, k = 45"),
    (r"\begin{pmatrix}1 & 0 \\ 0 & 1\end{pmatrix}", r"\begin{bmatrix}1 & 0 \\ 0 & 1\end{bmatrix}"),
]


@pytest.mark.parametrize(("answer", "reference"), NOT_EQUIVALENT)
def test_known_non_equivalent_pairs(answer, reference):
    assert not equivalent(answer, reference)


@pytest.mark.parametrize(("answer", "reference"), EQUIVALENT)
def test_known_equivalent_pairs(answer, reference):
    assert equivalent(answer, reference)


def test_batch_agrees_with_single_grading():
    pairs = NOT_EQUIVALENT + EQUIVALENT
    outputs = [f"The answer is ${a}$." if a else "no idea" for a, _ in pairs]
    expected = [grade(o, r) for o, (_, r) in zip(outputs, pairs, strict=True)]
    assert grade_many(outputs, [r for _, r in pairs], processes=2) == expected
    assert expected == [False] * len(NOT_EQUIVALENT) + [True] * len(EQUIVALENT)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"First \boxed{1}, then so the answer is \boxed{\frac{1}{2}}.", r"\frac{1}{2}"),
        (r"nested \boxed{\left\{ 1, \{2\} \right\}} end", r"\left\{ 1, \{2\} \right\}"),
        (r"\fbox{42}", "42"),
        ("Janet sells 9 eggs.\n#### 1,234", "1,234"),
        ("So 3 + 4 = 7. The answer is 7.", "7"),
        ("The final answer is: $\\frac{3}{4}$.", r"\frac{3}{4}"),
        ("Therefore, the answer is 3.5 apples. Done.", "3.5"),
        ("The answer is 18 dollars.", "18"),
        ("Answer: -12", "-12"),
        ("The answer is **42**.", "42"),
        ("The answer is 5, and we are done.", "5"),
        (r"The answer is $(1, 2)$, since both work.", "(1, 2)"),
        ("Q: how many?\nA: 42", "42"),
        (r"\frac{1}{2}", r"\frac{1}{2}"),
        ("There were 5 then 7 and finally 12 birds", "12"),
        ("He paid $1,250.50 in total", "1,250.50"),
        ("no numbers at all", None),
        (r"so \boxed{(2, 2)} \quad \text{and} \quad \boxed{(6, 2)}.", "(2, 2), (6, 2)"),
        (r"$\boxed{1},\boxed{2},\boxed{3}$", "1, 2, 3"),
        (r"\boxed{k = 45} and \boxed{n = 2}", "k = 45, n = 2"),
        (r"We try \boxed{3}. Final Answer: The final answer is $5$. I hope it is correct.", "5"),
        ("Final Answer: The volume of $ABCD$ is 120. I hope it is correct.", "120"),
        ("The sum is between $12$ and $13$.", "12, 13"),
        ("Therefore $x \\geq 5$ is the solution.", r"x \geq 5"),
        ("the answer is 7.<|im_start|>user\nthe answer is 8.", "7"),
        ("AZYUK2A", None),
        ("the code x2 works", None),
        ("Soucis : 2,74 $ a..", "2,74"),
        ("We found 12 apples. Then we ate some.\nLet me double check that", None),
        ("", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_last_number_fallback_is_configurable():
    assert extract_answer("we get 5 and then 7 cats", last_number=False) is None
    assert not grade("we get 5 and then 7 cats", "7", last_number=False)
    assert grade("we get 5 and then 7 cats", "7")


def test_reference_answer_and_numbers():
    assert reference_answer("Work.\n#### 72") == "72"
    assert reference_answer(r"So \boxed{x+1}.") == "x+1"
    assert reference_answer(" 5 ") == "5"
    assert as_number("-3/4") == Fraction(-3, 4)
    assert as_number(r"\frac{3}{4}") == Fraction(3, 4)
    assert as_number("1,234.5") == Fraction(24690, 20)
    assert as_number("1/0") is None and as_number("x") is None and as_number("1,2,3") is None


def test_a_hanging_item_is_killed_and_the_rest_are_graded():
    outputs = [HANGS, r"\boxed{\frac{\pi}{2}}", r"\boxed{x^2}", "the answer is 7", r"\boxed{\{1,2\}}"]
    references = ["5", r"\pi/2", "x^3", "7", r"\{2,1\}"]
    start = time.monotonic()
    result = grade_batch(outputs, references, timeout=2.0, processes=2)
    assert time.monotonic() - start < 120
    assert result.timed_out == [0]
    assert result.verdicts == [False, True, False, True, True]
    assert [result.status(i) for i in range(5)] == ["timeout", "ok", "ok", "ok", "ok"]


def test_grade_cli_writes_verdicts_and_skips_bad_rows(tmp_path):
    source = tmp_path / "preds.jsonl"
    source.write_text(
        json.dumps({"id": "a", "ref": "Work.\n#### 18", "out": "so the answer is 18."})
        + "\n"
        + json.dumps({"id": "b", "ref": r"\frac{1}{2}", "out": r"\boxed{0.5}"})
        + "\nnot json\n"
        + json.dumps({"id": "c", "ref": "5", "out": "I think 6"})
        + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "verdicts.jsonl"
    runner = CliRunner()
    args = ["grade", str(source), "--reference-field", "ref", "--prediction-field", "out", "--out", str(out)]
    failed = runner.invoke(app, args)
    assert failed.exit_code == 1 and "preds.jsonl:3" in failed.output.replace("\n", "")
    done = runner.invoke(app, [*args, "--skip-bad"])
    assert done.exit_code == 0, done.output
    assert "accuracy=0.6667 (2/3)" in done.output and "preds.jsonl:3" in done.output.replace("\n", "")
    verdicts = _lines(out)
    assert [(v["id"], v["correct"], v["extracted"]) for v in verdicts] == [
        ("a", True, "18"),
        ("b", True, "0.5"),
        ("c", False, "6"),
    ]
    assert verdicts[2]["location"].endswith("preds.jsonl:4")


def test_grade_file_reads_csv_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = {"answer": ["3", "4"], "completion": ["so it is \\boxed{3}", "The answer is 5."]}
    pq.write_table(pa.table(rows), tmp_path / "p.parquet")
    (tmp_path / "p.csv").write_text(
        'answer,completion\n3,The answer is 3.\n4,"Hence, 4.5"\n', encoding="utf-8"
    )
    for name in ("p.parquet", "p.csv"):
        result = grade_file(tmp_path / name, reference_field="answer", prediction_field="completion")
        assert [row["correct"] for row in result.rows] == [True, False]
    with pytest.raises(ValueError, match="p.csv:2: no field 'prediction'"):
        grade_file(tmp_path / "p.csv", reference_field="answer", prediction_field="prediction")


def test_idle_workers_are_reused_across_batches():
    from stylealign.grading.pool import _IDLE, start_workers

    start_workers(2)
    pids = {w.process.pid for w in _IDLE.workers}
    assert len(pids) == 2 and all(w.ready for w in _IDLE.workers)
    grade_batch([r"\boxed{x+11}", r"\boxed{x+12}"], ["11+x", "x+13"], processes=2)
    assert {w.process.pid for w in _IDLE.workers} == pids
    assert grade_many([r"\boxed{\sqrt{49}}"], ["7"], processes=1) == [True]
    assert {w.process.pid for w in _IDLE.workers} & pids


def test_repeated_pairs_are_graded_once_and_remembered():
    from stylealign.grading.pool import _IDLE, _VERDICTS, close_workers

    close_workers()
    outputs = [r"so \boxed{\frac{2}{4}}", r"The answer is $\frac{2}{4}$.", r"\boxed{2/4}", r"\boxed{x}"] * 4
    result = grade_batch(outputs, [r"\tfrac12"] * len(outputs), processes=2)
    assert result.verdicts == [True, True, True, False] * 4
    assert _VERDICTS.get((r"\frac{2}{4}", r"\tfrac12")) is True and _VERDICTS.get(("x", r"\tfrac12")) is False
    hanging = grade_batch([HANGS, HANGS.replace("so the", "hence the"), "the answer is 5"], ["5"] * 3, timeout=2.0)
    assert hanging.timed_out == [0, 1] and hanging.verdicts == [False, False, True]
    assert _VERDICTS.get(("9^{9^{9^{9}}}", "5")) is None  # a timeout is not a verdict
    close_workers()
    assert _VERDICTS.get(("x", r"\tfrac12")) is None and _IDLE.workers == []
