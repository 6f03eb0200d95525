"""The experiment runner: load → sample → streams → score → train → evaluate → report.

Each stage is a function `stage(ctx) -> summary dict` living in the module
that owns the idea (streams, metrics, training, ...). Stages read and write
the run store only, keyed by content, so a run killed anywhere resumes where
it stopped. This file only orders the stages and hands them a `RunContext`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from stylealign.config import PAPER_STREAMS, STREAMS, DatasetConfig, EngineConfig, ExperimentConfig
from stylealign.engines import Engine, load_engine
from stylealign.prompts import PromptTemplate, load_template
from stylealign.records import Problem, content_id
from stylealign.store import RunStore

STAGES = ("load", "sample", "streams", "score", "train", "evaluate", "report")


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

    def engine(self, config: EngineConfig) -> Engine:
        key = config.model_dump_json()
        if key not in self._engines:
            self._engines[key] = load_engine(config)
        return self._engines[key]

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
        """The problems this run's config (and --limit) selects, even when the run directory holds more."""
        selection = _selection_path(self.problems_configs())
        if not (self.store.root / selection).exists():
            raise ValueError(f"{self.store.root}: no problems loaded for this config yet; run the `load` stage first")
        wanted = self.store.read_json(selection)
        by_id = {p.id: p for p in self.store.stage("problems").records(Problem)}
        return [by_id[i] for i in wanted]

    def set_problems(self, problems: list[Problem]) -> None:
        """Make `problems` this config's problem set: how `load` stores them, and how Python callers bring their own."""
        configs = self.problems_configs()
        self.store.write_json(_selection_path(configs), [p.id for p in problems])
        self.store.stage("problems").commit(problems, [_selection_key(configs)])

    def release_engines(self) -> None:
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()


def _selection_key(configs: list[DatasetConfig]) -> str:
    return json.dumps([cfg.model_dump(mode="json") for cfg in configs], sort_keys=True)


def _selection_path(configs: list[DatasetConfig]) -> str:
    return f"problems/selection-{content_id(_selection_key(configs))}.json"


def load_stage(ctx: RunContext) -> dict[str, Any]:
    from stylealign.datasets import load_report

    stage = ctx.store.stage("problems")
    configs = ctx.problems_configs()
    summary: dict[str, Any] = {}
    if _selection_key(configs) not in stage.done_keys():
        reports = [load_report(cfg, key=f"problems[{i}].source") for i, cfg in enumerate(configs)]
        skipped = [s for report in reports for s in report.skipped]
        if skipped:
            ctx.store.write_json("problems/skipped.json", [vars(s) for s in skipped])
            for s in skipped[:5]:
                ctx.console.print(f"[yellow]skipped[/] {s.location}: {s.reason}")
            summary["skipped"] = len(skipped)
        problems = [p for report in reports for p in report.problems]
        if not problems:
            raise ValueError(f"problems: {', '.join(cfg.source for cfg in configs)} gave no problems; nothing to run")
        ids = [p.id for p in problems]
        if len(set(ids)) != len(ids):
            raise ValueError("problems: the sources overlap (the same problem id comes from two of them); drop one")
        ctx.set_problems(problems)
    return {"problems": len(ctx.problems()), **summary}


def _stage_functions() -> dict[str, Callable[[RunContext], dict[str, Any]]]:
    from stylealign.evaluation import evaluate_stage
    from stylealign.metrics import score_stage
    from stylealign.report import report_stage
    from stylealign.streams import sample_stage, streams_stage
    from stylealign.training import train_stage

    return {
        "load": load_stage,
        "sample": sample_stage,
        "streams": streams_stage,
        "score": score_stage,
        "train": train_stage,
        "evaluate": evaluate_stage,
        "report": report_stage,
    }


def run_experiment(
    config: ExperimentConfig,
    out: str | Path,
    *,
    only: str | None = None,
    until: str | None = None,
    streams: tuple[str, ...] | None = None,
    limit: int | None = None,
    console: Console | None = None,
    allow_failures: bool = False,
) -> RunContext:
    """Run (or resume) the stages of an experiment into the run directory `out`."""
    for name, value in (("only", only), ("until", until)):
        if value is not None and value not in STAGES:
            raise ValueError(f"--{name} {value!r}: choose one of {', '.join(STAGES)}")
    if limit is not None and limit < 1:
        raise ValueError(f"--limit {limit}: must be at least 1")
    selected = tuple(streams) if streams else tuple(config.streams.enabled)
    unknown = [s for s in selected if s not in STREAMS]
    if unknown:
        raise ValueError(f"unknown streams {unknown}; choose from {list(STREAMS)}")
    store = RunStore(out, config=config.model_dump(mode="json"))
    ctx = RunContext(config=config, store=store, console=console or Console(), limit=limit, streams=selected,
                     allow_failures=allow_failures)
    stages = [only] if only else list(STAGES[: STAGES.index(until) + 1] if until else STAGES)
    functions = _stage_functions()
    try:
        for name in stages:
            start = time.perf_counter()
            summary = functions[name](ctx)
            store.mark_done(name, summary)
            details = ", ".join(f"{k}={v}" for k, v in summary.items())
            ctx.console.print(f"[bold green]✓ {name}[/] ({time.perf_counter() - start:.1f}s) {details}")
    finally:
        ctx.release_engines()
        store.close()
    return ctx
