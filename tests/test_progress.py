"""The stage bar: shows done/total, rate and ETA on a terminal, nothing in a log, and silences engine bars under it."""

from __future__ import annotations

import io

from rich.console import Console

from stylealign.progress import stage_bar, stage_bar_active


def test_stage_bar_on_a_terminal_shows_rate_and_eta_and_hushes_engines() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    assert not stage_bar_active()
    with stage_bar(console, "scored_sar", 4) as advance:
        assert stage_bar_active()
        advance(2)
        advance(2)
    assert not stage_bar_active()
    text = out.getvalue()
    assert "scored_sar" in text and "4/4" in text and "eta" in text and "/s" in text


def test_stage_bar_prints_nothing_into_a_log_file() -> None:
    out = io.StringIO()
    with stage_bar(Console(file=out, force_terminal=False), "samples", 3) as advance:
        assert stage_bar_active()
        advance(3)
    assert out.getvalue() == ""
