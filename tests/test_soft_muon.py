"""SoftMuon (kaplinskiy.optimizers): the spectral soft sign is (X X^T + tau^-2 I)^{-1/2} X once its iteration has
converged; SoftMuon without a transition is torch.optim.Muon; with one, it matches a literal float64 reference
through the Muon phase, the transition and past its end; the torch.optim contract."""

from __future__ import annotations

import math

import pytest
import torch
from gradient_sequences import gradient_sequence, random_params, resumes_bit_for_bit, run_steps
from hypothesis import given, settings
from hypothesis import strategies as st

from kaplinskiy.optimizers import (
    SoftMuon,
    cauchy_temperatures,
    newton_schulz,
    soft_muon_temperatures,
    spectral_soft_sign,
)


@settings(max_examples=40)
@given(st.integers(1, 8), st.integers(1, 8), st.floats(0.05, 20.0), st.integers(0, 2**16))
def test_spectral_soft_sign_is_the_soft_sign_of_the_singular_values(m: int, n: int, tau: float, seed: int) -> None:
    """U diag(tau s / sqrt(1 + tau^2 s^2)) V^T, to float64 rounding after enough steps (each step at least
    grows an eigenvalue of A / ||A||_F, which is at least 1 / (1 + tau^2 ||X||^2), by half until it nears 1)."""
    x = torch.randn(m, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    u, s, vh = torch.linalg.svd(x, full_matrices=False)
    exact = u @ torch.diag(tau * s / torch.sqrt(1 + tau**2 * s**2)) @ vh
    smallest = 1 / (1 + tau**2 * float((s**2).sum()) * min(m, n))
    steps = math.ceil(math.log(1 / smallest) / math.log(1.5)) + 8
    got = spectral_soft_sign(x, tau, steps, torch.float64)
    assert torch.allclose(got, exact, rtol=0, atol=1e-12)


def test_spectral_soft_sign_limits() -> None:
    """A large temperature gives the polar factor (Muon's exact step), a small one tau X (SGD's)."""
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    u, _, vh = torch.linalg.svd(x, full_matrices=False)
    assert torch.allclose(spectral_soft_sign(x, 1e6, 60, torch.float64), u @ vh, atol=1e-9)
    assert torch.allclose(spectral_soft_sign(x, 1e-4, 60, torch.float64), 1e-4 * x, rtol=1e-6, atol=0)
    w = torch.randn(3, 2, 2, 2, dtype=torch.float64)
    assert torch.equal(spectral_soft_sign(w, 2.0), spectral_soft_sign(w.reshape(3, 8), 2.0).reshape(3, 2, 2, 2))
    with pytest.raises(ValueError, match="Invalid temperature"):
        spectral_soft_sign(x, 0.0)


def test_soft_muon_temperatures_fit_the_gradients_singular_values() -> None:
    grads = [torch.randn(5, 3, dtype=torch.float64), torch.randn(2, 2, 2, dtype=torch.float64)]
    sigmas = torch.cat([torch.linalg.svdvals(grads[0]), torch.linalg.svdvals(grads[1].reshape(2, 4))])
    eps = 1e-3
    saturation = (1 - eps) / math.sqrt(1 - (1 - eps) ** 2)  # phi(saturation) = 1 - eps, phi(x) = x / sqrt(1 + x^2)
    assert saturation / math.sqrt(1 + saturation**2) == pytest.approx(1 - eps)
    expected = cauchy_temperatures(sigmas, 6, saturation, 1e9)
    assert torch.allclose(soft_muon_temperatures(grads, 6, eps), expected, rtol=1e-12, atol=0)


@pytest.mark.skipif(not hasattr(torch.optim, "Muon"), reason="torch.optim.Muon needs torch >= 2.9")
def test_soft_muon_without_a_transition_is_muon() -> None:
    shapes = [(5, 3), (3, 6)]
    ours, theirs, grads = random_params(shapes, 0), random_params(shapes, 0), gradient_sequence(shapes, 6, 1)
    run_steps(SoftMuon(ours, lr=0.05, weight_decay=0.1), ours, grads)
    run_steps(torch.optim.Muon(theirs, lr=0.05, weight_decay=0.1), theirs, grads)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)


