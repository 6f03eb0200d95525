"""Loaders: bundled GSM8K and the paper's five benchmarks, the lab, files with field mappings, HF datasets, bad rows."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stylealign.config import DatasetConfig
from stylealign.datasets import (
    BUNDLED_TEST_SETS,
    DATA_DIR,
    DatasetError,
    clean_gsm8k_solution,
    load_problems,
    load_report,
)
from stylealign.grading import grade_batch, grade_many


def test_gsm8k_bundled_splits_clean_solutions_and_stable_ids():
    test = load_problems(DatasetConfig(source="gsm8k", split="test"))
    train = load_problems(DatasetConfig(source="gsm8k", split="train", limit=50))
    assert len(test) == 1319 and len(train) == 50
    assert len({p.id for p in test}) == 1319 and test[0].id == "gsm8k-test-00000"
    first = test[0]
    assert first.answer == "18" and first.question.startswith("Janet")
    assert first.reference_solution.endswith("The answer is 18.")
    assert not any("<<" in p.reference_solution or "####" in p.reference_solution for p in test)
    assert all(grade_many([p.reference_solution for p in test], [p.answer for p in test]))
    window = load_problems(DatasetConfig(source="gsm8k", split="test", offset=10, limit=5))
    assert [p.id for p in window] == [p.id for p in test[10:15]]
    assert window == test[10:15]


def test_clean_gsm8k_solution():
    answer, solution = clean_gsm8k_solution("She has 2*3=<<2*3=6>>6 pens.\nSo 6+1=<<6+1=7>>7.\n#### 7")
    assert answer == "7" and solution == "She has 2*3=6 pens.\nSo 6+1=7.\nThe answer is 7."
    with pytest.raises(ValueError, match="####"):
        clean_gsm8k_solution("no final line")


def test_math500_bundled():
    problems = load_problems(DatasetConfig(source="math500", split="test"))
    assert len(problems) == 500 and len({p.id for p in problems}) == 500
    first = problems[0]
    assert first.id == "math500-precalculus-807" and first.answer == r"\left( 3, \frac{\pi}{2} \right)"
    assert first.metadata["level"] == 2 and first.metadata["subject"] == "Precalculus"
    assert r"\boxed{" in first.reference_solution
    with pytest.raises(DatasetError, match="only a 'test' split"):
        load_problems(DatasetConfig(source="math500", split="train"))


PAPER_BENCHMARKS = {"math500": 500, "minerva_math": 272, "aime24": 30, "amc23": 40, "olympiadbench": 675}


def test_paper_benchmarks_load_offline_with_their_answers():
    assert set(BUNDLED_TEST_SETS) == set(PAPER_BENCHMARKS)
    sets = {name: load_problems(DatasetConfig(source=name, split="test")) for name in PAPER_BENCHMARKS}
    for name, problems in sets.items():
        assert len(problems) == PAPER_BENCHMARKS[name] and len({p.id for p in problems}) == len(problems)
        assert all(p.source == name and p.answer and p.question for p in problems)
        assert (DATA_DIR / name / "LICENSE").is_file()
    minerva = sets["minerva_math"][0]
    assert (minerva.id, minerva.answer) == ("minerva_math-000", "1.6")  # the last \boxed{} of the solution
    assert [p.answer for p in sets["amc23"][:4]] == ["27", "36", "45", "3159"]  # 27.0 is the integer 27
    assert sets["aime24"][7].answer == "25"  # written 025
    multiple = [p for p in sets["olympiadbench"] if p.metadata["is_multiple_answer"]]
    with_unit = [p for p in sets["olympiadbench"] if p.metadata["unit"]]
    assert len(multiple) == 94 and len(with_unit) == 8
    first = multiple[0]
    assert first.answer == "(1,8,19), (2,7,13), (4,5,7)" and first.metadata["final_answer"] == [
        "$(1,8,19), (2,7,13), (4,5,7)$"
    ]
    assert first.question.endswith("give them all in one \\boxed{}, separated by commas.")
    km = next(p for p in with_unit if p.metadata["unit"] == "km")
    assert km.answer == "\\frac{41}{12}" and km.question.endswith("The unit of the answer is km; do not include the unit in \\boxed{}.")
    with pytest.raises(DatasetError, match="olympiadbench has only a 'test' split"):
        load_problems(DatasetConfig(source="olympiadbench", split="train"))
    window = load_problems(DatasetConfig(source="minerva_math", split="test", offset=5, limit=3))
    assert window == sets["minerva_math"][5:8]


@pytest.mark.slow  # ~1 min on 2 busy cores: about 1,500 answers go through math-verify
def test_every_reference_answer_grades_equal_to_itself_in_a_model_output():
    """All five benchmarks: the reference, boxed at the end of a typical solution, is graded correct; and a
    different problem's answer is not (so the grader is not simply saying yes)."""
    failures = {}
    for name in PAPER_BENCHMARKS:
        answers = [p.answer for p in load_problems(DatasetConfig(source=name, split="test"))]
        outputs = [f"We compute step by step, so the answer is \\boxed{{{a}}}." for a in answers]
        result = grade_batch(outputs, answers, timeout=30.0)
        failures[name] = [a for a, ok in zip(answers, result.verdicts, strict=True) if not ok]
        others = [(a, b) for a, b in zip(answers[:40], answers[1:41], strict=False) if a not in b and b not in a]  # not '5' and 'x=5'
        wrong = grade_many([f"so the answer is \\boxed{{{b}}}." for _, b in others], [a for a, _ in others])
        assert not any(wrong), [pair for pair, ok in zip(others, wrong, strict=True) if ok]
    assert failures == {name: [] for name in PAPER_BENCHMARKS}


