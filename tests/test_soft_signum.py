"""SoftSignum (kaplinskiy.optimizers): the folded-Cauchy quantile solves its equation, the fitted temperatures leave the
intended fraction of entries unsaturated, the optimizer matches a literal float64 reference through the sign
phase, the transition and past its end, and is Lion with equal betas in its sign phase; the torch.optim
contract."""

from __future__ import annotations

import math

import pytest
import torch
from gradient_sequences import gradient_sequence, random_params, resumes_bit_for_bit, run_steps
from hypothesis import given, settings
from hypothesis import strategies as st

from kaplinskiy.optimizers import SoftSignum, folded_cauchy_quantile, soft_sign_temperatures


@settings(max_examples=100)
@given(
    st.floats(0.001, 0.999),
    st.floats(-100, 100, allow_nan=False),
    st.floats(1e-6, 100),
)
def test_folded_cauchy_quantile_solves_its_equation(p: float, loc: float, scale: float) -> None:
    """P(|X| <= q) = [atan((q - loc)/scale) + atan((q + loc)/scale)] / pi = p, X ~ Cauchy(loc, scale), to the
    rounding of q (a few ulps) times the density of |X| at q, which is large where scale << |loc|."""
    q = float(folded_cauchy_quantile(torch.tensor([p]), loc, scale)[0])
    assert q >= 0
    cdf = (math.atan((q - loc) / scale) + math.atan((q + loc) / scale)) / math.pi
    density = sum(1 / (math.pi * scale * (1 + ((q + s * loc) / scale) ** 2)) for s in (-1, 1))
    rounding = 8 * torch.finfo(torch.float64).eps * max(q, scale)
    assert cdf == pytest.approx(p, abs=1e-13 + density * rounding)


def test_folded_cauchy_quantile_special_values() -> None:
    p = torch.tensor([0.0, 0.5, 0.25])
    assert torch.allclose(folded_cauchy_quantile(p, 3.0, 4.0)[:2], torch.tensor([0.0, 5.0]))
    assert torch.allclose(folded_cauchy_quantile(p, 0.0, 2.0)[2], torch.tensor(2.0 * math.tan(math.pi / 8)))
    assert torch.equal(folded_cauchy_quantile(p, -1.5, 0.0), torch.full((3,), 1.5))  # the point mass at loc
    with pytest.raises(ValueError, match="Invalid p"):
        folded_cauchy_quantile(torch.tensor([1.0]), 0.0, 1.0)
    with pytest.raises(ValueError, match="Invalid Cauchy"):
        folded_cauchy_quantile(p, 0.0, -1.0)


def test_temperatures_leave_a_fraction_p_k_unsaturated() -> None:
    """The schedule's intent: on Cauchy-distributed momentum, about a fraction ``p_k = k/T`` of the entries have
    ``|tanh(tau_k m)| < 1 - eps`` (where ``tau_k`` is not clamped), and the temperatures do not increase."""
    m = torch.distributions.Cauchy(0.3, 0.02).sample((400_000,))
    eps, transition = 1e-3, 20
    taus = soft_sign_temperatures(m, transition, eps, max_temperature=1e6)
    assert taus[0] == 1e6 and bool((taus[1:] <= taus[:-1]).all()) and bool((taus >= 1).all())
    for k in range(1, transition):
        unsaturated = (torch.tanh(taus[k] * m).abs() < 1 - eps).double().mean()
        assert float(unsaturated) == pytest.approx(k / transition, abs=0.005)


def test_temperatures_are_refused_without_finite_momentum() -> None:
    with pytest.raises(ValueError, match="there are 2, 1 of them not finite"):
        soft_sign_temperatures([torch.tensor([1.0, float("nan")])], 5)
    with pytest.raises(ValueError, match="Invalid transition_steps"):
        soft_sign_temperatures(torch.ones(3), 0)


def _reference_soft_signum(params, grads, lr, mu, wd, nesterov, sign_steps, transition, eps, tau_max):
    """The module docstring, literally (one group): SGD momentum, sign, then tanh with temperatures fitted once."""
    w = [p.detach().clone() for p in params]
    buf: list[torch.Tensor | None] = [None] * len(w)
    taus = None
    for t, gs in enumerate(grads, start=1):
        d = []
        for i, g in enumerate(gs):
            if mu == 0:
                d.append(g)
                continue
            buf[i] = g.clone() if buf[i] is None else mu * buf[i] + g
            d.append(g + mu * buf[i] if nesterov else buf[i])
        if t == sign_steps + 1:
            taus = soft_sign_temperatures(d, transition, eps, tau_max)
        for i in range(len(w)):
            u = (
                torch.sign(d[i])
                if t <= sign_steps
                else torch.tanh(taus[min(t - sign_steps - 1, transition - 1)] * d[i])
            )
            w[i] = (1 - lr * wd) * w[i] - lr * u
    return w


