"""Answer equivalence: plain numbers exactly in Python, everything else through math-verify's LaTeX parser.

math-verify's SIGALRM timeouts are disabled (they break in threads and Ray
workers); `pool.grade_batch` enforces the timeout by running slow items in
worker processes.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Any

from stylealign.grading.extract import MAX_NUMBER_DIGITS, _clean, extract_answer, plain_number


def _fast_verdict(answer: str, reference: str) -> bool | None:
    """Exact numeric comparison where it provably agrees with math-verify, else None.

    math-verify rounds floats to 6 decimals; values exact at 6 decimals are unchanged by that. Numbers
    past `MAX_NUMBER_DIGITS` never reach math-verify (sympy cannot convert them): they are equal when
    their decimal digits are, and a fraction that long grades wrong.
    """
    x, y = plain_number(answer), plain_number(reference)
    if x is None or y is None:
        return None
    if max(x.digits, y.digits) > MAX_NUMBER_DIGITS:
        return x.decimal() is not None and x.decimal() == y.decimal()
    a, b = x.value(), y.value()
    if a is None or b is None:
        return None
    if a == b:
        return True
    if (a * _SIX_DECIMALS).denominator == 1 and (b * _SIX_DECIMALS).denominator == 1:
        return False
    return None

_TEXT_ANSWER = re.compile(r"[A-Za-z]{3,}(?: [A-Za-z]+)*")
_SIX_DECIMALS = 10**6


def _as_latex(answer: str) -> str:
    """A word answer as LaTeX text ("odd" -> "\\text{odd}"), which the parser would read as a product o*d*d."""
    return f"\\text{{{answer}}}" if _TEXT_ANSWER.fullmatch(answer) else answer


@lru_cache(maxsize=8192)
def _parsed(answer: str) -> tuple[Any, ...]:
    """math-verify's parse of a bare answer, once per process: a reference is shared by the k samples
    of its problem, and the same answers recur. LaTeX extraction only: math-verify's plain-expression
    path runs sympy's `parse_expr` (an eval)."""
    from math_verify import LatexExtractionConfig, parse

    latex = [LatexExtractionConfig()]
    return tuple(parse(f"\\boxed{{{_as_latex(answer)}}}", extraction_config=latex, parsing_timeout=None))


def _math_verify(answer: str, reference: str) -> bool:
    from math_verify import verify

    return bool(verify(list(_parsed(reference)), list(_parsed(answer)), timeout_seconds=None))


def _quiet_math_verify() -> None:
    """math-verify warns once per process that its timeouts are off: we enforce our own."""
    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _quick_verdict(answer: str, reference: str) -> bool | None:
    """The verdict on two cleaned answers where no sympy is needed (empty, identical, plain numbers), else None."""
    if not answer or not reference:
        return False
    if answer == reference:
        return True
    return _fast_verdict(answer, reference)


def equivalent(answer: str, reference: str) -> bool:
    """Whether a bare answer equals a bare reference (numbers, LaTeX, sets, intervals, ...)."""
    answer, reference = _clean(answer), _clean(reference)
    quick = _quick_verdict(answer, reference)
    if quick is not None:
        return quick
    _quiet_math_verify()
    return _math_verify(answer, reference)


def grade(prediction_text: str, reference: str, *, last_number: bool = True) -> bool:
    """Whether the final answer in `prediction_text` equals the bare `reference` answer.

    No timeout here: call `grade_many` for untrusted output in bulk.
    """
    answer = extract_answer(prediction_text, last_number=last_number)
    return answer is not None and equivalent(answer, reference)


def fast_grade(prediction_text: str, reference: str, *, last_number: bool = True) -> bool | None:
    """`grade` where it needs no sympy; None where math-verify has to decide."""
    return _quick_verdict(*_grading_pair(prediction_text, reference, last_number))


def _grading_pair(prediction_text: str, reference: str, last_number: bool) -> tuple[str, str]:
    """(cleaned extracted answer, cleaned reference): what a verdict depends on; "" for no answer."""
    answer = extract_answer(prediction_text, last_number=last_number)
    return (_clean(answer) if answer else ""), _clean(reference)
