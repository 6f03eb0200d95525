"""What every stage gets: the config, the run store, shared engines, the problem selection and a console."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rich.console import Console

from stylealign.config import PAPER_STREAMS, DatasetConfig, EngineConfig, ExperimentConfig
from stylealign.datasets import source_fingerprint
from stylealign.engines import Engine, load_engine
from stylealign.prompts import PromptTemplate, load_template
from stylealign.records import Problem, by_id, content_id
from stylealign.store import RunStore

T = TypeVar("T")


@dataclass
class RunContext:
    """What every stage gets: the config, the run store, engines (built lazily, shared) and a console."""

    config: ExperimentConfig
    store: RunStore
    console: Console = field(default_factory=Console)
    limit: int | None = None
    streams: tuple[str, ...] = PAPER_STREAMS
    allow_failures: bool = False
    _engines: dict[str, Engine] = field(default_factory=dict)
    _memo: dict[str, Any] = field(default_factory=dict)

    def engine(self, config: EngineConfig) -> Engine:
        key = config.model_dump_json()
        if key not in self._engines:
            self._engines[key] = load_engine(config)
        return self._engines[key]

    def use_engine(self, config: EngineConfig, engine: Engine) -> Engine:
        """Serve requests for `config` with `engine` (returned): for tests and library users who already hold one."""
        self._engines[config.model_dump_json()] = engine
        return engine

    def student(self) -> Engine:
        return self.engine(self.config.student.engine)

    def oracle(self) -> Engine:
        if self.config.oracle is None:
            raise ValueError("this experiment needs an oracle: add an `oracle:` section to the config")
        return self.engine(self.config.oracle.engine)

    def template(self, name: str, system: str | None = None) -> PromptTemplate:
        return load_template(name, self.config.prompts_dir, system=system)

    def student_template(self) -> PromptTemplate:
        return self.template(self.config.student.template, self.config.student.system)

    def problems_configs(self) -> list[DatasetConfig]:
        """The config's problem sources, each cut to `--limit` when one is given."""
        if self.limit is None:
            return list(self.config.problems)
        return [cfg.model_copy(update={"limit": min(cfg.limit or self.limit, self.limit)}) for cfg in self.config.problems]

    def problems(self) -> list[Problem]:
        """The problems this run's config (and --limit) selects, even when the run directory holds more: those
        last stored under the key the selection file names (see `set_problems`)."""

        def read() -> list[Problem]:
            selection = _selection_path(self.problems_configs())
            wanted = self.store.read_json(selection, missing=None)
            stage = self.store.stage("problems")
            if isinstance(wanted, list):  # a run directory whose selection is a plain id list, not keyed by content
                stored = by_id(stage.records(Problem))
                return [stored[i] for i in wanted]
            found = stage.committed_with(wanted["key"], Problem) if isinstance(wanted, dict) else None
            if found is None:
                raise ValueError(f"{self.store.root}: no problems loaded for this config yet; run the `load` stage first")
            return found

        return list(self.memo("problems", read))

    def problem_by_id(self) -> dict[str, Problem]:
        """`problems()` by id, built once per selection (like `problems`); shared, so callers only read it."""
        return self.memo("problem_by_id", lambda: by_id(self.problems()))

    def memo(self, key: str, build: Callable[[], T]) -> T:
        """`build()` once per context and problem selection (`--limit` may change it): what every stage derives
        from the selection (the problems, the samples' work keys and ids) costs seconds at 100K problems.
        `set_problems` forgets it all."""
        scoped = f"{_selection_path(self.problems_configs())}:{key}"
        if scoped not in self._memo:
            self._memo[scoped] = build()
        return self._memo[scoped]

    def set_problems(self, problems: list[Problem], key: str | None = None) -> None:
        """Make `problems` this config's problem set: how `load` stores them (under its `load_key`), and how
        Python callers bring their own (keyed by their content). The selection file names the key, so an
        edited source (or edited problems) never reads back an earlier version of a problem."""
        configs = self.problems_configs()
        key = key or content_id(selection_key(configs), [vars(p) for p in problems])
        self._memo.clear()
        self.store.stage("problems").commit(problems, [key])
        self.select_problems(key)

    def select_problems(self, key: str) -> None:
        """Make the problems stored under `key` this config's problem set (the load stage, when they are stored)."""
        self._memo.clear()
        self.store.write_json(_selection_path(self.problems_configs()), {"key": key})

    def release_engines(self) -> None:
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()


def selection_key(configs: list[DatasetConfig]) -> str:
    return json.dumps([cfg.model_dump(mode="json") for cfg in configs], sort_keys=True)


def load_key(configs: list[DatasetConfig]) -> str:
    """What the load stage's output depends on: the config's sources and the content of their files."""
    return content_id(selection_key(configs), [source_fingerprint(cfg) for cfg in configs])


def _selection_path(configs: list[DatasetConfig]) -> str:
    return f"problems/selection-{content_id(selection_key(configs))}.json"
