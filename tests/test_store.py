"""The run store: shards, content keys, manifest, and a real SIGKILL halfway through a stage."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from stylealign.records import Problem, Trace
from stylealign.run.work import WorkKeys, work_key
from stylealign.store import RunStore


def _trace(i: int) -> Trace:
    return Trace(id=f"t{i}", problem_id=f"p{i}", text=f"solution {i}", stream="sample", metrics={"i": i})


def test_commit_done_keys_and_records(tmp_path):
    stage = RunStore(tmp_path).stage("samples")
    assert stage.done_keys() == set() and stage.records(Trace) == []
    stage.commit([_trace(0), _trace(1)], ["k0", "k1"])
    stage.commit([], ["k2"])  # finished work that produced no record is remembered too
    stage.commit([_trace(1), _trace(3)], ["k3"])
    assert stage.done_keys() == {"k0", "k1", "k2", "k3"}
    assert [t.id for t in stage.records(Trace)] == ["t0", "t1", "t3"]
    assert stage.records(Trace)[2] == _trace(3)
    reopened = RunStore(tmp_path).stage("samples")
    assert reopened.done_keys() == {"k0", "k1", "k2", "k3"}
    with pytest.raises(TypeError, match="holds Trace records"):
        reopened.records(Problem)
    with pytest.raises(TypeError, match="one record type"):
        reopened.commit([_trace(5), Problem(id="p", question="q", answer="1")], ["k5"])
    reopened.clear()
    assert reopened.done_keys() == set()


def test_work_key_depends_on_every_part():
    base = {
        "model": "m",
        "prompt": "student",
        "sampling": {"temperature": 1.0, "top_p": 1.0},
        "seed": 0,
        "problem": "p1",
    }
    key = work_key("sample", **base)
    assert key == work_key("sample", **dict(reversed(list(base.items()))))
    assert key != work_key("score", **base)
    for part, other in (
        ("model", "m2"),
        ("prompt", "sar"),
        ("sampling", {"temperature": 0.7, "top_p": 1.0}),
        ("seed", 1),
    ):
        assert key != work_key("sample", **{**base, part: other})


def test_read_json_with_a_missing_value_only_for_a_missing_file(tmp_path):
    store = RunStore(tmp_path)
    assert store.read_json("streams/none.json", missing={}) == {} and store.read_json("x.json", missing=None) is None
    with pytest.raises(FileNotFoundError):
        store.read_json("x.json")
    store.write_json("streams/counts.json", {"rft": {"new": 2}})
    assert store.read_json("streams/counts.json", missing={}) == {"rft": {"new": 2}}


def test_work_keys_are_the_keys_runs_stored():
    """Finished work is found by its key: a change of the encoding would redo every run's work."""
    assert work_key("sample", item=1) == "c9ff39aec8487ea2"
    assert work_key("sample") == "cb163aae585d0af3"
    assert WorkKeys("stream_x", seed=0)(problem="p1", parent=None) == "0f05ed978af7bc0c"


def test_work_keys_give_work_keys_keys():
    """Streams key every item, and the score stage every trace, with `WorkKeys`: it must find the work that
    `work_key` keyed, whichever varying names, values and argument order."""
    fixed = {"student": {"type": "hf", "model": "m", "batch": 16}, "seed": 0, "oracle": None,
             "sampling": {"temperature": 0.7, "top_p": 1.0, "seed": None}, "templates": ["a1", "b2"], "clean": True}
    keys = WorkKeys("stream_x", **fixed)
    for varying in ({}, {"problem": "p1", "parent": None}, {"problem": "ünï ✓\u2028", "parent": 'quo"te'},
                    {"parent": "\x00stylealign", "problem": ""}, {"a": "first", "zz": "last"},
                    {"samples": ["s1", "s2"], "n": 3, "flag": False, "weight": 0.25, "big": 10**30},
                    {"components": {"rft": 4, "oracle_synth": 1}, "other": {2: "int key"}}):
        for _ in range(2):  # the second call takes the layout built by the first
            assert keys(**varying) == work_key("stream_x", **fixed, **varying)
    assert keys(problem="p1") != keys(problem="p2")
    assert WorkKeys("s", b="x")(a="v") == work_key("s", b="x", a="v")  # the varying part sorts first here
    with pytest.raises(TypeError, match="seed"):
        keys(seed=1)


def test_manifest_records_config_history_and_stages(tmp_path):
    store = RunStore(tmp_path, config={"seed": 0})
    first = store.manifest()["config_hash"]
    RunStore(tmp_path, config={"seed": 0})
    assert len(store.manifest()["config_history"]) == 1
    store = RunStore(tmp_path, config={"seed": 1})
    manifest = store.manifest()
    assert manifest["config_hash"] != first and len(manifest["config_history"]) == 2
    assert not store.is_done("load")
    store.mark_done("load", {"problems": 3})
    assert store.is_done("load") and store.manifest()["stages"]["load"]["summary"] == {"problems": 3}
    store.write_json("streams.json", [{"stream": "rft"}])
    assert store.read_json("streams.json") == [{"stream": "rft"}]


ITEMS = 3000
BATCH = 10
# A stage as real stages are written: skip done keys, commit each batch of records with its keys.
# Each record is large so a SIGKILL is likely to land while a shard is being written.
CHILD = """
import sys
from stylealign.records import Trace
from stylealign.run.work import work_key
from stylealign.store import RunStore

root, items, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
stage = RunStore(root, {"writer": "child"}).stage("samples")  # the writer, as a run is: it cleans up stray temp files
done = stage.done_keys()
todo = [i for i in range(items) if work_key("sample", item=i) not in done]
for start in range(0, len(todo), batch):
    chunk = todo[start : start + batch]
    records = [
        Trace(id=f"t{i}", problem_id=f"p{i}", text=f"trace {i} " + "x" * 20000, stream="sample", metrics={"i": i})
        for i in chunk
    ]
    stage.commit(records, [work_key("sample", item=i) for i in chunk])
    print(len(chunk), flush=True)
print("processed", len(todo), flush=True)
"""


