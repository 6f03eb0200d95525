"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every writer of the run store, records, verdict files and exports goes through
`write_atomically`: write beside the target under a hidden temporary name, then
`os.replace` onto it (one rename on a POSIX filesystem). A failed write (a full
disk) removes its temporary file and raises the OSError. The rename replaces a
symbolic link at the target rather than writing through it, so a write never
lands outside the folder it was given.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """`write(tmp)` to a temporary file beside `path`, then rename it onto `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomically(path: Path, text: str) -> None:
    write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def check_output_file(path: Path, inputs: Iterable[Path], option: str) -> None:
    """Refuse to write `path` (named by `option`) where it is a directory or one of the `inputs`, before any work."""
    if path.is_dir():
        raise ValueError(f"{option} {path}: is a directory; name a file")
    for source in inputs:
        if path.resolve() == source.resolve():
            raise ValueError(f"{option} {path}: is the input file {source}; write to another file")
