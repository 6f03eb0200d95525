"""Answer extraction: the final answer a free-form solution states (`\\boxed{}`, `####`, "the answer is", a last number).

Model output is only ever searched here, never evaluated, and in time linear in its length: every
pattern either cannot backtrack over a long run or is replaced by a one-pass scan (nested boxes, math
delimiters), because extraction runs in the calling process, outside any grading timeout. Only the
last `MAX_EXTRACT_CHARS` characters of a response are read, which bounds each item's time outright.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

MAX_EXTRACT_CHARS = 200_000
"""The tail of a response that extraction reads (a final answer is at the end; the default
`max_field_chars` of a problem file is the same size)."""
MAX_NUMBER_DIGITS = 4_000
"""Longest number turned into a `Fraction`: Python refuses to convert more than 4,300 digits to an int
(the conversion is quadratic). Longer numbers are compared as digit strings."""

_BOX_TOKEN = re.compile(r"\\(?:boxed|fbox)\s*\{|[{}]")
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
# a line's text after "####" / "A:"; the spaces around it are stripped in Python (a lazy group before
# `[ \t]*$` backtracks quadratically over a long run of spaces)
_HASHES = re.compile(r"^[ \t]*####(.*)$", re.MULTILINE)
_ANSWER_IS = re.compile(r"answer\s*(?:is|:)\s*:?\s*", re.IGNORECASE)
_A_COLON = re.compile(r"^[ \t]*A:(.*)$", re.MULTILINE)
_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?|-?\.\d+")
# A number standing on its own: not the tail of an identifier ("AZYUK2A", "x_2"); "2,74" is a decimal comma.
_ANSWER_NUMBER = re.compile(
    r"(?<![A-Za-z_\d.,])-?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,])|\d+,\d{2}(?![\d,])|\d+(?:\.\d+)?(?:/\d+)?|\.\d+)"
)
_SENTENCE_END = re.compile(r"\.(?:\s|$)|,\s+(?:and|so|which|because|since|as|but)\b")
_CLOSING_BREAK = re.compile(r"\n|(?<=[.!?])\s+")
_CALCULATOR = re.compile(r"<<[^<>\n]*>>")  # GSM8K's "<<15*8=120>>" annotations
_ANSWER_VERB = re.compile(r"\s(?:is|are|was|equals)\s+", re.IGNORECASE)
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")
_TEXT_GROUP = re.compile(
    r"\\(?:text|textbf|mathrm|mbox)\s*\{[^{}]*\}"
    r"|\\(?:begin|end)\s*\{(?:[pbvBV]?matrix|smallmatrix|array)\}(?:\{[lcr| ]*\})?"
)
_WORD = re.compile(r"[A-Za-z]{3,}")
# Where a math span may open: `$$` and `\[` (display, across lines), `\(` and an unescaped `$` (one line).
_MATH_OPEN = re.compile(r"\$\$|\\\[|\\\(|(?<!\\)\$")
_DISPLAY_OPEN = re.compile(r"\$\$|\\\[")
_MATH_CLOSE = {"$$": "$$", "\\[": "\\]", "\\(": "\\)"}
_INLINE_BODY = re.compile(r"[^$\\\n]*(?:\\.[^$\\\n]*)*", re.DOTALL)  # `$...$`: no newline, `\$` escaped
# A whole text that is one formula (its content may hold the closing delimiter: "$$a$$ b $$c$$"). Only
# ever `fullmatch`ed, from the text's start, so each lazy group extends at most once across the text.
_WHOLE_MATH = re.compile(
    r"\$\$(?P<a>.+?)\$\$|\\\[(?P<b>.+?)\\\]|\\\((?P<c>[^\n]+?)\\\)|\$(?P<d>(?:[^$\\\n]|\\.)+?)\$", re.DOTALL
)
# What may stand between two values of one final answer: "\boxed{1} \quad\text{and}\quad \boxed{2}".
_BOXED_JOINER = re.compile(
    r"(?:\s|[,;&$]|\\[,;:! ]|\\q?quad\b|\\[()\[\]]|\\\\|\\text\s*\{\s*(?:(?:and|,)\s*)?\}|\band\b)*"
)
_END_OF_RESPONSE = re.compile(r"<\|(?:im_start|im_end|endoftext|eot_id|end_of_text)\|>")
_PLAIN_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")
_THOUSANDS = re.compile(r"(?<![\d.,])([1-9]\d{0,2}(?:,\d{3})+)(?![\d,])")
_LATEX_COMMA = re.compile(r"\{\s*,\s*\}|,\s*\\!\s*")  # "14{,}916", "12,\\!000"
# Unambiguous decimal commas: "1000,99", "0,111" (never "1,000": that is a thousands separator).
_DECIMAL_COMMA = re.compile(r"^(-?\d+),(\d{2}|\d{4,})$|^(-?0),(\d+)$")
_LATEX_FRAC = re.compile(r"^(-?)\\[dt]?frac\{(-?\d+)\}\{(\d+)\}$")
_UNIT_TAIL = re.compile(
    r"^(.*?\d)(?:\s*\\(?:text|mbox|mathrm)\s*\{[^{}]*\}|\s+[A-Za-z][A-Za-z .]*|\s*[€£¥]|\s*[A-Za-z]{1,3}[²³])$"
)
_BARE_MAX_CHARS = 80

Span = tuple[int, int, str]
"""(start, end, content) of a delimited region of a text."""


def _boxed_spans(text: str) -> list[tuple[int, int, int]]:
    """(start, end, content start) of every `\\boxed{...}` / `\\fbox{...}` with balanced braces, by start.

    One pass with a stack of open braces; contents are not sliced here, since nested boxes would copy
    the text once per level."""
    found, stack = [], []
    for token in _BOX_TOKEN.finditer(text):
        if token.group() == "}":
            if stack:
                opened = stack.pop()
                if opened is not None:
                    found.append((opened[0], token.end(), opened[1]))
        else:
            stack.append(None if token.group() == "{" else (token.start(), token.end()))
    found.sort()
    return found


def _content(text: str, span: tuple[int, int, int]) -> str:
    return text[span[2] : span[1] - 1]


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` or `\\fbox{...}` (balanced braces), or None."""
    spans = _boxed_spans(text)
    return _content(text, spans[-1]) if spans else None


