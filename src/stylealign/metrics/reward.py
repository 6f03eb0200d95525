"""Pluggable reward scorers: how good a trace *looks*, stored per trace with the scorer's name.

- "lab": the step checker (the fraction of steps accepted, against the graph of a lab problem or the
  reference solution of any other) plus `style_preference` times a polish score, standing in for a
  reward model's known taste for polished text (`stylealign.lab.reward`).
- "orm": a Hugging Face sequence-classification reward model on (question, solution); the score is the
  single logit, or the probability of the last label for multi-label heads. A model that ships its own
  code (Qwen2.5-Math-RM-72B) loads only with `reward.trust_remote_code: true`, never implicitly.
- "prm": the same kind of model applied to every step prefix (steps cut at `step_separator`); a trace's
  reward is the *minimum* step score, since one bad step spoils a solution (the mean is in `reward_steps`).
- "judge": an LLM judge through any engine (the `judge` template), score parsed from `\\boxed{}`.
- "none": no reward.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from stylealign.config import RewardConfig
from stylealign.records import Problem

if TYPE_CHECKING:
    from stylealign.run.context import RunContext


class RewardScorer(Protocol):
    name: str

    def score(self, problems: Sequence[Problem], texts: Sequence[str]) -> list[dict[str, Any]]:
        """One dict per trace, at least {"reward": float | None}."""
        ...


class NoReward:
    name = "none"

    def score(self, problems: Sequence[Problem], texts: Sequence[str]) -> list[dict[str, Any]]:
        return [{"reward": None} for _ in texts]


class LabReward:
    name = "lab"

    def __init__(self, style_preference: float = 1.0) -> None:
        self.style_preference = style_preference

    def score(self, problems: Sequence[Problem], texts: Sequence[str]) -> list[dict[str, Any]]:
        from stylealign.lab.reward import lab_reward, polish, process_reward

        return [
            {"reward": lab_reward(p, t, self.style_preference), "reward_checker": process_reward(p, t), "polish": polish(t)}
            for p, t in zip(problems, texts, strict=True)
        ]


class ClassifierReward:
    """ORM (whole solution) or PRM (every step prefix) with an `AutoModelForSequenceClassification`."""

    def __init__(
        self,
        model: str,
        *,
        per_step: bool,
        separator: str = "\n\n",
        batch_size: int = 8,
        trust_remote_code: bool = False,
    ):
        import torch
        from transformers import (
            AutoModel,
            AutoModelForSequenceClassification,
            AutoTokenizer,
            PretrainedConfig,
        )

        from stylealign.models import resolve_model
        from stylealign.progress import quiet_loading

        path = resolve_model(model)
        self.name = f"{'prm' if per_step else 'orm'}:{model}"
        auto_map = PretrainedConfig.get_config_dict(path)[0].get("auto_map") or {}
        if auto_map and not trust_remote_code:
            raise ValueError(
                f"reward.model {model}: the model ships its own code ({', '.join(sorted(set(auto_map.values())))}); "
                "read it, then set reward.trust_remote_code: true to run it"
            )
        # A custom-code reward model such as Qwen2.5-Math-RM-72B registers only AutoModel, whose
        # output's first element is the score, as a classification head's logits are.
        loader = AutoModel if auto_map and "AutoModelForSequenceClassification" not in auto_map else AutoModelForSequenceClassification
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        with quiet_loading():
            self.model = loader.from_pretrained(path, trust_remote_code=trust_remote_code).eval()
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.per_step, self.separator, self.batch_size = per_step, separator, batch_size
        self._torch = torch

    def _text(self, question: str, solution: str) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            messages = [{"role": "user", "content": question}, {"role": "assistant", "content": solution}]
            return self.tokenizer.apply_chat_template(messages, tokenize=False)
        return f"Question: {question}\nAnswer: {solution}"

    def _scores(self, inputs: list[str]) -> list[float]:
        out: list[float] = []
        for i in range(0, len(inputs), self.batch_size):
            batch = self.tokenizer(inputs[i : i + self.batch_size], return_tensors="pt", padding=True, truncation=True)
            with self._torch.no_grad():
                logits = self.model(**batch)[0].float()
            if logits.shape[-1] == 1:
                out.extend(logits[:, 0].tolist())
            else:
                out.extend(logits.softmax(-1)[:, -1].tolist())
        return out

    def score(self, problems: Sequence[Problem], texts: Sequence[str]) -> list[dict[str, Any]]:
        if not self.per_step:
            values = self._scores([self._text(p.question, t) for p, t in zip(problems, texts, strict=True)])
            return [{"reward": v} for v in values]
        results = []
        for problem, text in zip(problems, texts, strict=True):
            parts = text.split(self.separator)
            prefixes = [self.separator.join(parts[: i + 1]) for i in range(len(parts))]
            steps = self._scores([self._text(problem.question, prefix) for prefix in prefixes])
            results.append({"reward": min(steps), "reward_steps": steps, "reward_mean": sum(steps) / len(steps)})
        return results


_SCORE = re.compile(r"\\boxed\{\s*(-?\d+(?:\.\d+)?)\s*\}")
_BARE_SCORE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*10)?\s*\.?\s*$")
JUDGE_SCALE = (0.0, 10.0)  # the scale the `judge` template asks for


def parse_judge_score(text: str) -> float:
    """The last `\\boxed{number}` of a judge's answer, or an answer that is a number and nothing else (a small
    instruct model told to "put only the number" in a box often writes just `8`), on the template's 0-10
    scale; ValueError otherwise.

    A score off the scale (a small judge echoing a number from the solution) is a malformed answer,
    counted as a reward error, never averaged into the stream's reward."""
    found = _SCORE.findall(text) or _BARE_SCORE.findall(text)
    if not found:
        raise ValueError("no \\boxed{score} in the judge's answer")
    score = float(found[-1])
    low, high = JUDGE_SCALE
    if not low <= score <= high:
        raise ValueError(f"judge score {found[-1]} is off the {low:g}-{high:g} scale")
    return score


