"""The walking-skeleton benchmark: two conflicting least-squares tasks, A then B (sec:forgetting).

Each task draws its inputs from its own anisotropic Gaussian (random eigenbasis, eigenvalues log-spaced
from 1 down to ``1/condition``) and its targets from its own true weights, so that argmin L_A and
argmin L_B differ (any descent path for B from w_A* must then raise L_A: eq:atminimum). Task A is solved
exactly; task B is then trained from w_A* by one of the arms, each a combination of three
ingredients: the L2-SP potential (eq:potential), the projection (eq:projected) and Armijo
acceptance (eq:armijo); or EWC with the exact Fisher (R with F = H_A, the Fisher of task A's Gaussian
likelihood), which on least squares is ``ewc (L_A(w) - L_A(w_A*))``: the old task's own loss in Phi.
The memory G_A is the top ``memory_k`` eigenvectors of H_A, the directions in which a step raises L_A
most at w_A* (eq:atminimum).
"""

import itertools
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from kaplinskiy import l2sp_penalty, orthonormal_basis, potential, potential_descent_step


@dataclass(frozen=True)
class Task:
    """Inputs ``X`` (n, dim) and targets ``y`` (n,) of one least-squares task."""

    X: Tensor
    y: Tensor

    def loss(self, w: Tensor) -> Tensor:
        """L(w) = ||X w - y||^2 / (2 n)."""
        r = self.X @ w - self.y
        return 0.5 * (r @ r) / self.X.shape[0]

    def grad(self, w: Tensor) -> Tensor:
        """grad L(w) = X^T (X w - y) / n."""
        return self.X.T @ (self.X @ w - self.y) / self.X.shape[0]

    def hessian(self) -> Tensor:
        """H = X^T X / n."""
        return self.X.T @ self.X / self.X.shape[0]

    def minimiser(self) -> Tensor:
        """argmin L, by least squares (LAPACK's SVD driver: the default QR driver, gelsy, rounds differently with
        the alignment of its buffers in MKL, so the same seed gave a different last bit from run to run)."""
        return torch.linalg.lstsq(self.X, self.y[:, None], driver="gelsd").solution[:, 0]


def make_task(dim: int, n_samples: int, condition: float, noise: float, gen: torch.Generator) -> Task:
    """A random task: x ~ N(0, Q diag(lam) Q^T), y = x . w_true + noise * N(0, 1)."""
    Q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
    lam = torch.logspace(0.0, -torch.log10(torch.tensor(condition)).item(), dim, dtype=torch.float64)
    X = torch.randn(n_samples, dim, generator=gen, dtype=torch.float64) * lam.sqrt() @ Q.T
    w_true = torch.randn(dim, generator=gen, dtype=torch.float64)
    y = X @ w_true + noise * torch.randn(n_samples, generator=gen, dtype=torch.float64)
    return Task(X, y)


def memory_basis(task: Task, k: int) -> Tensor:
    """G_A: the top-``k`` eigenvectors of H_A, orthonormalised.

    The memory whose span the projection of eq:projected removes from the step."""
    evals, evecs = torch.linalg.eigh(task.hessian())
    return orthonormal_basis(evecs[:, evals.argsort(descending=True)[:k]])


def ewc_exact_penalty(w: Tensor, w_a: Tensor, hessian_a: Tensor, strength: float) -> Tensor:
    """EWC's R with the exact Fisher ``F = H_A``: ``(strength/2) (w - w_A*)^T H_A (w - w_A*)``."""
    d = w - w_a
    return 0.5 * strength * (d @ hessian_a @ d)


def run_phase_b(
    task_a: Task,
    task_b: Task,
    *,
    steps: int,
    lr: float,
    project: bool,
    l2sp: float,
    armijo: bool,
    ewc: float = 0.0,
    memory_k: int,
    armijo_c: float,
    armijo_shrink: float,
    armijo_max_trials: int,
) -> dict[str, Any]:
    """Train B from w_A* for ``steps`` steps; return per-step traces and a summary."""
    w_a = task_a.minimiser()
    dim = w_a.shape[0]
    basis = memory_basis(task_a, memory_k) if project else w_a.new_zeros((dim, 0))

    hessian_a = task_a.hessian()

    def phi(w: Tensor) -> Tensor:  # eq:potential: Phi = L_B + R, R = L2-SP (F = I) + EWC (F = H_A)
        penalty = l2sp_penalty(w, w_a, l2sp) + ewc_exact_penalty(w, w_a, hessian_a, ewc)
        return potential([task_b.loss(w)], [1.0], penalty)

    keys = ("L_A", "L_B", "phi", "old_task_slope", "eta", "n_trials", "accepted")
    trace: dict[str, list[Any]] = {k: [] for k in keys}
    w = w_a.clone()
    for _ in range(steps):
        w, cert = potential_descent_step(
            w,
            phi,
            basis,
            eta0=lr,
            armijo=armijo,
            grad_old=task_a.grad(w),
            c=armijo_c,
            shrink=armijo_shrink,
            max_trials=armijo_max_trials,
        )
        s = cert.search
        for key, value in zip(
            keys,
            (task_a.loss(w), task_b.loss(w), phi(w), cert.old_task_slope, s.eta, s.n_trials, s.accepted),
            strict=True,
        ):
            trace[key].append(float(value) if isinstance(value, Tensor) else value)
    start = {"L_A": float(task_a.loss(w_a)), "L_B": float(task_b.loss(w_a)), "phi": float(phi(w_a))}
    phis = [start["phi"], *trace["phi"]]
    summary = {
        "L_A_start": start["L_A"],
        "L_B_start": start["L_B"],
        "L_A_end": trace["L_A"][-1],
        "L_B_end": trace["L_B"][-1],
        "forgetting": trace["L_A"][-1] - start["L_A"],
        "learning": start["L_B"] - trace["L_B"][-1],
        "L_B_optimum": float(task_b.loss(task_b.minimiser())),
        "n_rejected": sum(not a for a in trace["accepted"]),
        "phi_evaluations": sum(trace["n_trials"]),
        "phi_monotone": all(b <= a for a, b in itertools.pairwise(phis)),
        "max_abs_old_task_slope": max(abs(v) for v in trace["old_task_slope"]),
        "memory_rank": basis.shape[1],
    }
    return {"start": start, "summary": summary, "trace": trace}
