"""The lab world: deterministic, disjoint splits, integer arithmetic that matches its own graph."""

from __future__ import annotations

import json
from collections import Counter

from stylealign.lab.world import find_problem, generate, load_lab_problems
from stylealign.records import Problem, from_dict, to_dict

OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b}


def test_same_seed_same_problems_other_seed_other_problems():
    first = load_lab_problems("test", limit=20, seed=3)
    again = load_lab_problems("test", limit=20, seed=3)
    assert [to_dict(p) for p in first] == [to_dict(p) for p in again]
    other = load_lab_problems("test", limit=20, seed=4)
    assert {p.question for p in first}.isdisjoint({p.question for p in other})


def test_offset_and_limit_page_through_a_split():
    whole = load_lab_problems("train", limit=12)
    assert [p.id for p in load_lab_problems("train", limit=4, offset=8)] == [p.id for p in whole[8:]]
    assert len(load_lab_problems("test")) == 1000


def test_splits_are_disjoint():
    questions = {s: {p.question for p in load_lab_problems(s, limit=600)} for s in ("train", "test", "pretrain")}
    assert len(questions["test"]) == 600
    assert questions["train"].isdisjoint(questions["test"])
    assert questions["pretrain"].isdisjoint(questions["train"] | questions["test"])


def test_graph_is_integer_consistent_and_json_round_trips():
    problems = load_lab_problems("test", limit=300)
    op_counts = set()
    for problem in problems:
        assert problem.source == "lab"
        nodes = problem.metadata["nodes"]
        op_counts.add(len(nodes))
        values = {f["id"]: f["value"] for f in problem.metadata["facts"]}
        for node in nodes:
            a, b = (values[arg] for arg in node["args"])
            assert (a, b) == (node["a"], node["b"])
            result = OPS[node["op"]](a, b)
            assert result == int(result) and result == node["value"] > 0
            values[node["id"]] = node["value"]
        assert problem.answer == str(nodes[-1]["value"])
        assert problem.reference_solution.endswith(f"#### {problem.answer}")
        assert from_dict(Problem, json.loads(json.dumps(to_dict(problem)))) == problem
    assert op_counts == {2, 3, 4, 5, 6}
    assert any(p.metadata["distractors"] for p in problems) and not all(p.metadata["distractors"] for p in problems)


def test_difficulty_levels_grow_and_pretraining_holds_only_the_easier_ones():
    """The student pretrains on levels 1-3 and a little of level 4; train and test hold all five, each harder
    than the last."""
    test = load_lab_problems("test", limit=500)
    pretrain = load_lab_problems("pretrain", limit=300)
    pretrain_levels = Counter(p.metadata["level"] for p in pretrain)
    assert set(pretrain_levels) == {1, 2, 3, 4} and 0.05 < pretrain_levels[4] / len(pretrain) < 0.15
    by_level = {level: [p for p in test if p.metadata["level"] == level] for level in range(1, 6)}
    assert all(len(group) >= 70 for group in by_level.values())

    def mean(values):
        return sum(values) / len(values)

    relations = [mean([sum(n["kind"] == "relation" for n in p.metadata["nodes"]) for p in g]) for g in by_level.values()]
    assert relations == [1, 2, 3, 4, 5]
    distractors = [mean([len(p.metadata["distractors"]) for p in g]) for g in by_level.values()]
    largest = [mean([p.metadata["start"]["value"] for p in g]) for g in by_level.values()]
    assert distractors == sorted(distractors) and distractors[0] == 0 and distractors[-1] > 1
    assert largest == sorted(largest)


def test_find_problem_by_question_text():
    problem = load_lab_problems("train", limit=3)[2]
    assert find_problem("  " + problem.question.replace(" ", "\n ", 1)) == problem
    assert find_problem("What is 2 + 2?") is None
    assert generate(0, 5) == generate(0, 5)
