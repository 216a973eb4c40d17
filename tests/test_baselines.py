"""Each baseline against a hand-written float64 reference on a tiny two-layer network (five steps each)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from kaplinskiy import DenseMemory, ElasticAnchor, LayerwiseMemory, ReplayBuffer
from kaplinskiy.baselines import AGEM, GPM, OGD, Anchored, Replay, agem_project

STEPS, LR = 5, 0.1


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3))


def _data(seed: int, n: int) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=gen, dtype=torch.float64), torch.randint(3, (n,), generator=gen)


XA, YA = _data(1, 5)
XB, YB = _data(2, 7)


def f(w: list[Tensor], x: Tensor) -> Tensor:
    """The network written out by hand: ``tanh(x W1^T + b1) W2^T + b2``."""
    return torch.tanh(x @ w[0].T + w[1]) @ w[2].T + w[3]


def ce(w: list[Tensor], x: Tensor, y: Tensor) -> Tensor:
    return -torch.log_softmax(f(w, x), dim=1)[torch.arange(len(y)), y].mean()


def grad(fn, w: list[Tensor]) -> list[Tensor]:
    w = [t.detach().requires_grad_(True) for t in w]
    return list(torch.autograd.grad(fn(w), w))


def start() -> list[Tensor]:
    return [p.detach().clone() for p in _net().parameters()]


def run(opt_factory, with_closure: bool = True) -> list[Tensor]:
    model = _net()
    opt = opt_factory(model)
    for _ in range(STEPS):
        opt.zero_grad()
        nn.functional.cross_entropy(model(XB), YB).backward()
        opt.step()
    return [p.detach() for p in model.parameters()]


def close(a: list[Tensor], b: list[Tensor]) -> bool:
    return all(torch.allclose(x, y, rtol=1e-12, atol=1e-13) for x, y in zip(a, b, strict=True))


def test_sgd_momentum() -> None:
    w, buf = start(), None
    for _ in range(STEPS):
        g = grad(lambda v: ce(v, XB, YB), w)
        buf = g if buf is None else [0.9 * b + gi for b, gi in zip(buf, g, strict=True)]
        w = [wi - LR * b for wi, b in zip(w, buf, strict=True)]
    assert close(run(lambda m: torch.optim.SGD(m.parameters(), lr=LR, momentum=0.9)), w)


def test_adamw() -> None:
    w = start()
    m = [torch.zeros_like(t) for t in w]
    v = [torch.zeros_like(t) for t in w]
    b1, b2, eps, wd = 0.9, 0.999, 1e-8, 0.01
    for t in range(1, STEPS + 1):
        g = grad(lambda u: ce(u, XB, YB), w)
        new = []
        for i in range(4):
            m[i] = b1 * m[i] + (1 - b1) * g[i]
            v[i] = b2 * v[i] + (1 - b2) * g[i] ** 2
            m_hat, v_hat = m[i] / (1 - b1**t), v[i] / (1 - b2**t)
            new.append(w[i] * (1 - LR * wd) - LR * m_hat / (v_hat.sqrt() + eps))
        w = new
    assert close(run(lambda mod: torch.optim.AdamW(mod.parameters(), lr=LR, weight_decay=wd)), w)


@pytest.mark.parametrize("kind", ["empirical", "identity"])
def test_ewc_and_l2sp(kind: str) -> None:
    """EWC: F_ii = mean_s (d_i l_s)^2 from a per-sample loop; L2-SP: F = 1. w <- w - lr (g + lam F (w - w*))."""
    lam, anchor_w = 3.0, start()
    if kind == "identity":
        F = [torch.ones_like(t) for t in anchor_w]
    else:
        F = [torch.zeros_like(t) for t in anchor_w]
        for s in range(len(YA)):
            for Fi, gi in zip(F, grad(lambda u, s=s: ce(u, XA[s : s + 1], YA[s : s + 1]), anchor_w), strict=True):
                Fi += gi**2 / len(YA)
    w = start()
    for _ in range(STEPS):
        g = grad(lambda u: ce(u, XB, YB), w)
        w = [wi - LR * (gi + lam * Fi * (wi - ai)) for wi, gi, Fi, ai in zip(w, g, F, anchor_w, strict=True)]

    def factory(model):
        anchor = ElasticAnchor(model.parameters(), lam=lam, fisher=kind)
        anchor.consolidate(model, XA, YA)
        return Anchored(torch.optim.SGD(model.parameters(), lr=LR), anchor)

    assert close(run(factory), w)


def _buffer() -> ReplayBuffer:
    buf = ReplayBuffer(10, seed=4)
    buf.add(XA, YA)
    return buf


def test_replay() -> None:
    """w <- w - lr (grad L_B + gamma grad l(D_A minibatch)) with the buffer's own draws (eq. 7)."""
    draws, gamma = _buffer(), 0.5
    w = start()
    for _ in range(STEPS):
        x, y = draws.sample(3)
        g = grad(lambda u, x=x, y=y: ce(u, XB, YB) + gamma * ce(u, x, y), w)
        w = [wi - LR * gi for wi, gi in zip(w, g, strict=True)]

    def factory(model):
        loss = lambda x, y: nn.functional.cross_entropy(model(x), y)  # noqa: E731
        return Replay(torch.optim.SGD(model.parameters(), lr=LR), _buffer(), loss, gamma=gamma, batch_size=3)

    assert close(run(factory), w)


