"""Documents, splits, the tokenizer and token arrays of the language-model study (docs/language_model.md).

A prepared source is a JSON-lines file, one document a line (``{"id": ..., "text": ...}``, UTF-8). Splits are
drawn by document, so no document straddles two splits. Each split is its documents' tokens, each document
followed by the end-of-text token, cut into rows of ``sequence_length`` tokens (the last partial row dropped),
saved as a ``uint16`` ``.npy`` array whose SHA-256 the split's JSON records and :func:`load_split` checks.
"""

import hashlib
import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np

END_OF_TEXT = "<|endoftext|>"  # token 0: ends every document


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_documents(path: Path, documents: list[tuple[str, str]]) -> None:
    """Documents as JSON lines (ids unique), UTF-8."""
    ids = [doc_id for doc_id, _ in documents]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: document ids repeat")
    lines = [json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) for doc_id, text in documents]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_documents(path: Path, max_documents: int | None = None) -> list[tuple[str, str]]:
    """The documents of a prepared source, in order (the first ``max_documents`` only, if given)."""
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for k, line in enumerate(f) if max_documents is None or k < max_documents]
    return [(row["id"], row["text"]) for row in rows]


def assign_splits(
    ids: list[str], held: dict[str, float], seed: int, source: str, rest: str = "train"
) -> dict[str, list[str]]:
    """Each split's document ids: a permutation (seeded by ``seed`` and the source's name) gives each split of
    ``held`` its fraction of the documents (at least one where the fraction is positive), in order, and ``rest``
    the others; each split keeps the documents' original order."""
    order = np.random.default_rng([seed, zlib.crc32(source.encode())]).permutation(len(ids))
    splits, start = {}, 0
    for name, fraction in held.items():
        count = max(1, round(fraction * len(ids))) if fraction > 0 else 0
        splits[name] = sorted(order[start : start + count].tolist())
        start += count
    if start >= len(ids) and rest:
        raise ValueError(f"{source}: {len(ids)} documents leave none for {rest} after {sorted(held)}")
    splits[rest] = sorted(order[start:].tolist())
    return {name: [ids[k] for k in picked] for name, picked in splits.items()}


def train_bpe(texts: list[str], vocab_size: int) -> str:
    """A byte-level BPE tokenizer trained on ``texts`` (``tokenizers``), as its JSON: no normaliser, so decoding
    gives the text back byte for byte; token 0 is :data:`END_OF_TEXT`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer.to_str()


def deterministic_bpe(texts: list[str], vocab_size: int) -> str:
    """:func:`train_bpe` twice; refused unless both give the same bytes."""
    first, second = train_bpe(texts, vocab_size), train_bpe(texts, vocab_size)
    if first != second:
        raise RuntimeError("training the BPE tokenizer twice on the same text gave two different tokenizers")
    return first


def load_tokenizer(path: Path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path))


def token_rows(tokenizer, texts: list[str], length: int) -> tuple[np.ndarray, int, int]:
    """``texts`` tokenized, each followed by the end-of-text token, concatenated and cut into rows of ``length``
    tokens (``uint16``); with the number of tokens and of the tokens dropped at the end."""
    eot = tokenizer.token_to_id(END_OF_TEXT)
    if tokenizer.get_vocab_size() > 2**16:
        raise ValueError(f"a vocabulary of {tokenizer.get_vocab_size()} does not fit uint16")
    ids = [token for enc in tokenizer.encode_batch(texts) for token in [*enc.ids, eot]]
    rows = len(ids) // length
    array = np.asarray(ids[: rows * length], dtype=np.uint16).reshape(rows, length)
    return array, len(ids), len(ids) - rows * length


def save_split(path: Path, array: np.ndarray) -> str:
    """Save ``array`` as ``.npy`` and return the file's SHA-256."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array, allow_pickle=False)
    return sha256_file(path)


def load_split(path: Path, meta: dict[str, Any], split: str) -> np.ndarray:
    """A split's token array, after checking its SHA-256 against the one ``meta`` (its JSON) records."""
    digest, expected = sha256_file(path), meta["splits"][split]["sha256"]
    if digest != expected:
        raise ValueError(f"{path}: SHA-256 {digest} is not the {expected} recorded for split {split}")
    return np.load(path, allow_pickle=False)


def write_json(path: Path, data: dict[str, Any]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