def final_boxed(text: str, spans: list[tuple[int, int, int]] | None = None) -> list[str]:
    """The boxed answers that end a response together: `\\boxed{-2} and \\boxed{1}` gives both."""
    spans = _boxed_spans(text) if spans is None else spans
    if not spans:
        return []
    group = [spans[-1]]
    for span in reversed(spans[:-1]):
        if span[1] > group[-1][0] or not _BOXED_JOINER.fullmatch(text, span[1], group[-1][0]):
            break
        group.append(span)
    return [_content(text, span) for span in reversed(group)]


def _math_spans(text: str, display_only: bool = False) -> list[Span]:
    """The math spans of `text`, left to right: `$$...$$` and `\\[...\\]` (across lines), `\\(...\\)` (within
    a line) and `$...$` (within a line, `\\$` escaped), each with a non-empty content; `display_only`: the
    first two kinds only. A closing delimiter found missing once is not searched for again, so a text
    of unclosed openers costs linear time."""
    opener = _DISPLAY_OPEN if display_only else _MATH_OPEN
    spans: list[Span] = []
    missing: dict[str, tuple[int, int]] = {}  # opener -> a range known to hold no closing delimiter ("\n": a line)
    pos = 0
    while match := opener.search(text, pos):
        start, kind = match.start(), match.group()
        span = _inline_span(text, start) if kind == "$" else _delimited_span(text, start, kind, missing)
        if span is None:
            pos = start + 1
        else:
            spans.append(span)
            pos = span[1]
    return spans


def _delimited_span(text: str, start: int, kind: str, missing: dict[str, tuple[int, int]]) -> Span | None:
    close = _MATH_CLOSE[kind]
    first = start + len(kind) + 1  # at least one character of content
    limit = len(text)
    if kind == "\\(":  # within the line: its end is looked up once per line, not once per opener
        limit = missing.get("\n", (-1, -1))[1]
        if start >= limit:
            limit = text.find("\n", start)
            limit = len(text) if limit < 0 else limit
            missing["\n"] = (start, limit)
    known = missing.get(kind)
    if known is not None and first >= known[0] and limit <= known[1]:
        return None
    end = text.find(close, first, limit)
    if end < 0:
        missing[kind] = (first, limit)
        return None
    return start, end + len(close), text[start + len(kind) : end]


def _inline_span(text: str, start: int) -> Span | None:
    end = _INLINE_BODY.match(text, start + 1).end()
    if end == start + 1 or end >= len(text) or text[end] != "$":
        return None
    return start, end + 1, text[start + 1 : end]


def _strip_delimiters(answer: str) -> str:
    answer = answer.strip()
    if answer[:1] not in ("$", "\\"):
        return answer
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if len(answer) > len(left) + len(right) and answer.startswith(left) and answer.endswith(right):
            return answer[len(left) : -len(right)].strip()
    return answer


