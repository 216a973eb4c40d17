"""Shared set-up of the grouped-kernel tests: CUDA where present, else Triton's CPU interpreter.

Importing this module from a test module skips that module where Triton is not installed (CI installs the
CPU torch wheel alone). ``TRITON_INTERPRET`` is read when Triton is imported, so it is set before the import.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton")

from kaplinskiy._kernels.launch import grouped_kernel_available

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
requires_kernels = pytest.mark.skipif(
    not grouped_kernel_available(DEVICE, interpreted=True), reason="needs CUDA, or TRITON_INTERPRET=1 before Triton"
)
