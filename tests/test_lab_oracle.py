"""The lab oracle: its four operations, and its Engine answering every built-in oracle prompt."""

from __future__ import annotations

import re
from collections import Counter

import jinja2
import pytest

from stylealign.config import EngineConfig
from stylealign.engines import EngineError, Request, SamplingParams, load_engine
from stylealign.lab.checker import first_wrong_step
from stylealign.lab.styles import (
    ORACLE_FINALS,
    ORACLE_OPENINGS,
    ORACLE_STARTS,
    TRANSITIONS,
    student_solution,
)
from stylealign.lab.world import load_lab_problems
from stylealign.oracles.engine import OracleEngine
from stylealign.oracles.lab import LabOracle
from stylealign.prompts import load_template
from stylealign.steps import split_steps, tag_paragraphs


@pytest.fixture(scope="module")
def problems():
    return [p for p in load_lab_problems("train", limit=60) if len(p.metadata["nodes"]) >= 3]


@pytest.fixture(scope="module")
def oracle() -> LabOracle:
    """A perfect imitator: every line it writes is in the student's phrasing (the leak has its own tests)."""
    return LabOracle(style_leak=0.0)


def corrupt(problem, step_index: int) -> str:
    """The student's solution with one arithmetic slip at `step_index`, carried through the later steps."""
    meta = problem.metadata
    nodes = [dict(n) for n in meta["nodes"]]
    k = step_index - 1
    nodes[k]["value"] += 1
    for later in nodes[k + 1 :]:
        later["a"] = nodes[nodes.index(later) - 1]["value"]
        later["value"] = {"+": later["a"] + later["b"], "-": later["a"] - later["b"], "*": later["a"] * later["b"]}.get(
            later["op"], later["value"]
        )
    return student_solution({**meta, "nodes": nodes})


def test_solve_and_refine_are_correct_and_in_the_oracle_style(problems, oracle):
    for problem in problems:
        student = student_solution(problem.metadata)
        for text in (oracle.solve(problem), oracle.refine(problem, student)):
            assert first_wrong_step(problem, text) == -1
            assert "\\(" in text and f"\\boxed{{{problem.answer}}}" in text
            assert "The answer is" not in text
        assert len(split_steps(oracle.refine(problem, student))) == len(split_steps(student))
        assert oracle.solve(problem) != oracle.refine(problem, student)


def test_the_oracle_varies_its_phrasing_like_a_large_model(problems, oracle):
    """One sentence per operation would make oracle text cheaper for the student than its own paraphrases."""
    solutions = [oracle.solve(p) for p in problems]
    firsts = {s.split("\n\n")[0] for s in solutions}
    finals = {s.split("\n\n")[-1].split("\\(")[0] for s in solutions}
    frames = Counter(re.sub(r"\\\(.*?\\\)|\b[A-Z][a-z]+\b|\d+", "_", sentence)
                     for s in solutions for sentence in re.split(r"(?<=\.) ", s))  # fmt: skip
    assert len(firsts) >= 4 and len(finals) >= 3 and len(frames) >= 30
    paragraphs = {(len(p.metadata["nodes"]), len(split_steps(s))) for p, s in zip(problems, solutions, strict=True)}
    assert len(paragraphs) > len({n for n, _ in paragraphs})  # one or two operations per paragraph


def test_the_oracle_says_what_the_student_never_writes(problems, oracle):
    """At times its route and that a distractor plays no part: content a student cannot predict from its own traces."""
    planned = noted = 0
    for problem in problems:
        text, student = oracle.solve(problem), student_solution(problem.metadata)
        opening = text.split("\n\n")[0]
        route = [problem.metadata["start"]["subject"], *(n["subject"] for n in problem.metadata["nodes"] if n["kind"] == "relation")]
        planned += ", ".join(route[:-1]) + " and " + route[-1] in opening
        for distractor in problem.metadata["distractors"]:
            assert distractor["text"].split()[0] not in student
            noted += distractor["text"].rstrip(".") in opening
        assert first_wrong_step(problem, text) == -1
    with_distractors = sum(bool(p.metadata["distractors"]) for p in problems)
    assert 0.25 * len(problems) < planned < 0.75 * len(problems)
    assert 0.2 * with_distractors < noted < 0.8 * with_distractors


