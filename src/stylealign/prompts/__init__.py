"""Prompt templates: editable YAML files with a `system` and a `user` Jinja2 string.

`load_template("sar")` looks in the experiment's `prompts_dir` first, then in
the built-ins beside this file; a path to a .yaml file also works. Every trace
records the template's name, so a run says exactly which prompt made it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import yaml

from stylealign.engines.base import Request

BUILTIN_DIR = Path(__file__).parent
_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)


@lru_cache(maxsize=256)
def _compiled(source: str) -> jinja2.Template:
    """A template string compiled once: stages render one template for every work item of a run."""
    return _ENV.from_string(source)


@lru_cache(maxsize=256)
def _parsed(path: Path, mtime_ns: int, size: int) -> Any:
    """A template file parsed once per version (an edited file has another mtime or size, so it is read again)."""
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    system: str | None
    user: str

    def request(self, prefix: str = "", id: str = "", **variables: Any) -> Request:
        system = _compiled(self.system).render(**variables) if self.system else None
        user = _compiled(self.user).render(**variables)
        return Request.from_prompt(user, system=system, prefix=prefix, id=id, template=self.name)


def load_template(name: str, prompts_dir: str | Path | None = None, system: str | None = None) -> PromptTemplate:
    """Find and parse a template; `system`, when given, replaces the file's system prompt."""
    candidates = []
    if name.endswith((".yaml", ".yml")):
        candidates.append(Path(name))
    if prompts_dir:
        candidates.append(Path(prompts_dir) / f"{name}.yaml")
    candidates.append(BUILTIN_DIR / f"{name}.yaml")
    for path in candidates:
        if path.is_file():
            stat = path.stat()
            data = _parsed(path.resolve(), stat.st_mtime_ns, stat.st_size)
            if not isinstance(data, dict) or "user" not in data:
                raise ValueError(f"{path}: a prompt template needs a 'user' key (and optionally 'system')")
            return PromptTemplate(name=Path(name).stem, system=system or data.get("system"), user=data["user"])
    searched = ", ".join(str(p) for p in candidates)
    raise FileNotFoundError(f"prompt template {name!r} not found (looked in {searched})")
