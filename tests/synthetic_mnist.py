"""Synthetic stand-ins for MNIST and the optimizer specs the permuted-MNIST tests train with."""

from __future__ import annotations

import numpy as np

SPECS = {
    "sgd": {"kind": "sgd", "options": {"momentum": 0.9}},
    "adamw": {"kind": "adamw"},
    "muon": {"kind": "muon", "options": {"aux_lr_ratio": 0.05}},
    "lion": {"kind": "lion"},
    "lion_muon": {"kind": "lion_muon", "options": {"aux_lr_ratio": 1.0}},
    "soft_signum": {"kind": "soft_signum", "options": {"sign_fraction": 0.5, "transition_fraction": 0.25}},
    "kaplinskiy": {"kind": "kaplinskiy"},
}
LRS = {
    "sgd": 0.05,
    "adamw": 3e-3,
    "muon": 0.05,
    "lion": 3e-4,
    "lion_muon": 3e-3,
    "soft_signum": 3e-4,
    "kaplinskiy": 0.1,
}


def synthetic_mnist(n_train: int = 400, n_test: int = 100, seed: int = 0) -> dict[str, np.ndarray]:
    """Random sparse uint8 'images' (a fifth of the pixels lit, as in MNIST) whose labels a linear map of the pixels
    decides (so they can be learned)."""
    rng = np.random.default_rng(seed)
    teacher = rng.standard_normal((784, 10))
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = (rng.integers(0, 256, size=(n, 784)) * (rng.random((n, 784)) < 0.2)).astype(np.uint8)
        arrays[f"{split}_x"], arrays[f"{split}_y"] = x, (x.astype(float) @ teacher).argmax(1).astype(np.int64)
    return arrays