def test_agem() -> None:
    draws, w, projected = _buffer(), start(), 0
    for _ in range(STEPS):
        x, y = draws.sample(4)
        g = grad(lambda u: ce(u, XB, YB), w)
        g_ref = grad(lambda u, x=x, y=y: ce(u, x, y), w)
        inner = sum(float((a * b).sum()) for a, b in zip(g, g_ref, strict=True))
        if inner < 0:
            ref_sq = sum(float((b * b).sum()) for b in g_ref)
            g = [a - inner / ref_sq * b for a, b in zip(g, g_ref, strict=True)]
            projected += 1
        w = [wi - LR * gi for wi, gi in zip(w, g, strict=True)]
    holder = {}

    def factory(model):
        loss = lambda x, y: nn.functional.cross_entropy(model(x), y)  # noqa: E731
        holder["opt"] = AGEM(torch.optim.SGD(model.parameters(), lr=LR), _buffer(), loss, batch_size=4)
        return holder["opt"]

    assert close(run(factory), w)
    assert holder["opt"].state_dict()["agem"]["n_projected"] == projected


def test_agem_rule_is_gated() -> None:
    g, ref = [torch.tensor([1.0, 0.0])], [torch.tensor([1.0, 1.0])]
    assert not agem_project(g, ref) and torch.equal(g[0], torch.tensor([1.0, 0.0]))
    g = [torch.tensor([-1.0, 0.0])]
    assert agem_project(g, ref) and torch.allclose(g[0], torch.tensor([-0.5, 0.5]))


def test_ogd_gtl() -> None:
    """G_A columns are grad f_y(x_s) per old sample (a loop); Q from a QR; w <- w - lr (g - Q Q^T g)."""
    w0 = start()
    cols = []
    for s in range(len(YA)):
        gs = grad(lambda u, s=s: f(u, XA[s : s + 1])[0, YA[s]], w0)
        cols.append(torch.cat([t.reshape(-1) for t in gs]))
    Q, _ = torch.linalg.qr(torch.stack(cols, dim=1))
    w = w0
    for _ in range(STEPS):
        g = torch.cat([t.reshape(-1) for t in grad(lambda u: ce(u, XB, YB), w)])
        g = g - Q @ (Q.T @ g)
        flat = torch.cat([t.reshape(-1) for t in w]) - LR * g
        w = [t.view_as(ref) for t, ref in zip(flat.split([t.numel() for t in w]), w, strict=True)]

    def factory(model):
        mem = DenseMemory(model.parameters(), k_per_task=100)
        mem.add_task(model, XA, YA)
        return OGD(model.parameters(), mem, lr=LR)

    assert close(run(factory), w)


def test_gpm() -> None:
    """Per layer, U spans the bias-augmented old inputs (SVD, all non-zero singular values); G <- G - G U U^T."""
    w0 = start()
    h = torch.tanh(XA @ w0[0].T + w0[1])
    bases = []
    for inputs in (XA, h):
        R = torch.cat([inputs, torch.ones(len(inputs), 1)], dim=1).T  # (in + 1, N)
        U, S, _ = torch.linalg.svd(R, full_matrices=False)
        bases.append(U[:, S > S.max() * R.shape[0] * torch.finfo(R.dtype).eps])
    w = w0
    for _ in range(STEPS):
        g = grad(lambda u: ce(u, XB, YB), w)
        new = []
        for layer, U in enumerate(bases):
            G = torch.cat([g[2 * layer], g[2 * layer + 1][:, None]], dim=1)
            G = G - G @ U @ U.T
            new += [w[2 * layer] - LR * G[:, :-1], w[2 * layer + 1] - LR * G[:, -1]]
        w = new

    def factory(model):
        mem = LayerwiseMemory(model, threshold=1.0)
        mem.add_task([XA])
        return GPM(model.parameters(), mem, lr=LR)

    assert close(run(factory), w)


