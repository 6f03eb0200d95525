"""Export a stream as training data other tools read directly.

- `train.jsonl`: one chat per line, `{"messages": [...student prompt..., {"role": "assistant", ...}]}` —
  TRL's conversational format and LLaMA-Factory's sharegpt format (see the written `dataset_info.json`).
- `dataset/`: a Hugging Face `datasets` directory (`load_from_disk`) with conversational `prompt` /
  `completion` fields, TRL's prompt-completion format (loss on the completion only).
The prompt is the student's own template, the same one used for sampling, scoring and training.
An existing export is never overwritten unless asked (`force`), and every output is written beside its
target then renamed onto it: a symbolic link left in the folder (even a dangling one) counts as an earlier
export and is replaced, never written through, so nothing lands outside the folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stylealign.io import write_text_atomically
from stylealign.prompts import PromptTemplate
from stylealign.records import Problem, Trace, by_id

OUTPUTS = ("train.jsonl", "dataset_info.json", "dataset")


def _prepare_out_dir(out: Path, force: bool) -> None:
    """Make `out`, refusing a file there and (without `force`) an earlier export; errors name the path."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a directory")
    existing = [name for name in OUTPUTS if os.path.lexists(out / name)]
    if existing and not force:
        raise ValueError(f"{out}: already holds {', '.join(existing)}; pass --force to overwrite")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=out)  # a new file, never an existing link
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ValueError(f"{out}: cannot write there: {err.strerror or err}") from None


def export_stream(
    traces: Sequence[Trace], problems: Sequence[Problem], template: PromptTemplate, out_dir: str | Path,
    *, force: bool = False,
) -> dict[str, Any]:
    from datasets import Dataset

    out = Path(out_dir)
    _prepare_out_dir(out, force)
    problem_by_id = by_id(problems)
    missing = sorted({t.problem_id for t in traces} - problem_by_id.keys())
    if missing:
        raise ValueError(f"export: traces refer to problems not in the run: {missing[:5]}")
    rows = []
    for trace in traces:
        prompt = [dict(m) for m in template.request(question=problem_by_id[trace.problem_id].question).messages]
        completion = [{"role": "assistant", "content": trace.text}]
        rows.append({"prompt": prompt, "completion": completion, "trace_id": trace.id, "problem_id": trace.problem_id,
                     "stream": trace.stream})
    jsonl = out / "train.jsonl"
    write_text_atomically(
        jsonl, "".join(json.dumps({"messages": row["prompt"] + row["completion"]}, ensure_ascii=False) + "\n" for row in rows)
    )
    info = {
        "stylealign": {
            "file_name": "train.jsonl", "formatting": "sharegpt", "columns": {"messages": "messages"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
                     "system_tag": "system"},
        }
    }
    write_text_atomically(out / "dataset_info.json", json.dumps(info, indent=2))
    dataset_dir = out / "dataset"
    fresh = out / f".dataset.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        Dataset.from_list(rows).save_to_disk(str(fresh))
        if dataset_dir.is_symlink() or dataset_dir.is_file():
            dataset_dir.unlink()  # the link itself, never what it points to
        elif dataset_dir.exists():
            shutil.rmtree(dataset_dir)
        os.replace(fresh, dataset_dir)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    return {"examples": len(rows), "jsonl": str(jsonl), "dataset": str(dataset_dir)}


def export_run(run_dir: str | Path, stream: str, out_dir: str | Path, *, force: bool = False) -> dict[str, Any]:
    """Export stream `stream` of a run directory with the student prompt the run's config names."""
    from stylealign.config import STREAMS, parse_config
    from stylealign.prompts import load_template
    from stylealign.store import RunStore
    from stylealign.streams.listing import stream_traces

    store = RunStore(run_dir)
    manifest = store.manifest()
    if "config" not in manifest:
        raise FileNotFoundError(f"{store.manifest_path}: not a stylealign run directory (no manifest with a config)")
    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r}; choose from {', '.join(STREAMS)}")
    cfg = parse_config(manifest["config"], str(store.manifest_path))
    traces = stream_traces(store, stream)
    if not traces:
        raise ValueError(f"{run_dir}: stream {stream!r} has no traces (run the `streams` stage first)")
    template = load_template(cfg.student.template, cfg.prompts_dir, system=cfg.student.system)
    problems = list(store.stage("problems").latest(Problem).values())
    return export_stream(traces, problems, template, out_dir, force=force)