def _reference_soft_muon(params, grads, lr, mu, wd, sign_steps, transition, eps):
    """The module docstring, literally (one group, Nesterov)."""
    w = [p.detach().clone() for p in params]
    m = [torch.zeros_like(x) for x in w]
    taus = None
    for t, gs in enumerate(grads, start=1):
        if t == sign_steps + 1:
            taus = soft_muon_temperatures(gs, transition, eps)
        for i, g in enumerate(gs):
            m[i] = mu * m[i] + (1 - mu) * g
            u = g + mu * (m[i] - g)
            if t <= sign_steps:
                d = newton_schulz(u).double()
            else:
                d = spectral_soft_sign(u, float(taus[min(t - sign_steps - 1, transition - 1)])).double()
            rows = g.shape[0]
            w[i] = (1 - lr * wd) * w[i] - lr * math.sqrt(max(1, rows / (g.numel() // rows))) * d
    return w


def test_soft_muon_matches_its_definition() -> None:
    """Two Muon steps, three of transition, two past its end; a convolution's weight among the matrices."""
    shapes = [(6, 3), (3, 5), (8, 3, 2)]
    params, grads = random_params(shapes, 2), gradient_sequence(shapes, 7, 3)
    expected = _reference_soft_muon(params, grads, 0.05, 0.9, 0.1, 2, 3, 1e-3)
    opt = SoftMuon(params, lr=0.05, momentum=0.9, weight_decay=0.1, sign_steps=2, transition_steps=3, eps=1e-3)
    run_steps(opt, params, grads)
    for p, e in zip(params, expected, strict=True):
        assert torch.allclose(p.detach(), e, rtol=0, atol=1e-12)
    assert len(opt.temperatures()) == 3


def test_adamw_groups_are_adamw() -> None:
    shapes = [(4,), (6, 3)]
    ours, theirs, grads = random_params(shapes, 4), random_params(shapes, 4), gradient_sequence(shapes, 5, 5)
    run_steps(SoftMuon([{"params": ours, "use_muon": False, "lr": 0.01}], weight_decay=0.05), ours, grads)
    run_steps(torch.optim.AdamW(theirs, lr=0.01, betas=(0.9, 0.95), eps=1e-10, weight_decay=0.05), theirs, grads)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-13)


def test_state_dict_round_trip_mid_transition_continues_bit_for_bit() -> None:
    def make(params):
        return SoftMuon(
            [{"params": params[:1]}, {"params": params[1:], "use_muon": False, "lr": 0.01}], lr=0.02, sign_steps=2,
            transition_steps=4,
        )  # fmt: skip

    assert resumes_bit_for_bit(make, [(4, 3), (3,)], steps=8, stop=4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": -1.0}, "Invalid lr"),
        ({"momentum": 1.0}, "Invalid momentum"),
        ({"sign_steps": 3}, "given together"),
        ({"sign_steps": -1, "transition_steps": 2}, "Invalid sign_steps"),
        ({"sign_steps": 1, "transition_steps": 0}, "Invalid transition_steps"),
        ({"eps": 0.0}, "Invalid eps"),
        ({"ns_dtype": torch.int64}, "Invalid ns_dtype"),
        ({"adamw_betas": (1.0, 0.9)}, "Invalid adamw_betas"),
    ],
)
def test_invalid_hyperparameters_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SoftMuon(random_params([(2, 2)], 0), **kwargs)


def test_groups_are_checked() -> None:
    w, b = random_params([(3, 2), (3,)], 0)
    with pytest.raises(ValueError, match="use_muon=True"):
        SoftMuon([w, b])
    with pytest.raises(ValueError, match="Invalid param group key: betas"):
        SoftMuon([{"params": [w], "betas": (0.9, 0.99)}])
    opt = SoftMuon([{"params": [w]}, {"params": [b], "use_muon": False}])
    w.grad, b.grad = torch.ones(3, 2), torch.ones(3).to_sparse()
    before = w.detach().clone()
    with pytest.raises(ValueError, match="sparse"):
        opt.step()
    assert torch.equal(w.detach(), before)  # refused before anything moved
