"""The study's tokenizer: byte-level BPE (``tokenizers``) trained on the old domain's training split only ->
``tokenizer.json`` and a JSON with its SHA-256, the documents it saw and the package's version.

Trained twice; the two must be byte-identical (the same text gives the same tokenizer), else the rule stops.
"""

import importlib.metadata
from pathlib import Path

from language_model._corpus import assign_splits, deterministic_bpe, read_documents, sha256_file, write_json


def main(text: Path, out: Path, meta_out: Path, cfg: dict) -> dict:
    """Train on the documents of ``text`` that :func:`assign_splits` puts in the training split."""
    documents = read_documents(text, cfg["max_documents"])
    splits = assign_splits([doc_id for doc_id, _ in documents], cfg["splits"], cfg["seed"], cfg["old_domain"])
    train = set(splits["train"])
    texts = [body for doc_id, body in documents if doc_id in train]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(deterministic_bpe(texts, cfg["vocab_size"]), encoding="utf-8")
    meta = {
        "source": cfg["old_domain"],
        "text_sha256": sha256_file(text),
        "vocab_size": cfg["vocab_size"],
        "tokenizer_sha256": sha256_file(out),
        "tokenizers": importlib.metadata.version("tokenizers"),
        "trained_on": {"documents": len(texts), "characters": sum(map(len, texts)), "ids": splits["train"]},
        "deterministic": "trained twice, byte-identical",
    }
    write_json(meta_out, meta)
    return meta


if __name__ == "__main__":
    sm = snakemake
    with open(sm.log[0], "w") as log:
        meta = main(Path(sm.input.text), Path(sm.output.tokenizer), Path(sm.output.meta), dict(sm.params.cfg))
        print({k: v for k, v in meta.items() if k != "trained_on"}, file=log)
