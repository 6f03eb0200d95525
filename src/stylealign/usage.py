"""After a run: the requests and tokens each stage sent to each engine, counted from the run's records.

Exact where the records hold it: the student's samples carry their token counts, scored traces their
per-token NLLs, the trainer its tokens trained; evaluation answers and oracle outputs are tokenized
here. Prompts are the configured templates rendered again around the records' own texts (questions,
the traces a stream refined), except the style exemplars SAR prompts hold, counted as that many rft
traces of mean length. Outputs a stream discarded are not stored (a wrong oracle solution, a rejected
SAR attempt, an unverified continuation): their number is, so each counts as the mean of the stream's
stored outputs; the oracle's first-error answers (sar_repair's locator) are not stored at all and count
as none (their prompts count). Tokens are counted with the student's tokenizer when it is a local model, else as characters
/ 3.5, for every engine alike; chat-template tokens are not counted, as in the plan.

`compare` sets these rows beside a plan's (`stylealign.plan`), per stage and engine.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from stylealign.config import ExperimentConfig
from stylealign.datasets import load_problems
from stylealign.models import MODEL_SOURCES
from stylealign.plan import EMPTY_VARIABLES, Assumptions, Row, mean_or_zero, plan_run
from stylealign.prompts import load_template
from stylealign.records import Trace
from stylealign.run.context import RunContext
from stylealign.stages.evaluate import model_traces
from stylealign.stages.sample import current_samples
from stylealign.streams.listing import stream_traces
from stylealign.streams.registry import build_order, stream_settings

Count = Callable[[Sequence[str]], list[int]]
CHARS_PER_TOKEN = Assumptions.chars_per_token


def token_counter(config: ExperimentConfig) -> tuple[Count, str]:
    """Token counts of texts with the student's tokenizer where it is local (no model is loaded), else by characters."""
    spec = config.student.engine.model or ""
    prefix, colon, _ = spec.partition(":")
    if (colon and prefix in MODEL_SOURCES) or Path(spec).is_dir():
        try:
            from transformers import AutoTokenizer

            from stylealign.models import resolve_model

            tokenizer = AutoTokenizer.from_pretrained(resolve_model(spec))
        except (OSError, ValueError, ImportError):
            pass
        else:
            return (lambda texts: [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
                    if texts else []), "the student's tokenizer"
    return lambda texts: [round(len(t) / CHARS_PER_TOKEN) for t in texts], f"characters / {CHARS_PER_TOKEN}"


class _Counter:
    """Rows of one run, with the token counter and the templates' renderings it needs."""

    def __init__(self, ctx: RunContext, count: Count):
        self.ctx, self.count = ctx, count
        self.problems = ctx.problem_by_id()
        self.rows: list[Row] = []

    def total(self, texts: Sequence[str]) -> float:
        return float(sum(self.count(texts)))

    def prompts(self, template: str, calls: Sequence[dict[str, Any]], oracle: bool = True) -> float:
        """Tokens of a template rendered once per call (its variables); missing variables render empty. The
        student's templates carry its system prompt, as its requests do."""
        cfg = self.ctx.config
        system = (cfg.oracle.system if cfg.oracle else None) if oracle else self.ctx.student_template().system
        found = load_template(template, cfg.prompts_dir, system=system)
        return self.total([m["content"] for call in calls for m in found.request(**(EMPTY_VARIABLES | call)).messages])

    def student_prompts(self, questions: Sequence[str]) -> float:
        return self.prompts(self.ctx.config.student.template, [{"question": q} for q in questions], oracle=False)

    def add(self, stage: str, step: str, engine: str, requests: float, prompt: float, generated: float = 0.0,
            samples: float | None = None) -> None:
        if requests:
            self.rows.append(Row(stage, step, engine, requests, requests if samples is None else samples, prompt, generated))

    def outputs(self, stored: Sequence[str], sent: float) -> float:
        """Tokens of `sent` outputs of which `stored` were kept: the rest count as the stored ones' mean."""
        counts = self.count(stored)
        return sum(counts) + max(0.0, sent - len(counts)) * mean_or_zero(counts)

    def sample(self) -> list[Trace]:
        samples = current_samples(self.ctx)
        questions = [self.problems[pid].question for pid in dict.fromkeys(t.problem_id for t in samples)]
        uncounted = [t.text for t in samples if not t.metrics.get("num_tokens")]  # an engine that gave no count
        generated = sum(t.metrics.get("num_tokens") or 0 for t in samples) + self.total(uncounted)
        self.add("sample", "sample", "student", len(questions), self.student_prompts(questions), generated, len(samples))
        return samples

    def streams(self, samples: list[Trace]) -> None:
        store, cfg = self.ctx.store, self.ctx.config
        built = {name: stream_traces(store, name) for name in build_order(cfg, self.ctx.streams)
                 if (store.root / f"stream_{name}").is_dir()}
        rft = built.get("rft", [])
        exemplar_tokens = stream_settings(cfg, "sar").exemplars * mean_or_zero(self.count([t.text for t in rft]))
        correct = [t for t in samples if t.correct]
        for name, traces in built.items():
            failed = [t.text for t in store.stage(f"failures_stream_{name}").iter_records(Trace)] \
                if (store.root / f"failures_stream_{name}").is_dir() else []
            if name == "rft" and stream_settings(cfg, "rft").selection == "lowest_cost":
                self.scored(name, correct)
            elif name == "oracle_synth":
                problems = list(self.problems.values())
                self.add("streams", name, "oracle", len(problems), self.prompts("solve", [{"question": p.question} for p in problems]),
                         self.outputs([t.text for t in traces] + failed, len(problems)))
            elif name in ("oracle_refine", "sar"):
                self.refinements(name, traces, rft, failed, exemplar_tokens)
            elif name == "sar_repair":
                self.repairs(traces, samples, exemplar_tokens)
            elif name == "sdft":
                rewrites = [t.text if t.metrics.get("sdft_outcome") == "rewritten" else t.metrics.get("sdft_rewrite", "") for t in traces]
                calls = [{"question": self.problems[t.problem_id].question, "reference": t.text if t.metrics.get("sdft_outcome") != "rewritten"
                          else self.problems[t.problem_id].reference_solution} for t in traces]
                self.add("streams", name, "student", len(traces), self.prompts(stream_settings(cfg, "sdft").template, calls, oracle=False),
                         self.total(rewrites))
            elif name == "grape":
                names = stream_settings(cfg, "grape").pool
                pool = [t for n in names if n != "rft" for t in built.get(n, []) if t.correct]
                self.scored(name, pool + (correct if "rft" in names else []))

    def scored(self, step: str, traces: Sequence[Trace]) -> None:
        """Teacher-forced scoring under the student in the streams stage: prompt and response are read."""
        questions = [self.problems[t.problem_id].question for t in traces if t.problem_id in self.problems]
        self.add("streams", step, "student", len(questions), self.student_prompts(questions) + self.total([t.text for t in traces]))

    def refinements(self, name: str, traces: list[Trace], rft: list[Trace], failed: list[str], exemplar_tokens: float) -> None:
        """oracle_refine (one request per rft trace) and sar (one per attempt, each scored by the student if it verified)."""
        parents = {t.id: t for t in rft}
        if name == "sar":  # one request per attempt; an item whose every attempt failed at the oracle left no trace
            asked = [parents[t.parent_id] for t in traces if t.parent_id in parents for _ in range(t.metrics.get("sar_attempts", 1))]
        else:
            asked = rft
        sent = len(asked)
        calls = [{"question": self.problems[t.problem_id].question, "solution": t.text} for t in asked]
        prompt = self.prompts(name if name == "sar" else "refine", calls) + (exemplar_tokens * sent if name == "sar" else 0)
        written = [t.text for t in traces if name != "sar" or t.metrics.get("sar_outcome") == "accepted"]
        self.add("streams", name, "oracle", sent, prompt, self.outputs(written + failed, sent))
        if name == "sar":
            verified = [t for t in traces for r in t.metrics.get("rejections", []) if r.startswith("cost_rise")]
            accepted = [t for t in traces if t.metrics.get("sar_outcome") == "accepted"]
            self.scored(name, [parents[t.parent_id] for t in traces if t.parent_id in parents] + verified + accepted)

    def repairs(self, traces: list[Trace], samples: list[Trace], exemplar_tokens: float) -> None:
        """sar_repair: a repaired step per unsolved problem (the oracle), then the student's continuations."""
        cfg = stream_settings(self.ctx.config, "sar_repair")
        by_problem: dict[str, list[Trace]] = defaultdict(list)
        for t in samples:
            by_problem[t.problem_id].append(t)
        unsolved = [pid for pid in self.problems if any(t.text.strip() for t in by_problem[pid])
                    and not any(t.correct for t in by_problem[pid])][: cfg.max_problems]
        first = {pid: next(t.text for t in by_problem[pid] if t.text.strip()) for pid in unsolved}
        if cfg.locator == "oracle":  # its answers are not stored: they count as none
            located = [{"question": self.problems[pid].question, "tagged_solution": first[pid]} for pid in unsolved]
            self.add("streams", "sar_repair", "oracle", len(unsolved), self.prompts("locate_error", located))
        calls = [{"question": self.problems[pid].question, "steps_so_far": first[pid]} for pid in unsolved]
        repairs = [t.text[t.metrics["prefix_chars"]: t.metrics["prefix_chars"] + t.metrics["repair_chars"]] for t in traces]
        self.add("streams", "sar_repair", "oracle", len(unsolved),
                 self.prompts("repair_step", calls) + exemplar_tokens * len(unsolved), self.outputs(repairs, len(unsolved)))
        tails = [t.text[t.metrics["prefix_chars"] + t.metrics["repair_chars"]:] for t in traces]
        heads = self.total([t.text[: t.metrics["prefix_chars"] + t.metrics["repair_chars"]] for t in traces])
        prompt = self.student_prompts([self.problems[pid].question for pid in unsolved])
        prompt += heads + max(0, len(unsolved) - len(traces)) * (heads / len(traces) if traces else 0.0)
        self.add("streams", "sar_repair", "student", len(unsolved), prompt,
                 self.outputs(tails, len(unsolved) * cfg.continuations), len(unsolved) * cfg.continuations)
        verified = sum(t.metrics.get("verified", 1) for t in traces)
        questions = [self.problems[t.problem_id].question for t in traces]
        self.add("streams", "sar_repair", "student", verified,
                 self.student_prompts(questions) * verified / max(1, len(traces)) + self.outputs([t.text for t in traces], verified))

    def score(self) -> None:
        store = self.ctx.store
        for name in self.ctx.streams:
            if not (store.root / f"scored_{name}").is_dir() or not (store.root / f"stream_{name}").is_dir():
                continue
            current = {t.id for t in stream_traces(store, name)}
            scored = [(t.problem_id, len(t.metrics.get("token_nll") or []))
                      for t in store.stage(f"scored_{name}").iter_records(Trace, ids=current)]
            questions = [self.problems[pid].question for pid, _ in scored if pid in self.problems]
            self.add("score", name, "student", len(scored), self.student_prompts(questions) + sum(n for _, n in scored))

    def train(self) -> None:
        summary = self.ctx.store.read_json("train/summary.json", missing={})
        prompt = self.student_prompts([p.question for p in self.problems.values()]) / max(1, len(self.problems))
        for name, entry in summary.get("streams", {}).items():
            for info in entry.get("seeds", {}).values():
                seen = info["examples"] * info["epochs"]
                self.add("train", name, "trainer", seen, seen * prompt + info["tokens_trained"])

    def evaluate(self) -> None:
        questions = {p.id: p.question for d in self.ctx.config.evaluation.datasets for p in load_problems(d)}
        traces = [t for found in model_traces(self.ctx).values() for t in found]
        requests = {(t.model, t.metrics.get("training_seed"), t.problem_id) for t in traces}
        prompts = self.student_prompts([questions.get(pid, "") for _, _, pid in requests])
        self.add("evaluate", "models", "student", len(requests), prompts, self.total([t.text for t in traces]), len(traces))


def actual_usage(ctx: RunContext, count: Count | None = None) -> dict[str, Any]:
    """The run's rows per stage, step and engine, from its records; and how tokens were counted."""
    counter_name = "given"
    if count is None:
        count, counter_name = token_counter(ctx.config)
    counter = _Counter(ctx, count)
    samples = counter.sample()
    counter.streams(samples)
    counter.score()
    counter.train()
    counter.evaluate()
    return {"counted_with": counter_name, "rows": [asdict(r) for r in counter.rows]}


def by_stage_engine(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str], dict[str, float]]:
    out: dict[tuple[str, str], dict[str, float]] = {}
    for row in rows:
        entry = out.setdefault((row["stage"], row["engine"]), {"requests": 0.0, "prompt_tokens": 0.0, "generated_tokens": 0.0})
        for key in entry:
            entry[key] += row[key]
    return out


