"""Style drift: how far a stream's surface form is from the student's own samples.

Token unigram and bigram distributions are compared with the Jensen–Shannon
divergence (base 2, so 0 = identical and 1 = disjoint). Tokens come from the
student's tokenizer when the engine exposes one (what the student actually
sees); otherwise from `REGEX_TOKENS`, which keeps whitespace runs as tokens
because spacing and layout are part of a style.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
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
    for key in itertools.chain(p, (k for k in q if k not in p)):  # not a set: its order (string hashing) varies by process
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


@dataclass(frozen=True)
class TextProfile:
    """What drift compares about a set of texts, from one tokenization pass: the student's samples are
    profiled once per score stage and compared with every stream."""

    unigrams: Counter
    bigrams: Counter
    mean_length: float
    mean_steps: float
    count: int


def text_profile(texts: Iterable[str], tokenize: Tokenize) -> TextProfile:
    """Token and bigram counts, mean length and step count of `texts`, streamed. The k samples of a problem
    come together and often repeat, so the last few hundred texts' tokenizations are reused."""
    unigrams: Counter = Counter()
    bigrams: Counter = Counter()
    count = length = steps = 0
    recent: dict[str, tuple[list[str], list[tuple[str, str]], int]] = {}
    for text in texts:
        seen = recent.get(text)
        if seen is None:
            if len(recent) >= 256:
                recent.clear()
            tokens = tokenize(text)
            seen = recent[text] = (tokens, list(zip(tokens, tokens[1:], strict=False)), len(split_steps(text)))
        unigrams.update(seen[0])
        bigrams.update(seen[1])
        count += 1
        length += len(text)
        steps += seen[2]
    return TextProfile(unigrams, bigrams, length / count if count else 0.0, steps / count if count else 0.0, count)


def profile_drift(profile: TextProfile, reference: TextProfile) -> dict[str, Any]:
    """JS drift (unigram, bigram) and length / step-count ratios of one profiled text set against another."""
    return {
        "js_drift": js_divergence(profile.unigrams, reference.unigrams),
        "js_drift_bigram": js_divergence(profile.bigrams, reference.bigrams),
        "length_ratio": profile.mean_length / reference.mean_length if profile.count and reference.mean_length else None,
        "step_ratio": profile.mean_steps / reference.mean_steps if profile.count and reference.mean_steps else None,
    }


def drift_stats(texts: Sequence[str], reference: Sequence[str], tokenize: Tokenize) -> dict[str, Any]:
    """JS drift (unigram, bigram) and length / step-count ratios of `texts` against `reference`."""
    return profile_drift(text_profile(texts, tokenize), text_profile(reference, tokenize))
