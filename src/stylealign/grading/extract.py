"""Answer extraction and equivalence, safe to run on 100K model outputs.

`grade` compares an answer pulled from free-form text with a bare reference
answer. Plain numbers are compared exactly in Python (GSM8K needs nothing
more, and it is thousands of times faster than sympy); everything else goes
to math-verify with its SIGALRM timeouts disabled, because those break in
threads and Ray workers. `grade_batch` runs the slow items in worker
processes and enforces the timeout itself: a worker stuck in sympy is killed
and replaced, and its item counts as wrong and is reported. Each distinct
(answer, reference) pair is sent once and its verdict remembered, and the
workers stay up between batches. Model output is only ever parsed (by
math-verify's LaTeX parser), never evaluated.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

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
_TEXT_ANSWER = re.compile(r"[A-Za-z]{3,}(?: [A-Za-z]+)*")
_SIX_DECIMALS = 10**6
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


def _fast_verdict(answer: str, reference: str) -> bool | None:
    """Exact numeric comparison where it provably agrees with math-verify, else None.

    math-verify rounds floats to 6 decimals; values exact at 6 decimals are unchanged by that.
    """
    a, b = as_number(answer), as_number(reference)
    if a is None or b is None:
        return None
    if a == b:
        return True
    if (a * _SIX_DECIMALS).denominator == 1 and (b * _SIX_DECIMALS).denominator == 1:
        return False
    return None


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


class _Verdicts:
    """Verdicts of math-verify already paid for, by (answer, reference): the k samples of a problem
    repeat answers, and a run grades the same pairs stage after stage. Bounded, oldest out first."""

    def __init__(self, limit: int = 200_000) -> None:
        self.limit = limit
        self.lock = threading.Lock()
        self.known: dict[tuple[str, str], bool] = {}

    def get(self, pair: tuple[str, str]) -> bool | None:
        return self.known.get(pair)

    def put(self, pair: tuple[str, str], verdict: bool) -> None:
        with self.lock:
            if len(self.known) >= self.limit:
                del self.known[next(iter(self.known))]
            self.known[pair] = verdict


_VERDICTS = _Verdicts()


@dataclass
class BatchResult:
    """Verdicts of a batch plus which items were cut off: index lists into the inputs."""

    verdicts: list[bool]
    timed_out: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)

    def status(self, index: int) -> str:
        if index in self.timed_out:
            return "timeout"
        return "error" if index in self.failed else "ok"


_STARTUP_TIMEOUT = 300.0
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def _serve() -> None:
    """Worker loop (`python -m stylealign.grading --worker`): one JSON line in, one JSON line out."""
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # whatever a library prints goes to stderr, never into the reply stream
    _quiet_math_verify()
    equivalent("x + 1", "1 + x")  # import sympy and build the LaTeX parser before saying ready,
    print(json.dumps("ready"), file=protocol, flush=True)  # so item timeouts never pay for it
    for line in sys.stdin:
        index, answer, reference = json.loads(line)
        try:
            reply = [index, equivalent(answer, reference), None]
        except Exception as err:  # a bad item must not take the batch down
            reply = [index, False, f"{type(err).__name__}: {err}"]
        print(json.dumps(reply), file=protocol, flush=True)


class _Worker:
    """A grading subprocess working on at most one item, with a deadline."""

    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stylealign.grading", "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env=env,
        )
        self.ready = False
        self.index: int | None = None
        self.reference: str | None = None  # the last one it was given: its parse is cached there
        self.deadline = time.monotonic() + _STARTUP_TIMEOUT

    @property
    def waiting(self) -> bool:
        return not self.ready or self.index is not None

    @property
    def reusable(self) -> bool:
        """Alive and not holding an item; one still starting is kept too, so no start-up is wasted."""
        return self.index is None and self.process.poll() is None

    def give(self, index: int, answer: str, reference: str, timeout: float) -> None:
        self.index, self.reference, self.deadline = index, reference, time.monotonic() + timeout
        self.process.stdin.write(json.dumps([index, answer, reference]) + "\n")
        self.process.stdin.flush()

    def read(self) -> Any:
        """The next reply, or None if the worker died."""
        line = self.process.stdout.readline()
        return json.loads(line) if line else None

    def stop(self) -> None:
        if self.waiting:
            self.process.kill()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class _Idle:
    """Ready workers kept between batches: a stage grading batch after batch pays sympy's import once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.workers: list[_Worker] = []
        self.pid = os.getpid()

    def take(self, count: int) -> list[_Worker]:
        with self.lock:
            if self.pid != os.getpid():  # a forked child must not talk to its parent's workers
                self.workers, self.pid = [], os.getpid()
            alive = [w for w in self.workers if w.process.poll() is None]
            taken, self.workers = alive[:count], alive[count:]
        return taken + [_Worker() for _ in range(count - len(taken))]

    def give_back(self, workers: list[_Worker]) -> None:
        """Keep the healthy idle ones (up to one per CPU), stop the rest."""
        limit = os.cpu_count() or 1
        stop = [w for w in workers if not w.reusable]
        with self.lock:
            for w in workers:
                if w.reusable:
                    (self.workers if len(self.workers) < limit else stop).append(w)
        for w in stop:
            w.stop()

    def close(self) -> None:
        with self.lock:
            workers, self.workers = self.workers, []
        if self.pid == os.getpid():
            for w in workers:
                w.stop()


