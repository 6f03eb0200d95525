"""One self-contained HTML page: inline style, figures as base64 PNGs, nothing fetched.

Its only script is the trace browser's, which draws embedded JSON and puts trace text in as text nodes.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from stylealign.report.browser import browser_style, render_browser
from stylealign.report.figures import FIGURES
from stylealign.report.predictors import NOTE, predictor_table, values_table
from stylealign.report.table import COLUMNS, contrast_table, data_sentence, fmt, mode_sentence
from stylealign.report.usage import usage_sentence, usage_table

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; padding: 0 1rem; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; display: block; max-width: 100%; overflow-x: auto; }
th, td { border-bottom: 1px solid #ddd; padding: 0.35rem 0.6rem; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
th { background: #f4f4f4; }
.verdict { font-size: 1.1rem; background: #f7f7fb; border-left: 4px solid #557; padding: 0.8rem 1rem; }
.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 1rem; }
figure { margin: 0; }
figure#loss_tokens, figure#predicted_vs_achieved { grid-column: 1 / -1; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9rem; }
"""


EMPTY_BROWSER: dict[str, Any] = {"problems": [], "available": 0}


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _eval_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for model, summary in report["evaluation"]["models"].items():
        for dataset, d in summary.get("datasets", {}).items():
            rows.append(
                [
                    model,
                    dataset,
                    str(d["problems"]),
                    f"{100 * d['avg_at_k']:.1f}%",
                    f"{100 * d['ci_low']:.1f}–{100 * d['ci_high']:.1f}",
                    f"{100 * d['pass_at_k']:.1f}%",
                ]
            )
    return rows


def _predictors(section: dict[str, Any] | None) -> str:
    if section is None:
        return ""
    return f"""<h2>Predicted before training, checked after</h2>
<p>{html.escape(section["sentence"])}</p>
{_table(*predictor_table(section))}
{_table(*values_table(section))}
<p>{html.escape(NOTE)}</p>"""


def _usage(section: dict[str, Any] | None) -> str:
    if section is None:
        return ""
    return f"<h2>Tokens: plan and actual</h2>\n<p>{html.escape(usage_sentence(section))}</p>\n{_table(*usage_table(section))}"


def render_html(report: dict[str, Any], figures: dict[str, Path], browser: dict[str, Any] | None = None) -> str:
    k = report["evaluation"]["k"]
    stream_table = _table(
        [header for _, header, _, _ in COLUMNS],
        [[fmt(row, key, kind) for key, _, _, kind in COLUMNS] for row in report["streams"]],
    )
    eval_table = _table(
        ["model", "test set", "problems", f"Avg@{k}", "95% CI", f"pass@{k}"],
        _eval_rows(report),
    )
    contrasts = _table(*contrast_table(report["contrasts"])) if report["contrasts"] else "<p>No contrast could be computed (a model of a configured pair was not evaluated).</p>"
    images = []
    for name, path in figures.items():
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        caption = html.escape(FIGURES.get(name, name))
        images.append(
            f'<figure id="{name}"><img alt="{caption}" src="data:image/png;base64,{data}">'
            f"<figcaption>{caption}</figcaption></figure>"
        )
    paradox, verdict = report["paradox"], report["verdict"]
    title = html.escape(f"stylealign report — {report['name']}")
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{title}</title><style>{STYLE}{browser_style()}</style></head>
<body>
<h1>{title}</h1>
<p class="verdict"><strong>Verdict: {html.escape(verdict["verdict"])}.</strong> {html.escape(verdict["sentence"])}</p>
<p>{html.escape(mode_sentence(report))}</p>
<p>{html.escape(data_sentence(report))}</p>
<h2>Paired contrasts</h2>
<p>Accuracy of the stream the paper predicts better minus the one it predicts worse, in points; the 95% interval is a
paired bootstrap over problems and seeds (both models answered the same problems with the same sampling seeds).
A contrast is resolved when its interval excludes 0.</p>
{contrasts}
{_predictors(report.get("predictors"))}
<h2>Streams</h2>
<p>{html.escape(paradox["sentence"])}<br>{html.escape(paradox["cost_sentence"])}</p>
<p>Accuracy is Avg@{k} (mean accuracy over {k} samples per problem, averaged over test sets) of the student
fine-tuned on each stream, averaged over seeds; "acc before" is the base student. 95% CI: bootstrap over problems
(within test sets) and seeds. "length cut": share of samples stopped by max_tokens, graded wrong unless answered before.</p>
{stream_table}
<h2>Evaluation per test set</h2>
<p>{html.escape(report["evaluation"].get("grading") or "")}</p>
{eval_table}
{_usage(report.get("usage"))}
{render_browser(browser or EMPTY_BROWSER)}
<h2>Figures</h2>
<div class="figures">{"".join(images)}</div>
</body>
</html>
"""