def compare(plan_rows: Sequence[dict[str, Any]], actual_rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per stage and engine: the plan's and the run's requests and tokens, and the plan's error on all tokens."""
    planned, actual = by_stage_engine(plan_rows), by_stage_engine(actual_rows)
    out = []
    for key in dict.fromkeys([*planned, *actual]):
        p = planned.get(key, {"requests": 0.0, "prompt_tokens": 0.0, "generated_tokens": 0.0})
        a = actual.get(key, {"requests": 0.0, "prompt_tokens": 0.0, "generated_tokens": 0.0})
        planned_total, actual_total = p["prompt_tokens"] + p["generated_tokens"], a["prompt_tokens"] + a["generated_tokens"]
        out.append({
            "stage": key[0], "engine": key[1],
            **{f"plan_{k}": round(v) for k, v in p.items()}, **{f"actual_{k}": round(v) for k, v in a.items()},
            "error": (planned_total - actual_total) / actual_total if actual_total else None,
        })
    return out



def measured_rates(run_dir: str | Path) -> dict[str, float]:
    """Tokens (read and written) per second of each stage of an earlier run, from its report's actual rows and
    its manifest: a stage's seconds run from the finish of the stage before it (in the manifest, stages are in
    the order they first finished) to its own, so a run resumed across invocations counts its pauses (and
    times slower than it ran)."""
    import json

    root = Path(run_dir)
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    usage = json.loads((root / "report.json").read_text(encoding="utf-8")).get("usage", {})
    finished = [(entry["time"], name) for name, entry in manifest.get("stages", {}).items() if entry.get("done")]  # run order
    tokens = defaultdict(float)
    for row in usage.get("actual", {}).get("rows", []):
        tokens[row["stage"]] += row["prompt_tokens"] + row["generated_tokens"]
    return {
        name: tokens[name] / (end - start)
        for (start, _), (end, name) in zip(finished, finished[1:], strict=False)
        if tokens.get(name) and end > start
    }


def usage_section(ctx: RunContext) -> dict[str, Any] | None:
    """The report's tokens section: the plan of this run's config, problems and streams, the actual rows, and
    the two side by side per stage and engine for the stages the run has finished. None for a run directory
    without a problem selection (records written by other means than the load stage): nothing to plan."""
    from stylealign.contamination import evaluation_sets

    try:
        problems = ctx.problems()
    except ValueError:
        return None
    config = ctx.config.model_copy(update={"streams": ctx.config.streams.model_copy(update={"enabled": list(ctx.streams)})})
    plan = plan_run(config, problems, evaluation_sets(ctx.config.evaluation.datasets))
    actual = actual_usage(ctx)
    done = [stage for stage in dict.fromkeys(r["stage"] for r in plan["rows"]) if ctx.store.is_done(stage)]
    planned = [r for r in plan["rows"] if r["stage"] in done]
    return {"plan": plan, "actual": actual, "stages": done, "comparison": compare(planned, actual["rows"])}