_IDLE = _Idle()


def start_workers(processes: int | None = None) -> None:
    """Start the grading workers now and return once they are ready: a run pays their start-up
    (sympy, the LaTeX parser) once, before its first batch, not inside a batch's timing."""
    workers = _IDLE.take(processes or os.cpu_count() or 1)
    try:
        for w in workers:
            if not w.ready:
                ready = wait([w.process.stdout], max(0.0, w.deadline - time.monotonic()))
                if not ready or w.read() != "ready":
                    raise RuntimeError(f"grading worker failed to start: {' '.join(w.process.args)}")
                w.ready = True
    finally:
        _IDLE.give_back(workers)


def close_workers() -> None:
    """Stop the idle grading workers and forget memoized verdicts (at exit, or to measure a cold start)."""
    _IDLE.close()
    with _VERDICTS.lock:
        _VERDICTS.known.clear()


atexit.register(close_workers)


class _Pending:
    """The pairs left to grade, by reference: a worker gets more pairs of the reference it has just
    parsed, so each reference is parsed about once per batch rather than once per worker."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.by_reference: dict[str, deque[int]] = {}
        for k, (_, reference) in enumerate(pairs):
            self.by_reference.setdefault(reference, deque()).append(k)

    def __bool__(self) -> bool:
        return bool(self.by_reference)

    def next_for(self, worker: _Worker, workers: list[_Worker]) -> int:
        reference = worker.reference
        if reference not in self.by_reference:
            busy = {w.reference for w in workers if w is not worker}
            reference = next((r for r in self.by_reference if r not in busy), next(iter(self.by_reference)))
        queue = self.by_reference[reference]
        k = queue.popleft()
        if not queue:
            del self.by_reference[reference]
        return k


def grade_batch(
    predictions: Sequence[str],
    references: Sequence[str],
    *,
    timeout: float = 5.0,
    processes: int | None = None,
    last_number: bool = True,
) -> BatchResult:
    """Grade pairs; items needing sympy run in `processes` worker processes, `timeout` seconds each.

    An item over its time has its worker killed and replaced; it counts as wrong and is listed
    in `timed_out`. Plain-number items never leave this process; each distinct (answer, reference)
    pair goes to a worker once, and pairs graded before (in this process) not again. The workers
    stay up between calls, so a run starts them once.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    result = BatchResult(verdicts=[False] * len(predictions))
    items: dict[tuple[str, str], list[int]] = {}  # the pairs math-verify must decide, and who asks
    for i, (prediction, reference) in enumerate(zip(predictions, references, strict=True)):
        pair = _grading_pair(prediction, reference, last_number)
        verdict = _quick_verdict(*pair)
        if verdict is None:
            verdict = _VERDICTS.get(pair)
        if verdict is None:
            items.setdefault(pair, []).append(i)
        else:
            result.verdicts[i] = verdict
    if not items:
        return result
    pairs = list(items)
    pending = _Pending(pairs)
    workers = _IDLE.take(max(1, min(processes or os.cpu_count() or 1, len(pairs))))
    try:
        while pending or any(w.index is not None for w in workers):
            for w in workers:
                if w.ready and w.index is None and pending:
                    k = pending.next_for(w, workers)
                    w.give(k, *pairs[k], timeout)
            waiting = [w for w in workers if w.waiting]
            wait(
                [w.process.stdout for w in waiting],
                max(0.0, min(w.deadline for w in waiting) - time.monotonic()),
            )
            for slot, w in enumerate(workers):
                if not w.waiting:
                    continue
                readable = bool(wait([w.process.stdout], 0))
                if not readable and time.monotonic() < w.deadline:
                    continue
                reply = w.read() if readable else None
                if reply == "ready":
                    w.ready = True
                    continue
                if reply is not None:
                    k, verdict, error = reply
                    for i in items[pairs[k]]:
                        result.verdicts[i] = verdict
                        if error:
                            result.failed[i] = error
                    if not error:
                        _VERDICTS.put(pairs[k], verdict)
                    w.index = None
                    continue
                if not w.ready:
                    raise RuntimeError(f"grading worker failed to start: {' '.join(w.process.args)}")
                for i in items[pairs[w.index]]:
                    if readable:
                        result.failed[i] = "worker process died"
                    else:
                        result.timed_out.append(i)
                w.stop()
                workers[slot] = _Worker()
    finally:
        _IDLE.give_back(workers)
    result.timed_out.sort()
    if result.timed_out or result.failed:
        log.warning(
            "grading: %d item(s) timed out after %.1fs and %d failed, counted as wrong: %s",
            len(result.timed_out),
            timeout,
            len(result.failed),
            sorted(result.timed_out + list(result.failed))[:20],
        )
    return result


