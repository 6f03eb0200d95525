"""Where converted and pretrained models live, shared by the model resolver, the GGUF converter and the lab."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Where converted and pretrained models live: `$STYLEALIGN_CACHE` or `~/.cache/stylealign`."""
    root = Path(os.environ.get("STYLEALIGN_CACHE", Path.home() / ".cache" / "stylealign"))
    root.mkdir(parents=True, exist_ok=True)
    return root
