"""Rehearsal (eq. 7): the reservoir keeps a uniform sample; the replay term is gamma times the buffer loss."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from kaplinskiy import ReplayBuffer, replay_term


@given(st.integers(1, 20), st.integers(0, 60), st.integers(1, 7))
def test_reservoir_holds_min_of_capacity_and_seen_distinct_offered_items(capacity: int, n: int, batch: int) -> None:
    buf = ReplayBuffer(capacity, seed=n)
    items = torch.arange(n, dtype=torch.float64)
    for start in range(0, n, batch):
        buf.add(items[start : start + batch, None], items[start : start + batch].long())
    assert len(buf) == min(capacity, n) and buf.n_seen == n
    if n:
        kept = buf.targets.tolist()
        assert len(set(kept)) == len(kept) and set(kept) <= set(range(n))
        assert torch.equal(buf.inputs[:, 0].long(), buf.targets)


def test_reservoir_is_uniform() -> None:
    """Each of 20 items ends in a 5-slot buffer with probability 1/4: checked over 2000 seeds."""
    counts = torch.zeros(20)
    for seed in range(2000):
        buf = ReplayBuffer(5, seed=seed)
        buf.add(torch.zeros(20, 1), torch.arange(20))
        counts[buf.targets] += 1
    freq = counts / 2000
    assert (freq - 0.25).abs().max() < 0.04


def test_replay_term_and_sampling() -> None:
    buf = ReplayBuffer(4, seed=0)
    buf.add(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]))
    x, y = buf.sample(3)
    assert x.shape == (3, 3) and y.shape == (3,)
    out = torch.randn(3, 2)
    val = replay_term(torch.nn.functional.cross_entropy, out, y, 0.5)
    assert torch.allclose(val, 0.5 * torch.nn.functional.cross_entropy(out, y))
    other = ReplayBuffer(4)
    other.load_state_dict(buf.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(other.sample(2), buf.sample(2), strict=True))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="Invalid capacity"):
        ReplayBuffer(0)
    with pytest.raises(ValueError, match="Invalid sample"):
        ReplayBuffer(2).sample(1)
    with pytest.raises(ValueError, match="Invalid gamma"):
        replay_term(torch.nn.functional.mse_loss, torch.zeros(1), torch.zeros(1), -1.0)
    with pytest.raises(ValueError, match="Invalid batch"):
        ReplayBuffer(2).add(torch.zeros(2, 1), torch.zeros(3))


def test_an_empty_buffer_round_trips_and_a_snapshot_must_fit() -> None:
    """A checkpoint taken before any sample was offered (early in the first task) saves and restores, and the
    restored buffer then keeps the same samples as the original; a snapshot above the capacity is refused."""
    empty, other = ReplayBuffer(3, seed=1), ReplayBuffer(3, seed=2)
    other.add(torch.randn(2, 1), torch.arange(2))
    other.load_state_dict(empty.state_dict())
    assert len(other) == 0 and other.n_seen == 0
    for buf in (empty, other):
        buf.add(torch.arange(9, dtype=torch.float64)[:, None], torch.arange(9))
    assert torch.equal(empty.targets, other.targets)
    with pytest.raises(ValueError, match="Invalid state"):
        ReplayBuffer(2).load_state_dict(empty.state_dict())


def test_filling_is_linear_in_the_capacity() -> None:
    """The storage is allocated once and filled in place: growing it by ``torch.cat`` per sample made filling
    quadratic in the capacity (28 s for 5000 MNIST images). The kept pairs are the same as one at a time."""
    items = torch.arange(30, dtype=torch.float64)
    one_by_one, batched = ReplayBuffer(20, seed=5), ReplayBuffer(20, seed=5)
    for i in range(30):
        one_by_one.add(items[i : i + 1, None], items[i : i + 1].long())
    batched.add(items[:1, None], items[:1].long())
    storage = batched.inputs.data_ptr()
    batched.add(items[1:12, None], items[1:12].long())
    batched.add(items[12:, None], items[12:].long())
    assert batched.inputs.data_ptr() == storage
    assert torch.equal(batched.targets, one_by_one.targets) and torch.equal(batched.inputs, one_by_one.inputs)
