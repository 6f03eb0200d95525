"""Fault-injection soak: a loopback oracle that fails 30% of requests at random, for a 30-problem run.

The faults are the ones remote servers produce: 500, 429, a hang past the
client's timeout, malformed JSON and a 200 with no choices. The run must end
within its budget (at most `oracle_retries + 1` sends per request, each bounded
by the engine's timeout), count every failed send in `streams/failures.json`,
and keep the record of every request the server answered.

Bound: two batches of 16 requests, each at most 4 rounds of one 1.5 s timeout
plus backoffs of 0.5 + 1 + 2 s, so the oracle stream takes at most
2 × (4 × 1.5 + 3.5) = 19 s plus the server's own work (the test prints the
measured time; run it with `-s`).
"""

from __future__ import annotations

import time

from http_faults import FaultyOracle, raw_server
from streams_setup import make_config, make_ctx, scripted_student

from stylealign.stages.sample import sample_stage
from stylealign.stages.streams import streams_stage
from stylealign.streams.listing import stream_traces

PROBLEMS, RETRIES = 30, 3


def test_a_run_against_an_oracle_failing_30_percent_of_requests(tmp_path, tiny_model_dir, tiny_engine):
    faulty = FaultyOracle(rate=0.3, hang_s=3.0, seed=15)
    with raw_server(faulty) as (url, calls):
        oracle = {"engine": {"type": "openai", "base_url": url, "model": "lab-oracle", "timeout": 1.5,
                             "api_key_env": None, "concurrency": 16}}
        cfg = make_config(tiny_model_dir, limit=PROBLEMS, oracle=oracle, streams={"oracle_retries": RETRIES})
        ctx = make_ctx(tmp_path, cfg)
        faulty.warm_up(ctx.problems()[0].question)
        ctx.use_engine(cfg.student.engine, scripted_student(tiny_engine, ctx.problems(), 0))
        ctx.streams = ("oracle_synth",)
        sample_stage(ctx)
        start = time.perf_counter()
        summary = streams_stage(ctx)
        print(f"oracle_synth over the faulty server: {time.perf_counter() - start:.1f} s (bound: 19 s), "
              f"{len(calls)} sends, faults {dict(faulty.faults)}")

    assert len(calls) <= PROBLEMS * (RETRIES + 1)
    assert set(faulty.faults) == {"500", "429", "hang", "malformed_json", "empty_choices"}
    failures = ctx.store.read_json("streams/failures.json")["oracle_synth"]
    assert failures["failed_sends"] == sum(faulty.faults.values())  # every injected fault is counted
    assert f"oracle_errors={failures['failed_sends']}" in summary["oracle_synth"]
    kept = stream_traces(ctx.store, "oracle_synth")
    assert sorted(t.text for t in kept) == sorted(faulty.answered)  # every answered request's record is kept
    assert len(kept) + failures["failed_requests"] == PROBLEMS
    assert len(calls) == sum(faulty.faults.values()) + len(faulty.answered)
