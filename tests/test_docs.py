"""The documentation's code runs as written: every ```python block of README.md and docs/*.md, in order, one
namespace per page, in float32 (as a reader runs it), on a tiny model and random data. The blocks assert what
they claim (a guarded step leaves the old outputs where they were, a resumed run ends where the uninterrupted one
ends, ...); the checks below add what a block cannot say about itself."""

from __future__ import annotations

import copy
import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))]
STALE = [  # names of the old layout
    "backend=",  # the memories choose their kernel themselves
    "kaplinskiy.recent",  # now kaplinskiy.optimizers
    "kaplinskiy.kp",  # now kaplinskiy.kaplinskii_propoi
]


def python_blocks(text: str) -> list[str]:
    """The ```python blocks of a Markdown text, dedented (a block may sit in a list item)."""
    return [textwrap.dedent(b) for b in re.findall(r"^[ \t]*```python\n(.*?)^[ \t]*```", text, flags=re.S | re.M)]


def readme_setup() -> dict[str, Any]:
    """What the README's quickstart takes as given: a model trained on task A, task A's batches, task B's loader."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 4))
    span_a = torch.randn(3, 16)
    batches_a = [torch.randn(32, 3) @ span_a for _ in range(4)]
    loader_b = [(torch.randn(32, 16), torch.randint(4, (32,))) for _ in range(10)]
    return {
        "torch": torch,
        "model": model,
        "loss_fn": nn.functional.cross_entropy,
        "batches_a": batches_a,
        "loader_b": loader_b,
        "unguarded": copy.deepcopy(model),
    }


def check_readme(ns: dict[str, Any]) -> None:
    """The guarded loop moved the old outputs far less than the same loop without the guard."""
    model, plain, loss_fn = ns["model"], ns["unguarded"], ns["loss_fn"]
    assert ns["opt"].certificate["step"] == len(ns["loader_b"])
    opt = torch.optim.AdamW(plain.parameters(), lr=1e-4, weight_decay=0.1)
    for x, y in ns["loader_b"]:
        opt.zero_grad()
        loss_fn(plain(x), y).backward()
        opt.step()
    x_old = torch.cat(ns["batches_a"])
    before = readme_setup()["model"]
    with torch.no_grad():
        guarded_drift = (model(x_old) - before(x_old)).abs().max()
        plain_drift = (plain(x_old) - before(x_old)).abs().max()
        x_new = ns["loader_b"][0][0]
        guarded_learned = (model(x_new) - before(x_new)).abs().max()
        plain_learned = (plain(x_new) - before(x_new)).abs().max()
    assert guarded_drift < 0.25 * plain_drift
    assert guarded_learned > 0.25 * plain_learned  # it still learns task B: the guard did not freeze the model


def check_usage(ns: dict[str, Any]) -> None:
    """The last guard stepped every batch of its loop, and the memories cover what the page says."""
    assert ns["opt"].certificate["step"] == len(ns["loader_b"])
    assert len(ns["memory"].layers) == 2
    assert ns["gpt2_opt"].certificate["step"] >= 1


SETUPS: dict[str, Callable[[], dict[str, Any]]] = {"README.md": readme_setup}
CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {"README.md": check_readme, "docs/usage.md": check_usage}


@pytest.mark.parametrize("page", PAGES)
def test_python_blocks_run_in_order(page: str, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = python_blocks((ROOT / page).read_text())
    if not blocks:
        pytest.skip(f"{page} has no python block")
    if page == "docs/usage.md":
        pytest.importorskip("transformers")
    monkeypatch.chdir(ROOT)
    torch.set_default_dtype(torch.float32)  # the conftest's fixture restores float64 afterwards
    ns = SETUPS.get(page, dict)()
    for i, block in enumerate(blocks):
        exec(compile(block, f"{page}, python block {i + 1}", "exec"), ns)
    CHECKS.get(page, lambda ns: None)(ns)


def test_every_page_with_code_is_checked() -> None:
    """A page whose blocks leave their claims to the namespace needs a check here (README's take a setup)."""
    assert python_blocks((ROOT / "README.md").read_text()), "the README's quickstart is a python block"
    assert {"README.md", "docs/usage.md"} <= set(PAGES)


@pytest.mark.parametrize("page", PAGES)
def test_no_stale_names(page: str) -> None:
    text = (ROOT / page).read_text()
    assert [s for s in STALE if s in text] == []


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_resolve(page: str) -> None:
    text = (ROOT / page).read_text()
    targets = [t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", text) if "://" not in t]
    missing = [t for t in targets if t and not ((ROOT / page).parent / t).exists()]
    assert missing == []


def test_readme_is_short() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150
