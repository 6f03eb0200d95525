"""The ways of writing a lab solution: the student's native style, the oracle's polished one, and the gold.

The student writes like a small model trained on terse worked examples: one
line per operation that usually restates the fact it uses and does the
arithmetic in ASCII (`..., so Anna has 12 * 3 = 36 apples.`), and a closing
`The answer is N.` It has several ways of saying each of these (`Voice`: a
connector, a verb, an opening, a closing, whether to repeat the unit), picks
among them per step, and has two habits a careful teacher would correct: it
sometimes skips restating the fact it uses, and sometimes repeats a result on
a line of its own. Those paraphrases give its own samples a realistic
perplexity (a real model is never certain of its next word), and the habits
give Style-Aligned Refinement something to improve beyond wrong answers.

The oracle writes like a large instruct model: an opening sentence, at
times followed by the route it will take or a remark that a fact of the
question is not needed (content the student never writes, `oracle_plan`),
its own route where it can (two comparisons in one expression, the amount
between them never written: `oracle_merged`, where the student writes every
step), transitions, explanations around results ("Since ..., ...", "..., since
..."), LaTeX inline math (`\\( 3 \\times 12 = 36 \\)`, `\\frac{}{}`), one or
two operations per paragraph and a boxed final answer, with several ways of
saying each (`ORACLE_*`). A real oracle's phrasing is hard for a small model
to predict; an oracle with one fixed sentence per operation would cost the
student less than its own paraphrased traces. Both separate steps with blank
lines, so `split_steps(text)` sees their steps.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

STEP_SEP = "\n\n"
ASCII_OPS = {"+": "+", "-": "-", "*": "*", "/": "/"}
WORDS = {2: "two", 3: "three", 4: "four", 5: "five"}
FRACTION_WORDS = {2: "half", 3: "a third", 4: "a quarter"}

STUDENT_CONNECTORS = (", so", ". So", ", which means", ", therefore")
STUDENT_VERBS = ("has", "now has", "ends up with")
STUDENT_OPENINGS = ("{who} has {n} {items}.", "{who} starts with {n} {items}.", "First, {who} has {n} {items}.")
STUDENT_TOGETHER = ("Together {who} have {eq} {items}.", "{who} have {eq} {items} together.", "In total, {who} have {eq} {items}.")
STUDENT_COST_VERBS = ("cost", "are worth")
STUDENT_FINALS = ("The answer is {n}.", "So the answer is {n}.", "The final answer is {n}.")
SKIP_RESTATEMENT = 0.2
"""How often the student computes a step without restating the fact it uses."""
REPEAT_RESULT = 0.1
"""How often the student repeats a result on a line of its own (`So Anna has 36 apples.`)."""

ORACLE_OPENINGS = (
    "Let's work through the relationships one at a time.",
    "We can find the answer by computing each quantity from the one it depends on.",
    "To solve this, we track how many each person has, step by step.",
    "Let's solve this step by step, following the chain of comparisons.",
    "We can work this out by finding each person's amount in turn.",
    "To answer this, we first need each person's amount along the chain.",
)
TRANSITIONS = ("Next,", "Then,", "Moving on,", "Now,", "After that,", "From there,")
ORACLE_BECAUSE = ("Since", "Because", "Given that")
ORACLE_RELATIONS = (
    "{because} {reason}, {who} has {math} {items}.",
    "{who} has {math} {items}, since {reason}.",
    "Given that {reason}, we get {math} {items} for {who}.",
    "We can get {who}'s amount from {ref}'s: since {reason}, {who} has {math} {items}.",
)
ORACLE_STARTS = (
    "We start from {who}, who has {n} {items}.",
    "We start with {who}, who has {n} {items}.",
    "Let's begin with {who}, who has {n} {items}.",
)
ORACLE_TOGETHER = (
    "Adding the two amounts, {who} have {math} {items} in total.",
    "Adding these up, {who} have {math} {items} together.",
    "Let's combine the two: {who} have {math} {items} in total.",
)
ORACLE_COSTS = (
    "At {price} dollars per {item}, {who}'s {items} are worth {math} dollars.",
    "Since each {item} costs {price} dollars, {who}'s {items} are worth {math} dollars.",
    "Given a price of {price} dollars per {item}, {who}'s {items} are worth {math} dollars.",
)
ORACLE_FINALS = ("Therefore, the answer is {boxed}.", "Therefore, the final answer is {boxed}.", "Thus, the answer is {boxed}.")
ORACLE_PLANS = (
    "We need the amounts of {chain}, in that order.",
    "The chain runs through {chain}.",
    "This takes us through {chain}, one after the other.",
)
ORACLE_NOTES = ("We can ignore that {fact}.", "The fact that {fact} does not matter here.", "Note that {fact} is not needed.")
ORACLE_PLAN = 0.5
"""How often the oracle's opening says the route it will take (the people whose amounts it needs, in order)."""
ORACLE_NOTE = 0.5
"""How often the oracle says that a fact of the question plays no part (each distractor, drawn alone)."""
ORACLE_LEADS = ("Since", "Because", "Given", "Adding", "At", "Let's", "We")
"""First words of the oracle's sentences that follow a transition in lower case ("Next, since ...")."""
ORACLE_OPS_PER_PARAGRAPH = (1, 2, 2)
"""How many operations the oracle puts in a paragraph, drawn per paragraph."""
ORACLE_MERGE = 0.5
"""How often the oracle computes two comparisons in one expression, skipping the amount between them
(`Sam has \\( 12 + 3 + 4 = 19 \\)`), where it may (`mergeable`). Pretraining documents never do."""
ORACLE_MERGED = (
    "{because} {reason} and {reason2}, {who} has {math} {items}.",
    "{who} has {math} {items}, since {reason} and {reason2}.",
    "{mid}'s amount is not needed: since {reason} and {reason2}, {who} has {math} {items}.",
)
"""The ways the oracle states a shortcut, in words its step-by-step documents use (no token the student never trained on)."""