def grade_many(
    predictions: Sequence[str],
    references: Sequence[str],
    *,
    timeout: float = 5.0,
    processes: int | None = None,
    last_number: bool = True,
) -> list[bool]:
    """Verdicts only; see `grade_batch` for which items timed out."""
    return grade_batch(
        predictions, references, timeout=timeout, processes=processes, last_number=last_number
    ).verdicts


@dataclass
class FileGrades:
    """Per-row verdicts of a predictions file, plus the rows `skip_bad` left out."""

    rows: list[dict[str, Any]]
    skipped: list[Any]
    timed_out: int
    failed: int

    @property
    def correct(self) -> int:
        return sum(row["correct"] for row in self.rows)

    @property
    def accuracy(self) -> float:
        return self.correct / len(self.rows) if self.rows else 0.0


def grade_file(
    path: str | Path,
    *,
    reference_field: str,
    prediction_field: str,
    out: str | Path | None = None,
    timeout: float = 5.0,
    processes: int | None = None,
    last_number: bool = True,
    skip_bad: bool = False,
) -> FileGrades:
    """Grade a JSONL / JSON / Parquet / CSV file of predictions; write per-row verdicts to `out` (JSONL)."""
    from stylealign.datasets import good_rows, iter_rows

    skipped: list[Any] = []
    locations, ids, predictions, references = [], [], [], []
    for row in good_rows(iter_rows(path), skip_bad, skipped):
        for name in (reference_field, prediction_field):
            if name not in row.values:
                raise ValueError(
                    f"{row.location}: no field {name!r} (fields: {', '.join(map(str, row.values))})"
                )
        locations.append(row.location)
        ids.append(row.values.get("id"))
        predictions.append(str(row.values[prediction_field] or ""))
        references.append(reference_answer(str(row.values[reference_field] or "")))
    batch = grade_batch(
        predictions, references, timeout=timeout, processes=processes, last_number=last_number
    )
    rows = [
        {
            "location": location,
            "id": ids[i],
            "extracted": extract_answer(prediction, last_number=last_number),
            "reference": reference,
            "correct": batch.verdicts[i],
            "status": batch.status(i),
        }
        for i, (location, prediction, reference) in enumerate(
            zip(locations, predictions, references, strict=True)
        )
    ]
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        tmp.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
        os.replace(tmp, out)
    return FileGrades(rows=rows, skipped=skipped, timed_out=len(batch.timed_out), failed=len(batch.failed))


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    _serve()
