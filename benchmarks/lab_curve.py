"""How early does a student recipe learn? Greedy accuracy by level during pretraining, for recipe searches.

Trains the shipped recipe (changed by `--set`) and, every `--every` steps until `--last-step`, saves the model
and measures greedy accuracy on lab test problems and where each solution first goes wrong. Before the
final decay the learning rate is constant, so the model after step s is the model of an s-step recipe
without decay: a recipe that is to build a usable student in fewer steps has to get off zero here early. Two changes that are not recipe values can be
tried too: the loss on the question as well as the response, and dense arithmetic drills (documents of
`--drill-equations` equations of the world's own operations) added to the corpus.

    .venv/bin/python benchmarks/lab_curve.py [--every 200] [--last-step 800] [--set learning_rate=0.016 ...]
                                             [--loss-on-question] [--drills 3000]
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

from lab import greedy_by_level, recipe_with

import stylealign.lab.student as student
from stylealign.engines.hf import HFEngine
from stylealign.lab.checker import NUM, equations, normalize
from stylealign.lab.styles import STEP_SEP, student_equation
from stylealign.lab.world import load_lab_problems
from stylealign.records import Problem


def written_equations(text: str) -> list[tuple[list[Fraction], Fraction | None, Fraction | None]]:
    """(operands, true value, written result) of each equation in `text`, read by the lab's step checker."""
    return [([Fraction(n) for n in re.findall(NUM, parts[0])], values[0], values[-1])
            for parts, values in equations(normalize(text))]  # fmt: skip


def first_errors(problems: list[Problem], texts: list[str]) -> dict[str, int]:
    """Where each greedy solution first goes wrong, in the problem's order of operations: `operand` (an
    equation on other numbers than the step needs), `arithmetic` (the right numbers, a wrong result),
    `missing` (fewer equations than steps) or `right` (every step's equation right). The two skills the
    student learns late (docs/lab.md) are told apart."""
    counts = dict.fromkeys(("right", "operand", "arithmetic", "missing"), 0)
    for problem, text in zip(problems, texts, strict=True):
        written = written_equations(text)
        kind = "right"
        for index, node in enumerate(problem.metadata["nodes"]):
            if index >= len(written):
                kind = "missing"
                break
            operands, _, result = written[index]
            if sorted(operands) != sorted([node["a"], node["b"]]):
                kind = "operand"
                break
            if result != node["value"]:
                kind = "arithmetic"
                break
        counts[kind] += 1
    return counts


def right_results(texts: list[str]) -> float:
    """Share of the equations written whose result is right for their own operands: arithmetic alone."""
    written = [(value, result) for text in texts for _, value, result in written_equations(text)]
    return sum(value is not None and value == result for value, result in written) / max(len(written), 1)


class Stop(Exception):
    """Raised from the step callback once the curve has its last point."""


def add_drills(count: int, equations: int) -> None:
    """Make `pretraining_corpus` append `count` drill documents, each `equations` operations drawn from
    the graphs of pretraining problems the corpus does not use, in the student's notation."""
    corpus = student.pretraining_corpus

    def with_drills(recipe: dict[str, Any]) -> list[student.Document]:
        documents = corpus(recipe)
        levels = tuple(recipe["pretrain_levels"])
        extra = load_lab_problems("pretrain", limit=recipe["problems"] + 4000, seed=recipe["world_seed"], levels=levels)
        nodes = [node for problem in extra[recipe["problems"] :] for node in problem.metadata["nodes"]]
        rng = random.Random("drills")
        for _ in range(count):
            lines = [student_equation(n["a"], n["op"], n["b"], n["value"], rng.random() < 0.5)
                     for n in rng.sample(nodes, equations)]  # fmt: skip
            documents.append(student.Document("Work out these sums.", STEP_SEP.join(lines)))
        return documents

    student.pretraining_corpus = with_drills


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=200)
    parser.add_argument("--last-step", type=int, default=800, help="the step of the last measurement")
    parser.add_argument("--problems", type=int, default=100, help="lab test problems for accuracy")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="change one recipe value")
    parser.add_argument("--loss-on-question", action="store_true", help="train on the question tokens too")
    parser.add_argument("--drills", type=int, default=0, help="arithmetic drill documents to add")
    parser.add_argument("--drill-equations", type=int, default=10)
    args = parser.parse_args()
    recipe = recipe_with(args.set)
    if args.loss_on_question:
        encode = student.encode_examples
        student.encode_examples = lambda tokenizer, documents: [(ids, 0) for ids, _ in encode(tokenizer, documents)]
    if args.drills:
        add_drills(args.drills, args.drill_equations)
    root = Path(tempfile.mkdtemp(prefix="stylealign-curve-"))
    test = load_lab_problems("test", limit=args.problems)
    start, measuring = time.perf_counter(), 0.0

    def on_step(step: int, model: Any, tokenizer: Any) -> None:
        nonlocal measuring
        if step % args.every:
            return
        began = time.perf_counter()
        model.save_pretrained(root / "checkpoint")
        tokenizer.save_pretrained(root / "checkpoint")
        model.eval()
        accuracy, levels, texts = greedy_by_level(HFEngine(str(root / "checkpoint"), device="cpu", batch_size=50, progress=False), test)
        model.train()
        measuring += time.perf_counter() - began
        by_level = " ".join(f"L{k} {v:.2f}" for k, v in levels.items())
        errors = " ".join(f"{k} {v}" for k, v in first_errors(test, texts).items())
        print(f"step {step} ({time.perf_counter() - start - measuring:.0f}s without measuring) greedy {accuracy:.3f}"
              f"  {by_level}  first error: {errors}  right results {right_results(texts):.2f}", flush=True)  # fmt: skip
        if step >= args.last_step:
            raise Stop

    try:
        student.pretrain(root / "student", recipe, on_step=on_step)
    except Stop:
        pass
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
