"""Answer extraction: the final answer a free-form solution states (`\\boxed{}`, `####`, "the answer is", a last number).

Model output is only ever searched with regular expressions here, never evaluated.
"""

from __future__ import annotations

import re
from fractions import Fraction

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_HASHES = re.compile(r"^[ \t]*####[ \t]*(.+?)[ \t]*$", re.MULTILINE)
_ANSWER_IS = re.compile(r"answer\s*(?:is|:)\s*:?\s*", re.IGNORECASE)
_A_COLON = re.compile(r"^[ \t]*A:[ \t]*(.+?)[ \t]*$", re.MULTILINE)
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
_MATH_SPAN = re.compile(
    r"\$\$(?P<a>.+?)\$\$|\\\[(?P<b>.+?)\\\]|\\\((?P<c>[^\n]+?)\\\)|(?<!\\)\$(?P<d>(?:[^$\\\n]|\\.)+?)\$",
    re.DOTALL,
)
_DISPLAY_MATH = re.compile(r"\$\$.+?\$\$|\\\[.+?\\\]", re.DOTALL)
# What may stand between two values of one final answer: "\boxed{1} \quad\text{and}\quad \boxed{2}".
_BOXED_JOINER = re.compile(
    r"(?:\s|[,;&$]|\\[,;:! ]|\\q?quad\b|\\[()\[\]]|\\\\|\\text\s*\{\s*(?:and|,)?\s*\}|\band\b)*"
)
_END_OF_RESPONSE = re.compile(r"<\|(?:im_start|im_end|endoftext|eot_id|end_of_text)\|>")
_PLAIN_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")
_THOUSANDS = re.compile(r"(?<![\d.])([1-9]\d{0,2}(?:,\d{3})+)(?![\d,])")
_LATEX_COMMA = re.compile(r"\{\s*,\s*\}|,\s*\\!\s*")  # "14{,}916", "12,\\!000"
# Unambiguous decimal commas: "1000,99", "0,111" (never "1,000": that is a thousands separator).
_DECIMAL_COMMA = re.compile(r"^(-?\d+),(\d{2}|\d{4,})$|^(-?0),(\d+)$")
_LATEX_FRAC = re.compile(r"^(-?)\\[dt]?frac\{(-?\d+)\}\{(\d+)\}$")
_UNIT_TAIL = re.compile(
    r"^(.*?\d)(?:\s*\\(?:text|mbox|mathrm)\s*\{[^{}]*\}|\s+[A-Za-z][A-Za-z .]*|\s*[€£¥]|\s*[A-Za-z]{1,3}[²³])$"
)
_BARE_MAX_CHARS = 80


def _boxed_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of every `\\boxed{...}` / `\\fbox{...}` with balanced braces."""
    spans = []
    for match in _BOXED.finditer(text):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    spans.append((match.start(), i + 1, text[start:i]))
                    break
    return spans


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` or `\\fbox{...}` (balanced braces), or None."""
    spans = _boxed_spans(text)
    return spans[-1][2] if spans else None


def final_boxed(text: str, spans: list[tuple[int, int, str]] | None = None) -> list[str]:
    """The boxed answers that end a response together: `\\boxed{-2} and \\boxed{1}` gives both."""
    spans = _boxed_spans(text) if spans is None else spans
    if not spans:
        return []
    group = [spans[-1]]
    for span in reversed(spans[:-1]):
        if span[1] > group[-1][0] or not _BOXED_JOINER.fullmatch(text[span[1] : group[-1][0]]):
            break
        group.append(span)
    return [content for _, _, content in reversed(group)]

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


def _math(match: re.Match[str]) -> str:
    return next(group for group in match.groups() if group is not None)


