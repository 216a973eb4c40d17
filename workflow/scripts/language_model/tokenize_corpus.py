"""One source's documents -> its token splits: rows of ``sequence_length`` tokens as ``uint16`` ``.npy`` arrays,
one per split, drawn by document (``_corpus.assign_splits``), and a JSON of each split's documents, sizes and
the SHA-256 of its array.

A source of the study (the old domain, a new domain) has splits train, validation and heldout; the unseen old
corpus has one, ``unseen``: all of its documents, which nothing trains on (docs/language_model.md).
"""

from pathlib import Path

from language_model._corpus import (
    assign_splits,
    load_tokenizer,
    read_documents,
    save_split,
    sha256_file,
    token_rows,
    write_json,
)


def main(source: str, text: Path, tokenizer_path: Path, outputs: dict[str, Path], meta_out: Path, cfg: dict) -> dict:
    """Split, tokenize and save every split of ``outputs`` (``train`` takes what the others leave)."""
    documents = read_documents(text, cfg["max_documents"])
    held = {name: cfg["splits"][name] for name in outputs if name != "train" and name in cfg["splits"]}
    rest = "train" if "train" in outputs else next(name for name in outputs if name not in held)
    splits = assign_splits([doc_id for doc_id, _ in documents], held, cfg["seed"], source, rest=rest)
    tokenizer, by_id = load_tokenizer(tokenizer_path), dict(documents)
    meta = {
        "source": source,
        "text_sha256": sha256_file(text),
        "tokenizer_sha256": sha256_file(tokenizer_path),
        "sequence_length": cfg["sequence_length"],
        "dtype": "uint16",
        "splits": {},
    }
    for name, path in outputs.items():
        ids = splits[name]
        rows, tokens, dropped = token_rows(tokenizer, [by_id[i] for i in ids], cfg["sequence_length"])
        meta["splits"][name] = {
            "file": path.name,
            "sha256": save_split(path, rows),
            "shape": list(rows.shape),
            "documents": len(ids),
            "characters": sum(len(by_id[i]) for i in ids),
            "tokens": tokens,
            "dropped_tokens": dropped,
            "ids": ids,
        }
    write_json(meta_out, meta)
    return meta


if __name__ == "__main__":
    sm = snakemake
    outputs = {name: Path(path) for name, path in sm.output.items() if name != "meta"}
    with open(sm.log[0], "w") as log:
        meta = main(
            sm.wildcards.source,
            Path(sm.input.text),
            Path(sm.input.tokenizer),
            outputs,
            Path(sm.output.meta),
            dict(sm.params.cfg),
        )
        for name, split in meta["splits"].items():
            print(name, split["shape"], split["documents"], "documents", split["tokens"], "tokens", file=log)