@dataclass(frozen=True)
class Voice:
    """One choice of the student's phrasing; `None` fields are picked per step."""

    connector: str | None = None
    verb: str | None = None
    opening: str | None = None
    final: str | None = None
    unit: bool | None = None

    @classmethod
    def canonical(cls) -> Voice:
        return cls(STUDENT_CONNECTORS[0], STUDENT_VERBS[0], STUDENT_OPENINGS[0], STUDENT_FINALS[0], True)


def _pick(fixed: Any, options: tuple, rng: random.Random | None) -> Any:
    if fixed is not None:
        return fixed
    return options[0] if rng is None else rng.choice(options)


def restated_fact(graph: dict[str, Any], node: dict[str, Any]) -> str:
    """The fact a relation or price step uses, as a clause to restate (`Anna has 3 times as many apples as Tom`)."""
    return next(f["text"] for f in graph["facts"] if f["id"] == node["args"][1]).rstrip(".")


def student_equation(a: int, op: str, b: int, value: int | str, swap: bool = False) -> str:
    """`a op b = value`; `swap` writes commutative operations the other way round (`b op a`)."""
    if swap and op in "+*":
        a, b = b, a
    return f"{a} {ASCII_OPS[op]} {b} = {value}"


def student_step(
    graph: dict[str, Any],
    node: dict[str, Any],
    rng: random.Random | None = None,
    voice: Voice = Voice(),
    restate: bool = True,
) -> str:
    """One operation in the student's words: (usually) the fact it uses, restated, then the arithmetic.

    `node` carries the (possibly wrong) a, b and value, so the same template writes repairs. Without
    `rng` every choice is the first (canonical) one.
    """
    swap = rng is not None and rng.random() < 0.5
    eq = student_equation(node["a"], node["op"], node["b"], node["value"], swap)
    unit = _pick(voice.unit, (True, False), rng)
    items = f" {graph['items']}" if unit else ""
    if node["kind"] == "together":
        return _pick(None, STUDENT_TOGETHER, rng).format(who=node["subject"], eq=eq, items=graph["items"])
    connector = _pick(voice.connector, STUDENT_CONNECTORS, rng)
    clause = restated_fact(graph, node)
    if node["kind"] == "cost":
        verb = _pick(None, STUDENT_COST_VERBS, rng)
        result = f"{node['subject']}'s {graph['items']} {verb} {eq} dollars."
    else:
        result = f"{node['subject']} {_pick(voice.verb, STUDENT_VERBS, rng)} {eq}{items}."
    if not restate:
        return result[0].upper() + result[1:]
    return f"{clause}{connector} {result}" if connector != ". So" else f"{clause}. So {result}"


def student_repeat(graph: dict[str, Any], node: dict[str, Any]) -> str:
    """The student's redundant line: a result it has just computed, said again."""
    if node["kind"] == "cost":
        return f"So {node['subject']}'s {graph['items']} cost {node['value']} dollars."
    verb = "have" if node["kind"] == "together" else "has"
    return f"So {node['subject']} {verb} {node['value']} {graph['items']}."


