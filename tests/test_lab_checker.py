"""The step checker and process reward on hand-written traces in the student's and the oracle's styles."""

from __future__ import annotations

import pytest

from stylealign.lab.checker import evaluate, first_wrong_step
from stylealign.lab.reward import polish, process_reward
from stylealign.lab.world import to_problem
from stylealign.records import Problem

QUESTION = (
    "Tom has 12 apples. Anna has 3 times as many apples as Tom. Eva is 9 years old. "
    "Ben has 5 fewer apples than Anna. How many apples do Ben and Tom have together?"
)


@pytest.fixture(scope="module")
def problem() -> Problem:
    graph = {
        "question": QUESTION,
        "item": "apple",
        "items": "apples",
        "start": {"subject": "Tom", "value": 12},
        "facts": [
            {"id": "f0", "value": 12, "text": "Tom has 12 apples."},
            {"id": "f1", "value": 3, "text": "Anna has 3 times as many apples as Tom."},
            {"id": "f2", "value": 5, "text": "Ben has 5 fewer apples than Anna."},
        ],
        "nodes": [
            {"id": "n1", "op": "*", "args": ["f0", "f1"], "a": 12, "b": 3, "value": 36, "subject": "Anna",
             "ref": "Tom", "kind": "relation"},
            {"id": "n2", "op": "-", "args": ["n1", "f2"], "a": 36, "b": 5, "value": 31, "subject": "Ben",
             "ref": "Anna", "kind": "relation"},
            {"id": "n3", "op": "+", "args": ["n2", "f0"], "a": 31, "b": 12, "value": 43, "subject": "Ben and Tom",
             "ref": "Tom", "kind": "together"},
        ],
        "level": 2,
        "distractors": [{"value": 9, "text": "Eva is 9 years old."}],
        "answer": 43,
    }  # fmt: skip
    return to_problem(graph, seed=0, split="test")


STUDENT_OK = """Tom has 12 apples.

Anna has 3 times as many apples as Tom, so Anna has 12 * 3 = 36 apples.

Ben has 5 fewer apples than Anna, so Ben has 36 - 5 = 31 apples.

Together Ben and Tom have 31 + 12 = 43 apples.

The answer is 43."""

ORACLE_OK = r"""Let's work through the relationships one at a time.

We start from Tom, who has \( 12 \) apples. Since Anna has three times as many as Tom, Anna has \( 3 \times 12 = 36 \) apples. Since Ben has 5 fewer than Anna, Ben has \( 36 - 5 = 31 \) apples.

Adding the two amounts, Ben and Tom have \( 31 + 12 = 43 \) apples in total.

Therefore, the answer is \( \boxed{43} \)."""


def test_correct_traces_in_every_style_pass(problem):
    assert first_wrong_step(problem, STUDENT_OK) == -1
    assert first_wrong_step(problem, ORACLE_OK) == -1
    assert first_wrong_step(problem, problem.reference_solution, mode="line") == -1
    frac = ORACLE_OK.replace(r"\( 3 \times 12 = 36 \)", r"\( \frac{108}{3} = 36 \)").replace("three times", "a third")
    assert first_wrong_step(problem, frac) == 1  # 108 is not a known quantity


@pytest.mark.parametrize(
    ("wrong", "right", "index"),
    [
        ("12 * 3 = 36", "12 * 3 = 38", 1),  # arithmetic slip
        ("Tom has 12 apples.", "Tom has 13 apples.", 0),  # misread fact
        ("36 - 5 = 31", "35 - 5 = 30", 2),  # operand that was never computed
        ("The answer is 43.", "The answer is 42.", 4),  # wrong final answer
    ],
)
def test_student_style_errors(problem, wrong, right, index):
    text = STUDENT_OK.replace(wrong, right)
    assert first_wrong_step(problem, text) == index


def test_oracle_style_errors(problem):
    assert first_wrong_step(problem, ORACLE_OK.replace(r"3 \times 12 = 36", r"3 \times 12 = 39")) == 1
    assert first_wrong_step(problem, ORACLE_OK.replace(r"31 + 12 = 43", r"31 + 12 = 44")) == 2
    assert first_wrong_step(problem, ORACLE_OK.replace(r"\boxed{43}", r"\boxed{44}")) == 3


def test_error_propagation_and_unfinished_traces(problem):
    distractor = STUDENT_OK.replace("36 - 5 = 31", "36 - 9 = 27").replace("31 + 12 = 43", "27 + 12 = 39")
    assert first_wrong_step(problem, distractor.replace("answer is 43", "answer is 39")) == 2
    cascade = STUDENT_OK.replace("36 - 5 = 31", "36 - 5 = 32").replace("31 + 12 = 43", "32 + 12 = 44")
    assert first_wrong_step(problem, cascade.replace("answer is 43", "answer is 44")) == 2
    unfinished = STUDENT_OK.rsplit("\n\n", 1)[0]
    assert first_wrong_step(problem, unfinished) == 3
    # a different but valid route: Ben has 3 * 12 - 5 in one equation
    both = STUDENT_OK.split("\n\n")[1:3]
    route = STUDENT_OK.replace("\n\n".join(both), "Ben has 3 * 12 - 5 = 31 apples.")
    assert first_wrong_step(problem, route) == -1


def test_process_reward(problem):
    assert process_reward(problem, STUDENT_OK) == 1.0
    wrong = STUDENT_OK.replace("36 - 5 = 31", "36 - 5 = 30")
    assert first_wrong_step(problem, wrong) == 2
    assert process_reward(problem, wrong) == pytest.approx(2 / 5)
    assert process_reward(problem, "") == 0.0


def test_lab_reward_prefers_polish_the_way_a_reward_model_does(problem):
    """The stand-in reward model: same correctness, more reward for the oracle's presentation."""
    from stylealign.lab.reward import lab_reward

    assert polish(STUDENT_OK) == 0.0
    assert polish(ORACLE_OK) == pytest.approx(1.0)
    assert lab_reward(problem, ORACLE_OK) == pytest.approx(2.0)
    assert lab_reward(problem, STUDENT_OK) == pytest.approx(1.0)
    assert lab_reward(problem, ORACLE_OK, style_preference=0.0) == lab_reward(problem, STUDENT_OK, style_preference=0.0)
    wrong = ORACLE_OK.replace("31 + 12 = 43", "31 + 12 = 44").replace("boxed{43}", "boxed{44}")
    assert lab_reward(problem, wrong) < lab_reward(problem, ORACLE_OK)


def test_evaluate_respects_precedence():
    assert evaluate("3 * 12 - 5") == 31
    assert evaluate("2 + 3 * 4") == 14
    assert evaluate("7 / 0") is None


def test_non_lab_problem_is_rejected():
    with pytest.raises(ValueError, match="no reference solution"):
        first_wrong_step(Problem(id="x", question="1+1?", answer="2"), "2")
