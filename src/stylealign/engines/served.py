"""An OpenAI-compatible engine whose server the run starts itself: `stylealign serve MODEL` on a loopback port.

A local oracle is reached the way a production one is (the `openai` engine,
the LLM prompt templates, HTTP, retries), yet `stylealign run CONFIG` stays
one command: with `engine.serve: true` the server is started on the host and
port of `base_url` when the engine is first needed, serves `engine.model`
with the hf engine (`device`, `dtype`, `batch_size`), and is stopped when the
run releases its engines. Its log is kept beside the converted models
(`$STYLEALIGN_CACHE/serve/`), and named when the server does not come up.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlparse

import httpx

from stylealign.cache import cache_dir
from stylealign.config import EngineConfig
from stylealign.engines.base import Completion, EngineError, Request, SamplingParams, TokenScores

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ServeError(EngineError):
    """The served model did not come up (its log tail is in the message)."""


def _log_tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    return "\n".join(text.splitlines()[-lines:])


@contextmanager
def served_model(
    model: str, name: str, base_url: str, log_path: Path, *, device: str = "cpu", dtype: str = "float32",
    batch_size: int = 16, startup_timeout: float = 900.0,
) -> Iterator[subprocess.Popen]:
    """`stylealign serve MODEL --name NAME` on the loopback host and port of `base_url`, stopped on exit."""
    url = urlparse(base_url)
    if url.hostname not in _LOOPBACK or url.port is None:
        raise ValueError(f"engine.base_url {base_url}: a served model listens on a loopback host with an explicit port")
    models_url = f"{url.scheme}://{url.hostname}:{url.port}{url.path.rstrip('/')}/models"
    try:
        httpx.get(models_url, timeout=2.0)
    except httpx.TransportError:
        pass
    else:
        raise ValueError(f"engine.base_url {base_url}: something already answers on port {url.port}; free it or change the port")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH")) if p)
    command = [
        sys.executable, "-m", "stylealign.cli", "serve", model, "--name", name, "--host", url.hostname,
        "--port", str(url.port), "--device", device, "--dtype", dtype, "--batch-size", str(batch_size),
    ]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                raise ServeError(f"stylealign serve {name} exited with code {process.returncode} (log {log_path}):\n{_log_tail(log_path)}")
            try:
                if httpx.get(models_url, timeout=5.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise ServeError(f"stylealign serve {name} did not answer {models_url} within {startup_timeout:.0f}s (log {log_path}):\n{_log_tail(log_path)}")
            time.sleep(1.0)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class ServedEngine:
    """The `openai` engine in front of a `stylealign serve` process this engine started; `close` stops both."""

    def __init__(self, config: EngineConfig):
        from stylealign.engines.openai_api import OpenAIEngine
        from stylealign.models import resolve_model

        if not config.model or not config.base_url:
            raise ValueError("engine.serve needs engine.model (what to serve) and engine.base_url (where)")
        local = resolve_model(config.model)  # converted once; the client also renders prompts with its tokenizer
        port = urlparse(config.base_url).port
        self.log_path = cache_dir() / "serve" / f"{Path(local).name}-{port}.log"
        self._stack = ExitStack()
        try:
            self._stack.enter_context(served_model(
                local, config.model, config.base_url, self.log_path, device=config.device, dtype=config.dtype,
                batch_size=config.batch_size,
            ))
            self.client = OpenAIEngine.from_config(config.model_copy(update={"tokenizer": config.tokenizer or local}))
        except BaseException:
            self._stack.close()
            raise
        self.name = self.client.name

    def __getattr__(self, attribute: str):
        """What the client offers beyond the protocol (`generate_each`, `backoff`, `secrets`, `tokenizer`)."""
        client = self.__dict__.get("client")
        if client is None:
            raise AttributeError(attribute)
        return getattr(client, attribute)

    def generate(self, requests: Sequence[Request], n: int, sampling: SamplingParams) -> list[list[Completion]]:
        return self.client.generate(requests, n, sampling)

    def score(self, requests: Sequence[Request], responses: Sequence[str]) -> list[TokenScores]:
        return self.client.score(requests, responses)

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            self._stack.close()
