"""The lab's world: multi-step arithmetic word problems with a known computation graph.

Problems chain comparisons between people ("Anna has 3 times as many apples
as Tom"), in the spirit of GSM8K, and may end by combining two results or
pricing the last one. Each problem has a difficulty `level` (1-5, in
`metadata["level"]`): the level is the number of comparisons in the chain,
and higher levels also carry more distractor facts and larger numbers
(`LEVELS`). The student's pretraining corpus holds levels 1-3 and a few
level-4 problems (one in ten, `PRETRAIN_LEVELS`), while the train and test
splits hold all five equally, so a converged student is reliable on short
chains, sometimes right on level 4 and fails more often the longer and larger
a problem gets, as a real model does. Every problem is generated from `(seed, index)` alone,
so the world is deterministic; a hash of the question text assigns it to a
split, so splits are disjoint by construction. `Problem.metadata` holds the
JSON-able graph (`facts`, `nodes`, `subjects`, `item`) the checker and the
renderers of each writing style read.
"""

from __future__ import annotations

import hashlib
import random
from functools import lru_cache
from typing import Any

from stylealign.records import Problem, content_id

NAMES = (
    "Tom", "Anna", "Ben", "Maya", "Leo", "Sara", "Omar", "Nina", "Raj", "Lily", "Sam", "Eva", "Jack", "Mia",
    "Noah", "Zoe", "Ivan", "Lucy", "Paul", "Emma", "Carl", "Rosa", "Dan", "Ella",
)  # fmt: skip
ITEMS = (
    ("apple", "apples"), ("pencil", "pencils"), ("sticker", "stickers"), ("cookie", "cookies"),
    ("marble", "marbles"), ("book", "books"), ("card", "cards"), ("egg", "eggs"), ("shell", "shells"),
    ("coin", "coins"), ("balloon", "balloons"), ("stamp", "stamps"),
)  # fmt: skip
FRACTIONS = {2: "half", 3: "a third", 4: "a quarter"}
DISTRACTORS = (
    "{name} is {n} years old.",
    "{name} lives {n} miles from school.",
    "{name} has {n} {other}.",
    "{name} walked {n} minutes to the park.",
)
SPLITS = {"test": (0, 10, 1000), "train": (10, 40, 5000), "pretrain": (40, 100, None)}
"""split -> (first hash bucket, end bucket out of 100, default size)."""

LEVELS: dict[int, dict[str, Any]] = {
    1: {"distractors": (0, 0), "start": (4, 30), "max_value": 200},
    2: {"distractors": (0, 1), "start": (4, 30), "max_value": 200},
    3: {"distractors": (1, 1), "start": (4, 40), "max_value": 200},
    4: {"distractors": (1, 1), "start": (10, 60), "max_value": 400},
    5: {"distractors": (1, 2), "start": (10, 90), "max_value": 600},
}
"""level -> distractor facts (min, max), starting value range, cap on any intermediate value.
The level itself is the number of comparisons in the chain."""
PRETRAIN_LEVELS = (1, 2, 3, 1, 2, 3, 1, 2, 3, 4)
"""The pretraining split's levels, cycled through in order: levels 1-3, and level 4 one time in ten."""


def _relation(rng: random.Random, cur: int, max_value: int) -> tuple[str, int, int] | None:
    """One comparison step from the current value: (op, operand, result), or None if none fits."""
    options = ["+"]
    if cur <= 25:
        options.append("*")
    if any(cur % b == 0 for b in FRACTIONS):
        options.append("/")
    if cur > 6:
        options.append("-")
    op = rng.choice(options)
    if op == "+":
        b = rng.randint(2, 15)
        return op, b, cur + b
    if op == "-":
        b = rng.randint(2, min(15, cur - 3))
        return op, b, cur - b
    if op == "*":
        b = rng.choice([2, 3, 4] if cur <= 12 else [2, 3])
        return (op, b, cur * b) if cur * b <= max_value else None
    b = rng.choice([b for b in FRACTIONS if cur % b == 0])
    return op, b, cur // b


