"""Export a stream as training data other tools read directly.

- `train.jsonl`: one chat per line, `{"messages": [...student prompt..., {"role": "assistant", ...}]}` —
  TRL's conversational format and LLaMA-Factory's sharegpt format (see the written `dataset_info.json`).
- `dataset/`: a Hugging Face `datasets` directory (`load_from_disk`) with conversational `prompt` /
  `completion` fields, TRL's prompt-completion format (loss on the completion only).
The prompt is the student's own template, the same one used for sampling, scoring and training.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stylealign.prompts import PromptTemplate
from stylealign.records import Problem, Trace


def export_stream(traces: Sequence[Trace], problems: Sequence[Problem], template: PromptTemplate, out_dir: str | Path) -> dict[str, Any]:
    from datasets import Dataset

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    by_id = {p.id: p for p in problems}
    missing = sorted({t.problem_id for t in traces} - by_id.keys())
    if missing:
        raise ValueError(f"export: traces refer to problems not in the run: {missing[:5]}")
    rows = []
    for trace in traces:
        prompt = [dict(m) for m in template.request(question=by_id[trace.problem_id].question).messages]
        completion = [{"role": "assistant", "content": trace.text}]
        rows.append({"prompt": prompt, "completion": completion, "trace_id": trace.id, "problem_id": trace.problem_id,
                     "stream": trace.stream})
    jsonl = out / "train.jsonl"
    tmp = jsonl.with_suffix(".jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({"messages": row["prompt"] + row["completion"]}, ensure_ascii=False) + "\n")
    tmp.replace(jsonl)
    info = {
        "stylealign": {
            "file_name": "train.jsonl", "formatting": "sharegpt", "columns": {"messages": "messages"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
                     "system_tag": "system"},
        }
    }
    (out / "dataset_info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    dataset_dir = out / "dataset"
    Dataset.from_list(rows).save_to_disk(str(dataset_dir))
    return {"examples": len(rows), "jsonl": str(jsonl), "dataset": str(dataset_dir)}


def export_run(run_dir: str | Path, stream: str, out_dir: str | Path) -> dict[str, Any]:
    """Export stream `stream` of a run directory with the student prompt the run's config names."""
    from stylealign.config import parse_config
    from stylealign.prompts import load_template
    from stylealign.store import RunStore
    from stylealign.streams.listing import stream_traces

    store = RunStore(run_dir)
    manifest = store.manifest()
    if "config" not in manifest:
        raise FileNotFoundError(f"{store.manifest_path}: not a stylealign run directory (no manifest with a config)")
    cfg = parse_config(manifest["config"], str(store.manifest_path))
    traces = stream_traces(store, stream)
    if not traces:
        raise ValueError(f"{run_dir}: stream {stream!r} has no traces (run the `streams` stage first)")
    template = load_template(cfg.student.template, cfg.prompts_dir, system=cfg.student.system)
    return export_stream(traces, store.stage("problems").records(Problem), template, out_dir)
