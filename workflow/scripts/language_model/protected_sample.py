"""The protected sample: a fixed, seeded choice of the old domain's training rows -> ``protected.npy`` and its
JSON (the rows chosen, the SHA-256 of the array and of the training array it comes from).

These rows are the old domain the next slices protect: the forgetting guard's memory, replay's buffer and EWC's
Fisher all read them. They are training rows of the old domain, so they share no document with its validation
and held-out splits nor with the unseen old corpus, which nothing sees.
"""

import json
from pathlib import Path

import numpy as np

from language_model._corpus import load_split, save_split, write_json


def main(train: Path, train_meta: Path, out: Path, meta_out: Path, count: int, seed: int) -> dict:
    """``count`` distinct rows of ``train`` (its hash checked), chosen by ``seed``, in their order there."""
    rows = load_split(train, json.loads(train_meta.read_text()), "train")
    if count > len(rows):
        raise ValueError(f"protected sample: {count} rows asked, the old domain's training split has {len(rows)}")
    picked = np.sort(np.random.default_rng(seed).choice(len(rows), size=count, replace=False))
    sample = rows[picked]
    meta = {
        "from": train.name,
        "from_sha256": json.loads(train_meta.read_text())["splits"]["train"]["sha256"],
        "rows": picked.tolist(),
        "splits": {"protected": {"file": out.name, "sha256": save_split(out, sample), "shape": list(sample.shape)}},
    }
    write_json(meta_out, meta)
    return meta


if __name__ == "__main__":
    sm = snakemake
    with open(sm.log[0], "w") as log:
        meta = main(
            Path(sm.input.train),
            Path(sm.input.meta),
            Path(sm.output.sample),
            Path(sm.output.meta),
            sm.params.rows,
            sm.params.seed,
        )
        print(meta["splits"], file=log)
