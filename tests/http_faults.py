"""Raw loopback HTTP servers that misbehave on purpose, for the openai engine and the oracle streams.

`raw_server(respond)` is a plain `http.server`: `respond(call_number, headers, body)` returns
(status, payload) or (status, payload, content type): a dict sent as JSON, bytes sent as they are, or an
iterator of bytes streamed without a length until it ends or the client hangs up. `FaultyOracle` answers chat
completions with the lab oracle and fails a seeded fraction of requests in the ways remote
servers do (500, 429, a hang past the client's timeout, malformed JSON, empty choices).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default backlog of 5 refuses connections when 16 clients arrive at once


Respond = Callable[[int, dict, dict], tuple]


@contextmanager
def raw_server(respond: Respond) -> Iterator[tuple[str, list[dict]]]:
    """Yields (base URL, headers of every call so far, lower-cased)."""
    calls: list[dict] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length", 0)))
            with lock:
                calls.append({k.lower(): v for k, v in self.headers.items()})
                number = len(calls)
            status, body, *kind = respond(number, dict(self.headers), json.loads(raw or b"{}"))
            try:
                self.send_response(status)
                self.send_header("content-type", kind[0] if kind else "application/json")
                if isinstance(body, Iterator):
                    self.end_headers()
                    for chunk in body:
                        self.wfile.write(chunk)
                    return
                payload = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", calls
    finally:
        server.shutdown()
        server.server_close()


def chat_response(texts: list[str]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
            for i, t in enumerate(texts)
        ],
    }


FAULTS = ("500", "429", "hang", "malformed_json", "empty_choices")


class FaultyOracle:
    """`respond` for `raw_server`: the lab oracle's answers, with `rate` of requests failing at random."""

    def __init__(self, rate: float = 0.3, hang_s: float = 2.0, seed: int = 0):
        from stylealign.oracles.engine import OracleEngine

        self.oracle = OracleEngine()
        self.rate, self.hang_s = rate, hang_s
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.faults: Counter[str] = Counter()
        self.answered: list[str] = []
        """Every text sent back in a 200 with a usable choice."""

    def warm_up(self, question: str) -> None:
        """The lab oracle's first answer builds its indexes (seconds); do it before any client times out."""
        from stylealign.engines.base import SamplingParams
        from stylealign.prompts import load_template

        self.oracle.generate([load_template("solve").request(question=question)], 1, SamplingParams())

    def __call__(self, number: int, headers: dict, body: dict) -> tuple[int, dict | bytes]:
        from stylealign.engines.base import Request, SamplingParams

        with self.lock:
            fault = self.rng.choice(FAULTS) if self.rng.random() < self.rate else None
            if fault:
                self.faults[fault] += 1
        if fault == "500":
            return 500, {"error": {"message": "internal error"}}
        if fault == "429":
            return 429, {"error": {"message": "rate limited"}}
        if fault == "hang":
            time.sleep(self.hang_s)
            return 200, chat_response(["too late"])
        if fault == "malformed_json":
            return 200, b'{"id": "chatcmpl-1", "choices": [{"index": 0, "message": '
        if fault == "empty_choices":
            return 200, chat_response([])
        messages = tuple({"role": m["role"], "content": m["content"]} for m in body["messages"])
        [[completion]] = self.oracle.generate([Request(messages=messages)], 1, SamplingParams(seed=body.get("seed") or 0))
        with self.lock:
            self.answered.append(completion.text)
        return 200, chat_response([completion.text])
