"""A rehearsal of the production path: a real LLM oracle served over HTTP, then a whole run against it.

`rehearse` starts `stylealign serve` for the config's oracle model on the loopback port named in
`oracle.engine.base_url`, runs the experiment (oracle failures allowed: a small oracle fails often, and
the run must still finish), stops the server whatever happened, and writes `rehearsal.json`: how long
each stage took, every oracle failure per stream, the SAR gate's outcomes and rejection reasons, what
the judge could not score, and the per-benchmark evaluation table. The server's log is kept in
`serve.log` in the run directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
from rich.console import Console

from stylealign.config import ExperimentConfig
from stylealign.records import Trace
from stylealign.store import RunStore

_PACKAGE_ROOT = Path(__file__).resolve().parents[1]
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class RehearsalError(RuntimeError):
    """The oracle server did not come up (its log tail is in the message)."""


def _log_tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    return "\n".join(text.splitlines()[-lines:])


@contextmanager
def served_model(
    model: str, name: str, base_url: str, log_path: Path, *, startup_timeout: float = 900.0
) -> Iterator[subprocess.Popen]:
    """`stylealign serve MODEL --name NAME` on the loopback host and port of `base_url`, stopped on exit."""
    url = urlparse(base_url)
    if url.hostname not in _LOOPBACK or url.port is None:
        raise ValueError(f"oracle.engine.base_url {base_url}: a rehearsal serves on a loopback host with an explicit port")
    models_url = f"{url.scheme}://{url.hostname}:{url.port}{url.path.rstrip('/')}/models"
    try:
        httpx.get(models_url, timeout=2.0)
    except httpx.TransportError:
        pass
    else:
        raise ValueError(f"oracle.engine.base_url {base_url}: something already answers on port {url.port}; free it or change the port")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH")) if p)
    command = [
        sys.executable, "-m", "stylealign.cli", "serve", model, "--name", name,
        "--host", url.hostname, "--port", str(url.port), "--device", "cpu", "--dtype", "float32",
    ]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                raise RehearsalError(f"stylealign serve exited with code {process.returncode}:\n{_log_tail(log_path)}")
            try:
                if httpx.get(models_url, timeout=5.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RehearsalError(f"stylealign serve did not answer {models_url} within {startup_timeout:.0f}s:\n{_log_tail(log_path)}")
            time.sleep(1.0)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def gate_counts(store: RunStore, streams: list[str]) -> dict[str, Any]:
    """What each stream kept, what the SAR gate decided and why, and what failed at the oracle, from the records;
    `this_run` adds the counts of the streams stage's batches (e.g. `wrong_answer`: oracle answers that
    failed verification and were dropped, which leave no record)."""
    run_counts = store.read_json("streams/counts.json", missing={})
    out: dict[str, Any] = {}
    for name in streams:
        kept = store.stage(f"stream_{name}").records(Trace)
        entry: dict[str, Any] = {
            "kept": len(kept),
            "oracle_failures": len(store.stage(f"failures_stream_{name}").records(Trace)),
            "this_run": run_counts.get(name, {}),
        }
        if name == "sar":
            entry["outcomes"] = dict(Counter(t.metrics.get("sar_outcome") for t in kept))
            entry["rejections"] = dict(
                Counter(reason.split(":")[0] for t in kept for reason in t.metrics.get("rejections", []))
            )
        out[name] = entry
    return out


def reward_failures(store: RunStore, streams: list[str]) -> dict[str, int]:
    """Scored traces, and how many of them the reward could not score (a judge answer without a score)."""
    scored = [t for name in streams for t in store.stage(f"scored_{name}").records(Trace)]
    return {"scored": len(scored), "reward_errors": sum("reward_error" in t.metrics for t in scored)}


def rehearsal_summary(store: RunStore, config: ExperimentConfig, streams: list[str], seconds: float) -> dict[str, Any]:
    from stylealign.report.table import benchmark_table, headline

    manifest = store.manifest()
    evaluations = store.read_json("eval.json", missing={})
    headers, rows = benchmark_table(evaluations, config.evaluation.k)
    return {
        "seconds": round(seconds, 1),
        "stages": {name: stage.get("summary", {}) for name, stage in manifest.get("stages", {}).items()},
        "streams": gate_counts(store, streams),
        "oracle_failures": store.read_json("streams/failures.json", missing={}),
        "reward": {"type": config.reward.type, **reward_failures(store, streams)},
        "evaluation": {"headline": headline(evaluations, config.evaluation.k), "headers": headers, "rows": rows},
    }


def rehearse(config: ExperimentConfig, out: str | Path, *, limit: int | None = None, console: Console | None = None) -> dict[str, Any]:
    """Serve the oracle model, run `config` against it (failures allowed), stop the server, write rehearsal.json."""
    from stylealign.models import resolve_model
    from stylealign.run.pipeline import run_experiment

    console = console or Console()
    oracle = config.oracle
    if oracle is None or oracle.engine.type != "openai" or not oracle.engine.model or not oracle.engine.base_url:
        raise ValueError("a rehearsal needs oracle.engine of type openai with model and base_url (see the packaged config `rehearsal`: src/stylealign/configs/rehearsal.yaml)")
    out = Path(out)
    local = resolve_model(oracle.engine.model)  # converted once; the client renders prompts with its tokenizer
    config = config.model_copy(
        update={"oracle": oracle.model_copy(update={"engine": oracle.engine.model_copy(update={"tokenizer": local})})}
    )
    start = time.perf_counter()
    console.print(f"serving the oracle {oracle.engine.model} at {oracle.engine.base_url} (log: {out / 'serve.log'})")
    with served_model(local, oracle.engine.model, oracle.engine.base_url, out / "serve.log"):
        ctx = run_experiment(config, out, limit=limit, console=console, allow_failures=True)
    store = RunStore(out)
    summary = rehearsal_summary(store, config, list(ctx.streams), time.perf_counter() - start)
    store.write_json("rehearsal.json", summary)
    console.print(f"rehearsal finished in {summary['seconds']:.0f}s; counts in {out / 'rehearsal.json'}")
    for name, entry in summary["streams"].items():
        console.print(f"  {name}: {json.dumps(entry)}")
    console.print(f"  reward: {json.dumps(summary['reward'])}")
    console.print(summary["evaluation"]["headline"])
    return summary
