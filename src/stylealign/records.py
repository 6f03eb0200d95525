"""Plain records that flow between stages: problems in, traces out.

Both are dataclasses of JSON-able fields so every stage can be called from
Python with plain records, and both round-trip through JSONL and Parquet
without loss. Free-form dict fields (metadata, sampling, metrics) are stored
in Parquet as JSON text: arbitrary nesting survives and the schema stays fixed.
That JSON is written and read with orjson (a scored trace carries every token's
NLL, and at 100K problems x 8 samples the stdlib's encoder and decoder would be
most of the score stage); values orjson would not write exactly (NaN, infinities,
non-string keys, integers over 64 bits) go through the stdlib instead.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from stylealign.io import write_atomically

json_string = json.encoder.encode_basestring  # what json.dumps(..., ensure_ascii=False) writes for a str


def json_value(value: Any) -> str:
    """`value` as `json.dumps(..., sort_keys=True, ensure_ascii=False, default=str)` writes it inside a list or
    dict; plain strings, None and ints without the encoder (ids and keys are made of them, millions a run)."""
    kind = type(value)
    if kind is str:
        return json_string(value)
    if value is None:
        return "null"
    if kind is int:
        return int.__repr__(value)
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def content_id(*parts: Any) -> str:
    """A short stable id from any JSON-able parts (sorted keys, so dict order never matters): the hash of the
    JSON list `json.dumps` writes for them."""
    blob = "[" + ", ".join(json_value(part) for part in parts) + "]"
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


@dataclass
class Problem:
    id: str
    question: str
    answer: str
    reference_solution: str = ""
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Trace:
    """One solution text for one problem, with where it came from and what it scored."""

    id: str
    problem_id: str
    text: str
    stream: str
    parent_id: str | None = None
    model: str = ""
    template: str = ""
    sampling: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    correct: bool | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


Record = TypeVar("Record", Problem, Trace)

_DICT_FIELDS = {"metadata", "sampling", "metrics"}

_ARROW_TYPES: dict[str, pa.DataType] = {
    "id": pa.string(),
    "question": pa.string(),
    "answer": pa.string(),
    "reference_solution": pa.string(),
    "source": pa.string(),
    "problem_id": pa.string(),
    "text": pa.string(),
    "stream": pa.string(),
    "parent_id": pa.string(),
    "model": pa.string(),
    "template": pa.string(),
    "seed": pa.int64(),
    "correct": pa.bool_(),
}


def by_id(records: Iterable[Record]) -> dict[str, Record]:
    """`records` by their id (the last of a repeated id wins): the one way problems (or traces) are looked up."""
    return {record.id: record for record in records}


def to_dict(record: Problem | Trace) -> dict[str, Any]:
    return dataclasses.asdict(record)


@functools.cache
def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


def from_dict(cls: type[Record], row: dict[str, Any]) -> Record:
    unknown = row.keys() - _field_names(cls)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    return cls(**row)


def arrow_schema(cls: type[Problem] | type[Trace]) -> pa.Schema:
    return pa.schema(
        [(f.name, pa.string() if f.name in _DICT_FIELDS else _ARROW_TYPES[f.name]) for f in dataclasses.fields(cls)]
    )


def _not_finite(value: Any) -> bool:
    """Whether `value` holds a NaN or an infinity (which orjson would write as null); a float sum
    tells for a whole list at once, an overflowing sum errs on the safe side."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        value = value.values()
    elif not isinstance(value, (list, tuple)):
        return False
    for numbers in (value, itertools.chain.from_iterable(value)):  # a list of numbers, or of lists of numbers
        try:
            return not math.isfinite(sum(numbers))
        except TypeError:
            continue
        except (ValueError, OverflowError):
            return True
    return any(_not_finite(v) for v in value)  # mixed: look inside


def dumps_field(value: Any) -> str:
    """A dict field as JSON text (sorted keys): orjson where it writes the value exactly, else the stdlib.

    orjson writes NaN and infinities as null, so only a text holding a null is checked for them.
    """
    try:
        text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # non-string keys, big integers, types orjson does not know
        pass
    else:
        if b"null" not in text or not _not_finite(value):
            return text.decode()
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def loads_field(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # NaN / Infinity, written by the stdlib
        return json.loads(text)


def to_table(records: Iterable[Problem | Trace], cls: type[Problem] | type[Trace]) -> pa.Table:
    """Column by column, reading fields directly: `asdict`'s deep copy of every metrics dict costs more than the write."""
    names = [f.name for f in dataclasses.fields(cls)]
    records = list(records)
    columns = {
        name: [dumps_field(getattr(r, name)) for r in records]
        if name in _DICT_FIELDS
        else [getattr(r, name) for r in records]
        for name in names
    }
    return pa.Table.from_pydict(columns, schema=arrow_schema(cls))


def from_table(table: pa.Table, cls: type[Record]) -> list[Record]:
    records = []
    for row in table.to_pylist():
        for name in _DICT_FIELDS & row.keys():
            row[name] = loads_field(row[name]) if row[name] is not None else {}
        records.append(from_dict(cls, row))
    return records


def write_parquet(path: str | Path, records: Iterable[Problem | Trace], cls: type[Problem] | type[Trace]) -> None:
    table = to_table(records, cls)
    write_atomically(Path(path), lambda tmp: pq.write_table(table, tmp))


def read_parquet(path: str | Path, cls: type[Record]) -> list[Record]:
    return from_table(pq.read_table(path), cls)


def write_jsonl(path: str | Path, records: Iterable[Problem | Trace]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(to_dict(record), ensure_ascii=False) + "\n")

    write_atomically(Path(path), write)


def iter_jsonl(path: str | Path, cls: type[Record]) -> Iterator[Record]:
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield from_dict(cls, json.loads(line))
            except (json.JSONDecodeError, TypeError, ValueError) as err:
                raise ValueError(f"{path}:{lineno}: not a valid {cls.__name__} record: {err}") from err


def read_jsonl(path: str | Path, cls: type[Record]) -> list[Record]:
    return list(iter_jsonl(path, cls))