def _formulas(part: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of the formulas of a phrase that can be an answer: no prose, not a
    dangling "20/4 =", and not two dollar amounts read as one formula ("$20 so 20/4 = $5")."""
    found = []
    for m in _MATH_SPAN.finditer(part):
        formula = _clean(_math(m))
        if (
            formula
            and not _has_words(formula)
            and formula[-1] not in "=+-*/<>"
            and not (m.group("d") is not None and part[m.end() : m.end() + 1].isdigit())
        ):
            found.append((m.start(), m.end(), formula))
    return found


def _closing_answer(phrase: str, *, last_equals: bool = False) -> str | None:
    """The answer a closing phrase states: the phrase itself if bare, else whichever comes last of its
    formulas and free-standing numbers (with those listed just before it: "$12$ and $13$"); first
    after its last "is" ("The volume of $ABCD$ is 120" -> "120"). With `last_equals` (the last-number
    fallback) first after its last "=" ("so 11 + 9 = 20" -> "20"), and bare text only if a number."""
    cleaned = _clean(phrase)
    if cleaned and _is_bare(cleaned) and not last_equals:
        return cleaned
    tail = _ANSWER_VERB.split(phrase)[-1]
    plain_equation = last_equals and "=" in tail and not _MATH_SPAN.search(tail)  # not "$x != 5$"
    parts = (tail.rsplit("=", 1)[-1], tail, phrase) if plain_equation else (tail, phrase)
    for part in dict.fromkeys(parts):
        cleaned = _clean(part)
        if cleaned and _is_bare(cleaned) and (not last_equals or as_number(cleaned) is not None):
            return cleaned
        found = _formulas(part)
        prose = part
        for start, end, _ in found:
            prose = prose[:start] + " " * (end - start) + prose[end:]
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
    flat = _DISPLAY_MATH.sub(lambda m: m.group(0).replace("\n", " "), text)
    return [p for p in _CLOSING_BREAK.split(flat) if p.strip()][-2:][::-1]


def extract_answer(text: str, *, last_number: bool = True) -> str | None:
    """The final answer of a model output, in order: the boxed answers that end it (several are
    joined with ", ", as a set) unless an "the answer is" phrase follows them, `#### x`, the phrase
    after the last "the answer is" / "Answer:", "A: x", the whole text if it is a bare answer or one
    formula, then (if `last_number`) the last formula or free-standing number of the closing
    sentence (or the one before a sign-off). The response ends at a chat-template end token, so a
    hallucinated next turn is never read."""
    end = _END_OF_RESPONSE.search(text)
    text = text[: end.start()] if end else text
    spans = _boxed_spans(text)
    phrases = list(_ANSWER_IS.finditer(text))
    stated = None
    if phrases and (not spans or phrases[-1].start() > spans[-1][1] or not spans[-1][2].strip()):
        stated = _closing_answer(_sentence(text[phrases[-1].end() :]))
    boxed = [_clean(b) for b in final_boxed(text, spans)]
    if any(boxed) and stated is None:
        return ", ".join(b for b in boxed if b)
    hashes = _HASHES.findall(text)
    if hashes and (answer := _clean(hashes[-1])):
        return answer
    if stated is not None:
        return stated
    colon = _A_COLON.findall(text)
    if colon and (answer := _clean(colon[-1])):
        return answer
    stripped = text.strip()
    if stripped and not spans:
        whole = _MATH_SPAN.fullmatch(stripped)
        if whole or _is_bare(stripped):
            return _clean(_math(whole) if whole else stripped)
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


def as_number(answer: str) -> Fraction | None:
    """The exact value of a plain number ("1,000", "$18.50", "-3/4", "\\frac{3}{4}", "1000,99"), or None."""
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
        return None if int(den) == 0 else Fraction(int(num), int(den)) * (-1 if sign else 1)
    num, _, den = s.partition("/")
    if not _PLAIN_NUMBER.fullmatch(num) or (den and not den.isdigit()):
        return None
    if den and int(den) == 0:
        return None
    return Fraction(num) / (Fraction(int(den)) if den else 1)