def _clean(answer: str) -> str:
    """Trim sentence punctuation and math delimiters; "18 dollars" -> "18"."""
    answer = _strip_delimiters(answer.strip().strip("*").rstrip(".").rstrip().strip("*"))
    unit = _UNIT_TAIL.match(answer)
    if unit and _NUMBER.fullmatch(unit.group(1).lstrip("$").replace("\\$", "").strip()):
        answer = unit.group(1)
    return answer.strip()


def _sentence(text: str) -> str:
    """The answer phrase after "the answer is": up to the end of the line or sentence."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    end = _SENTENCE_END.search(line)
    return line[: end.start()] if end else line


def _has_words(text: str) -> bool:
    """Words outside LaTeX commands and text groups; checked cheaply first, as most answers have no letters."""
    return _WORD.search(text) is not None and _WORD.search(_LATEX_COMMAND.sub(" ", _TEXT_GROUP.sub(" ", text))) is not None


def _is_bare(text: str) -> bool:
    """A short one-line text with no words is itself an answer (e.g. a predictions column of answers)."""
    return "\n" not in text and len(text) <= _BARE_MAX_CHARS and not _has_words(text)


def _formulas(part: str) -> list[Span]:
    """(start, end, content) of the formulas of a phrase that can be an answer: no prose, not a
    dangling "20/4 =", and not two dollar amounts read as one formula ("$20 so 20/4 = $5")."""
    found = []
    for start, end, content in _math_spans(part):
        formula = _clean(content)
        if (
            formula
            and not _has_words(formula)
            and formula[-1] not in "=+-*/<>"
            and not (part[start] == "$" and not part.startswith("$$", start) and part[end : end + 1].isdigit())
        ):
            found.append((start, end, formula))
    return found


def _rewrite_spans(text: str, spans: list[Span], rewrite: Callable[[str], str]) -> str:
    """`text` with each of the (sorted, disjoint) spans rewritten, in one pass."""
    pieces, last = [], 0
    for start, end, _ in spans:
        pieces += [text[last:start], rewrite(text[start:end])]
        last = end
    return "".join(pieces) + text[last:]


def _closing_answer(phrase: str, *, last_equals: bool = False) -> str | None:
    """The answer a closing phrase states: the phrase itself if bare, else whichever comes last of its
    formulas and free-standing numbers (with those listed just before it: "$12$ and $13$"); first
    after its last "is" ("The volume of $ABCD$ is 120" -> "120"). With `last_equals` (the last-number
    fallback) first after its last "=" ("so 11 + 9 = 20" -> "20"), and bare text only if a number."""
    cleaned = _clean(phrase)
    if cleaned and _is_bare(cleaned) and not last_equals:
        return cleaned
    tail = _ANSWER_VERB.split(phrase)[-1]
    plain_equation = last_equals and "=" in tail and not _math_spans(tail)  # not "$x != 5$"
    parts = (tail.rsplit("=", 1)[-1], tail, phrase) if plain_equation else (tail, phrase)
    for part in dict.fromkeys(parts):
        cleaned = _clean(part)
        if cleaned and _is_bare(cleaned) and (not last_equals or plain_number(cleaned) is not None):
            return cleaned
        found = _formulas(part)
        prose = _rewrite_spans(part, found, lambda formula: " " * len(formula))
        found = sorted(found + [(m.start(), m.end(), m.group(0)) for m in _ANSWER_NUMBER.finditer(prose)])
        if found:
            group = [found[-1]]  # "$12$ and $13$" is one answer of two values
            for item in reversed(found[:-1]):
                gap = prose[item[1] : group[-1][0]]
                if not gap.strip() or not _BOXED_JOINER.fullmatch(gap):  # "420 6-packs" is not a list
                    break
                group.append(item)
            return ", ".join(value for _, _, value in reversed(group))
    return None


def _closing_sentences(text: str) -> list[str]:
    """The last two sentences of a response, last first (a display formula counts as one line): the
    last may be a sign-off ("I hope it is correct.")."""
    flat = _rewrite_spans(text, _math_spans(text, display_only=True), lambda formula: formula.replace("\n", " "))
    return [p for p in _CLOSING_BREAK.split(flat) if p.strip()][-2:][::-1]


def _last_line_field(pattern: re.Pattern[str], text: str) -> str | None:
    """The cleaned text after the marker on the last line `pattern` finds ("#### 42", "A: 42")."""
    found = pattern.findall(text)
    return _clean(found[-1].strip(" \t")) if found else None


def extract_answer(text: str, *, last_number: bool = True) -> str | None:
    """The final answer of a model output, in order: the boxed answers that end it (several are
    joined with ", ", as a set) unless an "the answer is" phrase follows them, `#### x`, the phrase
    after the last "the answer is" / "Answer:", "A: x", the whole text if it is a bare answer or one
    formula, then (if `last_number`) the last formula or free-standing number of the closing
    sentence (or the one before a sign-off). The response ends at a chat-template end token, so a
    hallucinated next turn is never read; of a longer response the last `MAX_EXTRACT_CHARS` are read."""
    end = _END_OF_RESPONSE.search(text)
    text = (text[: end.start()] if end else text)[-MAX_EXTRACT_CHARS:]
    spans = _boxed_spans(text)
    phrases = list(_ANSWER_IS.finditer(text))
    stated = None
    if phrases and (not spans or phrases[-1].start() > spans[-1][1] or not _content(text, spans[-1]).strip()):
        stated = _closing_answer(_sentence(text[phrases[-1].end() :]))
    boxed = [_clean(b) for b in final_boxed(text, spans)]
    if any(boxed) and stated is None:
        return ", ".join(b for b in boxed if b)
    if answer := _last_line_field(_HASHES, text):
        return answer
    if stated is not None:
        return stated
    if answer := _last_line_field(_A_COLON, text):
        return answer
    stripped = text.strip()
    if stripped and not spans:
        whole = _WHOLE_MATH.fullmatch(stripped)
        if whole or _is_bare(stripped):
            return _clean(next(g for g in whole.groups() if g is not None) if whole else stripped)
    if last_number:
        for sentence in _closing_sentences(_CALCULATOR.sub(" ", stripped)):
            answer = _closing_answer(sentence, last_equals=True)
            if answer or not re.search("[A-Za-z]", sentence):  # only a sign-off sends us one sentence back
                return answer
    return None


def reference_answer(text: str) -> str:
    """A bare reference answer from a reference field that may hold a whole solution (`#### x`, `\\boxed{x}`)."""
    if "####" in text or _BOXED.search(text):
        return extract_answer(text, last_number=False) or text.strip()
    return text.strip()


@dataclass(frozen=True)
class PlainNumber:
    """A plain number as written: `numerator` (signed digits, maybe a decimal point), `denominator`
    (digits or ""), and whether a leading minus negates the whole (`-\\frac{3}{4}`)."""

    numerator: str
    denominator: str = ""
    negated: bool = False

    @property
    def digits(self) -> int:
        return len(self.numerator) + len(self.denominator)

    def value(self) -> Fraction | None:
        """The exact value; None for a zero denominator or more than `MAX_NUMBER_DIGITS` digits."""
        if self.digits > MAX_NUMBER_DIGITS or (self.denominator and not self.denominator.strip("0")):
            return None
        value = Fraction(self.numerator) / (int(self.denominator) if self.denominator else 1)
        return -value if self.negated else value

    def decimal(self) -> tuple[bool, str, str] | None:
        """(negative, integer digits, fraction digits) without padding zeros, of any length; None for a fraction."""
        if self.denominator:
            return None
        negative = self.negated != self.numerator.startswith("-")
        whole, _, fraction = self.numerator.lstrip("+-").partition(".")
        whole, fraction = whole.lstrip("0"), fraction.rstrip("0")
        return (negative and bool(whole or fraction), whole, fraction)


def plain_number(answer: str) -> PlainNumber | None:
    """A plain number ("1,000", "$18.50", "-3/4", "\\frac{3}{4}", "1000,99") as written, or None."""
    s = answer.strip().replace("\\$", "").replace("$", "")
    if "," in s:
        s = _LATEX_COMMA.sub(",", s)
        if ", " in s:  # "32, 349" is a list of two numbers
            return None
    s = s.replace("\\!", "").replace(" ", "")
    if "," in s:
        s = _THOUSANDS.sub(lambda m: m.group(1).replace(",", ""), s)
        s = _DECIMAL_COMMA.sub(lambda m: ".".join(g for g in m.groups() if g is not None), s)
    frac = _LATEX_FRAC.match(s)
    if frac:
        sign, num, den = frac.groups()
        return PlainNumber(num, den, negated=bool(sign))
    num, _, den = s.partition("/")
    if not _PLAIN_NUMBER.fullmatch(num) or (den and not den.isdigit()):
        return None
    return PlainNumber(num, den)


def as_number(answer: str) -> Fraction | None:
    """The exact value of a plain number (see `plain_number`), or None (also past `MAX_NUMBER_DIGITS`)."""
    number = plain_number(answer)
    return None if number is None else number.value()
