"""Before a run: the requests and tokens each stage sends to each engine, and their time and money.

`plan_run` estimates from the problems and the config alone (no model runs): prompts are the configured
templates rendered around the problems' own texts, answers are as long as the problems' reference
solutions, and how many traces each stream gets follows from a few rates (how often the student and the
oracle are right, how often SAR's gate accepts). Every such assumption is a field of `Assumptions`, and
the plan lists them beside its rows, so a reader can see what a number rests on and rerun with better
rates. Tokens are counted as characters / `chars_per_token` (no tokenizer is loaded).

A row is one stage's work on one engine: `requests` prompts sent (`samples` sequences generated from
them), `prompt_tokens` read (scoring and training read the response as well: all of it counts here) and
`generated_tokens` written. Time and money come from each engine's `tokens_per_second` and
`price_per_million_tokens` in the config, or, for time, from the stage rates an earlier run measured
(`measured_rates`). Training is listed as tokens trained (prompt and response, every epoch and seed).
After a run, the report puts the actual tokens beside these rows (`stylealign.usage`).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from rich import box
from rich.table import Table

from stylealign.config import EngineConfig, ExperimentConfig, TokenRates
from stylealign.contamination import evaluation_sets
from stylealign.datasets import load_problems
from stylealign.prompts import load_template
from stylealign.records import Problem
from stylealign.streams.registry import build_order, stream_settings


@dataclass(frozen=True)
class Assumptions:
    """What the plan cannot know before the run, each with the value it uses."""

    chars_per_token: float = 3.5
    """Characters per token of every text, prompt or answer."""
    sample_accuracy: float = 0.5
    """Share of the student's samples that are correct."""
    solve_rate: float = 0.7
    """Share of problems with at least one correct sample (they get rft traces; the rest go to sar_repair)."""
    oracle_accuracy: float = 0.8
    """Share of oracle solutions and refinements that verify."""
    sar_acceptance: float = 0.6
    """Share of SAR attempts the gate accepts (the rest are asked again, up to `max_attempts`)."""
    repair_share: float = 0.5
    """Where in a wrong answer its first wrong step is (the kept prefix), as a share of its length."""
    answer_to_reference: float = 1.0
    """An answer's length as a multiple of its problem's reference solution (cut at `max_tokens`)."""
    answer_without_reference: float = 0.5
    """An answer's length as a share of `max_tokens` for a problem without a reference solution."""

    def lines(self) -> list[str]:
        docs = {
            "chars_per_token": "characters per token, for every text",
            "sample_accuracy": "share of student samples correct",
            "solve_rate": "share of problems with a correct sample (rft); the rest go to sar_repair",
            "oracle_accuracy": "share of oracle answers that verify",
            "sar_acceptance": "share of SAR attempts the gate accepts",
            "repair_share": "kept prefix of a repaired answer, as a share of its length",
            "answer_to_reference": "answer length as a multiple of the problem's reference solution",
            "answer_without_reference": "answer length as a share of max_tokens where a problem has no reference",
        }
        return [f"{f.name} = {getattr(self, f.name)}: {docs[f.name]}" for f in fields(self)]


@dataclass
class Row:
    """One stage's work on one engine."""

    stage: str
    step: str
    engine: str
    requests: float = 0
    samples: float = 0
    prompt_tokens: float = 0
    generated_tokens: float = 0
    seconds: float | None = None
    cost: float | None = None


VARIABLES = ("question", "solution", "exemplars", "tagged_solution", "steps_so_far", "wrong_step", "reference")
"""Every variable the built-in templates use: rendered empty, a template gives its own length."""
EMPTY_VARIABLES: dict[str, Any] = dict.fromkeys(VARIABLES, "") | {"exemplars": []}
"""Every variable rendered empty (`exemplars` an empty list)."""


@dataclass(frozen=True)
class _Sizes:
    """Mean lengths, in tokens, that the stream estimates multiply."""

    problems: int
    question: float
    reference: float
    with_reference: int
    answer: float
    oracle_answer: float
    eval_problems: int
    eval_question: float
    eval_answer: float


def _tokens(text: str, a: Assumptions) -> float:
    return len(text) / a.chars_per_token


def _answer(problem: Problem, max_tokens: int, a: Assumptions) -> float:
    if problem.reference_solution:
        return min(float(max_tokens), a.answer_to_reference * _tokens(problem.reference_solution, a))
    return a.answer_without_reference * max_tokens


