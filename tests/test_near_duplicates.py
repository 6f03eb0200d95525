"""Near-duplicate control: several traces per problem (rft all, sar_repair keep > 1) without near-copies."""

from __future__ import annotations

from collections.abc import Sequence

from streams_setup import (
    ScriptedStudent,
    correct_text,
    make_config,
    make_ctx,
    wrong_text,
)

from stylealign.engines.base import Completion, Request, SamplingParams
from stylealign.metrics.drift import normalized_edit_distance
from stylealign.oracles.engine import OracleEngine
from stylealign.records import Trace
from stylealign.stages.sample import sample_stage
from stylealign.stages.streams import streams_stage
from stylealign.streams.listing import stream_traces
from stylealign.streams.near_duplicates import drop_near_duplicates, summarize
from stylealign.streams.registry import stream_spec


def trace(i: int, problem: str, text: str) -> Trace:
    return Trace(id=f"t{i}", problem_id=problem, text=text, stream="rft")


def test_a_trace_close_to_a_kept_one_of_its_problem_is_dropped_and_counted() -> None:
    text = "Ann has 3 apples. Bob has 2 more apples than Ann, so Bob has 5 apples. The answer is 5."
    near = text.replace("so Bob", "thus Bob")
    other = "Bob has 3 + 2 = 5 apples.\nThe answer is 5."
    traces = [trace(0, "p", text), trace(1, "p", near), trace(2, "p", other), trace(3, "q", near)]
    assert normalized_edit_distance(text, near) < 0.1 < normalized_edit_distance(text, other)
    kept = drop_near_duplicates(traces, 0.1)
    assert [t.id for t in kept] == ["t0", "t2", "t3"]  # t3 is another problem's
    assert [t.metrics["near_duplicates"] for t in kept] == [1, 0, 0]
    assert summarize(kept) == {"near_duplicates_dropped": 1}
    fresh = [trace(i, "p", t) for i, t in enumerate((text, near, text))]
    assert len(drop_near_duplicates(fresh, None)) == 3 and summarize(fresh) == {}


def test_rft_all_keeps_every_correct_sample_less_near_duplicates(tmp_path, tiny_model_dir, tiny_engine):
    kept = {}
    for threshold in (None, 0.1):
        streams = {"rft": {"selection": "all"}, **({"near_duplicate": threshold} if threshold else {})}
        cfg = make_config(tiny_model_dir, limit=1, streams=streams, sampling={"k": 3, "max_tokens": 16})
        ctx = make_ctx(tmp_path / str(threshold), cfg)
        p = ctx.problems()[0]
        text = correct_text(p)
        texts = [text, text.replace(" has ", " now has ", 1), "Let us work it out one fact at a time.\n\n" * 3 + text]
        ctx.use_engine(cfg.student.engine, ScriptedStudent(tiny_engine, [p], {p.question: texts}))
        ctx.streams = ("rft",)
        sample_stage(ctx)
        streams_stage(ctx)
        kept[threshold] = stream_traces(ctx.store, "rft")
    assert len(kept[None]) == 3 and stream_spec("rft").summarize(kept[None]) == {}
    assert [t.text for t in kept[0.1]] == [kept[None][0].text, kept[None][2].text]
    assert stream_spec("rft").summarize(kept[0.1]) == {"near_duplicates_dropped": 1}


class VariedContinuations(ScriptedStudent):
    """Continues a repaired answer three ways: two nearly alike, one different."""

    def generate(self, requests: Sequence[Request], n: int, sampling: SamplingParams) -> list[list[Completion]]:
        if not any(r.prefix for r in requests):
            return super().generate(requests, n, sampling)
        out = []
        for r in requests:
            answer = self.answers[r.messages[-1]["content"]]
            tails = [f"So the total is {answer}. The answer is {answer}.", f"So the total is {answer}! The answer is {answer}.",
                     f"Adding everything up once more gives {answer} in all.\nThe answer is {answer}."]
            out.append([Completion(tails[j % 3]) for j in range(n)])
        return out


def test_sar_repair_keeps_several_distinct_continuations(tmp_path, tiny_model_dir, tiny_engine):
    found = {}
    for keep, threshold in ((1, None), (3, None), (3, 0.05)):
        streams = {"enabled": ["sar_repair"], "sar_repair": {"locator": "lab", "continuations": 3, "keep": keep},
                   **({"near_duplicate": threshold} if threshold else {})}
        cfg = make_config(tiny_model_dir, limit=1, streams=streams)
        ctx = make_ctx(tmp_path / f"{keep}-{threshold}", cfg, oracle=OracleEngine())
        p = ctx.problems()[0]
        ctx.use_engine(cfg.student.engine, VariedContinuations(tiny_engine, [p], {p.question: [wrong_text(p)]}))
        ctx.streams = ("sar_repair",)
        sample_stage(ctx)
        streams_stage(ctx)
        found[(keep, threshold)] = stream_traces(ctx.store, "sar_repair")
    one, three, distinct = found[(1, None)], found[(3, None)], found[(3, 0.05)]
    assert len(one) == 1 and len(three) == 3 and len(distinct) == 2
    assert one[0].text == three[0].text  # the lowest-NLL continuation comes first either way
    assert [t.metrics["nll"] for t in three] == sorted(t.metrics["nll"] for t in three)
    assert stream_spec("sar_repair").summarize(distinct) == {"near_duplicates_dropped": 1}