def _child(root, *, stdout=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), str(ITEMS), str(BATCH)], stdout=stdout, text=True
    )


def test_sigkill_halfway_then_rerun_loses_and_duplicates_nothing(tmp_path):
    root = tmp_path / "run"
    child = _child(root, stdout=subprocess.PIPE)
    committed = 0
    while committed < ITEMS // 2:
        line = child.stdout.readline()
        assert line, "child exited before being killed"
        committed += int(line)
    time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    stage = RunStore(root).stage("samples")
    done_at_kill = len(stage.done_keys())
    assert ITEMS // 2 <= done_at_kill < ITEMS
    assert len(stage.records(Trace)) == done_at_kill  # a shard cut off mid-write is invisible, not corrupt

    rerun = _child(root, stdout=subprocess.PIPE)
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0
    assert out.strip().splitlines()[-1] == f"processed {ITEMS - done_at_kill}"

    stage = RunStore(root).stage("samples")
    assert stage.done_keys() == {work_key("sample", item=i) for i in range(ITEMS)}
    shard_ids = [
        row
        for shard in sorted(stage.dir.glob("shard-*.parquet"))
        for row in pq.read_table(shard)["id"].to_pylist()
    ]
    assert len(shard_ids) == ITEMS and len(set(shard_ids)) == ITEMS  # nothing written twice
    records = stage.records(Trace)
    assert sorted(r.id for r in records) == sorted(f"t{i}" for i in range(ITEMS))
    for record in records:
        i = record.metrics["i"]
        assert record.id == f"t{i}" and record.text == f"trace {i} " + "x" * 20000  # nothing half-written
    assert not list(stage.dir.glob(".*"))


def test_iter_records_streams_what_records_lists(tmp_path):
    stage = RunStore(tmp_path).stage("samples")
    stage.commit([_trace(0), _trace(1)], ["k0"])
    stage.commit([], ["k1"])
    stage.commit([_trace(1), _trace(2), _trace(3)], ["k2"])
    stream = stage.iter_records(Trace)
    assert next(stream) == _trace(0)  # a generator: records come before the later shards are read
    assert [_trace(0), *stream] == stage.records(Trace) == [_trace(i) for i in range(4)]
    with pytest.raises(TypeError, match="holds Trace records"):
        list(stage.iter_records(Problem))


def test_iter_records_by_ids_keeps_commit_order_and_first_copies(tmp_path):
    stage = RunStore(tmp_path).stage("samples")
    first_t1 = Trace(id="t1", problem_id="p1", text="first copy", stream="sample")
    stage.commit([_trace(0), first_t1], ["k0"])
    stage.commit([_trace(1), _trace(2), _trace(3)], ["k1"])
    assert list(stage.iter_records(Trace, ids={"t3", "t1", "t9"})) == [first_t1, _trace(3)]
    assert list(stage.iter_records(Trace, ids=[])) == []
    assert list(stage.iter_columns(Trace, ["text", "correct"], ids={"t3", "t1", "t9"})) == [
        ("t1", "first copy", None), ("t3", _trace(3).text, _trace(3).correct)]
    assert [row[0] for row in stage.iter_columns(Trace, [])] == ["t0", "t1", "t2", "t3"]
    with pytest.raises(TypeError, match="holds Trace records"):
        list(stage.iter_columns(Problem, ["question"]))


def _items(n: int):
    from stylealign.run.work import WorkItem

    return [WorkItem(work_key("t", i=i), Problem(id=f"p{i}", question=f"q{i}", answer="1")) for i in range(n)]


def _run(store, items, *, fail_at: int | None = None, batch_size: int = 2):
    import io

    from rich.console import Console

    from stylealign.run.work import BatchResult, run_batches

    def build(batch):
        if fail_at is not None and any(item.problem.id == f"p{fail_at}" for item in batch):
            raise RuntimeError("engine died")
        result = BatchResult(done=[item.key for item in batch])
        for item in batch:
            result.keep(item, _trace(int(item.problem.id[1:])))
        return result

    return run_batches(store, "samples", items, build, Console(file=io.StringIO()), batch_size=batch_size)


def test_run_batches_gathers_batches_into_shards_of_the_configured_size(tmp_path, monkeypatch):
    from stylealign.run import work as batches

    monkeypatch.setattr(batches, "SHARD_RECORDS", 5)
    store = RunStore(tmp_path)
    assert _run(store, _items(13)) == {"new": 13}
    sizes = [pq.read_metadata(s).num_rows for s in sorted(store.stage("samples").dir.glob("shard-*.parquet"))]
    assert sizes == [6, 6, 1]  # batches of 2 until at least 5 records, then the rest
    assert [t.id for t in store.stage("samples").records(Trace)] == [f"t{i}" for i in range(13)]


def test_run_batches_commits_finished_batches_before_an_error_propagates(tmp_path, monkeypatch):
    from stylealign.run import work as batches

    monkeypatch.setattr(batches, "SHARD_RECORDS", 100)
    store = RunStore(tmp_path)
    with pytest.raises(RuntimeError, match="engine died"):
        _run(store, _items(10), fail_at=7)
    stage = store.stage("samples")
    assert len(stage.done_keys()) == 6 and len(list(stage.dir.glob("shard-*.parquet"))) == 1
    assert _run(store, _items(10)) == {"new": 4, "skipped": 6}  # the rerun does only the rest
