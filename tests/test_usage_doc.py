"""The code blocks of the README's usage section run as written, on a tiny model and random data."""

from __future__ import annotations

import re
import textwrap

import torch
from torch import nn

from kaplinskiy import ElasticAnchor


def _blocks(text: str) -> list[str]:
    return [textwrap.dedent(b) for b in re.findall(r"```python\n(.*?)```", text, flags=re.S)]


def test_usage_blocks_run(repo_root) -> None:
    blocks = _blocks((repo_root / "README.md").read_text())
    assert len(blocks) == 3
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    x, y = torch.randn(6, 4), torch.randint(3, (6,))
    env = {
        "torch": torch,
        "model": model,
        "loss_fn": nn.functional.cross_entropy,
        "loader_b": [(torch.randn(5, 4), torch.randint(3, (5,))) for _ in range(3)],
        "batches_a": [torch.randn(7, 4)],
        "x": x,
        "y": y,
        "anchor": ElasticAnchor(model.parameters(), lam=0.1, fisher="identity"),
    }
    exec(blocks[0], env)
    exec(blocks[1], env)
    assert env["opt"].certificate["step"] == 3
    env["opt"] = __import__("kaplinskiy").HybridAdamW(model.parameters(), lr=1e-3, armijo=True)
    exec(blocks[2], env)
    assert env["opt"].certificate["forward_passes"] >= 1
