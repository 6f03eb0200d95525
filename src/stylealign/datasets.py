"""Problem loaders: bundled GSM8K and the paper's five benchmarks (MATH-500, Minerva, AIME24, AMC23,
OlympiadBench), the lab, JSONL/JSON/Parquet/CSV files, Hugging Face datasets.

Every source becomes a list of `Problem` with a stable id (bundled sets: split
and index; files: an `id` column or a content id), a bare answer and, where the
source has one, a clean reference solution. Rows are read lazily, so
`limit`/`offset` on a 100K-row file stop early. A malformed row (bad JSON,
bytes that are not UTF-8, a field over `max_field_chars`, an id already used,
a question or answer that is not text or a number) raises an error naming the
file and line; with `skip_bad` it is skipped and listed in the report. JSON is
read strictly: `NaN`, `Infinity` and numbers out of a float's range are
errors, integers too long for Python's int conversion are kept as their
digits, and nesting too deep to parse is an error, not a crash.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from stylealign.config import DatasetConfig
from stylealign.grading.extract import last_boxed, reference_answer
from stylealign.records import Problem, content_id

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent / "data"
FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
_CALC = re.compile(r"<<[^<>]*>>")
_FINAL = re.compile(r"\n?#### *(.*?)\s*$", re.DOTALL)
_DEFAULT_COLUMNS = {
    "id": ("id",),
    "question": ("question", "problem", "prompt", "query", "input"),
    "answer": ("answer", "final_answer"),
    "reference_solution": ("solution", "reference_solution", "rationale"),
}
TARGETS = tuple(_DEFAULT_COLUMNS)
CSV_FIELD_CHARS = 64 * 2**20
"""Longest CSV field read (the csv module's default stops at 131,072); `max_field_chars` then applies."""
_INT_DIGITS = 4_000
"""JSON integers longer than this stay text: Python refuses to convert more than 4,300 digits."""


class DatasetError(ValueError):
    pass


@dataclass
class Skipped:
    location: str
    reason: str


@dataclass
class LoadReport:
    """Loaded problems and what `skip_bad` left out."""

    problems: list[Problem] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


@dataclass
class Row:
    location: str
    values: dict[str, Any]


def _json_int(text: str) -> int | str:
    return int(text) if len(text.lstrip("-")) <= _INT_DIGITS else text


def _json_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _json_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(text: str) -> Any:
    """Strict JSON (see the module doc); ValueError names what is wrong."""
    try:
        return json.loads(text, parse_int=_json_int, parse_float=_json_float, parse_constant=_json_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _iter_jsonl(path: Path) -> Iterator[Row | Skipped]:
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            location = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield Skipped(location, f"not UTF-8 text (byte {err.start} of the line)")
                continue
            if not line.strip():
                continue
            try:
                values = parse_json(line)
            except ValueError as err:
                yield Skipped(location, f"not valid JSON: {err}")
                continue
            if isinstance(values, dict):
                yield Row(location, values)
            else:
                yield Skipped(location, f"expected a JSON object, got {type(values).__name__}")


def _iter_json(path: Path) -> Iterator[Row | Skipped]:
    try:
        data = parse_json(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path}:{err.lineno}: not valid JSON: {err.msg}") from None
    except ValueError as err:
        raise DatasetError(f"{path}: not valid JSON: {err}") from None
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a JSON list of objects")
    for i, values in enumerate(data):
        location = f"{path}[{i}]"
        yield Row(location, values) if isinstance(values, dict) else Skipped(location, "not a JSON object")


def _utf8_lines(path: Path, f: Iterable[bytes]) -> Iterator[str]:
    """Lines decoded one by one, so bytes that are not UTF-8 are reported at their own line."""
    for lineno, raw in enumerate(f, 1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise DatasetError(f"{path}:{lineno}: not UTF-8 text (byte {err.start} of the line)") from None


def _iter_csv(path: Path) -> Iterator[Row | Skipped]:
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_CHARS))
    with open(path, "rb") as f:
        reader = csv.DictReader(_utf8_lines(path, f))
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                yield Skipped(f"{path}:{reader.line_num}", f"not valid CSV: {err}")
                continue
            location = f"{path}:{reader.line_num}"
            if None in values or None in values.values():
                yield Skipped(
                    location, f"expected {len(reader.fieldnames or [])} columns, got a different count"
                )
            else:
                yield Row(location, values)


def _iter_parquet(path: Path) -> Iterator[Row | Skipped]:
    import pyarrow.parquet as pq

    start = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
        for i, values in enumerate(batch.to_pylist(), start):
            yield Row(f"{path} row {i}", values)
        start += batch.num_rows


def _iter_hf(dataset: Any, name: str) -> Iterator[Row | Skipped]:
    for i, values in enumerate(dataset):
        yield Row(f"{name} row {i}", dict(values))


def iter_rows(path: str | Path, key: str = "source") -> Iterator[Row | Skipped]:
    """Rows of a JSONL / JSON / Parquet / CSV file; malformed lines come out as `Skipped`.

    `key` names the setting that pointed here, for the error when the file is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{key}: no such file: {path}")
    readers = {".jsonl": _iter_jsonl, ".json": _iter_json, ".parquet": _iter_parquet, ".csv": _iter_csv}
    if path.suffix not in readers:
        raise DatasetError(f"{path}: unsupported file type; use one of {', '.join(FILE_SUFFIXES)}")
    return readers[path.suffix](path)


def good_rows(rows: Iterable[Row | Skipped], skip_bad: bool, skipped: list[Skipped]) -> Iterator[Row]:
    """Rows, with malformed ones raised as errors or (with `skip_bad`) collected in `skipped`."""
    for row in rows:
        if isinstance(row, Row):
            yield row
        elif skip_bad:
            skipped.append(row)
        else:
            raise DatasetError(f"{row.location}: {row.reason} (skip_bad / --skip-bad skips such rows)")


def clean_gsm8k_solution(solution: str) -> tuple[str, str]:
    """(answer, reference solution) of a GSM8K solution: calculator annotations stripped,
    `#### x` turned into a closing "The answer is x." sentence."""
    final = _FINAL.search(solution)
    if final is None:
        raise ValueError("no '#### answer' line")
    answer = final.group(1).strip()
    body = _CALC.sub("", solution[: final.start()]).rstrip()
    return answer, f"{body}\nThe answer is {answer}."


def field_text(name: str, value: Any) -> str | None:
    """A field's value as text: a string as it is, a finite number as written, None for null. A list, an
    object, a boolean or NaN is an error (ValueError naming the field): its Python repr is no question
    or answer."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        kind = "NaN or infinite" if isinstance(value, float) else f"a {type(value).__name__}"
        raise ValueError(f"field {name!r} is {kind}, not text or a number")
    return str(value)


def _column(values: dict[str, Any], spec: str) -> str | None:
    parts = []
    for name in spec.split("+"):
        if name not in values:
            raise ValueError(f"no column {name!r} (columns: {', '.join(map(str, values))})")
        text = field_text(name, values[name])
        if text is not None:
            parts.append(text.strip())
    return " ".join(p for p in parts if p) or None


def _mapping(fields: dict[str, str], columns: Iterable[str]) -> dict[str, str]:
    """Explicit `fields` plus, for unmapped targets, the first conventional column name present."""
    columns = list(columns)
    mapping = dict(fields)
    for target, candidates in _DEFAULT_COLUMNS.items():
        if target not in mapping:
            found = next((c for c in candidates if c in columns), None)
            if found is not None:
                mapping[target] = found
    return mapping


def _problem(row: Row, mapping: dict[str, str], source: str, max_chars: int) -> Problem:
    """One row as a Problem; GSM8K-style answers (`#### x`) and MATH-style solutions (`\\boxed{x}`) are understood."""
    values = row.values
    get = {target: _column(values, spec) for target, spec in mapping.items()}
    for target, value in get.items():
        if value is not None and len(value) > max_chars:
            raise ValueError(f"{target} is {len(value):,} characters, over max_field_chars = {max_chars:,}")
    question, answer, solution = get.get("question"), get.get("answer"), get.get("reference_solution")
    if not question:
        raise ValueError("no question (map one with fields: {question: COLUMN})")
    if answer and "####" in answer:
        answer, cleaned = clean_gsm8k_solution(answer)
        solution = solution or cleaned
    elif answer:
        answer = reference_answer(answer)
    elif solution:
        answer = last_boxed(solution)
    if not answer:
        raise ValueError("no answer (map one with fields: {answer: COLUMN})")
    used = {name for spec in mapping.values() for name in spec.split("+")}
    metadata = {
        k: v
        for k, v in values.items()
        if k not in used and (v is None or isinstance(v, str | int | float | bool))
    }
    metadata["location"] = row.location
    return Problem(
        id=get.get("id") or f"{source}-{content_id(question, answer)}",
        question=question,
        answer=answer,
        reference_solution=solution or "",
        source=source,
        metadata=metadata,
    )


def _problems(rows: Iterator[Row | Skipped], cfg: DatasetConfig, source: str, report: LoadReport) -> None:
    unknown = set(cfg.fields) - set(TARGETS)
    if unknown:
        raise DatasetError(f"fields: unknown targets {sorted(unknown)}; choose from {list(TARGETS)}")
    seen: dict[str, str] = {}
    wanted = None if cfg.limit is None else cfg.offset + cfg.limit
    count = 0
    for row in good_rows(rows, cfg.skip_bad, report.skipped):
        if wanted is not None and count >= wanted:
            return
        try:
            problem = _problem(row, _mapping(cfg.fields, row.values), source, cfg.max_field_chars)
            if problem.id in seen:
                raise ValueError(f"problem id {problem.id!r} already used at {seen[problem.id]}")
        except ValueError as err:
            if not cfg.skip_bad:
                raise DatasetError(f"{row.location}: {err}") from None
            report.skipped.append(Skipped(row.location, str(err)))
            continue
        seen[problem.id] = row.location
        if count >= cfg.offset:
            report.problems.append(problem)
        count += 1


def _bundled_gsm8k(cfg: DatasetConfig, report: LoadReport) -> None:
    if cfg.split not in ("train", "test"):
        raise DatasetError(f"gsm8k has splits 'train' and 'test', not {cfg.split!r}")
    rows = good_rows(iter_rows(DATA_DIR / "gsm8k" / f"{cfg.split}.jsonl"), cfg.skip_bad, report.skipped)
    stop = None if cfg.limit is None else cfg.offset + cfg.limit
    for i, row in islice(enumerate(rows), cfg.offset, stop):
        answer, solution = clean_gsm8k_solution(row.values["answer"])
        report.problems.append(
            Problem(
                id=f"gsm8k-{cfg.split}-{i:05d}",
                question=row.values["question"],
                answer=answer,
                reference_solution=solution,
                source="gsm8k",
                metadata={"split": cfg.split, "index": i},
            )
        )


def _bundled_test_set(name: str, cfg: DatasetConfig, report: LoadReport) -> None:
    """A bundled single-split benchmark: each row becomes a Problem through `BUNDLED_TEST_SETS[name]`."""
    if cfg.split != "test":
        raise DatasetError(f"{name} has only a 'test' split, not {cfg.split!r}")
    rows = good_rows(iter_rows(DATA_DIR / name / "test.jsonl"), cfg.skip_bad, report.skipped)
    stop = None if cfg.limit is None else cfg.offset + cfg.limit
    to_problem = BUNDLED_TEST_SETS[name]
    for i, row in islice(enumerate(rows), cfg.offset, stop):
        try:
            problem = to_problem(row.values)
        except (KeyError, TypeError, ValueError) as err:
            raise DatasetError(f"{row.location}: {type(err).__name__}: {err}") from None
        problem.metadata["index"] = i
        report.problems.append(problem)


def _math500(v: dict[str, Any]) -> Problem:
    name = v["unique_id"].removeprefix("test/").removesuffix(".json").replace("/", "-")
    return Problem(
        id=f"math500-{name}",
        question=v["problem"],
        answer=v.get("answer") or last_boxed(v["solution"]) or "",
        reference_solution=v["solution"],
        source="math500",
        metadata={"subject": v["subject"], "level": v["level"], "unique_id": v["unique_id"]},
    )


def _minerva_math(v: dict[str, Any]) -> Problem:
    """Minerva's OCW problems carry no answer field: the answer is the solution's last `\\boxed{}`."""
    answer = last_boxed(v["solution"])
    if not answer:
        raise ValueError("no \\boxed{} answer in the solution")
    return Problem(
        id=f"minerva_math-{v['idx']:03d}",
        question=v["problem"],
        answer=answer.strip(),
        reference_solution=v["solution"],
        source="minerva_math",
        metadata={"course": v["type"], "idx": v["idx"]},
    )


def _integer_text(value: Any) -> str:
    """AMC's `27.0` and AIME's `025` as the integers they are ("27", "25"); other numbers unchanged."""
    number = float(value)
    return str(int(number)) if number.is_integer() else str(value)


def _aime24(v: dict[str, Any]) -> Problem:
    return Problem(
        id=f"aime24-{v['id']}",
        question=v["problem"],
        answer=_integer_text(v["answer"]),
        reference_solution=v.get("solution") or "",
        source="aime24",
        metadata={"url": v.get("url")},
    )


def _amc23(v: dict[str, Any]) -> Problem:
    return Problem(
        id=f"amc23-{v['id']:02d}",
        question=v.get("problem") or v["question"],
        answer=_integer_text(v["answer"]),
        source="amc23",
        metadata={"url": v.get("url")},
    )


def _olympiadbench(v: dict[str, Any]) -> Problem:
    """OlympiadBench as its own evaluation poses it: a multi-answer problem asks for all answers in one
    box, comma-separated (graded as an unordered list), and a unit is named in the question and kept
    out of the box, so the reference is the bare value. `final_answer` is a list of LaTeX strings; the
    answer is their comma-joined text without `$` delimiters, the list itself stays in the metadata."""
    final = [str(a).replace("$", "").strip() for a in v["final_answer"]]
    if not final or not all(final):
        raise ValueError(f"empty final_answer {v['final_answer']!r}")
    question = "\n".join(part for part in (v.get("context"), v["question"]) if part)
    if v.get("is_multiple_answer"):
        question += "\n\nThis problem has multiple answers: give them all in one \\boxed{}, separated by commas."
    if v.get("unit"):
        question += f"\n\nThe unit of the answer is {v['unit']}; do not include the unit in \\boxed{{}}."
    return Problem(
        id=f"olympiadbench-{v['id']}",
        question=question,
        answer=", ".join(final),
        reference_solution="\n\n".join(v.get("solution") or []),
        source="olympiadbench",
        metadata={
            "final_answer": list(v["final_answer"]),
            "is_multiple_answer": bool(v.get("is_multiple_answer")),
            "unit": v.get("unit"),
            "answer_type": v.get("answer_type"),
            "tolerance": v.get("error"),
            "subfield": v.get("subfield"),
        },
    )


BUNDLED_TEST_SETS = {
    "math500": _math500,
    "minerva_math": _minerva_math,
    "aime24": _aime24,
    "amc23": _amc23,
    "olympiadbench": _olympiadbench,
}
"""The paper's five benchmarks, shipped in `data/` with their licences (single `test` split each)."""


def _hf_dataset(cfg: DatasetConfig) -> tuple[Any, str]:
    import datasets

    if cfg.source.startswith("hf:"):
        name, _, config_name = cfg.source[3:].partition(":")
        return datasets.load_dataset(name, config_name or None, split=cfg.split), name
    loaded = datasets.load_from_disk(cfg.source)
    if isinstance(loaded, datasets.DatasetDict):
        if cfg.split not in loaded:
            raise DatasetError(f"{cfg.source}: no split {cfg.split!r} (splits: {', '.join(loaded)})")
        loaded = loaded[cfg.split]
    return loaded, Path(cfg.source).name


def load_report(cfg: DatasetConfig, key: str = "source") -> LoadReport:
    """Problems of `cfg.source` and what was skipped; see the module doc. `key` names the setting in errors."""
    report = LoadReport()
    source = cfg.source
    if source == "lab":
        from stylealign.lab.world import load_lab_problems

        report.problems = load_lab_problems(cfg.split, cfg.limit, cfg.offset, seed=0)
    elif source == "gsm8k":
        _bundled_gsm8k(cfg, report)
    elif source in BUNDLED_TEST_SETS:
        _bundled_test_set(source, cfg, report)
    elif source.startswith("hf:") or Path(source).is_dir():
        dataset, name = _hf_dataset(cfg)
        _problems(_iter_hf(dataset, f"{cfg.source}[{cfg.split}]"), cfg, name, report)
    elif Path(source).suffix in FILE_SUFFIXES:
        _problems(iter_rows(source, key), cfg, Path(source).stem, report)
    else:
        raise DatasetError(
            f"unknown dataset source {source!r}: use lab, gsm8k, {', '.join(BUNDLED_TEST_SETS)}, a {'/'.join(FILE_SUFFIXES)} file, "
            "a datasets.save_to_disk directory, or hf:ID"
        )
    if report.skipped:
        log.warning(
            "%s: skipped %d bad row(s): %s",
            source,
            len(report.skipped),
            "; ".join(f"{s.location}: {s.reason}" for s in report.skipped[:5]),
        )
    return report


def source_fingerprint(cfg: DatasetConfig) -> str | None:
    """A hash of the bytes of a file or `save_to_disk` directory source, so an edited file is read again;
    None for the bundled sets, the lab and hub datasets, fixed by the installed package or the hub."""
    if cfg.source in ("lab", "gsm8k", *BUNDLED_TEST_SETS) or cfg.source.startswith("hf:"):
        return None
    path = Path(cfg.source)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path] if path.is_file() else []
    if not files:
        return None
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.relative_to(path) if path.is_dir() else ''}\0".encode())
        with open(file, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def load_problems(cfg: DatasetConfig) -> list[Problem]:
    """The problems of `cfg`; `load_report` also says which rows `skip_bad` left out."""
    return load_report(cfg).problems
