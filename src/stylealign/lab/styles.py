"""The two ways of writing a lab solution: the student's native style and the oracle's polished one.

The student writes like a small model trained on terse worked examples: it
restates the starting fact, then one sentence per operation that repeats the
fact it uses and does the arithmetic in ASCII (`..., so Anna has 12 * 3 = 36
apples.`), and ends with `The answer is N.` The oracle
writes like a large instruct model: an opening sentence, transitions,
explanations before results, LaTeX inline math (`\\( 3 \\times 12 = 36 \\)`,
`\\frac{}{}`), two operations per paragraph and a boxed final answer. Both
separate steps with blank lines, so `split_steps(text)` sees their steps.
"""

from __future__ import annotations

import random
from typing import Any

STEP_SEP = "\n\n"
ASCII_OPS = {"+": "+", "-": "-", "*": "*", "/": "/"}
WORDS = {2: "two", 3: "three", 4: "four", 5: "five"}
FRACTION_WORDS = {2: "half", 3: "a third", 4: "a quarter"}
OPENINGS = (
    "Let's work through the relationships one at a time.",
    "We can find the answer by computing each quantity from the one it depends on.",
    "To solve this, we track how many each person has, step by step.",
)
TRANSITIONS = ("Next,", "Then,", "Moving on,", "Now,")


def student_equation(a: int, op: str, b: int, value: int | str) -> str:
    return f"{a} {ASCII_OPS[op]} {b} = {value}"


def student_step(graph: dict[str, Any], node: dict[str, Any]) -> str:
    """One operation in the student's words: the fact it uses, restated, then the arithmetic.

    `node` carries the (possibly wrong) a, b and value, so the same template writes repairs.
    """
    eq = student_equation(node["a"], node["op"], node["b"], node["value"])
    if node["kind"] == "together":
        return f"Together {node['subject']} have {eq} {graph['items']}."
    facts = {f["id"]: f["text"] for f in graph["facts"]}
    clause = facts[node["args"][1]].rstrip(".")
    if node["kind"] == "cost":
        return f"{clause}, so {node['subject']}'s {graph['items']} cost {eq} dollars."
    return f"{clause}, so {node['subject']} has {eq} {graph['items']}."


def student_final(answer: int | str) -> str:
    return f"The answer is {answer}."


def student_opening(graph: dict[str, Any]) -> str:
    return f"{graph['start']['subject']} has {graph['start']['value']} {graph['items']}."


def student_solution(graph: dict[str, Any]) -> str:
    steps = [student_opening(graph), *(student_step(graph, n) for n in graph["nodes"])]
    steps.append(student_final(graph["nodes"][-1]["value"]))
    return STEP_SEP.join(steps)


def _oracle_math(node: dict[str, Any]) -> str:
    a, b, v, op = node["a"], node["b"], node["value"], node["op"]
    if op == "*":
        return f"\\( {b} \\times {a} = {v} \\)" if node["kind"] == "relation" else f"\\( {a} \\times {b} = {v} \\)"
    if op == "/":
        return f"\\( \\frac{{{a}}}{{{b}}} = {v} \\)"
    return f"\\( {a} {op} {b} = {v} \\)"


def oracle_sentence(graph: dict[str, Any], node: dict[str, Any]) -> str:
    """One operation explained before it is computed, the way a large instruct model writes."""
    items, math = graph["items"], _oracle_math(node)
    if node["kind"] == "together":
        return f"Adding the two amounts, {node['subject']} have {math} {items} in total."
    if node["kind"] == "cost":
        return f"At \\( {node['b']} \\) dollars per {graph['item']}, {node['subject']}'s {items} are worth {math} dollars."
    who, ref, b = node["subject"], node["ref"], node["b"]
    reason = {
        "+": f"{who} has {b} more than {ref}",
        "-": f"{who} has {b} fewer than {ref}",
        "*": f"{who} has {WORDS.get(b, b)} times as many as {ref}",
        "/": f"{who} has {FRACTION_WORDS.get(b, f'1/{b}')} as many as {ref}",
    }[node["op"]]
    return f"Since {reason}, {who} has {math} {items}."


def oracle_final(answer: int | str) -> str:
    return f"Therefore, the answer is \\( \\boxed{{{answer}}} \\)."


def oracle_solution(graph: dict[str, Any], question: str, groups: list[list[dict[str, Any]]] | None = None) -> str:
    """The oracle's full solution; `groups` sets the paragraphs (default: two operations per paragraph)."""
    rng = random.Random(question)
    nodes = graph["nodes"]
    if groups is None:
        groups = [nodes[i : i + 2] for i in range(0, len(nodes), 2)]
    start = graph["start"]
    paragraphs = [rng.choice(OPENINGS)]
    for i, group in enumerate(groups):
        sentences = [oracle_sentence(graph, n) for n in group]
        if i == 0:
            sentences.insert(0, f"We start from {start['subject']}, who has \\( {start['value']} \\) {graph['items']}.")
        else:
            sentences[0] = f"{rng.choice(TRANSITIONS)} {sentences[0][0].lower()}{sentences[0][1:]}"
        paragraphs.append(" ".join(sentences))
    paragraphs.append(oracle_final(nodes[-1]["value"]))
    return STEP_SEP.join(paragraphs)
