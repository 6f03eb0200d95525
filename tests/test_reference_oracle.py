"""The reference oracle (GSM8K and other sets without a graph), the checker against references, pooled sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from stylealign.config import DatasetConfig, EngineConfig, parse_config
from stylealign.datasets import load_problems
from stylealign.engines import SamplingParams, load_engine
from stylealign.grading import grade
from stylealign.lab.checker import computed_values, first_wrong_step
from stylealign.oracles.reference import ReferenceOracle
from stylealign.prompts import load_template
from stylealign.records import Problem
from stylealign.run.context import RunContext
from stylealign.stages.load import load_stage
from stylealign.steps import trace_steps

GSM8K_TEST = DatasetConfig(source="gsm8k", split="test", limit=40)


@pytest.fixture(scope="module")
def problems() -> list[Problem]:
    return load_problems(GSM8K_TEST)


@pytest.fixture(scope="module")
def house(problems) -> Problem:
    """Josh flips a house: four calculator lines, answer 70000."""
    return next(p for p in problems if p.answer == "70000")


STUDENT_OK = (
    "First, the house and repairs cost 80000 + 50000 = 130000 dollars.\n"
    "The value went up by 80000 * 1.5 = 120000 dollars.\n"
    "So the house is now worth 80000 + 120000 = 200000 dollars.\n"
    "The profit is 200000 - 130000 = 70000 dollars.\n"
    "The final answer is 70000."
)
STUDENT_WRONG = (
    "First, the house and repairs cost 80000 + 50000 = 130000 dollars.\n"
    "The value went up by 80000 * 1.5 = 100000 dollars.\n"
    "So the house is now worth 80000 + 100000 = 180000 dollars.\n"
    "The profit is 180000 - 130000 = 50000 dollars.\n"
    "The final answer is 50000."
)


def test_checker_accepts_references_and_their_oracle_rewrites(problems):
    oracle = ReferenceOracle()
    clean = [p for p in problems if first_wrong_step(p, p.reference_solution, "line") == -1]
    assert len(clean) >= 0.85 * len(problems)
    for p in clean:
        assert oracle.locate_error(p, oracle.solve(p)) == -1, p.id


def test_checker_finds_the_first_wrong_step_against_the_reference(house):
    assert first_wrong_step(house, STUDENT_OK, "line") == -1
    assert first_wrong_step(house, STUDENT_WRONG, "line") == 1
    assert first_wrong_step(house, STUDENT_OK.replace("is 70000.", "is 7000."), "line") == 4
    chained = "It costs 80000 + 50000 = 130000 = 120000 + 10000 dollars.\nThe answer is 70000."
    assert first_wrong_step(house, chained, "line") == -1
    assert first_wrong_step(house, chained.replace("120000 + 10000", "120000 + 1000"), "line") == 0
    units = "He pays $80,000 x 1.5 = $120,000 more.\nThe answer is 70000."
    assert first_wrong_step(house, units, "line") == -1
    assert computed_values("so 4 * 60 / 5 = 4 * 12 = 48 lines, and 20% * 10 = 2") == {48, 2}


def test_solve_is_the_reference_in_the_house_style(house):
    text = ReferenceOracle().solve(house)
    assert text.startswith("To solve this problem") and "\\( 80,000 \\times 1.5 = 120,000 \\)" in text
    assert text.rstrip().endswith("\\(\\boxed{70000}\\).") and grade(text, house.answer)


def test_refine_rewrites_a_correct_trace_and_replaces_a_wrong_one(house):
    oracle = ReferenceOracle()
    refined = oracle.refine(house, STUDENT_OK)
    assert "\\( 80000 \\times 1.5 = 120000 \\)" in refined and "First, the house and repairs cost" in refined
    assert oracle.refine(house, STUDENT_WRONG) == oracle.solve(house)


def test_style_aligned_refinement_keeps_the_student_up_to_its_first_error(house):
    oracle = ReferenceOracle()
    assert oracle.refine_style_aligned(house, STUDENT_OK) == STUDENT_OK
    refined = oracle.refine_style_aligned(house, STUDENT_WRONG)
    assert refined.startswith(trace_steps(STUDENT_WRONG)[0])
    assert "He increased the value of the house by 80,000*1.5=120,000" in refined
    assert refined.endswith("The final answer is 70000.") and grade(refined, house.answer)
    assert oracle.locate_error(house, refined) == -1


def test_repair_step_gives_the_next_reference_line(house):
    oracle = ReferenceOracle()
    steps = trace_steps(STUDENT_WRONG)
    assert (
        oracle.repair_step(house, steps[0], steps[1])
        == "He increased the value of the house by 80,000*1.5=120,000"
    )
    assert oracle.repair_step(house, "".join(steps[:4]), steps[4]) == "The final answer is 70000."


def test_oracle_engine_routes_reference_questions(house):
    engine = load_engine(EngineConfig(type="lab-oracle", references=[GSM8K_TEST]))
    greedy = SamplingParams(temperature=0)
    solve = load_template("solve").request(question=house.question)
    sar = load_template("sar").request(
        question=house.question, solution=STUDENT_WRONG, exemplars=[STUDENT_OK]
    )
    solved, refined = (row[0].text for row in engine.generate([solve, sar], 1, greedy))
    assert solved == ReferenceOracle().solve(house)
    assert refined == ReferenceOracle().refine_style_aligned(house, STUDENT_WRONG)
    without = load_engine(EngineConfig(type="lab-oracle"))
    assert "in neither" in without.generate([solve], 1, greedy)[0][0].text


def test_problem_sources_are_pooled_and_must_not_overlap(tmp_path: Path):
    from stylealign.store import RunStore

    base = {"student": {"engine": {"type": "hf", "model": "unused"}}}
    one = parse_config({**base, "problems": {"source": "lab", "split": "train", "limit": 3}})
    assert len(one.problems) == 1
    both = parse_config(
        {**base, "problems": [{"source": "lab", "split": "train", "limit": 3}, GSM8K_TEST.model_dump()]}
    )
    ctx = RunContext(config=both, store=RunStore(tmp_path / "both"), limit=5)
    assert load_stage(ctx) == {"problems": 8}
    assert [p.source for p in ctx.problems()] == ["lab"] * 3 + ["gsm8k"] * 5
    twice = parse_config({**base, "problems": [GSM8K_TEST.model_dump(), GSM8K_TEST.model_dump()]})
    with pytest.raises(ValueError, match="overlap"):
        load_stage(RunContext(config=twice, store=RunStore(tmp_path / "twice")))