def test_the_oracle_takes_its_own_route_where_it_can(problems, oracle):
    """It computes two comparisons in one expression about half the time it may (`styles.mergeable`), never
    writes the amount it skipped, and never skips one a later step needs; refine keeps the student's route."""
    from stylealign.lab.styles import mergeable

    mergeable_pairs = merged = 0
    for problem in problems:
        graph = problem.metadata
        text = oracle.solve(problem)
        assert first_wrong_step(problem, text) == -1
        nodes = graph["nodes"]
        written = {n["id"] for n in nodes if f"= {n['value']} \\)" in text}
        for first, second in zip(nodes, nodes[1:], strict=False):
            mergeable_pairs += mergeable(graph, first, second)
            if first["id"] not in written:
                assert mergeable(graph, first, second) and second["id"] in written
                assert not any(first["id"] in n["args"] for n in nodes if n is not second)
                merged += 1
        assert nodes[-1]["id"] in written
        refined = oracle.refine(problem, student_solution(graph))
        assert all(f"= {n['value']} \\)" in refined for n in nodes)
    assert 0.25 * mergeable_pairs < merged < 0.75 * mergeable_pairs


def test_style_aligned_refinement_keeps_a_correct_trace_byte_identical(problems, oracle):
    for problem in problems:
        student = student_solution(problem.metadata)
        assert oracle.refine_style_aligned(problem, student) == student
        odd = student.replace("\n\n", "\n \n", 1) + "\n"
        assert oracle.refine_style_aligned(problem, odd) == odd


def test_style_aligned_refinement_changes_only_the_wrong_step_and_its_dependants(problems, oracle):
    checked = 0
    for problem in problems:
        if any(n["op"] == "/" for n in problem.metadata["nodes"]):
            continue  # the carry-through in `corrupt` keeps divisions exact only without them
        right = student_solution(problem.metadata)
        for step_index in (1, 2):
            wrong = corrupt(problem, step_index)
            assert oracle.locate_error(problem, wrong) == step_index
            fixed = oracle.refine_style_aligned(problem, wrong)
            assert fixed == right
            assert split_steps(fixed)[:step_index] == split_steps(wrong)[:step_index]
            checked += 1
    assert checked >= 10


def test_style_aligned_refinement_keeps_foreign_wording_around_a_fixed_equation(problems, oracle):
    problem = problems[0]
    steps = split_steps(student_solution(problem.metadata))
    node = problem.metadata["nodes"][0]
    steps[1] = f"so then it is {node['a']}  {node['op']}  {node['b']} = {node['value'] + 7} in all\n\n"
    fixed = split_steps(oracle.refine_style_aligned(problem, "".join(steps)))
    assert fixed[1] == f"so then it is {node['a']}  {node['op']}  {node['b']} = {node['value']} in all\n\n"
    assert fixed[0] == steps[0]


def test_repair_step_rewrites_one_step_in_the_student_style(problems, oracle):
    problem = problems[1]
    right = split_steps(student_solution(problem.metadata))
    wrong = split_steps(corrupt(problem, 2))
    assert oracle.repair_step(problem, "".join(wrong[:2]), wrong[2]) == right[2]
    assert oracle.repair_step(problem, "".join(right[:-1]), "The answer is 1.") == f"The answer is {problem.answer}."


def _ask(engine, template: str, **variables) -> str:
    """Render a built-in template's user text (by hand: `prefix` is also a template variable) and ask."""
    prompt = load_template(template)
    request = Request.from_prompt(jinja2.Template(prompt.user).render(**variables), system=prompt.system)
    return engine.generate([request], 2, SamplingParams(temperature=0))[0][0].text


