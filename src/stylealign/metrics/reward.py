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

The scorers take engines and plain settings; `stylealign.run.rewards` builds the run's scorer from its
`reward` config through a registry of reward types.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from stylealign.engines.base import Engine, SamplingParams
from stylealign.engines.retry import generate_with_retries
from stylealign.prompts import PromptTemplate
from stylealign.records import Problem


class RewardScorer(Protocol):
    name: str

    def score(self, problems: Sequence[Problem], texts: Sequence[str]) -> list[dict[str, Any]]:
        """One dict per trace, at least {"reward": float | None}."""
        ...


class NoReward:
    name = "none"

    def score(self, problems: Sequence[Problem], texts: Sequence[str]) -> list[dict[str, Any]]:
        return [{"reward": None} for _ in texts]


class ClassifierReward:
    """ORM (whole solution) or PRM (every step prefix) with an `AutoModelForSequenceClassification`."""

    def __init__(
        self,
        model: str | Path,
        *,
        per_step: bool,
        separator: str = "\n\n",
        batch_size: int = 8,
        trust_remote_code: bool = False,
        name: str | None = None,
    ):
        """`model` is a local model directory (`stylealign.models.resolve_model` gives one); `name` is what
        the config called it (the scorer's name and its error messages)."""
        import torch
        from transformers import (
            AutoModel,
            AutoModelForSequenceClassification,
            AutoTokenizer,
            PretrainedConfig,
        )

        from stylealign.progress import quiet_loading

        path = str(model)
        name = name or path
        self.name = f"{'prm' if per_step else 'orm'}:{name}"
        auto_map = PretrainedConfig.get_config_dict(path)[0].get("auto_map") or {}
        if auto_map and not trust_remote_code:
            raise ValueError(
                f"reward.model {name}: the model ships its own code ({', '.join(sorted(set(auto_map.values())))}); "
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
    """Greedy judgements of (question, solution) pairs by an LLM through the `judge` template.

    `engine` is called when a judgement is first needed (the run loads and releases engines between stages)."""

    def __init__(
        self, engine: Callable[[], Engine], template: PromptTemplate, sampling: SamplingParams, *, retries: int, name: str
    ):
        self.engine, self.template, self.sampling, self.retries, self.name = engine, template, sampling, retries, name
        self._scored: dict[tuple[str, str], dict[str, Any]] = {}
        """Judgements by (question, solution): streams that copy a trace (grape, mix, sdft) ask once."""

    def score(self, problems: Sequence[Problem], texts: Sequence[str]) -> list[dict[str, Any]]:
        pairs = [(p.question, t) for p, t in zip(problems, texts, strict=True)]
        new = list(dict.fromkeys(pair for pair in pairs if pair not in self._scored))
        if new:
            requests = [self.template.request(question=question, solution=text) for question, text in new]
            results = generate_with_retries(
                self.engine(), requests, self.sampling, retries=self.retries, parse=parse_judge_score
            )
            for pair, r in zip(new, results, strict=True):
                self._scored[pair] = {"reward": r.value, **({"reward_error": r.error} if r.failed else {})}
        return [dict(self._scored[pair]) for pair in pairs]
