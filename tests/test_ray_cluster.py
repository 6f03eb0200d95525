"""The ray engine joining a cluster started apart from the run: a head and a worker node, each its own `ray start`.

Each node offers one CPU and each of the two actors asks for one, so the sample
stage can only finish with one actor on each node (a node that never joined
leaves an actor pending, and the stage's timeout fails the test). The samples
must equal the plain hf engine's: its samples depend only on request and seed.
Both nodes run in their own process group and are stopped by process id, so a
failing test never leaves Ray running and never touches other Ray instances.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from rich.console import Console

import stylealign
from stylealign.config import parse_config
from stylealign.pipeline import run_experiment
from stylealign.run.context import RunContext
from stylealign.stages.sample import current_samples
from stylealign.store import RunStore

pytest.importorskip("ray")

pytestmark = pytest.mark.slow

NODE_START_TIMEOUT = 300
"""Seconds a node may take to print "Ray runtime started" (12 s each measured on 2 cores; minutes under heavy load)."""
STAGE_TIMEOUT = 600
"""Seconds for `stylealign run --until sample` through the cluster (the whole test call: 109 s measured at load 10)."""
STOP_TIMEOUT = 30


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_node(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """`ray start --block ARGS` in its own process group; returns once the node is up (or fails naming its log)."""
    command = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--num-cpus", "1", *args]
    node = subprocess.Popen(
        command, stdout=log.open("w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + NODE_START_TIMEOUT
    while "Ray runtime started" not in log.read_text(errors="replace"):
        if node.poll() is not None or time.monotonic() > deadline:
            _stop_node(node)
            raise RuntimeError(f"`ray start {' '.join(args)}` did not come up; its log:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    return node


def _stop_node(node: subprocess.Popen) -> None:
    """SIGTERM to `ray start --block` (it stops its node), then SIGKILL to whatever is left of its process group."""
    if node.poll() is None:
        node.terminate()
        try:
            node.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(node.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    node.wait(STOP_TIMEOUT)


@pytest.fixture
def ray_cluster() -> Iterator[tuple[str, dict[str, str]]]:
    """(head address, environment that may talk to it): a head and one worker node on this machine."""
    temp_dir = Path(tempfile.mkdtemp(prefix="ray-"))  # short: Ray's socket paths must stay under 108 bytes
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(stylealign.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        # a token of this cluster's own, whatever ~/.ray/auth_token holds
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    }
    env.pop("RAY_ADDRESS", None)
    address = f"127.0.0.1:{_free_port()}"
    nodes: list[subprocess.Popen] = []
    try:
        nodes.append(_start_node(
            ["--head", "--port", address.rsplit(":", 1)[1], "--include-dashboard", "false",
             "--disable-usage-stats", "--temp-dir", str(temp_dir)],
            temp_dir / "head.log", env,
        ))
        nodes.append(_start_node(["--address", address, "--disable-usage-stats"], temp_dir / "worker.log", env))
        yield address, env
    finally:
        for node in reversed(nodes):
            _stop_node(node)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _config(model_dir: Path, engine: dict) -> dict:
    return {
        "name": "ray-cluster",
        "seed": 3,
        "problems": {"source": "lab", "split": "train", "limit": 5},
        "student": {"engine": engine},
        "sampling": {"k": 2, "temperature": 1.0, "max_tokens": 12},
    }


def _samples(cfg: dict, run_dir: Path) -> dict[tuple[str, int], str]:
    ctx = RunContext(config=parse_config(cfg), store=RunStore(run_dir))
    return {(t.problem_id, t.metrics["sample_index"]): t.text for t in current_samples(ctx)}


def test_sample_stage_through_a_separately_started_cluster_equals_hf(
    ray_cluster: tuple[str, dict[str, str]], tiny_model_dir: Path, tmp_path: Path
) -> None:
    address, env = ray_cluster
    hf = {"type": "hf", "model": str(tiny_model_dir), "device": "cpu", "batch_size": 8}
    on_cluster = _config(tiny_model_dir, {"type": "ray", "num_actors": 2, "address": address, "actor": hf})
    config_path = tmp_path / "cluster.yaml"
    config_path.write_text(yaml.safe_dump(on_cluster))
    try:
        run = subprocess.run(
            [sys.executable, "-m", "stylealign.cli", "run", str(config_path), "--until", "sample",
             "--out", str(tmp_path / "cluster-run")],
            env=env, capture_output=True, text=True, timeout=STAGE_TIMEOUT,
        )
    except subprocess.TimeoutExpired as err:
        output = "".join(o.decode(errors="replace") if isinstance(o, bytes) else o or "" for o in (err.stdout, err.stderr))
        pytest.fail(f"the sample stage through the cluster took over {STAGE_TIMEOUT}s; its output:\n{output[-3000:]}")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "✓ sample" in run.stdout

    local = _config(tiny_model_dir, hf)
    run_experiment(parse_config(local), tmp_path / "hf-run", until="sample", console=Console(file=io.StringIO()))
    through_cluster = _samples(on_cluster, tmp_path / "cluster-run")
    assert len(through_cluster) == 5 * 2
    assert through_cluster == _samples(local, tmp_path / "hf-run")