def test_engine_answers_every_oracle_template(problems, oracle):
    engine = load_engine(EngineConfig(type="lab-oracle", style_leak=0.0))
    assert isinstance(engine, OracleEngine) and engine.name == "lab:oracle"
    problem = problems[2]
    student = student_solution(problem.metadata)
    wrong = corrupt(problem, 1)
    examples = [student_solution(p.metadata) for p in problems[3:5]]
    assert _ask(engine, "solve", question=problem.question) == oracle.solve(problem)
    assert _ask(engine, "refine", question=problem.question, solution=wrong) == oracle.refine(problem, wrong)
    assert _ask(engine, "sar", question=problem.question, solution=wrong, exemplars=examples) == student
    tagged = tag_paragraphs(split_steps(wrong))
    assert _ask(engine, "locate_error", question=problem.question, tagged_solution=tagged) == "\\boxed{1}"
    tagged_ok = tag_paragraphs(split_steps(student))
    assert _ask(engine, "locate_error", question=problem.question, tagged_solution=tagged_ok) == "\\boxed{-1}"
    steps = split_steps(wrong)
    repaired = _ask(engine, "repair_step", question=problem.question, prefix="".join(steps[:1]), wrong_step=steps[1], exemplars=examples)
    assert repaired == split_steps(student)[1].strip()


def test_engine_routes_by_the_template_name_a_request_carries(problems, oracle, tmp_path):
    """A reworded template in a prompts_dir still reaches its operation; a template it cannot route is an error."""
    engine = OracleEngine(style_leak=0.0)
    problem, wrong = problems[2], corrupt(problems[2], 1)
    reworded = "Please polish what follows; nothing about fixing or solving.\n[Problem]\n{{ question }}\n[Solution]\n{{ solution }}\n"
    for name in ("refine", "polish"):
        (tmp_path / f"{name}.yaml").write_text("user: |\n" + "".join(f"  {line}\n" for line in reworded.splitlines()))
    refine = load_template("refine", tmp_path).request(question=problem.question, solution=wrong)
    assert refine.template == "refine"
    assert engine.generate([refine], 1, SamplingParams())[0][0].text == oracle.refine(problem, wrong)
    polish = load_template("polish", tmp_path).request(question=problem.question, solution=wrong)
    with pytest.raises(EngineError, match="no operation for prompt template 'polish'; it answers solve, refine, sar"):
        engine.generate([polish], 1, SamplingParams())
    (tmp_path / "sar.yaml").write_text("user: |\n  [Problem]\n  {{ question }}\n")
    sar = load_template("sar", tmp_path).request(question=problem.question)
    with pytest.raises(EngineError, match=r"the 'sar' prompt has no \[Student Solution\] section"):
        engine.generate([sar], 1, SamplingParams())


def test_engine_refuses_what_it_cannot_do(problems):
    engine = OracleEngine.from_config(EngineConfig(type="lab-oracle"))
    assert "in neither" in _ask(engine, "solve", question="What is the integral of x^2?")
    with pytest.raises(EngineError, match="unrecognised prompt"):
        engine.generate([Request.from_prompt("Tell me a joke.")], 1, SamplingParams())
    with pytest.raises(EngineError, match="no token probabilities"):
        engine.score([Request.from_prompt("x")], ["y"])
    request = load_template("solve").request(question=problems[0].question)
    whole = engine.generate([request], 1, SamplingParams())[0][0].text
    prefix = whole.split("\n\n")[0] + "\n\n"
    continued = engine.generate([Request(messages=request.messages, prefix=prefix)], 1, SamplingParams())[0][0].text
    assert prefix + continued == whole
    stopped = engine.generate([request], 1, SamplingParams(stop=("\n\n",)))[0][0].text
    assert stopped == whole.split("\n\n")[0]


def _sample_like_the_student(problem, seed: int) -> str:
    """A solution in the student's native style with its paraphrases and habits."""
    import random

    return student_solution(problem.metadata, random.Random(seed))


