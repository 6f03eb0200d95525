"""load: the config's problem sources, read (skipping bad rows only where asked), checked against the evaluation
sets (`stylealign.contamination`: reported, or dropped where `decontaminate: true`) and stored as this run's problems."""

from __future__ import annotations

from typing import Any

from stylealign.config import ProblemSource
from stylealign.contamination import checked, decontaminate, evaluation_sets, summary_lines
from stylealign.datasets import LoadReport, load_report
from stylealign.evaluation import dataset_label
from stylealign.records import Problem
from stylealign.run.context import RunContext, load_key, selection_key

CONTAMINATION = "problems/contamination.json"


def _stale_drop(ctx: RunContext, configs: list[ProblemSource]) -> bool:
    """Whether a selection that drops problems was last checked for another selection or other evaluation sets."""
    if not any(cfg.decontaminate for cfg in configs):
        return False
    record = ctx.store.read_json(CONTAMINATION, missing={})
    wanted = [dataset_label(d) for d in ctx.config.evaluation.datasets]
    return record.get("selection") != selection_key(configs) or record.get("benchmarks_checked") != wanted


def _check(ctx: RunContext, configs: list[ProblemSource], reports: list[LoadReport], summary: dict[str, Any]) -> list[Problem]:
    """The loaded problems less those dropped as overlapping an evaluation question; the report goes to the store."""
    sources = [(cfg, report.problems) for cfg, report in zip(configs, reports, strict=True)]
    if not any(checked(cfg) for cfg in configs):
        return [p for _, found in sources for p in found]
    kept, found = decontaminate(sources, evaluation_sets(ctx.config.evaluation.datasets))
    ctx.store.write_json(CONTAMINATION, {"selection": selection_key(configs), **found})
    if found["flagged"]:
        headline, *details = summary_lines(found)
        action = f"; dropped {len(found['dropped'])}" if found["dropped"] else " (reported: `decontaminate: true` drops them)"
        ctx.console.print(f"[yellow]contamination[/] {headline}{action}; see {CONTAMINATION}", highlight=False)
        for line in details:
            ctx.console.print(line, markup=False, highlight=False)
        summary.update(contaminated=len(found["flagged"]), dropped=len(found["dropped"]))
    return kept


def load_stage(ctx: RunContext) -> dict[str, Any]:
    stage = ctx.store.stage("problems")
    configs = ctx.problems_configs()
    summary: dict[str, Any] = {}
    key = load_key(configs)  # the sources' content too: an edited problems file is read again
    if key not in stage.done_keys() or _stale_drop(ctx, configs):
        reports = [load_report(cfg, key=f"problems[{i}].source") for i, cfg in enumerate(configs)]
        skipped = [s for report in reports for s in report.skipped]
        if skipped:
            ctx.store.write_json("problems/skipped.json", [vars(s) for s in skipped])
            for s in skipped[:5]:
                ctx.console.print(f"[yellow]skipped[/] {s.location}: {s.reason}")
            summary["skipped"] = len(skipped)
        ids = [p.id for report in reports for p in report.problems]
        if len(set(ids)) != len(ids):
            raise ValueError("problems: the sources overlap (the same problem id comes from two of them); drop one")
        problems = _check(ctx, configs, reports, summary)
        if not problems:
            raise ValueError(f"problems: {', '.join(cfg.source for cfg in configs)} gave no problems; nothing to run")
        ctx.set_problems(problems, key)
    else:
        ctx.select_problems(key)
    return {"problems": len(ctx.problems()), **summary}