def test_wrappers_validate_and_round_trip() -> None:
    model = _net()
    sgd = torch.optim.SGD(model.parameters(), lr=LR)
    loss = lambda x, y: nn.functional.cross_entropy(model(x), y)  # noqa: E731
    with pytest.raises(ValueError, match="Invalid gamma"):
        Replay(sgd, _buffer(), loss, gamma=-1.0)
    with pytest.raises(ValueError, match="Invalid batch_size"):
        AGEM(sgd, _buffer(), loss, batch_size=0)
    with pytest.raises(ValueError, match="Invalid anchor"):
        Anchored(torch.optim.SGD(model[0].parameters(), lr=LR), ElasticAnchor(model.parameters(), lam=1.0))
    opt = AGEM(sgd, _buffer(), loss)
    opt.zero_grad()
    loss(XB, YB).backward()
    opt.step()
    other = AGEM(torch.optim.SGD(model.parameters(), lr=1.0), _buffer(), loss)
    other.load_state_dict(opt.state_dict())
    assert other.wrapper_state == opt.wrapper_state and other.param_groups[0]["lr"] == LR
    assert math.isfinite(float(loss(XB, YB).detach()))


@pytest.mark.parametrize("kind", ["anchored", "replay", "agem"])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_wrappers_reject_a_non_finite_gradient_bit_identically(kind: str, bad: float) -> None:
    """A NaN/inf gradient: a NonFiniteStepWarning, and parameters and momentum state stay bit-identical."""
    from kaplinskiy import NonFiniteStepWarning

    model = _net()
    loss = lambda x, y: nn.functional.cross_entropy(model(x), y)  # noqa: E731
    base = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    make = {
        "anchored": lambda: Anchored(base, ElasticAnchor(model.parameters(), lam=1.0, fisher="identity")),
        "replay": lambda: Replay(base, _buffer(), loss, batch_size=3),
        "agem": lambda: AGEM(base, _buffer(), loss, batch_size=3),
    }
    opt = make[kind]()
    opt.zero_grad()
    loss(XB, YB).backward()
    opt.step()  # a finite step first, so there is momentum state to protect
    before = [p.detach().clone() for p in model.parameters()]
    state = [base.state[p]["momentum_buffer"].clone() for p in model.parameters()]
    opt.zero_grad()
    loss(XB, YB).backward()
    next(model.parameters()).grad[0, 0] = bad
    with pytest.warns(NonFiniteStepWarning):
        opt.step()
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    assert all(torch.equal(s, base.state[p]["momentum_buffer"]) for s, p in zip(state, model.parameters(), strict=True))


@pytest.mark.parametrize("threshold", [0.5, 0.8, 0.9, 0.97])
def test_gpm_energy_criterion_on_the_residual(threshold: float) -> None:
    """GPM's memory update written out (Saha et al. 2021, eqs. 8-10). Task 1: the fewest top left singular vectors
    of R with ||R_k||^2 >= th ||R||^2. Task 2: R_hat = R - M M^T R, and the fewest top singular vectors of R_hat
    with ||M M^T R||^2 + ||R_hat_k||^2 >= th ||R||^2 join M. The memory spans the same space after each task."""

    def grown(M: Tensor, R: Tensor) -> Tensor:
        R_hat = R - M @ (M.T @ R)
        U, S, _ = torch.linalg.svd(R_hat, full_matrices=False)
        kept = (M.T @ R).pow(2).sum()
        k = int(((kept + torch.cumsum(S**2, 0)) < threshold * R.pow(2).sum()).sum()) + 1
        return M if kept >= threshold * R.pow(2).sum() else torch.cat([M, U[:, :k]], dim=1)

    gen = torch.Generator().manual_seed(3)
    low_rank = [torch.randn(40, 3, generator=gen) @ torch.randn(3, 6, generator=gen) for _ in range(2)]
    tasks = [x + 0.1 * torch.randn(40, 6, generator=gen) for x in low_rank]
    memory, M = LayerwiseMemory(nn.Linear(6, 2, bias=False), threshold=threshold), torch.zeros(6, 0)
    for x in tasks:
        memory.add_task([x])
        M = grown(M, x.T)
        U = memory.bases[0]
        assert U.shape[1] == M.shape[1] and torch.allclose(U @ U.T, M @ M.T, atol=1e-12)