def mean_or_zero(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else 0.0


class _Planner:
    """Builds the rows of one config: its templates' lengths, the problems' sizes and the assumptions."""

    def __init__(self, config: ExperimentConfig, problems: Sequence[Problem], eval_sets: dict[str, list[Problem]], a: Assumptions):
        self.config, self.a = config, a
        s, streams = config.sampling, config.streams
        oracle_max = streams.oracle_max_tokens or s.max_tokens
        tests = [p for found in eval_sets.values() for p in found]
        self.sizes = _Sizes(
            problems=len(problems),
            question=mean_or_zero([_tokens(p.question, a) for p in problems]),
            reference=mean_or_zero([_tokens(p.reference_solution, a) for p in problems if p.reference_solution]),
            with_reference=sum(bool(p.reference_solution) for p in problems),
            answer=mean_or_zero([_answer(p, s.max_tokens, a) for p in problems]),
            oracle_answer=mean_or_zero([_answer(p, oracle_max, a) for p in problems]),
            eval_problems=len(tests),
            eval_question=mean_or_zero([_tokens(p.question, a) for p in tests]),
            eval_answer=mean_or_zero([_answer(p, config.evaluation.max_tokens, a) for p in tests]),
        )
        self.rows: list[Row] = []

    def overhead(self, name: str, system: str | None = None) -> float:
        """A template's own tokens: rendered with every variable empty."""
        template = load_template(name, self.config.prompts_dir, system=system)
        request = template.request(**EMPTY_VARIABLES)
        return sum(_tokens(m["content"], self.a) for m in request.messages)

    def student_prompt(self) -> float:
        return self.overhead(self.config.student.template, self.config.student.system) + self.sizes.question

    def oracle_prompt(self, name: str, *texts: float) -> float:
        system = self.config.oracle.system if self.config.oracle else None
        return self.overhead(name, system) + self.sizes.question + sum(texts)

    def add(self, stage: str, step: str, engine: str, requests: float, prompt: float, generated: float = 0.0,
            samples: float | None = None) -> None:
        """`requests` prompts of `prompt` tokens each, each generating `samples / requests` answers of `generated`."""
        samples = requests if samples is None else samples
        if requests:
            self.rows.append(Row(stage, step, engine, requests, samples, requests * prompt, samples * generated))

    def correct_samples(self) -> float:
        return self.sizes.problems * self.config.sampling.k * self.a.sample_accuracy

    def unsolved(self) -> float:
        """Problems sar_repair works on: those without a correct sample, up to `max_problems`."""
        z = self.sizes
        return min(z.problems * (1 - self.a.solve_rate), stream_settings(self.config, "sar_repair").max_problems or z.problems)

    def traces(self, stream: str) -> tuple[float, float]:
        """How many traces `stream` gets, and their mean length."""
        z, a = self.sizes, self.a
        repair = stream_settings(self.config, "sar_repair")
        rft = self.correct_samples() if stream_settings(self.config, "rft").selection in ("all", "all_distinct") else z.problems * a.solve_rate
        unsolved = self.unsolved()
        counts = {
            "gold": (z.with_reference, z.reference),
            "rft": (rft, z.answer),
            "oracle_synth": (z.problems * a.oracle_accuracy, z.oracle_answer),
            "oracle_refine": (rft * a.oracle_accuracy, z.answer),
            "sar": (rft, z.answer),
            "sar_repair": (unsolved * min(float(repair.keep), repair.continuations * a.sample_accuracy), z.answer),
            "sdft": (z.with_reference, z.answer),
            "grape": (z.problems, z.answer),
            "mix": (z.problems, z.answer),
        }
        return counts[stream]

    def sample(self) -> None:
        k = self.config.sampling.k
        self.add("sample", "sample", "student", self.sizes.problems, self.student_prompt(), self.sizes.answer, self.sizes.problems * k)

    def streams(self) -> None:
        z, a = self.sizes, self.a
        st = {name: stream_settings(self.config, name) for name in ("rft", "sar", "sdft", "grape")}
        student_scored = self.student_prompt() + z.answer
        for name in build_order(self.config, self.config.streams.enabled):
            count, _ = self.traces(name)
            if name == "rft" and st["rft"].selection == "lowest_cost":
                self.add("streams", name, "student", self.correct_samples(), student_scored)
            elif name == "oracle_synth":
                self.add("streams", name, "oracle", z.problems, self.oracle_prompt("solve"), z.oracle_answer)
            elif name == "oracle_refine":
                self.add("streams", name, "oracle", self.traces("rft")[0], self.oracle_prompt("refine", z.answer), z.answer)
            elif name == "sar":
                attempts = sum((1 - a.sar_acceptance) ** i for i in range(st["sar"].max_attempts))
                prompt = self.oracle_prompt("sar", z.answer, st["sar"].exemplars * z.answer)
                self.add("streams", name, "oracle", count * attempts, prompt, z.answer)
                self.add("streams", name, "student", count * (1 + attempts * a.oracle_accuracy), student_scored)
            elif name == "sar_repair":
                self.repair(student_scored)
            elif name == "sdft":
                system = load_template(self.config.student.template, self.config.prompts_dir, self.config.student.system).system
                self.add("streams", name, "student", count, self.overhead(st["sdft"].template, system) + z.question + z.reference, z.answer)
            elif name == "grape":
                pool = sum(self.traces(n)[0] if n != "rft" else self.correct_samples() for n in st["grape"].pool)
                self.add("streams", name, "student", pool, student_scored)

    def repair(self, student_scored: float) -> None:
        z, a, cfg = self.sizes, self.a, stream_settings(self.config, "sar_repair")
        unsolved = self.unsolved()
        prefix = a.repair_share * z.answer
        if cfg.locator == "oracle":
            self.add("streams", "sar_repair", "oracle", unsolved, self.oracle_prompt("locate_error", z.answer), z.oracle_answer)
        exemplars = stream_settings(self.config, "sar").exemplars * z.answer
        step = z.answer / 4
        self.add("streams", "sar_repair", "oracle", unsolved, self.oracle_prompt("repair_step", prefix, step, exemplars), step)
        self.add("streams", "sar_repair", "student", unsolved, self.student_prompt() + prefix + step,
                 z.answer - prefix, unsolved * cfg.continuations)
        self.add("streams", "sar_repair", "student", unsolved * cfg.continuations * a.sample_accuracy, student_scored)

    def score(self) -> None:
        reward = self.config.reward
        for name in self.config.streams.enabled:
            count, length = self.traces(name)
            scored = self.student_prompt() + length
            self.add("score", name, "student", count, scored)
            if reward.type in ("orm", "prm"):
                self.add("score", name, "reward", count, scored)
            elif reward.type == "judge":
                self.add("score", name, "reward", count, self.oracle_prompt("judge", length), reward.max_tokens or self.sizes.oracle_answer)

    def train(self) -> None:
        t = self.config.training
        for name in self.config.streams.enabled:
            count, length = self.traces(name)
            if t.budget.steps is not None:
                epochs = t.budget.steps * t.batch_size * t.gradient_accumulation_steps / max(1.0, count)
            elif t.budget.tokens is not None:
                epochs = t.budget.tokens / max(1.0, count * length)
            else:
                epochs = t.budget.epochs or 1.0
            self.add("train", name, "trainer", count * epochs * len(t.seeds), self.student_prompt() + length)

    def evaluate(self) -> None:
        z, e = self.sizes, self.config.evaluation
        models = (1 + len(self.config.streams.enabled)) * len(self.config.training.seeds)
        prompt = self.overhead(self.config.student.template, self.config.student.system) + z.eval_question
        self.add("evaluate", f"{models} models", "student", models * z.eval_problems, prompt, z.eval_answer,
                 models * z.eval_problems * e.k)


def _engine(config: ExperimentConfig, role: str) -> EngineConfig | None:
    if role in ("student", "trainer"):
        return config.student.engine
    if role == "oracle":
        return config.oracle.engine if config.oracle else None
    return config.reward.engine or (config.oracle.engine if config.reward.type == "judge" and config.oracle else None)


def _price(row: Row, rates: TokenRates | None, per: float) -> float | None:
    if rates is None:
        return None
    return (row.prompt_tokens * rates.prompt + row.generated_tokens * rates.generated) / per


def _seconds(row: Row, rates: TokenRates | None) -> float | None:
    if rates is None or not rates.prompt or not rates.generated:
        return None
    return row.prompt_tokens / rates.prompt + row.generated_tokens / rates.generated


def plan_run(
    config: ExperimentConfig,
    problems: Sequence[Problem],
    eval_sets: dict[str, list[Problem]],
    assumptions: Assumptions = Assumptions(),
    measured_rates: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The plan of `config` on `problems` (and `eval_sets`): rows per stage and engine, totals, assumptions.

    `measured_rates` (tokens per second by stage, read and written, from an earlier run) times a stage whose
    engine has no `tokens_per_second`."""
    planner = _Planner(config, problems, eval_sets, assumptions)
    steps: list[Callable[[], None]] = [planner.sample, planner.streams, planner.score, planner.train, planner.evaluate]
    for step in steps:
        step()
    notes, trained = [], False
    for row in planner.rows:
        engine = _engine(config, row.engine)
        if engine is not None:
            row.cost = _price(row, engine.price_per_million_tokens, 1e6)
            rates = engine.tokens_per_second
            if rates is not None and row.engine == "trainer":  # a training step: forward and backward over every token
                rates, trained = TokenRates(prompt=rates.prompt / 3, generated=rates.generated / 3), True
            row.seconds = _seconds(row, rates)
        if row.seconds is None and measured_rates and measured_rates.get(row.stage):
            row.seconds = (row.prompt_tokens + row.generated_tokens) / measured_rates[row.stage]
            notes.append(row.stage)
    z = planner.sizes
    return {
        "name": config.name,
        "problems": z.problems,
        "eval_problems": z.eval_problems,
        "assumptions": [
            *assumptions.lines(),
            f"an answer is answer_to_reference times its problem's reference solution, cut at max_tokens (mean {z.answer:.0f} "
            f"tokens for the student, {z.oracle_answer:.0f} for the oracle, {z.eval_answer:.0f} on the test sets)",
            "SAR and sar_repair prompts hold `sar.exemplars` answers of that length; a repaired step is a quarter of one",
            "each request is sent once (no retries) and nothing is already done",
            *(["training runs at a third of the student's prompt rate (forward and backward)"] if trained else []),
        ],
        "timed_from_earlier_run": sorted(set(notes)),
        "rows": [asdict(r) for r in planner.rows],
        "totals": _totals(planner.rows),
    }


def _totals(rows: Sequence[Row]) -> dict[str, dict[str, float | None]]:
    """Per engine: requests, tokens, and time and cost where every row of it has them."""
    out: dict[str, dict[str, float | None]] = {}
    for engine in dict.fromkeys(r.engine for r in rows):
        mine = [r for r in rows if r.engine == engine]
        out[engine] = {
            "requests": sum(r.requests for r in mine),
            "prompt_tokens": sum(r.prompt_tokens for r in mine),
            "generated_tokens": sum(r.generated_tokens for r in mine),
            "seconds": None if any(r.seconds is None for r in mine) else sum(r.seconds or 0 for r in mine),
            "cost": None if any(r.cost is None for r in mine) else sum(r.cost or 0 for r in mine),
        }
    return out


def plan_config(
    config: ExperimentConfig, limit: int | None = None, assumptions: Assumptions = Assumptions(),
    measured_rates: dict[str, float] | None = None,
) -> dict[str, Any]:
    """`stylealign plan`: read the config's problems (cut to `limit` per source) and test sets, then `plan_run`.

    A source that cannot be read here (a hub dataset offline) is stood in for by the bundled MATH-500's
    problems, repeated to the source's limit, and the plan says so."""
    problems: list[Problem] = []
    stand_ins = []
    for cfg in config.problems:
        cfg = cfg.model_copy(update={"limit": min(cfg.limit or limit, limit)}) if limit else cfg
        try:
            problems += load_problems(cfg)
        except (ValueError, OSError, ImportError) as err:
            if cfg.limit is None:
                raise
            proxy = load_problems(cfg.model_copy(update={"source": "math500", "split": "test", "fields": {}, "limit": None}))
            problems += [proxy[i % len(proxy)] for i in range(cfg.limit)]
            stand_ins.append(f"{cfg.source} could not be read ({type(err).__name__}: {str(err)[:120]}): "
                             f"{cfg.limit} problems with MATH-500's lengths stand in")
    plan = plan_run(config, problems, evaluation_sets(config.evaluation.datasets), assumptions, measured_rates)
    plan["assumptions"] = stand_ins + plan["assumptions"]
    return plan


def _amount(value: float | None) -> str:
    if value is None:
        return "–"
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}" if value % 1 else f"{value:.0f}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def plan_table(plan: dict[str, Any]) -> Table:
    """The plan's rows, then a total per engine."""
    table = Table(title=f"plan: {plan['name']} ({plan['problems']:,} problems, {plan['eval_problems']:,} test problems)",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for header in ("stage", "step", "engine", "requests", "samples", "prompt tok", "generated tok", "time", "cost"):
        table.add_column(header, justify="left" if header in ("stage", "step", "engine") else "right", no_wrap=True)
    for r in plan["rows"]:
        table.add_row(r["stage"], r["step"], r["engine"], _amount(r["requests"]), _amount(r["samples"]),
                      _amount(r["prompt_tokens"]), _amount(r["generated_tokens"]), duration(r["seconds"]),
                      "–" if r["cost"] is None else f"{r['cost']:.2f}")
    for engine, t in plan["totals"].items():
        table.add_row("total", "", engine, _amount(t["requests"]), "", _amount(t["prompt_tokens"]),
                      _amount(t["generated_tokens"]), duration(t["seconds"]), "–" if t["cost"] is None else f"{t['cost']:.2f}",
                      style="bold")
    return table