def generate(seed: int, index: int, levels: tuple[int, ...] = tuple(LEVELS)) -> dict[str, Any]:
    """The graph of problem `index` of the world `seed` (pure: same inputs, same problem), at one of `levels`."""
    rng = random.Random(f"stylealign-lab:{seed}:{index}")
    level = levels[index % len(levels)]
    spec = LEVELS[level]
    item, items = rng.choice(ITEMS)
    n_rel = level
    ending = rng.choice(["together", "cost"]) if n_rel == 1 else rng.choice(["ask", "together", "cost"])
    n_distractors = rng.randint(*spec["distractors"])
    names = rng.sample(NAMES, n_rel + 1 + n_distractors)
    start = rng.randint(*spec["start"])
    facts: list[dict[str, Any]] = [{"id": "f0", "value": start, "text": f"{names[0]} has {start} {items}."}]
    nodes: list[dict[str, Any]] = []
    values = {names[0]: start}
    prev, prev_id = names[0], "f0"
    for i in range(1, n_rel + 1):
        rel = _relation(rng, values[prev], spec["max_value"])
        while rel is None:
            rel = _relation(rng, values[prev], spec["max_value"])
        op, b, value = rel
        who = names[i]
        if op == "+":
            text = f"{who} has {b} more {items} than {prev}."
        elif op == "-":
            text = f"{who} has {b} fewer {items} than {prev}."
        elif op == "*":
            text = f"{who} has {b} times as many {items} as {prev}."
        else:
            text = f"{who} has {FRACTIONS[b]} as many {items} as {prev}."
        facts.append({"id": f"f{i}", "value": b, "text": text})
        nodes.append(
            {"id": f"n{i}", "op": op, "args": [prev_id, f"f{i}"], "a": values[prev], "b": b, "value": value,
             "subject": who, "ref": prev, "kind": "relation"}
        )  # fmt: skip
        values[who] = value
        prev, prev_id = who, f"n{i}"
    last = names[n_rel]
    if ending == "together":
        other = names[rng.randrange(n_rel)]
        other_id = "f0" if other == names[0] else f"n{names.index(other)}"
        value = values[last] + values[other]
        nodes.append(
            {"id": f"n{n_rel + 1}", "op": "+", "args": [prev_id, other_id], "a": values[last], "b": values[other],
             "value": value, "subject": f"{last} and {other}", "ref": other, "kind": "together"}
        )  # fmt: skip
        ask = f"How many {items} do {last} and {other} have together?"
    elif ending == "cost":
        price = rng.randint(2, 6)
        facts.append({"id": f"f{n_rel + 1}", "value": price, "text": f"Each {item} costs {price} dollars."})
        value = values[last] * price
        nodes.append(
            {"id": f"n{n_rel + 1}", "op": "*", "args": [prev_id, f"f{n_rel + 1}"], "a": values[last], "b": price,
             "value": value, "subject": last, "ref": last, "kind": "cost"}
        )  # fmt: skip
        ask = f"How many dollars are {last}'s {items} worth?"
    else:
        ask = f"How many {items} does {last} have?"
    sentences = [f["text"] for f in facts]
    distractors = []
    for name in names[n_rel + 1 :]:
        other_items = rng.choice([p for _, p in ITEMS if p != items])
        value = rng.randint(3, 40)
        distractors.append({"value": value, "text": rng.choice(DISTRACTORS).format(name=name, n=value, other=other_items)})
        sentences.insert(rng.randint(1, len(sentences)), distractors[-1]["text"])
    return {
        "question": " ".join([*sentences, ask]),
        "level": level,
        "item": item,
        "items": items,
        "start": {"subject": names[0], "value": start},
        "facts": facts,
        "nodes": nodes,
        "distractors": distractors,
        "answer": nodes[-1]["value"],
    }


def gold_solution(graph: dict[str, Any]) -> str:
    """The dataset's neutral reference style (GSM8K-like calculator annotations), neither student nor oracle."""
    lines = []
    for node in graph["nodes"]:
        a, b, op, v = node["a"], node["b"], node["op"], node["value"]
        if node["kind"] == "together":
            lines.append(f"Together {node['subject']} have {a}{op}{b}=<<{a}{op}{b}={v}>>{v} {graph['items']}.")
        elif node["kind"] == "cost":
            lines.append(f"The {graph['items']} are worth {a}{op}{b}=<<{a}{op}{b}={v}>>{v} dollars.")
        else:
            lines.append(f"{node['subject']} has {a}{op}{b}=<<{a}{op}{b}={v}>>{v} {graph['items']}.")
    lines.append(f"#### {graph['answer']}")
    return "\n".join(lines)


def _bucket(question: str) -> int:
    return int(hashlib.sha256(question.encode("utf-8")).hexdigest()[:8], 16) % 100


def to_problem(graph: dict[str, Any], seed: int, split: str) -> Problem:
    metadata = {k: graph[k] for k in ("level", "item", "items", "start", "facts", "nodes", "distractors")}
    metadata.update(seed=seed, split=split)
    return Problem(
        id=f"lab-{content_id(seed, graph['question'])}",
        question=graph["question"],
        answer=str(graph["answer"]),
        reference_solution=gold_solution(graph),
        source="lab",
        metadata=metadata,
    )


def iter_split(split: str, seed: int = 0, levels: tuple[int, ...] | None = None):
    """Problems of one split in a fixed order, without repeats (an endless generator); `levels` are cycled
    through in order (a level listed twice comes twice as often), by default `PRETRAIN_LEVELS` for the
    pretraining split and every level, equally, for train and test."""
    if split not in SPLITS:
        raise ValueError(f"unknown lab split {split!r}; choose from {sorted(SPLITS)}")
    lo, hi, _ = SPLITS[split]
    levels = levels or (PRETRAIN_LEVELS if split == "pretrain" else tuple(LEVELS))
    seen: set[str] = set()
    index = 0
    while True:
        graph = generate(seed, index, levels)
        index += 1
        question = graph["question"]
        if lo <= _bucket(question) < hi and question not in seen:
            seen.add(question)
            yield to_problem(graph, seed, split)


def load_lab_problems(
    split: str, limit: int | None = None, offset: int = 0, seed: int = 0, levels: tuple[int, ...] | None = None
) -> list[Problem]:
    """Problems `offset .. offset+limit` of a split ("train", "test" or "pretrain", the student's own corpus);
    `levels` as in `iter_split`."""
    size = SPLITS.get(split, (0, 0, None))[2]
    if limit is None:
        if size is None:
            raise ValueError(f"lab split {split!r} is unbounded: pass a limit")
        limit = max(size - offset, 0)
    elif size is not None:
        limit = max(min(limit, size - offset), 0)
    problems = []
    for i, problem in enumerate(iter_split(split, seed, levels)):
        if len(problems) >= limit:
            break
        if i >= offset:
            problems.append(problem)
    return problems


def normalize_question(text: str) -> str:
    return " ".join(text.split())


@lru_cache(maxsize=4)
def question_index(seed: int = 0) -> dict[str, Problem]:
    """Every test and train problem of a world by its (whitespace-normalised) question."""
    return {normalize_question(p.question): p for split in ("test", "train") for p in load_lab_problems(split, seed=seed)}


def find_problem(question: str, seed: int = 0) -> Problem | None:
    return question_index(seed).get(normalize_question(question))
