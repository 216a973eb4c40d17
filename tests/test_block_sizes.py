"""The grouped kernels' block sizes: validated, and taken by plans built after they are set."""

from __future__ import annotations

import pytest

import kaplinskiy._kernels.layerwise as layerwise_kernel
from kaplinskiy._kernels.layerwise import DEFAULT_BLOCKS, block_sizes, set_block_sizes


@pytest.fixture(autouse=True)
def _defaults_after():
    yield
    set_block_sizes(DEFAULT_BLOCKS)


def test_defaults_until_set_then_the_new_sizes() -> None:
    assert block_sizes() == DEFAULT_BLOCKS
    set_block_sizes([32, 128, 8, 2])
    assert block_sizes() == layerwise_kernel.BlockSizes(rows=32, cols=128, warps=8, stages=2)


@pytest.mark.parametrize(
    "bad",
    [
        (16, 64, 4),
        (24, 64, 4, 3),
        (8, 64, 4, 3),
        (16, 48, 4, 3),
        (16, 64, 3, 3),
        (16, 64, 64, 3),
        (16, 64, 4, 0),
        (16.0, 64, 4, 3),
        (True, 64, 4, 3),
    ],
)
def test_invalid_sizes_are_refused_and_nothing_changes(bad) -> None:
    with pytest.raises(ValueError, match="Invalid blocks"):
        set_block_sizes(bad)
    assert block_sizes() == DEFAULT_BLOCKS
