"""Shared test set-up: Hypothesis profiles, float64 by default, deterministic seeds.

Profiles: ``ci`` (the default: derandomised, 200 examples, no deadline) and ``fuzz``
(``HYPOTHESIS_PROFILE=fuzz pytest``: random, 5000 examples) for a long local hunt.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[1]
# Workflow scripts are plain files run by Snakemake, grouped in packages (common, two_task, ...); tests import
# their pure functions from here, and the GPU tools' from workflow/gpu_tools (appended, not prepended, so no
# name there can shadow a standard-library module).
sys.path += [str(ROOT / "workflow" / "scripts"), str(ROOT / "workflow" / "gpu_tools")]

settings.register_profile(
    "ci",
    max_examples=200,
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("fuzz", max_examples=5000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _float64_and_seed():
    """Every test runs in float64 from a fixed torch seed, and leaves the defaults as it found them."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(old)


@pytest.fixture
def repo_root() -> Path:
    """The repository root (where the Snakefile is)."""
    return ROOT
