"""LionMuon and Newton-Schulz (kaplinskiy.optimizers): NS_K acts on singular values as the iterated quintic; LionMuon
matches a literal float64 reference of Algorithm 1, torch.optim.Muon at P = 1 with equal betas, and Lion at
P = None; the torch.optim contract."""

from __future__ import annotations

import math

import pytest
import torch
from gradient_sequences import gradient_sequence, random_params, resumes_bit_for_bit, run_steps
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from kaplinskiy.optimizers import NS_COEFFICIENTS, LionMuon, muon_param_groups, newton_schulz, rms_matching_scale

BF16_EPS = torch.finfo(torch.bfloat16).eps


# Newton-Schulz ---------------------------------------------------------------------------------------------------


@settings(max_examples=25)
@given(st.integers(2, 12), st.integers(2, 12), st.integers(0, 5), st.integers(0, 2**16))
def test_newton_schulz_maps_singular_values_by_the_iterated_quintic(m: int, n: int, steps: int, seed: int) -> None:
    """NS_K(X) = U p^K(S / ||X||_F) V^T with p(s) = a s + b s^3 + c s^5: its singular values are those of X mapped
    by the iterated polynomial, to bfloat16 rounding, which each step carries along and amplifies (measured
    over 300 draws: at most 0.0037 with no step, 0.078 after five; the bound allows about 1.5 times that)."""
    x = torch.randn(m, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    s = torch.linalg.svdvals(x) / x.norm()
    a, b, c = NS_COEFFICIENTS
    for _ in range(steps):
        s = a * s + b * s**3 + c * s**5
    got = torch.linalg.svdvals(newton_schulz(x, steps).double())
    assert torch.allclose(got.sort().values, s.sort().values, atol=BF16_EPS * (1 + 3 * steps))


def test_newton_schulz_in_float32_follows_the_quintic_closely() -> None:
    """In float32 the iteration's rounding is some 1e-6, not bfloat16's 1e-2: the dtype is the one asked for."""
    x = torch.randn(9, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    s = torch.linalg.svdvals(x) / x.norm()
    a, b, c = NS_COEFFICIENTS
    for _ in range(5):
        s = a * s + b * s**3 + c * s**5
    y = newton_schulz(x, 5, dtype=torch.float32)
    assert y.dtype == torch.float32
    assert torch.allclose(torch.linalg.svdvals(y.double()).sort().values, s.sort().values, atol=1e-5)


def test_newton_schulz_matches_torch_muon() -> None:
    """Bit for bit the orthogonalisation of torch.optim.Muon (a private helper: skipped where torch lacks it)."""
    muon = pytest.importorskip("torch.optim._muon")
    zeropower = getattr(muon, "_zeropower_via_newtonschulz", None)
    if zeropower is None:
        pytest.skip("this torch has no _zeropower_via_newtonschulz")
    g = torch.Generator().manual_seed(0)
    for shape in [(7, 5), (5, 7), (6, 6)]:
        x = torch.randn(shape, generator=g)
        assert torch.equal(newton_schulz(x, 5), zeropower(x, NS_COEFFICIENTS, 5, 1e-7))


def test_newton_schulz_takes_a_convolution_weight_as_a_matrix() -> None:
    w = torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(newton_schulz(w), newton_schulz(w.reshape(4, 12)).reshape(4, 3, 2, 2))
    assert rms_matching_scale(w.shape) == pytest.approx(0.2 * math.sqrt(12))
    with pytest.raises(ValueError, match="takes a matrix"):
        newton_schulz(torch.ones(3))


# LionMuon against references ---------------------------------------------------------------------------------------


def _reference_lion_muon(
    params: list[torch.Tensor], grads: list[list[torch.Tensor]], lr: float, ratio: float, betas, wd: float, every
) -> list[torch.Tensor]:
    """Algorithm 1, literally: a global counter, one momentum per matrix."""
    w = [p.detach().clone() for p in params]
    m = [torch.zeros_like(x) for x in w]
    for t, gs in enumerate(grads):
        muon = every is not None and t % every == 0
        rate = lr if muon else lr * ratio
        for i, g in enumerate(gs):
            mixed = betas[0] * m[i] + (1 - betas[0]) * g
            d = rms_matching_scale(g.shape) * newton_schulz(mixed).double() if muon else torch.sign(mixed)
            w[i] = (1 - rate * wd) * w[i] - rate * d
            m[i] = betas[1] * m[i] + (1 - betas[1]) * g
    return w


@pytest.mark.parametrize("every", [1, 2, 3, None])
def test_lion_muon_matches_algorithm_1(every: int | None) -> None:
    shapes = [(5, 3), (3, 6), (4, 2, 3, 3)]
    params, grads = random_params(shapes, 0), gradient_sequence(shapes, 7, 1)
    expected = _reference_lion_muon(params, grads, 0.02, 0.1, (0.9, 0.99), 0.1, every)
    run_steps(LionMuon(params, lr=0.02, lion_lr_ratio=0.1, muon_every=every), params, grads)
    for p, e in zip(params, expected, strict=True):
        assert torch.allclose(p.detach(), e, rtol=0, atol=1e-12)


def test_lion_muon_with_period_none_is_lion() -> None:
    lion = pytest.importorskip("lion_pytorch")
    shapes = [(5, 3), (2, 7)]
    ours, theirs, grads = random_params(shapes, 2), random_params(shapes, 2), gradient_sequence(shapes, 6, 3)
    opt = LionMuon(ours, lr=0.3, lion_lr_ratio=0.1, betas=(0.8, 0.95), weight_decay=0.2, muon_every=None)
    run_steps(opt, ours, grads)
    run_steps(lion.Lion(theirs, lr=0.03, betas=(0.8, 0.95), weight_decay=0.2), theirs, grads)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)


@pytest.mark.skipif(not hasattr(torch.optim, "Muon"), reason="torch.optim.Muon needs torch >= 2.9")
def test_lion_muon_every_step_with_equal_betas_is_muon() -> None:
    """P = 1 and beta1 = beta2 = mu: G^ is torch Muon's EMA buffer (nesterov=False), and the step is its
    ``match_rms_adamw`` one (the two compute the momentum in a different order, so it matches to rounding, not
    bit for bit)."""
    shapes = [(5, 3), (3, 6)]
    ours, theirs, grads = random_params(shapes, 4), random_params(shapes, 4), gradient_sequence(shapes, 6, 5)
    run_steps(LionMuon(ours, lr=0.05, betas=(0.9, 0.9), weight_decay=0.1, muon_every=1), ours, grads)
    muon = torch.optim.Muon(
        theirs, lr=0.05, weight_decay=0.1, momentum=0.9, nesterov=False, adjust_lr_fn="match_rms_adamw"
    )
    run_steps(muon, theirs, grads)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)


