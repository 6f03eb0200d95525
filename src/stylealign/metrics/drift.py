"""Style drift: how far a stream's surface form is from the student's own samples.

Token unigram and bigram distributions are compared with the Jensen–Shannon
divergence (base 2, so 0 = identical and 1 = disjoint). Tokens come from the
student's tokenizer when the engine exposes one (what the student actually
sees); otherwise from `REGEX_TOKENS`, which keeps whitespace runs as tokens
because spacing and layout are part of a style.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rapidfuzz.distance import Levenshtein

from stylealign.steps import split_steps

REGEX_TOKENS = re.compile(r"\n+|[ \t]+|\d|[^\W\d_]+|\S")

Tokenize = Callable[[str], list[str]]


def regex_tokenize(text: str) -> list[str]:
    return REGEX_TOKENS.findall(text)


def tokenizer_for(engine: Any) -> tuple[Tokenize, str]:
    """The engine's own tokenizer when it has one, else the regex tokenizer; and which it is."""
    try:
        tokenizer = getattr(engine, "tokenizer", None)
    except Exception:  # remote engines without a local tokenizer raise on access
        tokenizer = None
    if tokenizer is not None and hasattr(tokenizer, "tokenize"):
        return tokenizer.tokenize, "student"
    return regex_tokenize, "regex"


def ngram_counts(texts: Iterable[str], tokenize: Tokenize, n: int) -> Counter:
    counts: Counter = Counter()
    for text in texts:
        tokens = tokenize(text)
        counts.update(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return counts


def js_divergence(p: Counter, q: Counter) -> float | None:
    """Jensen–Shannon divergence (bits) of two count distributions; None when either is empty."""
    p_total, q_total = sum(p.values()), sum(q.values())
    if not p_total or not q_total:
        return None
    js = 0.0
    for key in p.keys() | q.keys():
        pi, qi = p.get(key, 0) / p_total, q.get(key, 0) / q_total
        mi = (pi + qi) / 2
        if pi:
            js += 0.5 * pi * math.log2(pi / mi)
        if qi:
            js += 0.5 * qi * math.log2(qi / mi)
    return max(js, 0.0)


def edit_distance(a: str, b: str) -> int:
    """Character Levenshtein distance (rapidfuzz: C++, thousands of times faster than a Python/numpy loop)."""
    return Levenshtein.distance(a, b)


def normalized_edit_distance(a: str, b: str) -> float:
    """Levenshtein distance over the longer length: 0 = identical, 1 = nothing shared."""
    return Levenshtein.normalized_distance(a, b)


def drift_stats(texts: Sequence[str], reference: Sequence[str], tokenize: Tokenize) -> dict[str, Any]:
    """JS drift (unigram, bigram) and length / step-count ratios of `texts` against `reference`."""

    def mean(values: list[int]) -> float:
        return sum(values) / len(values) if values else 0.0

    ref_len = mean([len(t) for t in reference])
    ref_steps = mean([len(split_steps(t)) for t in reference])
    return {
        "js_drift": js_divergence(ngram_counts(texts, tokenize, 1), ngram_counts(reference, tokenize, 1)),
        "js_drift_bigram": js_divergence(ngram_counts(texts, tokenize, 2), ngram_counts(reference, tokenize, 2)),
        "length_ratio": mean([len(t) for t in texts]) / ref_len if texts and ref_len else None,
        "step_ratio": mean([len(split_steps(t)) for t in texts]) / ref_steps if texts and ref_steps else None,
    }