@pytest.mark.parametrize(("mu", "nesterov"), [(0.0, False), (0.9, False), (0.8, True)])
def test_soft_signum_matches_its_definition(mu: float, nesterov: bool) -> None:
    """Three sign steps, four of transition, three past its end."""
    shapes = [(4, 3), (5,)]
    params, grads = random_params(shapes, 0), gradient_sequence(shapes, 10, 1)
    expected = _reference_soft_signum(params, grads, 0.05, mu, 0.1, nesterov, 3, 4, 1e-3, 50.0)
    opt = SoftSignum(
        params, lr=0.05, momentum=mu, weight_decay=0.1, nesterov=nesterov, sign_steps=3, transition_steps=4, eps=1e-3,
        max_temperature=50.0,
    )  # fmt: skip
    run_steps(opt, params, grads)
    for p, e in zip(params, expected, strict=True):
        assert torch.allclose(p.detach(), e, rtol=0, atol=1e-13)
    assert opt.temperatures() is not None and len(opt.temperatures()) == 4


def test_sign_phase_is_lion_with_equal_betas() -> None:
    """sign(buf_t) = sign(m_t): SGD's momentum (buf = g at first) is Lion's EMA with beta1 = beta2 over 1 - beta."""
    lion = pytest.importorskip("lion_pytorch")
    shapes = [(3, 5), (4,)]
    ours, theirs, grads = random_params(shapes, 2), random_params(shapes, 2), gradient_sequence(shapes, 8, 3)
    run_steps(SoftSignum(ours, lr=0.02, momentum=0.7, weight_decay=0.1, sign_steps=8, transition_steps=1), ours, grads)
    run_steps(lion.Lion(theirs, lr=0.02, betas=(0.7, 0.7), weight_decay=0.1), theirs, grads)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-13)


def test_state_dict_round_trip_mid_transition_continues_bit_for_bit() -> None:
    def make(params):
        return SoftSignum(
            [{"params": params[:1]}, {"params": params[1:], "lr": 0.2}], lr=0.1, momentum=0.9, sign_steps=2,
            transition_steps=5,
        )  # fmt: skip

    assert resumes_bit_for_bit(make, [(3, 3), (2,)], steps=9, stop=4)  # stopped after the fit, at step 3


def test_each_group_fits_its_own_temperatures() -> None:
    small, large = random_params([(4, 4), (4, 4)], 6)
    opt = SoftSignum([{"params": [small]}, {"params": [large]}], sign_steps=0, transition_steps=3)
    small.grad, large.grad = 1e-3 * torch.randn(4, 4), 1e3 * torch.randn(4, 4)
    opt.step()
    assert torch.equal(opt.temperatures(0), soft_sign_temperatures(small.grad, 3))
    assert torch.equal(opt.temperatures(1), soft_sign_temperatures(large.grad, 3))
    assert float(opt.temperatures(0)[1]) > float(opt.temperatures(1)[1])


def test_a_group_counts_the_steps_in_which_it_had_gradients() -> None:
    """A group whose parameters had no gradient at a step neither steps nor counts it: its sign phase and its fit
    come with its own gradients."""
    a, b = random_params([(3, 3), (3, 3)], 8)
    opt = SoftSignum([{"params": [a]}, {"params": [b]}], sign_steps=1, transition_steps=3)
    a.grad = torch.randn(3, 3)
    opt.step()
    a.grad, b.grad = torch.randn(3, 3), torch.randn(3, 3)
    before = b.detach().clone()
    opt.step()
    assert opt.temperatures(0) is not None and opt.temperatures(1) is None
    assert torch.allclose(before - b.detach(), 1e-3 * torch.sign(b.grad), rtol=0, atol=1e-15)  # a sign step


def test_closure_and_maximize() -> None:
    p = random_params([(3, 2)], 7)[0]
    x = p.detach().clone().requires_grad_()
    up = SoftSignum([p], maximize=True, sign_steps=1, transition_steps=2)
    down = SoftSignum([x], sign_steps=1, transition_steps=2)
    for _ in range(3):
        for t, sign, opt in ((p, -1.0, up), (x, 1.0, down)):
            t.grad = None
            loss = opt.step(lambda t=t, sign=sign: (sign * (t**3).sum()).backward() or sign * (t**3).sum())
            assert loss is not None
    assert torch.equal(p.detach(), x.detach())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": -1.0}, "Invalid lr"),
        ({"momentum": -0.1}, "Invalid momentum"),
        ({"nesterov": True}, "Invalid nesterov"),
        ({"sign_steps": -1}, "Invalid sign_steps"),
        ({"transition_steps": 0}, "Invalid transition_steps"),
        ({"eps": 1.0}, "Invalid eps"),
        ({"max_temperature": 0.5}, "Invalid max_temperature"),
    ],
)
def test_invalid_hyperparameters_are_refused(kwargs: dict, match: str) -> None:
    settings_ = {"sign_steps": 1, "transition_steps": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        SoftSignum(random_params([(2, 2)], 0), **settings_)


def test_unknown_group_keys_and_sparse_gradients_are_refused() -> None:
    p = random_params([(3, 2)], 0)[0]
    with pytest.raises(ValueError, match="Invalid param group key: betas"):
        SoftSignum([{"params": [p], "betas": (0.9, 0.99)}], sign_steps=1, transition_steps=1)
    opt = SoftSignum([p], sign_steps=1, transition_steps=1)
    p.grad = torch.ones(3, 2).to_sparse()
    with pytest.raises(ValueError, match="sparse"):
        opt.step()
