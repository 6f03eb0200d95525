"""The experiment runner: load → sample → streams → score → train → evaluate → report.

Each stage is a function `stage(ctx) -> summary dict`, one per module of
`stylealign.stages`. Stages
read and write the run store only, keyed by content, so a run killed anywhere
resumes where it stopped. This file only orders the stages and hands them a
`RunContext`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from stylealign.config import ExperimentConfig, known_streams
from stylealign.distributed import is_main_process, world_size
from stylealign.distributed import shutdown as shutdown_distributed
from stylealign.run.context import RunContext
from stylealign.run.work import few_collections
from stylealign.stages.evaluate import evaluate_stage
from stylealign.stages.load import load_stage
from stylealign.stages.report import report_stage
from stylealign.stages.sample import sample_stage
from stylealign.stages.score import score_stage
from stylealign.stages.streams import streams_stage
from stylealign.stages.train import train_stage
from stylealign.store import RunStore
from stylealign.streams.registry import check_stream_settings

STAGES = ("load", "sample", "streams", "score", "train", "evaluate", "report")


STAGE_FUNCTIONS: dict[str, Callable[[RunContext], dict[str, Any]]] = {
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
    selected = tuple(known_streams(streams or config.streams.enabled))
    config = check_stream_settings(config)  # each stream's own settings: `streams.<name>: {...}`, defaults filled in
    processes = world_size()
    if processes > 1 and only != "train":
        raise ValueError(
            f"{processes} processes (WORLD_SIZE={processes}): a torchrun / accelerate launch runs `--only train`; "
            "run the other stages in one process"
        )
    # under a data-parallel launch process 0 alone holds the run directory and writes it; the others only read
    main = is_main_process()
    store = RunStore(out, config=config.model_dump(mode="json") if main else None)
    console = (console or Console()) if main else Console(quiet=True)
    ctx = RunContext(config=config, store=store, console=console, limit=limit, streams=selected,
                     allow_failures=allow_failures)
    stages = [only] if only else list(STAGES[: STAGES.index(until) + 1] if until else STAGES)
    try:
        for name in stages:
            start = time.perf_counter()
            with few_collections():
                summary = STAGE_FUNCTIONS[name](ctx)
            if main:
                store.mark_done(name, summary)
            details = ", ".join(f"{k}={v}" for k, v in summary.items())
            ctx.console.print(f"[bold green]✓ {name}[/] ({time.perf_counter() - start:.1f}s) {details}")
    finally:
        ctx.release_engines()
        store.close()
        shutdown_distributed()
    return ctx


def report_run(run_dir: str | Path, console: Console | None = None) -> Path:
    """Rebuild the report of an existing run directory from the config its manifest recorded; returns report.html."""
    manifest = RunStore(run_dir).manifest()
    if "config" not in manifest:
        raise ValueError(f"{Path(run_dir) / 'manifest.json'}: no recorded config; not a stylealign run directory")
    config = ExperimentConfig.model_validate(manifest["config"])
    run_experiment(config, run_dir, only="report", console=console)
    return Path(run_dir) / "report.html"
