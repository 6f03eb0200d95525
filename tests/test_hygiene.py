"""Training data is complete: a sample cut by `max_tokens`, or one that never states its answer, trains nothing.

The texts are shaped like Qwen2.5-Coder-0.5B-Instruct's GSM8K answers (markdown steps, `\\[ ... \\]`
display math), including the kind that ended mid-equation on the right number and was graded correct
by the last-number fallback.
"""

from __future__ import annotations

from streams_setup import ScriptedStudent, correct_text, make_config, make_ctx

from stylealign.engines.base import Completion
from stylealign.grading.verdicts import CUT_BY_LENGTH, IMPLICIT_ANSWER, Verdict, grade_completions
from stylealign.stages.sample import current_samples, sample_stage
from stylealign.stages.streams import streams_stage
from stylealign.streams.listing import stream_traces

STEPS = (
    "To determine how much Janet makes every day at the farmers' market, we need to follow these steps:\n\n"
    "**Step 1: Calculate the number of eggs Janet uses in a day.**\n\n"
    "Janet eats 3 eggs for breakfast and bakes muffins with 4. Therefore:\n\\[ 3 + 4 = 7 \\]\n\n"
    "**Step 2: Determine how many eggs Janet sells.**\n\n\\[ 16 - 7 = 9 \\]\n\n"
    "**Step 3: Calculate the total revenue.**\n\nShe sells each egg for $2:\n"
)
CUT_MID_EQUATION = STEPS + "\\[ 9 \\times 2 = 18"
IMPLICIT = STEPS + "\\[ 9 \\times 2 = 18 \\]"
BOXED = STEPS + "\\[ 9 \\times 2 = 18 \\]\n\nJanet makes \\(\\boxed{18}\\) dollars every day."
BOXED_THEN_CUT = BOXED + "\n\nTo double-check, let us recompute the eggs: \\[ 16 - 3"
WRONG = STEPS + "\\[ 9 \\times 2 = 16 \\]\n\nThe answer is \\(\\boxed{16}\\)."


def test_training_counts_only_finished_samples_that_state_their_answer() -> None:
    texts = [CUT_MID_EQUATION, IMPLICIT, BOXED, BOXED_THEN_CUT, WRONG]
    finish = ["length", "stop", "stop", "length", "stop"]
    training = grade_completions(texts, finish, ["18"] * 5, training=True)
    assert training == [
        Verdict(False, CUT_BY_LENGTH), Verdict(False, IMPLICIT_ANSWER), Verdict(True), Verdict(False, CUT_BY_LENGTH),
        Verdict(False),
    ]


def test_evaluation_takes_the_last_number_only_from_a_finished_sample_and_says_so() -> None:
    texts = [CUT_MID_EQUATION, IMPLICIT, BOXED, BOXED_THEN_CUT, WRONG]
    finish = ["length", "stop", "stop", "length", "stop"]
    lenient = grade_completions(texts, finish, ["18"] * 5, training=False, last_number=True)
    assert [v.correct for v in lenient] == [False, True, True, True, False]
    assert lenient[0].excluded == CUT_BY_LENGTH  # the cut fell on the right number: not an answer
    strict = grade_completions(texts, finish, ["18"] * 5, training=False, last_number=False)
    assert [v.correct for v in strict] == [False, False, True, True, False]


def test_cut_and_implicit_samples_never_reach_rft_and_are_counted(tmp_path, tiny_model_dir, tiny_engine) -> None:
    cfg = make_config(tiny_model_dir, limit=2, sampling={"k": 2, "max_tokens": 16})
    ctx = make_ctx(tmp_path, cfg)
    first, second = ctx.problems()
    right = correct_text(first)
    # the same right text twice over for the first problem: once cut by max_tokens, once without its final sentence
    cut = Completion(right, finish_reason="length")
    implicit = Completion(right.rsplit("\n", 1)[0] + f"\nSo {first.answer}", finish_reason="stop")
    ctx.use_engine(cfg.student.engine, ScriptedStudent(
        tiny_engine, ctx.problems(), {first.question: [cut, implicit], second.question: [correct_text(second)] * 2}
    ))
    ctx.streams = ("rft", "sar")
    sample_stage(ctx)
    samples = {(s.problem_id, s.metrics["sample_index"]): s for s in current_samples(ctx)}
    assert not samples[first.id, 0].correct and samples[first.id, 0].metrics["excluded"] == CUT_BY_LENGTH
    assert not samples[first.id, 1].correct and samples[first.id, 1].metrics["excluded"] == IMPLICIT_ANSWER
    assert samples[second.id, 0].correct and "excluded" not in samples[second.id, 0].metrics
    streams_stage(ctx)
    assert {t.problem_id for t in stream_traces(ctx.store, "rft")} == {second.id}
    assert {t.parent_id for t in stream_traces(ctx.store, "sar")} <= {t.id for t in stream_traces(ctx.store, "rft")}
    assert ctx.store.read_json("streams/exclusions.json")["rft"] == {CUT_BY_LENGTH: 1, IMPLICIT_ANSWER: 1}


def test_an_oracle_answer_cut_by_max_tokens_is_set_aside(tmp_path, tiny_model_dir, tiny_engine) -> None:
    cfg = make_config(tiny_model_dir, limit=2)
    ctx = make_ctx(tmp_path, cfg)
    first, second = ctx.problems()

    class CutOracle:
        """Answers the first problem completely and the second with a boxed answer, then runs out of tokens."""

        name = "cut-oracle"

        def generate(self, requests, n, sampling):
            out = []
            for r in requests:
                problem = first if first.question in r.messages[-1]["content"] else second
                finish = "stop" if problem is first else "length"
                out.append([Completion(f"{correct_text(problem)} \\boxed{{{problem.answer}}}", finish_reason=finish)] * n)
            return out

        def close(self):
            pass

    ctx.use_engine(cfg.oracle.engine, CutOracle())
    ctx.use_engine(cfg.student.engine, ScriptedStudent(
        tiny_engine, ctx.problems(), {p.question: [correct_text(p)] for p in ctx.problems()}
    ))
    ctx.streams = ("oracle_synth",)
    sample_stage(ctx)
    streams_stage(ctx)
    assert [t.problem_id for t in stream_traces(ctx.store, "oracle_synth")] == [first.id]
    assert ctx.store.read_json("streams/exclusions.json")["oracle_synth"] == {CUT_BY_LENGTH: 1}