def test_lab_source_delegates_to_the_lab_world():
    from stylealign.lab.world import load_lab_problems

    problems = load_problems(DatasetConfig(source="lab", split="train", limit=4, offset=2))
    assert problems == load_lab_problems("train", 4, 2, seed=0)
    assert len(problems) == 4


def test_jsonl_with_joined_fields_and_content_ids(tmp_path):
    path = tmp_path / "svamp.jsonl"
    rows = [
        {
            "Body": "Tom has 3 apples.",
            "Question": "How many after buying 4?",
            "Answer": 7,
            "Type": "Addition",
        },
        {
            "Body": "Ann has 10 pens.",
            "Question": "She gives 4 away. How many left?",
            "Answer": 6.0,
            "Type": "Subtraction",
        },
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cfg = DatasetConfig(source=str(path), fields={"question": "Body+Question", "answer": "Answer"})
    problems = load_problems(cfg)
    assert [p.question for p in problems] == [
        "Tom has 3 apples. How many after buying 4?",
        "Ann has 10 pens. She gives 4 away. How many left?",
    ]
    assert [p.answer for p in problems] == ["7", "6.0"]
    assert problems[0].metadata["Type"] == "Addition" and problems[0].source == "svamp"
    assert problems[0].id.startswith("svamp-") and problems == load_problems(cfg)
    reordered = tmp_path / "svamp2.jsonl"
    reordered.write_text("".join(json.dumps(r) + "\n" for r in reversed(rows)), encoding="utf-8")
    ids = {p.id.split("-", 1)[1] for p in load_problems(cfg.model_copy(update={"source": str(reordered)}))}
    assert ids == {p.id.split("-", 1)[1] for p in problems}  # content ids survive reordering


def test_math_style_and_gsm8k_style_rows_are_understood(tmp_path):
    path = tmp_path / "mixed.jsonl"
    rows = [
        {"id": "m1", "problem": "What is 1/2 + 1/4?", "solution": r"We add: $\boxed{\frac{3}{4}}$."},
        {"id": "g1", "question": "2+2?", "answer": "2+2=<<2+2=4>>4\n#### 4"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    first, second = load_problems(DatasetConfig(source=str(path)))
    assert (first.id, first.answer, first.reference_solution) == ("m1", r"\frac{3}{4}", rows[0]["solution"])
    assert (second.id, second.answer, second.reference_solution) == ("g1", "4", "2+2=4\nThe answer is 4.")


def test_malformed_line_names_file_and_line_and_skip_bad_records_it(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"question": "1+1?", "answer": "2"}\n\n{"question": "2+2?", "answer": \n'
        '{"question": "no answer here"}\n["a list"]\n{"question": "3+3?", "answer": "6"}\n',
        encoding="utf-8",
    )
    with pytest.raises(DatasetError, match=r"bad\.jsonl:3: not valid JSON"):
        load_problems(DatasetConfig(source=str(path)))
    report = load_report(DatasetConfig(source=str(path), skip_bad=True))
    assert [p.answer for p in report.problems] == ["2", "6"]
    assert [s.location.rsplit("/", 1)[-1] for s in report.skipped] == [
        "bad.jsonl:3",
        "bad.jsonl:4",
        "bad.jsonl:5",
    ]
    assert "no answer" in report.skipped[1].reason and "JSON object" in report.skipped[2].reason


def test_csv_and_parquet_with_limit_offset(tmp_path):
    rows = {"q": [f"What is {i}+1?" for i in range(20)], "a": [str(i + 1) for i in range(20)]}
    pq.write_table(pa.table(rows), tmp_path / "d.parquet")
    csv_text = "q,a\n" + "".join(f'"{q}",{a}\n' for q, a in zip(rows["q"], rows["a"], strict=True))
    (tmp_path / "d.csv").write_text(csv_text + "broken,row,extra\n", encoding="utf-8")
    for name in ("d.parquet", "d.csv"):
        cfg = DatasetConfig(
            source=str(tmp_path / name), fields={"question": "q", "answer": "a"}, offset=5, limit=3
        )
        problems = load_problems(cfg)
        assert [p.answer for p in problems] == ["6", "7", "8"]
    with pytest.raises(DatasetError, match=r"d\.csv:22: expected 2 columns"):
        load_problems(DatasetConfig(source=str(tmp_path / "d.csv"), fields={"question": "q", "answer": "a"}))
    with pytest.raises(DatasetError, match=r"d\.parquet row 0: no column 'Body'"):
        load_problems(
            DatasetConfig(source=str(tmp_path / "d.parquet"), fields={"question": "Body", "answer": "a"})
        )


def test_hf_load_from_disk_directory(tmp_path):
    import datasets

    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(
                [{"question": "1+2?", "answer": "3"}, {"question": "2+5?", "answer": "7"}]
            ),
            "test": datasets.Dataset.from_list([{"question": "9-1?", "answer": "8"}]),
        }
    )
    dd.save_to_disk(str(tmp_path / "hfdata"))
    train = load_problems(DatasetConfig(source=str(tmp_path / "hfdata"), split="train"))
    assert [(p.question, p.answer) for p in train] == [("1+2?", "3"), ("2+5?", "7")]
    assert [
        p.answer for p in load_problems(DatasetConfig(source=str(tmp_path / "hfdata"), split="test"))
    ] == ["8"]
    with pytest.raises(DatasetError, match="no split 'validation'"):
        load_problems(DatasetConfig(source=str(tmp_path / "hfdata"), split="validation"))


def test_unknown_sources_are_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset source"):
        load_problems(DatasetConfig(source="nonsense"))
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        load_problems(DatasetConfig(source=str(tmp_path / "missing.jsonl")))
    with pytest.raises(DatasetError, match="splits 'train' and 'test'"):
        load_problems(DatasetConfig(source="gsm8k", split="dev"))
    with pytest.raises(DatasetError, match="unknown targets"):
        (tmp_path / "x.jsonl").write_text('{"question": "q", "answer": "1"}\n', encoding="utf-8")
        load_problems(DatasetConfig(source=str(tmp_path / "x.jsonl"), fields={"prompt": "question"}))
