"""The run directory: one folder per stage, records in atomically renamed shards.

A stage turns work items into records. Each work item has a content key
(`run.work.work_key`: stage, model, prompt, sampling parameters, seed, input). A shard
is one Parquet file holding the records of a batch *and*, in its schema
metadata, the keys of the work items that batch finished, so "these items are
done" and "here are their records" land in one `os.replace`. A process killed
at any point leaves either a whole shard or none (stray temp files are
ignored and cleaned), and a rerun skips every key already committed. Items
that produced no record (a rejected sample, say) are remembered all the same.

One writer at a time: a run started on a directory holds an exclusive
`flock` on `<run>/.lock` (the file names the holder's PID). The kernel drops
the lock when its process dies, so a lock left by a killed run is simply
taken over. Only the writer cleans up: stray temp files of dead processes,
and files that cannot be read (a truncated or corrupt shard, manifest or
JSON artifact, e.g. after a disk fault), which it moves to
`<run>/quarantine/` (never deletes) with a warning naming them; a
quarantined shard's work is then redone, as its keys are gone with it. A
reader (`report --no-rebuild`, `export`, a data-parallel process other than
the first) only names such a file in its error and changes nothing.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from stylealign.io import write_atomically
from stylealign.records import (
    Problem,
    Record,
    Trace,
    by_id,
    content_id,
    from_table,
    to_table,
)

_KEYS = b"stylealign.keys"
_REQUIRED = object()  # read_json without a `missing` value: a missing file is an error
_KIND = b"stylealign.kind"
_KINDS: dict[str, type[Problem] | type[Trace]] = {"Problem": Problem, "Trace": Trace}
QUARANTINE = "quarantine"

log = logging.getLogger(__name__)


class StoreError(OSError):
    """The run directory cannot be written or is held by another writer; the message names the path."""


def _write_then_rename(path: Path, write: Callable[[Path], object]) -> None:
    """`write_atomically`, with a failed write (disk full) named as a StoreError."""
    try:
        write_atomically(path, write)
    except OSError as err:
        raise StoreError(f"{path}: cannot write: {err.strerror or err}") from err


def _atomic_write_text(path: Path, text: str) -> None:
    _write_then_rename(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _set_aside(root: Path, path: Path, problem: str, writer: bool) -> None:
    """A writer moves an unreadable file to `<root>/quarantine/` and warns; a reader raises, naming it."""
    if not writer:
        raise StoreError(f"{path}: cannot be read ({problem}); a `stylealign run` on {root} sets it aside and redoes its work")
    target = root / QUARANTINE / path.relative_to(root)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, target)
    log.warning("%s: cannot be read (%s); moved to %s, its work is redone", path, problem, target)


def _fsynced_parquet(table: pa.Table):
    def write(tmp: Path) -> None:
        with pa.OSFile(str(tmp), "wb") as sink:
            pq.write_table(table, sink)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())

    return write


class Stage:
    """Records of one stage, as shards in `<run>/<name>/`. A `writer`'s stage cleans up and sets aside
    unreadable shards (see the module doc)."""

    def __init__(self, root: Path, name: str, *, writer: bool = False):
        self.name = name
        self.root = root
        self.dir = root / name
        self.writer = writer
        self.dir.mkdir(parents=True, exist_ok=True)
        if writer:
            for stray in self.dir.glob(".*.tmp"):
                if stray.name.split(".")[-3:-2] != [str(os.getpid())]:  # not one this process is writing now
                    stray.unlink(missing_ok=True)

    def _shards(self) -> list[Path]:
        return sorted(self.dir.glob("shard-*.parquet"))

    def _shard_keys(self) -> Iterator[tuple[Path, list[str]]]:
        """(shard, the keys it finished) of every readable shard, in commit order."""
        for shard in self._shards():
            try:
                meta = pq.read_schema(shard).metadata or {}
                keys = json.loads(meta.get(_KEYS, b"[]"))
            except FileNotFoundError:  # set aside by the writer meanwhile
                continue
            except (pa.ArrowException, ValueError, OSError) as err:
                self._unreadable(shard, err)
                continue
            yield shard, keys

    def _unreadable(self, shard: Path, err: Exception) -> None:
        """A shard whose content cannot be read: set aside or named (`_set_aside`); no access to it is an error."""
        if isinstance(err, PermissionError | IsADirectoryError):
            raise StoreError(f"{shard}: cannot read: {err}") from err
        _set_aside(self.root, shard, f"{type(err).__name__}: {err}", self.writer)

    def done_keys(self) -> set[str]:
        keys: set[str] = set()
        for _, finished in self._shard_keys():
            keys.update(finished)
        return keys

    def committed_with(self, key: str, cls: type[Record]) -> list[Record] | None:
        """The records of the last shard that finished `key`, or None if none did."""
        found = [shard for shard, finished in self._shard_keys() if key in finished]
        if not found:
            return None
        tables = list(self._tables(cls, None, shards=found[-1:]))
        return [record for table in tables for record in from_table(table, cls)]

    def commit(self, records: Sequence[Problem | Trace], keys: Iterable[str]) -> None:
        """Write `records` and mark `keys` done, atomically, as one new shard."""
        kinds = {type(r).__name__ for r in records}
        if len(kinds) > 1:
            raise TypeError(f"stage {self.name!r}: one shard holds one record type, got {sorted(kinds)}")
        meta = {_KEYS: json.dumps(sorted(set(keys))).encode()}
        if kinds:  # an empty shard holds no records, so it is labelled with no record type
            meta[_KIND] = next(iter(kinds)).encode()
        table = to_table(records, _KINDS[next(iter(kinds), "Trace")]).replace_schema_metadata(meta)
        shard = self.dir / f"shard-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        _write_then_rename(shard, _fsynced_parquet(table))

    def iter_records(self, cls: type[Record], ids: Collection[str] | None = None) -> Iterator[Record]:
        """All records in commit order, first copy of each id kept, one shard in memory at a time.

        `ids` keeps only those records, chosen by the id column before any row is decoded: callers that
        want some records (the current config's) ask for them here instead of holding the stage.
        """
        seen: set[str] = set()
        for table in self._tables(cls, ids):
            for record in from_table(table, cls):
                if record.id not in seen:
                    seen.add(record.id)
                    yield record

    def iter_columns(self, cls: type[Record], columns: Sequence[str], ids: Collection[str] | None = None) -> Iterator[tuple]:
        """`(id, *columns)` of the records `iter_records` gives, read without the other columns and without
        building records: a summary of 800K samples needs their verdicts, a drift profile their texts."""
        seen: set[str] = set()
        for table in self._tables(cls, ids, ["id", *columns]):
            for row in zip(*(table.column(name).to_pylist() for name in ["id", *columns]), strict=True):
                if row[0] not in seen:
                    seen.add(row[0])
                    yield row

    def _tables(
        self, cls: type[Record], ids: Collection[str] | None, columns: list[str] | None = None,
        shards: list[Path] | None = None,
    ) -> Iterator[pa.Table]:
        """Each non-empty shard's table (its `columns`, rows of `ids` when given), in commit order."""
        wanted = ids if ids is None or isinstance(ids, (set, frozenset)) else set(ids)
        for shard in self._shards() if shards is None else shards:
            try:
                with pq.ParquetFile(shard) as file:
                    if file.metadata.num_rows == 0:
                        continue
                    kind = (file.schema_arrow.metadata or {}).get(_KIND, b"Trace").decode()
                    table = file.read(columns=columns)
            except FileNotFoundError:  # set aside by the writer meanwhile
                continue
            except (pa.ArrowException, ValueError, OSError) as err:
                self._unreadable(shard, err)
                if shards is None:
                    continue
                raise StoreError(f"{shard}: its records were set aside; run again to redo its work") from err
            if kind != cls.__name__:
                raise TypeError(f"{shard}: holds {kind} records, asked for {cls.__name__}")
            if wanted is not None:  # a Python set lookup per row: `pc.is_in` hashes the whole id set again per shard
                table = table.filter(pa.array([i in wanted for i in table.column("id").to_pylist()], pa.bool_()))
            yield table

    def records(self, cls: type[Record]) -> list[Record]:
        """All records in commit order, first copy of each id kept."""
        return list(self.iter_records(cls))

    def latest(self, cls: type[Record]) -> dict[str, Record]:
        """Each id's last committed record: the current version of a record that is stored again when its
        source changes (a problem whose file was edited)."""
        return by_id(record for table in self._tables(cls, None) for record in from_table(table, cls))

    def clear(self) -> None:
        for shard in self._shards():
            shard.unlink()


_HELD: dict[Path, list[int]] = {}
"""Run directories this process holds: lock file descriptor and how many `RunStore`s share it."""


def _lock(root: Path) -> None:
    """Take `<root>/.lock` for this process (re-entrant within it) or refuse, naming the holder's PID."""
    key = root.resolve()
    if key in _HELD:
        _HELD[key][1] += 1
        return
    path = root / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise StoreError(
            f"{root}: in use by another run (process {holder} holds {path}); wait for it or use another --out"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[key] = [fd, 1]


def _unlock(root: Path) -> None:
    key = root.resolve()
    held = _HELD.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] == 0:
        del _HELD[key]
        os.close(held[0])  # closing the descriptor releases the flock


class RunStore:
    """A run directory: stages, JSON artifacts and a manifest of configs and finished stages.

    A store opened with a `config` is a writer: it holds the directory's lock until `close()`.
    """

    def __init__(self, root: str | Path, config: dict[str, Any] | None = None):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"{self.root}: not a directory")
        self.root.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.root / "manifest.json"
        self.locked = config is not None
        if config is not None:
            _lock(self.root)
            self._record_config(config)

    def close(self) -> None:
        """Release the writer's lock (a no-op for readers)."""
        if self.locked:
            self.locked = False
            _unlock(self.root)

    def _record_config(self, config: dict[str, Any]) -> None:
        manifest = self.manifest()
        digest = content_id(config)
        if manifest.get("config_hash") != digest:
            manifest.setdefault("config_history", []).append({"config_hash": digest, "time": time.time()})
            manifest["config_hash"] = digest
            manifest["config"] = config
            self._write_manifest(manifest)

    def manifest(self) -> dict[str, Any]:
        return self._read_json_file(self.manifest_path, {})

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        _atomic_write_text(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=True, default=str))

    def stage(self, name: str) -> Stage:
        return Stage(self.root, name, writer=self.locked)

    def mark_done(self, stage: str, summary: dict[str, Any] | None = None) -> None:
        manifest = self.manifest()
        manifest.setdefault("stages", {})[stage] = {"done": True, "time": time.time(), "summary": summary or {}}
        self._write_manifest(manifest)

    def is_done(self, stage: str) -> bool:
        return bool(self.manifest().get("stages", {}).get(stage, {}).get("done"))

    def write_json(self, relpath: str, obj: Any) -> Path:
        path = self.root / relpath
        _atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str))
        return path

    def read_json(self, relpath: str, missing: Any = _REQUIRED) -> Any:
        """The JSON file at `relpath`; `missing`, when given, is returned if the file does not exist (or, to
        a writer, could not be read and was set aside)."""
        return self._read_json_file(self.root / relpath, missing)

    def _read_json_file(self, path: Path, missing: Any) -> Any:
        if missing is not _REQUIRED and not path.is_file():
            return missing
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
            if path == self.manifest_path and not isinstance(value, dict):
                raise ValueError(f"expected a JSON object, got {type(value).__name__}")
            return value
        except (ValueError, RecursionError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            _set_aside(self.root, path, f"{type(err).__name__}: {err}", self.locked)
        if missing is _REQUIRED:
            raise StoreError(f"{path}: could not be read and was set aside; run again to rebuild it")
        return missing
