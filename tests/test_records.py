"""Problem and Trace survive Parquet and JSONL unchanged; bad JSONL names its file and line."""

from __future__ import annotations

import pytest

from stylealign.records import (
    Problem,
    Trace,
    content_id,
    dumps_field,
    loads_field,
    read_jsonl,
    read_parquet,
    write_jsonl,
    write_parquet,
)

PROBLEMS = [
    Problem(
        id="p-1",
        question="Janet’s ducks lay 16 eggs — how many?\n\nÜnïcode ✓",
        answer=r"\frac{1}{2}",
        reference_solution="Step 1.\n\nStep 2: 3 + 4 = 7.\n",
        source="gsm8k",
        metadata={"level": 3, "graph": {"nodes": [1, 2, {"op": "+"}], "ok": True}, "none": None, "f": 0.25},
    ),
    Problem(id="p-2", question="q", answer="7"),
]

TRACES = [
    Trace(
        id="t-1",
        problem_id="p-1",
        text="  leading spaces\n\n\ttab\r\nwindows line\n",
        stream="sar",
        parent_id="t-0",
        model="lab:student",
        template="sar",
        sampling={"temperature": 0.7, "top_p": 0.95, "max_tokens": 512, "stop": ["\n\n\n"]},
        seed=12345678901,
        correct=True,
        metrics={"nll": 1.2345678901234567, "ppl_q1": 3.5, "tokens": [1, 2, 3]},
    ),
    Trace(id="t-2", problem_id="p-2", text="", stream="sample", correct=False, seed=0),
    Trace(id="t-3", problem_id="p-2", text="x", stream="sample"),
]


@pytest.mark.parametrize("kind", ["parquet", "jsonl"])
def test_round_trip_without_loss(tmp_path, kind):
    for cls, records in ((Problem, PROBLEMS), (Trace, TRACES)):
        path = tmp_path / f"{cls.__name__}.{kind}"
        if kind == "parquet":
            write_parquet(path, records, cls)
            back = read_parquet(path, cls)
        else:
            write_jsonl(path, records)
            back = read_jsonl(path, cls)
        assert back == records
        assert [type(r) for r in back] == [cls] * len(records)
    assert not list(tmp_path.glob(".*.tmp"))


def test_dict_fields_keep_values_orjson_cannot_write(tmp_path):
    """orjson writes NaN and infinities as null and refuses int keys and big integers: those values
    must come back as they went in (an infinite NLL must not turn into a missing one)."""
    inf, nan = float("inf"), float("nan")
    metrics = {"nll": inf, "token_nll": [0.5, inf], "nested": {"loss": {"x": -inf}}, "big": 2**70, "by_id": {3: 1.5}}
    text = dumps_field(metrics)
    assert "Infinity" in text and loads_field(text) == {**metrics, "by_id": {"3": 1.5}}
    back = loads_field(dumps_field({"v": [1.0, nan]}))["v"][1]
    assert back != back  # NaN stays NaN
    plain = {"b": [1, 2.25], "a": None, "s": "é ✓"}
    assert dumps_field(plain) == '{"a":null,"b":[1,2.25],"s":"é ✓"}' and loads_field(dumps_field(plain)) == plain
    trace = Trace(id="t-inf", problem_id="p", text="x", stream="s", metrics=metrics)
    write_parquet(tmp_path / "t.parquet", [trace], Trace)
    assert read_parquet(tmp_path / "t.parquet", Trace)[0].metrics["token_nll"] == [0.5, inf]


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    path = tmp_path / "traces.jsonl"
    write_jsonl(path, TRACES[:2])
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n" + '{"id": "t-9", "problem_id": "p"\n')
    with pytest.raises(ValueError, match=r"traces\.jsonl:4: not a valid Trace"):
        read_jsonl(path, Trace)


def test_unknown_field_is_an_error(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "question": "q", "answer": "1", "colour": "red"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"p\.jsonl:1:.*colour"):
        read_jsonl(path, Problem)


def test_content_id_is_order_independent_and_sensitive():
    assert content_id({"a": 1, "b": 2}) == content_id({"b": 2, "a": 1})
    assert content_id("x", 1) != content_id("x", 2)
    assert len(content_id("x")) == 16


def test_content_id_of_strings_is_the_id_earlier_runs_stored():
    """Ids key every finished record of a run store: the fast path for string and int parts must give exactly the
    ids json.dumps gave, or a rerun would redo (and duplicate) finished work."""
    import hashlib
    import json

    tricky = ["", "plain", 'quo"te \\ back', "tab\tnew\nline\r\x00\x1f", "Ünïcode ✓ 漢字 🎲", "\u2028\u2029", "</script>"]
    for parts in ([], tricky, tricky[:1], ["key", "0"], ["key", 0, -12, 10**30], [True, "x"], [1.5, None]):
        blob = json.dumps(tuple(parts), sort_keys=True, ensure_ascii=False, default=str)
        assert content_id(*parts) == hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]
    assert content_id("a", 1) == hashlib.sha256(b'["a", 1]').hexdigest()[:16]
