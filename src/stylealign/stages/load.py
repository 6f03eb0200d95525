"""load: the config's problem sources, read (skipping bad rows only where asked) and stored as this run's problems."""

from __future__ import annotations

from typing import Any

from stylealign.datasets import load_report
from stylealign.run.context import RunContext, selection_key


def load_stage(ctx: RunContext) -> dict[str, Any]:
    stage = ctx.store.stage("problems")
    configs = ctx.problems_configs()
    summary: dict[str, Any] = {}
    if selection_key(configs) not in stage.done_keys():
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