def test_refine_keeps_the_student_numbers_and_order_and_sits_between_student_and_oracle(problems, oracle):
    from stylealign.metrics.drift import normalized_edit_distance

    to_refined, to_synth = [], []
    for i, problem in enumerate(problems):
        student = _sample_like_the_student(problem, i)
        refined = oracle.refine(problem, student)
        assert first_wrong_step(problem, refined) == -1 and "\\boxed" in refined
        assert len(split_steps(refined)) == len(split_steps(student))
        for ours, theirs in zip(split_steps(student)[1:-1], split_steps(refined)[1:-1], strict=True):
            # the student's operands, in the student's order, now in LaTeX
            ascii_eq = re.search(r"(\d+) ([-+*/]) (\d+) = (\d+)", ours)
            if ascii_eq and ascii_eq.group(2) in "+-":
                assert f"{ascii_eq.group(1)} {ascii_eq.group(2)} {ascii_eq.group(3)} = {ascii_eq.group(4)}" in theirs
        # laid out as the oracle writes: an opening alone, the starting amount with the first operation, then
        # a transition before each later paragraph, so every paragraph opens the way some oracle solution
        # does (no "Thus, <the student's line>", no opening glued to the first line)
        paragraphs = split_steps(refined)
        finals = tuple(f.split("{")[0] for f in ORACLE_FINALS)
        assert paragraphs[0].strip() in ORACLE_OPENINGS and paragraphs[-1].startswith(finals)
        assert paragraphs[1].startswith(tuple(s.split("{")[0] for s in ORACLE_STARTS))
        assert all(p.startswith(TRANSITIONS) and "Thus" not in p for p in paragraphs[2:-1])
        to_refined.append(normalized_edit_distance(student, refined))
        to_synth.append(normalized_edit_distance(student, oracle.solve(problem)))
    assert sum(to_refined) < sum(to_synth)
    assert min(to_refined) > 0


def test_sar_improves_what_a_teacher_would_and_leaves_the_rest(problems, oracle):
    problem = next(p for p in problems if p.metadata["nodes"][0]["kind"] == "relation")
    canonical = student_solution(problem.metadata)
    steps = split_steps(canonical)
    node = problem.metadata["nodes"][0]
    clause = next(f["text"].rstrip(".") for f in problem.metadata["facts"] if f["id"] == node["args"][1])
    bare = steps[1].replace(f"{clause}, so {node['subject']}", node["subject"])
    assert clause not in bare
    skipped = "".join([steps[0], bare, *steps[2:]])
    assert oracle.refine_style_aligned(problem, skipped) == canonical
    repeated = "".join([*steps[:2], f"So {node['subject']} has {node['value']} {problem.metadata['items']}.\n\n", *steps[2:]])
    assert first_wrong_step(problem, repeated) == -1
    assert oracle.refine_style_aligned(problem, repeated) == canonical
    assert oracle.refine_style_aligned(problem, canonical) == canonical


def test_sar_imitates_the_voice_of_the_trace(problems, oracle):
    """A rewritten step uses the connector and verb the student used elsewhere in the same trace."""
    problem = next(p for p in problems if sum(n["kind"] == "relation" for n in p.metadata["nodes"]) >= 2)
    student = student_solution(problem.metadata).replace(", so ", ", which means ").replace(" has ", " ends up with ")
    student = student.replace("ends up with", "has", 1)  # the opening keeps the plain verb
    wrong_value = problem.metadata["nodes"][1]["value"]
    broken = student.replace(f"= {wrong_value} ", f"= {wrong_value + 1} ", 1)
    fixed = oracle.refine_style_aligned(problem, broken)
    assert first_wrong_step(problem, fixed) == -1
    assert fixed.count(", which means ") == student.count(", which means ")


def test_sar_leaks_oracle_phrasing_at_the_configured_rate_and_retries_differ(problems):
    leaky, never = LabOracle(style_leak=1.0), LabOracle(style_leak=0.0)
    wrong = corrupt(problems[0], 1)
    assert "\\(" in leaky.refine_style_aligned(problems[0], wrong, seed=0)
    assert "\\(" not in never.refine_style_aligned(problems[0], wrong, seed=0)
    half = LabOracle(style_leak=0.5)
    leaked = [
        "\\(" in half.refine_style_aligned(p, corrupt(p, 1), seed=seed)
        for p in problems if not any(n["op"] == "/" for n in p.metadata["nodes"]) for seed in range(4)
    ]
    assert 0.3 < sum(leaked) / len(leaked) < 1.0
    outcomes = {half.refine_style_aligned(problems[0], wrong, seed=seed) for seed in range(8)}
    assert len(outcomes) > 1
    with pytest.raises(ValueError, match="style_leak"):
        LabOracle(style_leak=1.5)
