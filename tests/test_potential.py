"""The potential Phi = sum_i a_i L_i + R (eq. 10) and L2-SP anchoring (eq. 6 with F = I)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from kaplinskiy import l2sp_penalty, potential


@given(st.integers(1, 30), st.floats(0.0, 1e3), st.integers(0, 2**31 - 1))
def test_l2sp_value_and_gradient(n: int, lam: float, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n, generator=gen, dtype=torch.float64).requires_grad_(True)
    anchor = torch.randn(n, generator=gen, dtype=torch.float64)
    r = l2sp_penalty(w, anchor, lam)
    (grad,) = torch.autograd.grad(r, w)
    assert torch.allclose(r, 0.5 * lam * ((w - anchor) ** 2).sum())
    assert torch.allclose(grad, lam * (w - anchor).detach())  # grad of eq. (6): lam F (w - w_A)


def test_l2sp_over_parameter_lists_equals_the_flat_version() -> None:
    ps = [torch.randn(3, 2), torch.randn(4)]
    anchors = [torch.randn(3, 2), torch.randn(4)]
    flat = l2sp_penalty(torch.cat([p.flatten() for p in ps]), torch.cat([a.flatten() for a in anchors]), 2.0)
    assert torch.allclose(l2sp_penalty(ps, anchors, 2.0), flat)


def test_potential_is_the_weighted_sum_plus_regulariser() -> None:
    losses = [torch.tensor(1.5), torch.tensor(-0.5)]
    assert torch.allclose(potential(losses, [2.0, 4.0], torch.tensor(0.25)), torch.tensor(3.0 - 2.0 + 0.25))


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: l2sp_penalty(torch.zeros(2), torch.zeros(2), -1.0), "lam"),
        (lambda: l2sp_penalty(torch.zeros(2), torch.zeros(3), 1.0), "anchors"),
        (lambda: l2sp_penalty([torch.zeros(2)], [], 1.0), "anchors"),
        (lambda: potential([torch.tensor(1.0)], [0.0]), "alpha"),
        (lambda: potential([torch.tensor(1.0)], [1.0, 2.0]), "alphas"),
        (lambda: potential([], []), "losses"),
    ],
)
def test_bad_inputs_name_what_is_wrong(call, name) -> None:
    with pytest.raises(ValueError, match=f"Invalid {name}"):
        call()
