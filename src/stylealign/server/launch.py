"""Running the app: `serve` (the CLI's `stylealign serve MODEL`) and `BackgroundServer` (tests, benchmarks)."""

from __future__ import annotations

import threading
import time
from typing import Any

from fastapi import FastAPI

from stylealign.engines.base import Engine
from stylealign.server.app import create_app
from stylealign.server.guard import serve_key
from stylealign.server.limits import ServerLimits


def build_engine(model: str, *, device: str = "auto", dtype: str = "auto", batch_size: int = 16) -> Engine:
    """`lab:oracle` is the lab's programmatic oracle; anything else is a model the hf engine loads."""
    if model == "lab:oracle":
        from stylealign.config import EngineConfig
        from stylealign.engines import load_engine

        return load_engine(EngineConfig(type="lab-oracle"))
    from stylealign.engines.hf import HFEngine

    return HFEngine(model, device=device, dtype=dtype, batch_size=batch_size)


def serve(
    model: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    name: str | None = None,
    api_key_env: str | None = None,
    insecure: bool = False,
    limits: ServerLimits | None = None,
    **engine_options: Any,
) -> None:
    import uvicorn

    api_key = serve_key(host, api_key_env, insecure)
    engine = build_engine(model, **engine_options)
    uvicorn.run(create_app(engine, name or model, limits=limits, api_key=api_key), host=host, port=port)


class BackgroundServer:
    """An app served by uvicorn in a daemon thread on a free port: for tests, benchmarks and notebooks.

    `with BackgroundServer(app) as url:` yields the base URL (`http://127.0.0.1:PORT/v1`).
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1"):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.host = host

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the background server failed to start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://{self.host}:{port}/v1"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
