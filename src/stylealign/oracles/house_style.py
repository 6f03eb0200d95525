"""A deterministic stand-in for an oracle's polish: reference solutions rewritten in a LaTeX house style.

Without a large oracle model, the style gap the paper measures can still be
produced on real data: the logic of a GSM8K reference solution is kept line for
line (as `stylealign.datasets` cleans it), and only its presentation changes to what large instruct models write
(Qwen2.5-72B-like): an announcing opener, bold numbered steps, inline
`\\( ... \\)` math with `\\times`, `\\div`, `\\frac{a}{b}` for a bare `a/b`, escaped `\\$`/`\\%`, and
a closing `Therefore, the final answer is \\(\\boxed{N}\\).` The rewrite is a pure
function of the text, so a run is reproducible and the drift is documented.

Example::

    Janet sells 16 - 3 - 4 = 9 duck eggs a day.
    She makes 9 * 2 = $18 every day at the farmer's market.
    The answer is 18.

becomes::

    To solve this problem, we work through it step by step.

    **Step 1:** Janet sells \\( 16 - 3 - 4 = 9 \\) duck eggs a day.

    **Step 2:** She makes \\( 9 \\times 2 = \\$18 \\) every day at the farmer's market.

    Therefore, the final answer is \\(\\boxed{18}\\).
"""

from __future__ import annotations

import re

OPENER = "To solve this problem, we work through it step by step."
FINAL_LINE = re.compile(
    r"^\s*(?:####|(?i:(?:so |thus |therefore,? )?(?:the )?(?:final )?answer is:?))\s*\S.*$"
)
_NUM = r"[$€£]?\d[\d,]*(?:\.\d+)?%?"
_OP = r"(?:[-+*/×÷=−–]|(?<=\s)x(?=\s))"
MATH = re.compile(rf"\(*{_NUM}\)*(?:\s*{_OP}\s*\(*{_NUM}\)*)+")
FRACTION = re.compile(r"(?<![\d.,/])(\d+)/(\d+)(?![\d.,/])")


def _latex_math(span: str) -> str:
    span = FRACTION.sub(r"\\frac{\1}{\2}", span)
    span = re.sub(r"\s*(?:\*|×|(?<=\s)x(?=\s))\s*", r" \\times ", span)
    span = re.sub(r"\s*[÷/]\s*", r" \\div ", span)
    span = re.sub(r"\s*[−–]\s*", " - ", span)
    span = re.sub(r"\s*([-+=])\s*", r" \1 ", span)
    span = span.replace("$", r"\$").replace("%", r"\%")
    return f"\\( {span.strip()} \\)"


def _latex_line(line: str) -> str:
    out, last = [], 0
    for m in MATH.finditer(line):
        out.append(line[last : m.start()].replace("$", r"\$").replace("%", r"\%"))
        out.append(_latex_math(m.group()))
        last = m.end()
    out.append(line[last:].replace("$", r"\$").replace("%", r"\%"))
    return "".join(out).strip()


def solution_lines(solution: str) -> list[str]:
    """The non-blank lines of a solution, stripped, without its closing answer line."""
    lines = [line.strip() for line in solution.strip().splitlines() if line.strip()]
    return lines[:-1] if lines and FINAL_LINE.match(lines[-1]) else lines


def oracle_style(solution: str, answer: str) -> str:
    """Rewrite a solution into the oracle house style, one bold step per line; its closing answer line is
    replaced by a sentence with `answer` boxed."""
    lines = solution_lines(solution)
    steps = [f"**Step {i}:** {_latex_line(line)}" for i, line in enumerate(lines, 1)]
    return "\n\n".join([OPENER, *steps, f"Therefore, the final answer is \\(\\boxed{{{answer}}}\\)."])