def student_final(answer: int | str, rng: random.Random | None = None, voice: Voice = Voice()) -> str:
    return _pick(voice.final, STUDENT_FINALS, rng).format(n=answer)


def student_opening(graph: dict[str, Any], rng: random.Random | None = None, voice: Voice = Voice()) -> str:
    start = graph["start"]
    return _pick(voice.opening, STUDENT_OPENINGS, rng).format(who=start["subject"], n=start["value"], items=graph["items"])


def student_solution(graph: dict[str, Any], rng: random.Random | None = None) -> str:
    """A solution in the student's native style; without `rng`, the canonical phrasing and no habits."""
    steps = [student_opening(graph, rng)]
    for node in graph["nodes"]:
        restate = rng is None or node["kind"] == "together" or rng.random() >= SKIP_RESTATEMENT
        steps.append(student_step(graph, node, rng, restate=restate))
        if rng is not None and node is not graph["nodes"][-1] and rng.random() < REPEAT_RESULT:
            steps.append(student_repeat(graph, node))
    steps.append(student_final(graph["nodes"][-1]["value"], rng))
    return STEP_SEP.join(steps)


def edited_solution(graph: dict[str, Any], rng: random.Random, share: float = 0.5) -> str:
    """A student solution a teacher has partly rewritten, as texts in the wild are: each operation line,
    and the closing, is in the oracle's words with probability `share`, on the student's operands and
    layout (the student's restated fact stays the reason)."""
    steps = [student_opening(graph, rng)]
    for node in graph["nodes"]:
        restate = node["kind"] == "together" or rng.random() >= SKIP_RESTATEMENT
        if rng.random() >= share:
            steps.append(student_step(graph, node, rng, restate=restate))
            continue
        swap = node["op"] in "+*" and rng.random() < 0.5
        a, b = (node["b"], node["a"]) if swap else (node["a"], node["b"])
        reason = restated_fact(graph, node) if restate and node["kind"] == "relation" else None
        steps.append(oracle_sentence(graph, node, rng, oracle_math(node, a, b), reason))
    answer = graph["nodes"][-1]["value"]
    steps.append(oracle_final(answer, rng) if rng.random() < share else student_final(answer, rng))
    return STEP_SEP.join(steps)


def latex_operation(a: Any, op: str, b: Any) -> str:
    """`a op b` in the oracle's LaTeX: `\\times` for products, `\\frac{a}{b}` for quotients."""
    if op == "*":
        return f"{a} \\times {b}"
    if op == "/":
        return f"\\frac{{{a}}}{{{b}}}"
    return f"{a} {op} {b}"


def oracle_math(node: dict[str, Any], a: int | None = None, b: int | None = None) -> str:
    """The operation in LaTeX inline math; `a`/`b` override the operand order (a refinement keeps the author's)."""
    a = node["a"] if a is None else a
    b = node["b"] if b is None else b
    if node["op"] == "*" and node["kind"] == "relation" and (a, b) == (node["a"], node["b"]):
        a, b = b, a
    return f"\\( {latex_operation(a, node['op'], b)} = {node['value']} \\)"


def oracle_reason(node: dict[str, Any]) -> str:
    who, ref, b = node["subject"], node["ref"], node["b"]
    return {
        "+": f"{who} has {b} more than {ref}",
        "-": f"{who} has {b} fewer than {ref}",
        "*": f"{who} has {WORDS.get(b, b)} times as many as {ref}",
        "/": f"{who} has {FRACTION_WORDS.get(b, f'1/{b}')} as many as {ref}",
    }[node["op"]]


def oracle_sentence(
    graph: dict[str, Any], node: dict[str, Any], rng: random.Random | None = None, math: str | None = None,
    reason: str | None = None,
) -> str:
    """One operation explained before or after it is computed, the way a large instruct model writes;
    `reason` replaces the oracle's own statement of the relation (a refinement keeps the author's)."""
    fields = {"who": node["subject"], "items": graph["items"], "item": graph["item"], "math": math or oracle_math(node)}
    if node["kind"] == "together":
        return _pick(None, ORACLE_TOGETHER, rng).format(**fields)
    if node["kind"] == "cost":
        return _pick(None, ORACLE_COSTS, rng).format(price=f"\\( {node['b']} \\)", **fields)
    because = _pick(None, ORACLE_BECAUSE, rng)
    reason = reason or oracle_reason(node)
    return _pick(None, ORACLE_RELATIONS, rng).format(because=because, reason=reason, ref=node["ref"], **fields)


