"""Training problems that repeat an evaluation question: word n-gram overlap after normalisation.

The rule is GPT-3's (Brown et al. 2020, appendix C): a training problem is flagged when its question
shares any 13-gram of words with a benchmark question. Words are runs of letters or digits after NFKC and
lowercasing, with thousands separators and LaTeX's spelling variants (`\\dfrac`, `\\left(`) folded, so a
copy that was re-cased, re-spaced, re-punctuated or re-typeset still matches. A benchmark question
shorter than n words (a tenth of MATH-500's) is flagged where a training question holds all its words in
a row, and one shorter than `SHORT` words only where a training question has exactly its words: four
words shared with a longer problem ("simplify the following expression") say little.

A 13-gram that two questions of the evaluation and bundled test sets (GSM8K test and the paper's five)
share without being versions of one problem (sharing under half of their n-grams, `SIBLINGS`) is
boilerplate, not evidence: "..., where m and n are relatively prime positive integers. Find m+n." ends
unrelated questions of AIME 2024, AMC 2023 and MATH-500 and would flag every NuminaMath problem that ends
so. Versions of one problem keep what they share as evidence (OlympiadBench poses one long puzzle as nine
questions, Minerva shares preambles: a copy of the puzzle is a copy).

Only questions are compared, not reference solutions. Each hit carries its coverage, the share of the
benchmark question's n-grams found in the training question: near 1 a copy, low a shared phrase, so a
reader can judge each flag. Measured (`benchmarks/contamination.py`): GSM8K train flags 4 problems against
GSM8K test (three are the test problem with other numbers and names, one shares a sentence) and none
against MATH-500; planted copies of the five benchmarks' questions are found with precision and recall
in that script's output; 100K problems take seconds.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from itertools import combinations
from typing import Any

from stylealign.config import DatasetConfig, ExperimentConfig, ProblemSource
from stylealign.datasets import BUNDLED_TEST_SETS, load_problems
from stylealign.evaluation import dataset_label
from stylealign.records import Problem, by_id

NGRAM = 13
"""GPT-3's n: long enough that a shared gram is a copied passage, short enough to survive local edits."""
SHORT = 5
"""Benchmark questions of fewer words match only a training question of exactly their words."""
SIBLINGS = 0.5
"""Two questions sharing this share of the shorter one's n-grams are versions of one problem."""

_FOLD = (
    (re.compile(r"\\[dt]frac\b"), r"\\frac"),
    (re.compile(r"\\(?:left|right|bigg?)\b"), " "),
    (re.compile(r"(?<=\d),(?=\d{3}(?!\d))"), ""),  # 1,000 -> 1000
)
_WORD = re.compile(r"[^\W_]+")

Gram = tuple[str, ...]


def words(text: str) -> list[str]:
    """The words n-grams are made of: letters or digits, lowercased, with typesetting variants folded."""
    text = unicodedata.normalize("NFKC", text).lower()
    for pattern, replacement in _FOLD:
        text = pattern.sub(replacement, text)
    return _WORD.findall(text)


def ngrams(tokens: Sequence[str], n: int = NGRAM) -> set[Gram]:
    """Every run of n consecutive words; a text shorter than n words is one gram of all its words."""
    if len(tokens) < n:
        return {tuple(tokens)} if tokens else set()
    return set(zip(*(tokens[i:] for i in range(n)), strict=False))


@dataclass(frozen=True)
class Hit:
    """A training problem that shares n-grams with one benchmark question."""

    problem_id: str
    benchmark: str
    benchmark_id: str
    coverage: float
    """Share of the benchmark question's n-grams that the training question holds."""
    shared: str
    """One shared n-gram, as words."""


@cache
def bundled_questions() -> tuple[str, ...]:
    """The questions of the bundled test sets: the background against which boilerplate is told."""
    return tuple(p.question for name in ("gsm8k", *BUNDLED_TEST_SETS) for p in load_problems(DatasetConfig(source=name, split="test")))


def boilerplate(questions: Sequence[str], n: int = NGRAM) -> frozenset[Gram]:
    """The n-grams that two of `questions` share without being versions of one problem."""
    grams = [ngrams(words(q), n) for q in dict.fromkeys(questions)]
    owners: dict[Gram, list[int]] = defaultdict(list)
    for i, found in enumerate(grams):
        for gram in found:
            owners[gram].append(i)

    @cache
    def versions(i: int, j: int) -> bool:
        return len(grams[i] & grams[j]) >= SIBLINGS * min(len(grams[i]), len(grams[j]))

    return frozenset(
        gram for gram, who in owners.items() if len(who) > 1 and not all(versions(i, j) for i, j in combinations(who, 2))
    )


