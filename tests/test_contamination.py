"""Decontamination: what counts as a copy of an evaluation question, and the load stage's report and drop."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from stylealign.config import DatasetConfig, parse_config
from stylealign.contamination import check_config, contamination_report, find_overlaps, words
from stylealign.datasets import load_problems
from stylealign.records import Problem
from stylealign.run.context import RunContext
from stylealign.stages.load import CONTAMINATION, load_stage
from stylealign.store import RunStore


@pytest.fixture(scope="module")
def math500() -> list[Problem]:
    return load_problems(DatasetConfig(source="math500", split="test"))


def long_question(problems: list[Problem], at_least: int = 30) -> Problem:
    return next(p for p in problems if len(words(p.question)) >= at_least)


def test_words_fold_case_spacing_punctuation_and_typesetting() -> None:
    assert words("Find $\\dfrac{1,000}{2}$,  then  STOP.") == words("find \\frac{1000}{2} then stop")
    assert words("\\left( x \\right)") == ["x"]
    assert words("1,000 and 12,34") == ["1000", "and", "12", "34"]  # only a thousands separator is dropped


def test_copies_of_a_benchmark_question_are_flagged_and_unrelated_problems_are_not(math500) -> None:
    source = long_question(math500)
    copies = [
        Problem("verbatim", source.question, "1"),
        Problem("retypeset", source.question.upper().replace("$", "").replace(" ", "\n"), "1"),
        Problem("embedded", f"Homework 3. {source.question} Show all your work.", "1"),
    ]
    gsm8k = load_problems(DatasetConfig(source="gsm8k", split="train", limit=2000))
    hits = find_overlaps(gsm8k + copies, {"math500:test": math500})
    assert {h.problem_id for h in hits} == {"verbatim", "retypeset", "embedded"}
    assert all(h.benchmark_id == source.id and h.coverage == 1.0 for h in hits)


def test_a_shared_phrase_has_low_coverage_and_a_shared_boilerplate_sentence_is_no_evidence(math500) -> None:
    source = long_question(math500, at_least=60)
    half = " ".join(source.question.split(" ")[:14])  # one passage of the question, not the question
    own_words = f"Compute the area of the region. {half} What is the final value?"
    hit = find_overlaps([Problem("phrase", own_words, "1")], {"math500:test": math500})
    assert hit and 0 < hit[0].coverage < 0.5
    # AIME 2024 and AMC 2023 both end questions with this sentence: not a copy of either
    boilerplate = ("A bag holds red and blue marbles in the ratio three to five. The probability that two drawn marbles "
                   "match is m/n, where m and n are relatively prime positive integers. What is m+n?")
    sets = {name: load_problems(DatasetConfig(source=name, split="test")) for name in ("aime24", "amc23")}
    assert "relatively prime positive integers" in " ".join(p.question for p in sets["amc23"])
    assert find_overlaps([Problem("boilerplate", boilerplate, "1")], sets) == []
    aime = next(p for p in sets["aime24"] if "relatively prime positive integers" in p.question)
    assert [h.benchmark_id for h in find_overlaps([Problem("copy", aime.question, "1")], sets)] == [aime.id]


def test_short_questions_match_whole_inside_a_problem_and_very_short_ones_only_exactly(math500) -> None:
    short = next(p for p in math500 if 6 <= len(words(p.question)) < 13)
    tiny = Problem("t", "Evaluate $\\sqrt{98765}$.", "1")
    sets = {"math500:test": math500, "mine": [tiny]}
    found = find_overlaps([
        Problem("embedded-short", f"Warm-up: {short.question} Then rest.", "1"),
        Problem("tiny-inside", "Evaluate $\\sqrt{98765}$ and then add three to it.", "1"),
        Problem("tiny-copy", "evaluate sqrt(98765)", "1"),
    ], sets)
    assert {(h.problem_id, h.benchmark_id) for h in found} == {("embedded-short", short.id), ("tiny-copy", "t")}


def test_the_report_names_each_benchmark_with_examples(math500) -> None:
    copy = long_question(math500)
    report = contamination_report([Problem("a", copy.question, "1"), Problem("b", "How many apples?", "1")],
                                  {"math500:test": math500, "other": []}, examples=1)
    assert report["flagged"] == ["a"] and report["problems"] == 2
    entry = report["benchmarks"]["math500:test"]
    assert entry["training_problems_flagged"] == 1 and entry["questions_hit"] >= 1
    assert entry["examples"][0]["question"] == copy.question and entry["examples"][0]["benchmark_id"] == copy.id
    assert report["benchmarks"]["other"]["training_problems_flagged"] == 0


def _planted(tmp_path: Path, math500: list[Problem]) -> tuple[Path, list[str]]:
    gsm8k = load_problems(DatasetConfig(source="gsm8k", split="train", limit=40))
    copies = [p for p in math500 if len(words(p.question)) >= 20][:3]
    rows = [{"id": p.id, "question": p.question, "answer": p.answer} for p in gsm8k]
    rows += [{"id": f"copy-{i}", "question": p.question, "answer": p.answer} for i, p in enumerate(copies)]
    path = tmp_path / "planted.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path, [f"copy-{i}" for i in range(len(copies))]


def _ctx(tmp_path: Path, problems: dict, evaluation: list[dict]) -> RunContext:
    config = parse_config({"student": {"engine": {"model": "unused"}}, "problems": problems,
                           "evaluation": {"datasets": evaluation}})
    return RunContext(config=config, store=RunStore(tmp_path / "run"), console=Console(file=io.StringIO(), width=200))


def test_the_load_stage_reports_by_default_and_drops_when_asked(tmp_path: Path, math500) -> None:
    path, planted = _planted(tmp_path, math500)
    math = [{"source": "math500", "split": "test"}]
    reported = _ctx(tmp_path / "a", {"source": str(path)}, math)
    assert load_stage(reported) == {"problems": 43, "contaminated": 3, "dropped": 0}
    record = reported.store.read_json(CONTAMINATION)
    assert record["flagged"] == planted and record["dropped"] == [] and record["benchmarks_checked"] == ["math500:test"]
    assert "3 of 43 training problems" in reported.console.file.getvalue()

    dropping = _ctx(tmp_path / "b", {"source": str(path), "decontaminate": True}, math)
    assert load_stage(dropping) == {"problems": 40, "contaminated": 3, "dropped": 3}
    assert dropping.store.read_json(CONTAMINATION)["dropped"] == planted
    assert not set(planted) & {p.id for p in dropping.problems()}

    # other evaluation sets: a dropping selection is checked again (the copies of MATH-500 stay in)
    again = _ctx(tmp_path / "b", {"source": str(path), "decontaminate": True}, [{"source": "aime24", "split": "test"}])
    assert load_stage(again) == {"problems": 43}
    assert again.store.read_json(CONTAMINATION)["benchmarks_checked"] == ["aime24:test"]


def test_lab_problems_and_switched_off_sources_are_not_checked(tmp_path: Path, math500) -> None:
    path, _ = _planted(tmp_path, math500)
    math = [{"source": "math500", "split": "test"}]
    lab = _ctx(tmp_path / "lab", {"source": "lab", "limit": 5}, [{"source": "lab", "split": "test", "limit": 5}])
    off = _ctx(tmp_path / "off", {"source": str(path), "decontaminate": False}, math)
    for ctx in (lab, off):
        load_stage(ctx)
        assert ctx.store.read_json(CONTAMINATION, missing=None) is None


def test_check_config_reads_a_problem_file_against_the_configs_evaluation_sets(tmp_path: Path, math500) -> None:
    path, planted = _planted(tmp_path, math500)
    config = parse_config({"student": {"engine": {"model": "unused"}},
                           "evaluation": {"datasets": [{"source": "math500", "split": "test"}]}})
    assert check_config(config, str(path))["flagged"] == planted
    assert check_config(config, str(path), limit=40)["flagged"] == []
