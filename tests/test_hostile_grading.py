"""Grading hostile text (issue #37, items 1 and 2): bounded time on any response, numbers of any length.

Extraction runs in the calling process, outside every grading timeout, so each shape below once took
minutes (nested `\\boxed{`, unclosed `\\(`, spaces after `####`, ...). The hang guard fails a return of
the quadratic code; the speed itself is measured in benchmarks/grading.py. Numbers past Python's
4,300-digit int-conversion limit compare as digit strings or grade wrong, never raise.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from stylealign.cli import app
from stylealign.grading import as_number, extract_answer, grade_batch, last_boxed, reference_answer
from stylealign.grading.extract import MAX_EXTRACT_CHARS, plain_number
from stylealign.lab.checker import computed_values, first_wrong_step
from stylealign.records import Problem

N = 150_000  # near the default max_field_chars (200,000), within the tail extraction reads
BIG = "7" * 5_000  # past Python's int-conversion limit of 4,300 digits

# (text, the answer extracted from it: on short versions of each shape, what the quadratic code gave)
QUADRATIC_BEFORE = {
    "nested open boxes": ("\\boxed{" * (N // 7), None),
    "nested closed boxes": ("\\boxed{" * (N // 16) + "7" + "}" * (N // 16), "7"),
    "boxes joined by \\text{ }": ("\\boxed{1}\\text{" + " " * N + "}\\boxed{2}", "1, 2"),
    "unclosed \\(": ("\\(" * (N // 2), None),
    "unclosed \\[": ("\\[" * (N // 2), None),
    "spaces after ####": ("#### 5" + " " * N + "6", "5" + " " * N + "6"),
    "spaces after A:": ("A: 5" + " " * N + "6", "5" + " " * N + "6"),
    "formulas in one sentence": ("so " + "$1$ " * (N // 4) + "and 9", "1, 9"),
    "thousands groups": ("1" + ",111" * (N // 4) + ",1", "1"),
    "calculator openings": ("<<" * (N // 2) + " so 4", "4"),
}


@pytest.mark.timeout(300)  # a hang guard: each of these takes a fraction of a second
@pytest.mark.parametrize("shape", sorted(QUADRATIC_BEFORE))
def test_extraction_of_once_quadratic_shapes_is_right(shape):
    text, expected = QUADRATIC_BEFORE[shape]
    assert extract_answer(text) == expected
    reference_answer(text)
    last_boxed(text)


@pytest.mark.timeout(300)
def test_a_grading_batch_of_hostile_predictions_finishes_with_verdicts():
    texts = [text for text, _ in QUADRATIC_BEFORE.values()]
    result = grade_batch(texts, ["7"] * len(texts), timeout=5.0, processes=2)
    assert result.verdicts[list(QUADRATIC_BEFORE).index("nested closed boxes")] is True
    assert len(result.verdicts) == len(texts)


def test_only_the_tail_of_a_response_is_read():
    answer_first = "\\boxed{5} " + "x " * MAX_EXTRACT_CHARS
    assert extract_answer(answer_first) is None  # the box is outside the last MAX_EXTRACT_CHARS characters
    assert extract_answer("x " * MAX_EXTRACT_CHARS + "\\boxed{5}") == "5"


def test_numbers_of_any_length_compare_exactly_or_grade_wrong():
    assert as_number(BIG) is None and plain_number(BIG).decimal() == (False, BIG, "")
    predictions = [f"The answer is {BIG}.", f"\\boxed{{{BIG}.000}}", f"\\boxed{{{BIG}1}}", f"\\boxed{{-{BIG}}}",
                   f"\\boxed{{\\frac{{{BIG}}}{{1}}}}", "\\boxed{7}", f"\\boxed{{{BIG}}}"]
    references = [BIG, BIG, BIG, BIG, BIG, BIG, f"\\frac{{{BIG}}}{{3}}"]
    result = grade_batch(predictions, references, timeout=5.0, processes=2)
    assert result.verdicts == [True, True, False, False, False, False, False]
    assert not result.failed and not result.timed_out  # compared in this process, never sent to sympy


def test_grade_cli_takes_a_reference_of_ten_thousand_digits(tmp_path):
    path = tmp_path / "preds.jsonl"
    digits = "9" * 10_000
    rows = [f'{{"id": "a", "answer": {digits}, "output": "so it is {digits}."}}',  # a JSON number, not a string
            json.dumps({"id": "b", "answer": "12", "output": f"so it is {digits}."})]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "verdicts.jsonl"
    result = CliRunner().invoke(app, ["grade", str(path), "--reference-field", "answer", "--prediction-field", "output",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["correct"] for line in out.read_text(encoding="utf-8").splitlines()] == [True, False]


def test_the_lab_checker_counts_a_number_too_long_to_convert_as_wrong_never_crashes():
    problem = Problem(id="p", question="Tom has 3 apples and buys 4.", answer="7",
                      reference_solution="3 + 4 = 7\nThe answer is 7.")
    assert computed_values(f"{BIG} + 1 = {BIG}") == set()  # not evaluated, so nothing computed
    assert first_wrong_step(problem, ["3 + 4 = 7", f"Then {BIG} more.", "The answer is 7."]) == 1
    assert first_wrong_step(problem, ["3 + 4 = 7", "The answer is 7."]) == -1