class BenchmarkIndex:
    """The n-grams of every question of the evaluation sets, less boilerplate, to look training questions up in."""

    def __init__(self, benchmarks: Mapping[str, Sequence[Problem]], n: int = NGRAM):
        self.n = n
        common = boilerplate([*bundled_questions(), *(p.question for found in benchmarks.values() for p in found)], n)
        self.questions: list[tuple[str, Problem, int]] = []  # (benchmark, problem, number of its grams)
        owners: dict[Gram, list[int]] = defaultdict(list)
        self.short: dict[str, list[tuple[Gram, int]]] = defaultdict(list)  # first word -> (words, owner)
        for label, problems in benchmarks.items():
            for problem in problems:
                tokens = tuple(words(problem.question))
                owner = len(self.questions)
                if SHORT <= len(tokens) < n:
                    self.short[tokens[0]].append((tokens, owner))
                    self.questions.append((label, problem, 1))
                    continue
                grams = ngrams(tokens, n) - common
                for gram in grams:
                    owners[gram].append(owner)
                self.questions.append((label, problem, len(grams)))
        self.owners = dict(owners)
        self.grams = frozenset(owners)
        self.short_starts = frozenset(self.short)

    def hits(self, problem: Problem) -> list[Hit]:
        """The benchmark questions `problem`'s question shares an n-gram with (none for most problems)."""
        tokens = words(problem.question)
        shared = self.grams.intersection(ngrams(tokens, self.n))
        counts = Counter(owner for gram in shared for owner in self.owners[gram])
        example = {owner: gram for gram in sorted(shared) for owner in self.owners[gram]}
        if self.short_starts.intersection(tokens):
            for i, word in enumerate(tokens):
                for short, owner in self.short.get(word, ()):
                    if tuple(tokens[i : i + len(short)]) == short:
                        counts[owner], example[owner] = 1, short
        out = []
        for owner, count in sorted(counts.items()):
            label, question, total = self.questions[owner]
            out.append(Hit(problem.id, label, question.id, count / total, " ".join(example[owner])))
        return out


def find_overlaps(problems: Sequence[Problem], benchmarks: Mapping[str, Sequence[Problem]], n: int = NGRAM) -> list[Hit]:
    """Every (training problem, benchmark question) pair that shares an n-gram, in training order."""
    index = BenchmarkIndex(benchmarks, n)
    return [hit for problem in problems for hit in index.hits(problem)]


def contamination_report(
    problems: Sequence[Problem], benchmarks: Mapping[str, Sequence[Problem]], n: int = NGRAM, examples: int = 3
) -> dict[str, Any]:
    """Per benchmark: how many training problems overlap it, how many of its questions are hit, and the
    `examples` highest-coverage pairs with both questions; `flagged` lists every overlapping training id."""
    hits = find_overlaps(problems, benchmarks, n)
    problem_by_id = by_id(problems)
    questions = {(label, p.id): p.question for label, found in benchmarks.items() for p in found}
    per_benchmark: dict[str, Any] = {}
    for label, found in benchmarks.items():
        mine = sorted((h for h in hits if h.benchmark == label), key=lambda h: (-h.coverage, h.problem_id))
        per_benchmark[label] = {
            "questions": len(found),
            "training_problems_flagged": len({h.problem_id for h in mine}),
            "questions_hit": len({h.benchmark_id for h in mine}),
            "examples": [
                {**asdict(h), "coverage": round(h.coverage, 3), "question": problem_by_id[h.problem_id].question,
                 "benchmark_question": questions[(label, h.benchmark_id)]}
                for h in mine[:examples]
            ],
        }
    flagged = list(dict.fromkeys(h.problem_id for h in hits))
    return {"ngram": n, "problems": len(problems), "flagged": flagged, "benchmarks": per_benchmark}


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The report as plain lines: a headline, then one line per benchmark and its examples."""
    lines = [
        f"{len(report['flagged'])} of {report['problems']} training problems share a {report['ngram']}-gram "
        "with an evaluation question"
    ]
    for label, entry in report["benchmarks"].items():
        lines.append(
            f"  {label}: {entry['training_problems_flagged']} training problems overlap "
            f"{entry['questions_hit']} of its {entry['questions']} questions"
        )
        for ex in entry["examples"]:
            lines.append(
                f"    {ex['problem_id']} ~ {ex['benchmark_id']} (coverage {ex['coverage']:.0%}): \"{ex['shared']}\""
            )
    return lines


def evaluation_sets(datasets: Sequence[DatasetConfig]) -> dict[str, list[Problem]]:
    """The configured evaluation sets by their report label (`math500:test`)."""
    return {dataset_label(d): load_problems(d) for d in datasets}


def checked(source: ProblemSource) -> bool:
    """Whether a source's problems are checked: asked for, or by default every source but the lab, whose
    generated problems share template phrases with its test set, not questions."""
    return bool(source.decontaminate) if source.decontaminate is not None else source.source != "lab"


def decontaminate(
    sources: Sequence[tuple[ProblemSource, Sequence[Problem]]], benchmarks: Mapping[str, Sequence[Problem]]
) -> tuple[list[Problem], dict[str, Any]]:
    """The problems of every source, less the flagged ones of sources with `decontaminate: true`; and the report
    on the checked sources, with `dropped` (ids) and `benchmarks_checked` (labels)."""
    report = contamination_report([p for source, found in sources if checked(source) for p in found], benchmarks)
    flagged = set(report["flagged"])
    dropping = [p.id for source, found in sources if source.decontaminate for p in found if p.id in flagged]
    gone = set(dropping)
    kept = [p for _, found in sources for p in found if p.id not in gone]
    return kept, {**report, "benchmarks_checked": list(benchmarks), "dropped": dropping}


def check_config(
    config: ExperimentConfig, problems: str | None = None, limit: int | None = None, examples: int = 3
) -> dict[str, Any]:
    """`stylealign contamination`: the config's training problems (or the problem file `problems`), every source
    checked (the lab's too), against the config's evaluation sets."""
    sources = [DatasetConfig(source=problems)] if problems else list(config.problems)
    if limit is not None:
        sources = [cfg.model_copy(update={"limit": min(cfg.limit or limit, limit)}) for cfg in sources]
    training = [p for cfg in sources for p in load_problems(cfg)]
    return contamination_report(training, evaluation_sets(config.evaluation.datasets), examples=examples)
