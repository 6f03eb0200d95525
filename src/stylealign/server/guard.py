"""Who may call the server: the API key and body size checked before any body is read, and which key `serve` needs.

A key (`--api-key-env`) is required with `Authorization: Bearer`; a non-loopback address is refused without
one unless `--insecure` is given.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from typing import Any

from fastapi.responses import JSONResponse

from stylealign.server.protocol import error_response


class Guard:
    """ASGI middleware run before any body is read: the API key (401) and the body size (411, 413).

    Plain ASGI rather than `@app.middleware`, so the app still sees the client's disconnect.
    """

    def __init__(self, app: Any, api_key: str | None, max_body_bytes: int):
        self.app, self.api_key, self.max_body_bytes = app, api_key, max_body_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: dict) -> JSONResponse | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.api_key is not None:
            sent = headers.get("authorization", "")
            if not hmac.compare_digest(sent.encode(), f"Bearer {self.api_key}".encode()):
                return error_response(401, "missing or wrong API key: send Authorization: Bearer <key>")
        if scope["method"] == "POST":
            length = headers.get("content-length", "")
            if not length.isdigit():
                return error_response(411, "send the body with a Content-Length header")
            if int(length) > self.max_body_bytes:
                return error_response(
                    413, f"body of {int(length):,} bytes is over the limit of {self.max_body_bytes:,}"
                )
        return None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_key(host: str, api_key_env: str | None, insecure: bool) -> str | None:
    """The key clients must send: `$api_key_env`; serving beyond loopback without one needs `insecure`."""
    if api_key_env:
        key = os.environ.get(api_key_env, "")
        if not key:
            raise ValueError(f"--api-key-env {api_key_env}: that environment variable is empty or unset")
        return key
    if not is_loopback(host) and not insecure:
        raise ValueError(
            f"--host {host}: refusing to serve beyond this machine without a key; set --api-key-env NAME "
            "(or pass --insecure to let anyone who can reach it use the model)"
        )
    return None
