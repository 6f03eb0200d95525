"""Show an existing run's report: open report.html in a browser, or serve it on a loopback port.

The server hands out the report's own files only (report.html/.json/.md and figures/), never the run's
records, and listens on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import webbrowser
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPORT_FILES = ("/report.html", "/report.json", "/report.md")


def report_page(run_dir: str | Path) -> Path:
    """`run_dir/report.html`, or a one-line error saying how to make it."""
    page = Path(run_dir) / "report.html"
    if not page.is_file():
        raise FileNotFoundError(f"{page}: missing; build it with `stylealign report {run_dir}`")
    return page


def open_report(run_dir: str | Path) -> Path:
    """Open the report in the system's web browser; returns the page's path."""
    page = report_page(run_dir).resolve()
    webbrowser.open(page.as_uri())
    return page


class ReportHandler(SimpleHTTPRequestHandler):
    """Static files of the report only; `/` is the page itself; nothing is logged per request."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        if path == "/":
            self.path = "/report.html"
        elif path not in REPORT_FILES and not (path.startswith("/figures/") and path.endswith(".png") and ".." not in path):
            self.send_error(404, "only the report's files are served")
            return
        super().do_GET()

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        return


def report_server(run_dir: str | Path, port: int = 8765, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """A server for the report of `run_dir` (port 0: any free port); call `serve_forever()` on it."""
    root = report_page(run_dir).parent.resolve()
    return ThreadingHTTPServer((host, port), partial(ReportHandler, directory=str(root)))
