"""The report's tokens section: per stage and engine, the plan's requests and tokens beside the run's."""

from __future__ import annotations

from typing import Any

HEADERS = ["stage", "engine", "requests (plan / actual)", "prompt tokens (plan / actual)",
           "generated tokens (plan / actual)", "plan error"]


def _pair(row: dict[str, Any], key: str) -> str:
    return f"{row[f'plan_{key}']:,} / {row[f'actual_{key}']:,}"


def usage_table(section: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    rows = [
        [r["stage"], r["engine"], _pair(r, "requests"), _pair(r, "prompt_tokens"), _pair(r, "generated_tokens"),
         "–" if r["error"] is None else f"{r['error']:+.0%}"]
        for r in section["comparison"]
    ]
    return HEADERS, rows


def usage_sentence(section: dict[str, Any]) -> str:
    """How far the plan was from the run on all tokens, and what the actual counts rest on."""
    planned = sum(r["plan_prompt_tokens"] + r["plan_generated_tokens"] for r in section["comparison"])
    actual = sum(r["actual_prompt_tokens"] + r["actual_generated_tokens"] for r in section["comparison"])
    errors = [r["error"] for r in section["comparison"] if r["error"] is not None]
    total = f"{(planned - actual) / actual:+.0%}" if actual else "–"
    spread = f" (per stage and engine from {min(errors):+.0%} to {max(errors):+.0%})" if errors else ""
    return (
        f"The plan, made from the config and the problems alone (`stylealign plan`, default assumptions), put all "
        f"tokens of the stages run ({', '.join(section['stages'])}) at {planned:,} against {actual:,} counted from "
        f"the run's records: {total}{spread}. Actual tokens "
        f"are counted with {section['actual']['counted_with']}; discarded outputs count as their stream's mean."
    )