class JudgeReward:
    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        cfg = ctx.config.reward
        self.engine_config = cfg.engine or (ctx.config.oracle.engine if ctx.config.oracle else None)
        if self.engine_config is None:
            raise ValueError("reward.type 'judge' needs reward.engine (or an oracle) to run the judge")
        self.name = f"judge:{self.engine_config.model or self.engine_config.type}"
        self._scored: dict[tuple[str, str], dict[str, Any]] = {}
        """Greedy judgements by (question, solution): streams that copy a trace (grape, mix, sdft) ask once."""

    def score(self, problems: Sequence[Problem], texts: Sequence[str]) -> list[dict[str, Any]]:
        from stylealign.engines.base import SamplingParams
        from stylealign.run.retry import generate_with_retries

        pairs = [(p.question, t) for p, t in zip(problems, texts, strict=True)]
        new = list(dict.fromkeys(pair for pair in pairs if pair not in self._scored))
        if new:
            template = self.ctx.template("judge")
            requests = [template.request(question=question, solution=text) for question, text in new]
            max_tokens = self.ctx.config.reward.max_tokens or self.ctx.config.sampling.max_tokens
            sampling = SamplingParams(temperature=0.0, max_tokens=max_tokens, seed=self.ctx.config.seed)
            results = generate_with_retries(
                self.ctx.engine(self.engine_config), requests, sampling,
                retries=self.ctx.config.streams.oracle_retries, parse=parse_judge_score,
            )
            for pair, r in zip(new, results, strict=True):
                self._scored[pair] = {"reward": r.value, **({"reward_error": r.error} if r.failed else {})}
        return [dict(self._scored[pair]) for pair in pairs]


def make_scorer(cfg: RewardConfig, ctx: RunContext) -> RewardScorer:
    if cfg.type == "none":
        return NoReward()
    if cfg.type == "lab":
        return LabReward(cfg.style_preference)
    if cfg.type in ("orm", "prm"):
        if not cfg.model:
            raise ValueError(f"reward.type {cfg.type!r} needs reward.model (a sequence-classification model)")
        return ClassifierReward(
            cfg.model,
            per_step=cfg.type == "prm",
            separator=cfg.step_separator,
            batch_size=cfg.batch_size,
            trust_remote_code=cfg.trust_remote_code,
        )
    if cfg.type == "judge":
        return JudgeReward(ctx)
    raise ValueError(f"unknown reward.type {cfg.type!r}")


def run_scorer(ctx: RunContext) -> RewardScorer:
    """The run's scorer for its current reward config, built once: the score stage and GRAPE's CAR criterion
    share it, so a reward model is loaded once per run."""
    cfg = ctx.config.reward
    return ctx.memo(f"reward_scorer:{cfg.model_dump_json()}", lambda: make_scorer(cfg, ctx))