def mergeable(graph: dict[str, Any], first: dict[str, Any], second: dict[str, Any]) -> bool:
    """Whether the oracle may compute `second` straight from `first`'s operands: two comparisons in a row,
    `first`'s amount used by nothing else, and an expression that needs neither parentheses nor a division
    sign (the oracle writes divisions as fractions)."""
    if first["kind"] != "relation" or second["kind"] != "relation" or second["args"][0] != first["id"]:
        return False
    used_later = any(first["id"] in n["args"] for n in graph["nodes"] if n is not second)
    return not used_later and (second["op"] in "+-" or (first["op"] in "*/" and second["op"] == "*"))


def oracle_merged(graph: dict[str, Any], first: dict[str, Any], second: dict[str, Any], rng: random.Random) -> str:
    """Two comparisons computed in one expression, the intermediate amount never written."""
    left = latex_operation(first["a"], first["op"], first["b"])
    math = f"\\( {latex_operation(left, second['op'], second['b'])} = {second['value']} \\)"
    return rng.choice(ORACLE_MERGED).format(
        because=rng.choice(ORACLE_BECAUSE), reason=oracle_reason(first), reason2=oracle_reason(second),
        mid=first["subject"], who=second["subject"], math=math, items=graph["items"],
    )


def oracle_final(answer: int | str, rng: random.Random | None = None) -> str:
    return _pick(None, ORACLE_FINALS, rng).format(boxed=f"\\( \\boxed{{{answer}}} \\)")


def oracle_start(graph: dict[str, Any], rng: random.Random | None = None) -> str:
    start = graph["start"]
    return _pick(None, ORACLE_STARTS, rng).format(who=start["subject"], n=f"\\( {start['value']} \\)", items=graph["items"])


def oracle_plan(graph: dict[str, Any], rng: random.Random) -> list[str]:
    """What a large model says after its opening, beyond the student's habits: sometimes the route it will
    take (`ORACLE_PLAN`), sometimes that a distractor is not needed (`ORACLE_NOTE`). The student never
    writes either, so they are content, not only wording, it cannot predict from its own traces."""
    people = [graph["start"]["subject"]]
    people += [n["subject"] for n in graph["nodes"] if n["kind"] == "relation" and n["subject"] not in people]
    sentences = []
    if len(people) > 1 and rng.random() < ORACLE_PLAN:
        chain = " and ".join([", ".join(people[:-1]), people[-1]])
        sentences.append(rng.choice(ORACLE_PLANS).format(chain=chain))
    for distractor in graph.get("distractors", []):
        if rng.random() < ORACLE_NOTE:
            sentences.append(rng.choice(ORACLE_NOTES).format(fact=distractor["text"].rstrip(".")))
    return sentences


def after_transition(sentence: str, rng: random.Random) -> str:
    """`sentence` opened by one of the oracle's transitions ("Next, since ...")."""
    first, _, rest = sentence.partition(" ")
    return f"{rng.choice(TRANSITIONS)} {first.lower() if first in ORACLE_LEADS else first} {rest}"


def oracle_solution(graph: dict[str, Any], question: str, merge: float = ORACLE_MERGE) -> str:
    """The oracle's full solution, one or two operations per paragraph (`ORACLE_OPS_PER_PARAGRAPH`), with
    two comparisons in one expression at rate `merge` where it may. `merge=0` draws nothing for merging:
    the oracle's step-by-step text, as the student's pretraining documents have it."""
    rng = random.Random(question)
    nodes = graph["nodes"]
    operations, i = [], 0
    while i < len(nodes):
        pair = merge > 0 and i + 1 < len(nodes) and mergeable(graph, nodes[i], nodes[i + 1]) and rng.random() < merge
        operations.append(nodes[i : i + 1 + pair])
        i += 1 + pair
    groups = []
    while operations:
        size = rng.choice(ORACLE_OPS_PER_PARAGRAPH)
        groups.append(operations[:size])
        operations = operations[size:]
    paragraphs = [" ".join([rng.choice(ORACLE_OPENINGS), *oracle_plan(graph, rng)])]
    for i, group in enumerate(groups):
        sentences = [oracle_merged(graph, *op, rng) if len(op) == 2 else oracle_sentence(graph, op[0], rng) for op in group]
        if i == 0:
            sentences.insert(0, oracle_start(graph, rng))
        else:
            sentences[0] = after_transition(sentences[0], rng)
        paragraphs.append(" ".join(sentences))
    paragraphs.append(oracle_final(nodes[-1]["value"], rng))
    return STEP_SEP.join(paragraphs)