def test_adamw_groups_are_adamw() -> None:
    shapes = [(4,), (6, 3)]
    ours, theirs, grads = random_params(shapes, 6), random_params(shapes, 6), gradient_sequence(shapes, 5, 7)
    opt = LionMuon([{"params": ours, "use_muon": False, "lr": 0.01, "adamw_betas": (0.8, 0.999)}], weight_decay=0.05)
    run_steps(opt, ours, grads)
    run_steps(torch.optim.AdamW(theirs, lr=0.01, betas=(0.8, 0.999), weight_decay=0.05), theirs, grads)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-13)


# The torch.optim contract -------------------------------------------------------------------------------------------


def test_state_dict_round_trip_continues_bit_for_bit() -> None:
    def make(params):
        return LionMuon([{"params": params[:1]}, {"params": params[1:], "use_muon": False, "lr": 0.01}], lr=0.02)

    assert resumes_bit_for_bit(make, [(5, 3), (4,)], steps=7, stop=3)


def test_a_scheduler_scales_both_rates() -> None:
    """Halving ``lr`` halves the Lion step too (eta_L is a ratio of it)."""
    p = random_params([(3, 4)], 10)
    opt = LionMuon(p, lr=0.1, lion_lr_ratio=0.5, weight_decay=0.0, muon_every=2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    p[0].grad = torch.ones(3, 4, dtype=torch.float64)
    opt.step()  # a Muon step
    sched.step()
    before = p[0].detach().clone()
    opt.step()  # a Lion step: lr 0.05, eta_L 0.025, sign of a positive mixture
    assert torch.allclose(before - p[0].detach(), torch.full((3, 4), 0.025, dtype=torch.float64))


def test_closure_maximize_and_missing_gradients() -> None:
    p, q = random_params([(3, 3), (2, 2)], 11)
    untouched = q.detach().clone()
    up = LionMuon([p, q], maximize=True, muon_every=None)  # q gets no gradient: it does not move
    x = p.detach().clone().requires_grad_()
    down = LionMuon([x], muon_every=None)

    def closure(params, sign):
        def run():
            for t in params:
                t.grad = None
            loss = sign * (params[0] ** 3).sum()
            loss.backward()
            return loss

        return run

    assert float(up.step(closure([p], -1.0)).detach()) == pytest.approx(-float((x.detach() ** 3).sum()))
    down.step(closure([x], 1.0))
    assert torch.equal(p.detach(), x.detach())
    assert torch.equal(q.detach(), untouched)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": -1.0}, "Invalid lr"),
        ({"lion_lr_ratio": -0.1}, "Invalid lion_lr_ratio"),
        ({"betas": (0.9, 1.0)}, "Invalid betas"),
        ({"adamw_betas": (0.9,)}, "Invalid adamw_betas"),
        ({"weight_decay": -0.1}, "Invalid weight_decay"),
        ({"muon_every": 0}, "Invalid muon_every"),
        ({"ns_steps": -1}, "Invalid ns_steps"),
        ({"adamw_eps": -1.0}, "Invalid adamw_eps"),
        ({"ns_dtype": torch.int32}, "Invalid ns_dtype"),
    ],
)
def test_invalid_hyperparameters_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LionMuon(random_params([(2, 2)], 0), **kwargs)


