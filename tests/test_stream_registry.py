"""A new stream with its own settings is one file and its name in `config.STREAMS`; each section of `streams:` is
validated by its stream's settings model, with errors naming the dotted key."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from streams_setup import make_config, make_ctx, scripted_student

import stylealign.streams
from stylealign import config
from stylealign.config import ConfigError, parse_config
from stylealign.oracles.engine import OracleEngine
from stylealign.pipeline import run_experiment
from stylealign.stages.sample import sample_stage
from stylealign.stages.score import score_stage
from stylealign.stages.streams import streams_stage
from stylealign.store import RunStore
from stylealign.streams.listing import stream_traces
from stylealign.streams.registry import build_order, check_stream_settings, stream_settings

TOY = '''"""toy: each gold reference with a note appended `times` times: a stream with settings of its own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field

from stylealign.config import StreamSettings
from stylealign.records import Trace, content_id
from stylealign.run.work import BatchResult, WorkItem
from stylealign.streams.context import StreamContext
from stylealign.streams.registry import Built, StreamSpec, stream_settings

NAME = "toy"


class Settings(StreamSettings):
    note: str = "Checked."
    times: int = Field(1, ge=1)


def plan(sc: StreamContext, built: Built) -> list[WorkItem]:
    key = sc.keyer(NAME, **stream_settings(sc.config, NAME).model_dump())
    problems = sc.problem_by_id
    return [WorkItem(key(problems[t.problem_id], parent=t), problems[t.problem_id], t) for t in built["gold"]]


def build(sc: StreamContext, items: list[WorkItem], built: Built) -> BatchResult:
    settings = stream_settings(sc.config, NAME)
    result = BatchResult(done=[item.key for item in items])
    for item in items:
        text = item.parent.text + f"\\n\\n{settings.note}" * settings.times
        result.keep(item, Trace(id=content_id(NAME, item.key), problem_id=item.problem.id, text=text, stream=NAME,
                                parent_id=item.parent.id, correct=True, metrics={"toy_notes": settings.times}))
    return result


def summarize(traces: Sequence[Trace]) -> dict[str, Any]:
    return {"toy_notes": sum(t.metrics["toy_notes"] for t in traces)}


def describe(row: Mapping[str, Any]) -> str:
    return f"toy: {row['toy_notes']} notes on {row['traces']} references"


SPEC = StreamSpec(NAME, plan, build, edits="gold", settings=Settings, summarize=summarize, describe=describe)
'''


@pytest.fixture
def toy_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The file `streams/toy.py` (written here, on the streams package's path) and its name in the one list."""
    folder = tmp_path / "streams-package"
    folder.mkdir()
    (folder / "toy.py").write_text(TOY, encoding="utf-8")
    monkeypatch.setattr(stylealign.streams, "__path__", [*stylealign.streams.__path__, str(folder)])
    monkeypatch.setattr(config, "STREAMS", (*config.STREAMS, "toy"))  # the one line a new stream adds
    yield
    sys.modules.pop("stylealign.streams.toy", None)
    if hasattr(stylealign.streams, "toy"):
        delattr(stylealign.streams, "toy")


def test_a_stream_with_its_own_settings_is_one_file_and_one_list_entry(tmp_path, tiny_model_dir, tiny_engine, toy_stream):
    streams = {"enabled": ["gold", "toy"], "toy": {"note": "Done.", "times": 2}}
    cfg = make_config(tiny_model_dir, streams=streams)
    assert stream_settings(cfg, "toy").times == 2 and build_order(cfg, ["toy"]) == ["gold", "toy"]
    assert check_stream_settings(cfg).streams.model_dump()["toy"] == {"note": "Done.", "times": 2}
    for section, match in (({"times": 0}, r"streams\.toy\.times: Input should be greater than or equal to 1"),
                           ({"tims": 2}, r"streams\.toy\.tims: Extra inputs are not permitted")):
        with pytest.raises(ConfigError, match=match):
            check_stream_settings(make_config(tiny_model_dir, streams={"toy": section}))

    ctx = make_ctx(tmp_path / "run", cfg, oracle=OracleEngine())
    ctx.use_engine(cfg.student.engine, scripted_student(tiny_engine, ctx.problems(), 2))
    ctx.streams = ("toy",)
    sample_stage(ctx)
    assert set(streams_stage(ctx)) == {"gold", "toy"}
    gold = {t.id: t for t in stream_traces(ctx.store, "gold")}
    toy = stream_traces(ctx.store, "toy")
    assert len(toy) == len(gold) == 3
    assert all(t.text == gold[t.parent_id].text + "\n\nDone.\n\nDone." for t in toy)
    score_stage(ctx)
    [row] = json.loads((tmp_path / "run" / "streams.json").read_text(encoding="utf-8"))
    assert row["stream"] == "toy" and row["toy_notes"] == 6 and row["edit_distance"] > 0
    assert "toy: 6 notes on 3 references" in ctx.console.file.getvalue()

    # a run takes the name, and records the stream's settings with every default filled in
    run_experiment(make_config(tiny_model_dir, streams={"toy": {"times": 3}}), tmp_path / "full", until="load",
                   streams=("toy",))
    assert RunStore(tmp_path / "full").manifest()["config"]["streams"]["toy"] == {"note": "Checked.", "times": 3}


def test_stream_sections_are_checked_by_their_streams_models_naming_the_dotted_key(tmp_path):
    base = {"student": {"engine": {"type": "hf", "model": "unused"}}}
    with pytest.raises(ConfigError, match=r"streams\.toy: Extra inputs are not permitted"):
        parse_config({**base, "streams": {"toy": {"times": 2}}})  # not in the list: no such stream
    with pytest.raises(ConfigError, match=r"streams\.sar: Input should be a valid dictionary"):
        parse_config({**base, "streams": {"sar": 3}})
    cfg = parse_config({**base, "streams": {"sar": {"exemplars": -1, "max_attempts": True}, "gold": {"x": 1},
                                            "rft": {"selection": "best"}}}, "exp.yaml")
    with pytest.raises(ConfigError) as caught:
        check_stream_settings(cfg, "exp.yaml")
    lines = str(caught.value).splitlines()
    assert lines[0] == "exp.yaml: invalid configuration"
    assert any(line.startswith("  streams.sar.exemplars: Input should be greater than or equal to 0") for line in lines)
    assert any(line.startswith("  streams.sar.max_attempts: Value error, expected a number, got a boolean") for line in lines)
    assert any(line.startswith("  streams.gold.x: Extra inputs are not permitted") for line in lines)  # gold has none
    assert any(line.startswith("  streams.rft.selection: Input should be ") for line in lines)
    with pytest.raises(ConfigError, match=r"streams\.sar\.cost_margin: "):
        stream_settings(parse_config({**base, "streams": {"sar": {"cost_margin": -1}}}), "sar")
    with pytest.raises(ValueError, match=r"unknown streams \['rtf'\]"):
        run_experiment(parse_config(base), tmp_path / "run", streams=("rtf",))
    assert not (tmp_path / "run").exists()
