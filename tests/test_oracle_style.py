"""The oracle-style rewrite keeps a solution's logic and changes only its presentation, deterministically."""

from __future__ import annotations

import re

from stylealign.oracles.house_style import OPENER, oracle_style

SOLUTION = (
    "Janet sells 16 - 3 - 4 = 9 duck eggs a day.\n"
    "She makes 9 * 2 = $18 every day at the farmer's market.\n"
    "The answer is 18."
)


def test_rewrite_of_a_gsm8k_reference_is_exact() -> None:
    assert oracle_style(SOLUTION, "18") == (
        f"{OPENER}\n\n"
        "**Step 1:** Janet sells \\( 16 - 3 - 4 = 9 \\) duck eggs a day.\n\n"
        "**Step 2:** She makes \\( 9 \\times 2 = \\$18 \\) every day at the farmer's market.\n\n"
        "Therefore, the final answer is \\(\\boxed{18}\\)."
    )


def test_operators_fractions_and_symbols_become_latex() -> None:
    text = oracle_style("Buy 16 / 2 = 8 and 3/4 of them, 12 ÷ 4 = 3 at 50% off, 5 x 3 = 15.\n#### 8", "8")
    step = text.split("\n\n")[1]
    assert step == (
        "**Step 1:** Buy \\( 16 \\div 2 = 8 \\) and \\( \\frac{3}{4} \\) of them, \\( 12 \\div 4 = 3 \\) "
        "at 50\\% off, \\( 5 \\times 3 = 15 \\)."
    )
    assert text.count("\\boxed{8}") == 1 and "####" not in text


def test_every_number_of_the_solution_survives_in_order() -> None:
    steps = oracle_style(SOLUTION, "18").split("\n\n")[1:-1]
    body = "".join(re.sub(r"^\*\*Step \d+:\*\*", "", step) for step in steps)
    assert re.findall(r"\d+", body) == re.findall(r"\d+", SOLUTION.rsplit("\n", 1)[0])