def test_groups_are_checked() -> None:
    w, b = random_params([(3, 2), (3,)], 0)
    with pytest.raises(ValueError, match="use_muon=True"):
        LionMuon([w, b])
    with pytest.raises(ValueError, match="Invalid param group key: momentum"):
        LionMuon([{"params": [w], "momentum": 0.9}])
    opt = LionMuon([w])
    with pytest.raises(ValueError, match="Invalid muon_every"):
        opt.add_param_group({"params": [b], "use_muon": False, "muon_every": -2})
    w.grad = torch.ones(3, 2, dtype=torch.float64).to_sparse()
    with pytest.raises(ValueError, match="sparse"):
        opt.step()


def test_muon_param_groups_split_matrices_from_the_rest() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tok, self.conv = nn.Embedding(7, 4), nn.Conv1d(4, 4, 3)
            self.norm, self.head = nn.LayerNorm(4), nn.Linear(4, 7, bias=False)
            self.hidden = nn.Linear(4, 4)
            self.head.weight = self.tok.weight

    model = Tied()
    model.norm.weight.requires_grad_(False)
    muon, rest = muon_param_groups(model, lr=3e-4)
    assert {id(p) for p in muon["params"]} == {id(model.conv.weight), id(model.hidden.weight)}
    assert muon["use_muon"] and not rest["use_muon"] and rest["lr"] == 3e-4
    expected = [model.tok.weight, model.conv.bias, model.norm.bias, model.hidden.bias]
    assert {id(p) for p in rest["params"]} == {id(p) for p in expected}
    LionMuon(muon_param_groups(model))  # takes them as they are
