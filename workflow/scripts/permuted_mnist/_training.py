"""Permuted MNIST on a CPU budget: which optimizers forget, and what the forgetting guard does to each.

Task ``t`` is MNIST with its pixels shuffled by a fixed permutation (one per task, drawn from the seed), the
single-head protocol of OGD and GPM (Farajtabar et al. 2020; Saha et al. 2021): one MLP 784-100-100-10 without
biases learns the tasks one after another. Every arm trains with one optimizer (SGD with momentum, AdamW, Muon,
Lion, LionMuon, SoftSignum), alone or wrapped in :class:`~kaplinskiy.ForgettingGuard` around a GPM-style
:class:`~kaplinskiy.LayerwiseMemory` built after each task (eq:projected layer by layer, update mode, so
eq:projected_change holds for every base optimizer); or with the note's :class:`~kaplinskiy.Kaplinskiy` step
(sec:optimizers), which projects with that memory itself and backtracks on the mini-batch loss (eq:armijo). The
optimizer is built afresh at each task (its state does not carry over), the same for every arm. After each task,
every task's validation and test accuracy is measured: the accuracy matrices ``R[i][j]`` (after task ``i``, on task
``j``) give the average accuracy, backward transfer and learning accuracy.

An arm may also descend the note's potential (eq:potential) instead of the new task's loss alone:
``Phi = L_t + R`` with R online EWC or L2-SP (a diagonal Fisher or ``F = I``,
:class:`~kaplinskiy.ElasticAnchor`), anchored (and its Fisher accumulated) after each task on the same images
the memory records. R acts from the second task on: during the first there is no old task to keep (EWC's R is
zero there anyway; L2-SP's would pull towards the random initial weights).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from kaplinskiy import ElasticAnchor, ForgettingGuard, Kaplinskiy, LayerwiseMemory
from kaplinskiy.metrics import sequence_metrics
from kaplinskiy.optimizers import LionMuon, SoftMuon, SoftSignum, muon_param_groups

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # the usual normalisation of MNIST's pixels in [0, 1] (GPM's too)
# Each kind's options in the config (a Muon kind's other options go to its optimizer: momentum, betas, ...).
_MUON_OPTIONS = {"weight_decay", "aux_lr_ratio", "momentum", "nesterov", "ns_steps", "betas", "muon_every"}
OPTIONS = {
    "sgd": {"weight_decay", "momentum"},
    "adamw": {"weight_decay"},
    "muon": _MUON_OPTIONS - {"betas", "muon_every"},
    "lion": {"weight_decay"},
    "lion_muon": _MUON_OPTIONS - {"momentum", "nesterov"},
    "soft_signum": {"weight_decay", "momentum", "sign_fraction", "transition_fraction"},
    "kaplinskiy": {"c", "shrink", "max_trials"},
}
OWN_PROJECTION = {"kaplinskiy"}  # kinds that project with the memory themselves, rather than inside the guard


@dataclass(frozen=True)
class Task:
    """One permuted task: its pixel permutation and its train, validation and test splits (permuted)."""

    permutation: Tensor
    train_x: Tensor
    train_y: Tensor
    val_x: Tensor
    val_y: Tensor
    test_x: Tensor
    test_y: Tensor


def normalised(images: np.ndarray) -> Tensor:
    """uint8 images (n, 784) as float32, scaled to [0, 1] and standardised with MNIST's mean and deviation."""
    return (torch.from_numpy(images).to(torch.float32) / 255.0 - MNIST_MEAN) / MNIST_STD


def make_tasks(
    data: dict[str, np.ndarray], *, n_tasks: int, n_train: int, n_val: int, n_test: int, seed: int
) -> list[Task]:
    """``n_tasks`` permuted tasks from ``seed``. Each draws its permutation and its ``n_train + n_val`` images
    (disjoint train and validation sets) from MNIST's training set; every task is tested on the same first
    ``n_test`` test images, permuted by its own permutation."""
    n_pool = len(data["train_y"])
    if n_train < 1 or n_val < 1 or n_train + n_val > n_pool or not 1 <= n_test <= len(data["test_y"]):
        raise ValueError(f"Invalid split: n_train={n_train}, n_val={n_val}, n_test={n_test} of {n_pool} images")
    gen = torch.Generator().manual_seed(seed)
    pool_x, pool_y = normalised(data["train_x"]), torch.from_numpy(data["train_y"])
    test_x, test_y = normalised(data["test_x"][:n_test]), torch.from_numpy(data["test_y"][:n_test])
    tasks = []
    for _ in range(n_tasks):
        perm = torch.randperm(pool_x.shape[1], generator=gen)
        idx = torch.randperm(n_pool, generator=gen)[: n_train + n_val]
        train, val = idx[:n_train], idx[n_train:]
        tasks.append(
            Task(
                perm, pool_x[train][:, perm], pool_y[train], pool_x[val][:, perm], pool_y[val], test_x[:, perm], test_y
            )
        )
    return tasks


class MLP(nn.Module):
    """784-100-100-10 with ReLU and no biases (GPM's PMNIST network). ``get_output_embeddings`` names the head,
    so :func:`~kaplinskiy.optimizers.muon_param_groups` gives it to AdamW, as Muon's authors advise."""

    def __init__(self, widths: tuple[int, ...] = (784, 100, 100, 10)) -> None:
        super().__init__()
        self.hidden = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in itertools.pairwise(widths[:-1]))
        self.head = nn.Linear(widths[-2], widths[-1], bias=False)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.hidden:
            x = torch.relu(layer(x))
        return self.head(x)

    def get_output_embeddings(self) -> nn.Module:
        return self.head


def build_optimizer(
    model: nn.Module, spec: dict[str, Any], lr: float, steps_per_task: int, memory: LayerwiseMemory | None = None
) -> Optimizer:
    """The base optimizer of ``spec`` (``kind`` and its options) at learning rate ``lr``.

    Kinds: ``sgd`` (heavy-ball momentum), ``adamw``, ``muon`` (Muon on the hidden matrices: SoftMuon without a
    transition, which the tests pin to ``torch.optim.Muon``), ``lion`` (LionMuon without Muon steps, pinned to
    ``lion_pytorch.Lion``), ``lion_muon``, ``soft_signum`` (whose sign phase and transition are fractions of a
    task's steps), ``kaplinskiy`` (the note's step ``-lr P_perp g`` with Armijo backtracking on the mini-batch
    loss, sec:optimizers; projected by ``memory`` when one is given, else Armijo gradient descent). Muon-family kinds
    give the head AdamW steps at ``aux_lr_ratio * lr``, so one learning rate scales every step. Newton-Schulz
    runs in float32 (bfloat16 is some 80 times slower on a CPU)."""
    kind, options = spec["kind"], dict(spec.get("options", {}))
    unknown = set(options) - OPTIONS.get(kind, set())
    if kind not in OPTIONS or unknown:
        raise ValueError(
            f"Invalid optimizer spec: kind {kind!r} with options {sorted(unknown)}; the kinds and their options are "
            f"{ {k: sorted(v) for k, v in OPTIONS.items()} }"
        )
    if kind == "kaplinskiy":
        return Kaplinskiy(model.parameters(), lr=lr, memory=memory, **options)
    wd = options.pop("weight_decay", 0.0)
    if kind == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=options.pop("momentum", 0.9), weight_decay=wd)
    if kind == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    if kind == "lion":
        return LionMuon(model.parameters(), lr=lr, lion_lr_ratio=1.0, muon_every=None, weight_decay=wd)
    if kind == "soft_signum":
        sign_steps = max(1, round(options.pop("sign_fraction") * steps_per_task))
        transition_steps = max(1, round(options.pop("transition_fraction") * steps_per_task))
        return SoftSignum(
            model.parameters(),
            lr=lr,
            momentum=options.pop("momentum", 0.9),
            weight_decay=wd,
            sign_steps=sign_steps,
            transition_steps=transition_steps,
        )
    groups = muon_param_groups(model, lr=options.pop("aux_lr_ratio") * lr, weight_decay=wd)  # muon, lion_muon
    cls = SoftMuon if kind == "muon" else LionMuon
    return cls(groups, lr=lr, weight_decay=wd, ns_dtype=torch.float32, **options)


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch: int = 2000) -> float:
    """Fraction of ``x`` whose arg-max logit is the label."""
    correct = sum(int((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum()) for i in range(0, len(y), batch))
    return correct / len(y)


def train_task(
    model: nn.Module,
    opt: Optimizer,
    task: Task,
    *,
    batch_size: int,
    epochs: int,
    gen: torch.Generator,
    regulariser: Callable[[], Tensor] | None = None,
) -> int:
    """Train ``model`` on ``task`` with ``opt`` (shuffled mini-batches from ``gen``), one ``opt.step(closure)`` per
    mini-batch (a line search calls the closure again, without gradients, for each trial); return how many
    mini-batch losses were not finite. With a ``regulariser`` R, the closure's loss is the potential
    ``L + R`` (eq:potential with alpha = 1): its gradient, and a line search's acceptance (eq:armijo), take R in."""
    model.train()
    non_finite = 0
    for _ in range(epochs):
        order = torch.randperm(len(task.train_y), generator=gen)
        for i in range(0, len(order), batch_size):
            x, y = task.train_x[order[i : i + batch_size]], task.train_y[order[i : i + batch_size]]
            losses = []

            def closure(x: Tensor = x, y: Tensor = y, losses: list[Tensor] = losses) -> Tensor:
                loss = nn.functional.cross_entropy(model(x), y)
                if regulariser is not None:
                    loss = loss + regulariser()
                losses.append(loss.detach())
                if torch.is_grad_enabled():  # the gradient pass; a line search's trials run without it
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                return loss

            opt.step(closure)
            non_finite += not bool(torch.isfinite(losses[0]))
    model.eval()
    return non_finite


@torch.no_grad()
def diverged(model: nn.Module, x: Tensor) -> bool:
    """Whether training blew up: a parameter, or the logits on ``x``, not finite."""
    return not (all(bool(torch.isfinite(p).all()) for p in model.parameters()) and bool(torch.isfinite(model(x)).all()))


def record_task(memory: LayerwiseMemory, task: Task, n_samples: int, batch_size: int) -> list[int]:
    """Grow the memory's bases on the first ``n_samples`` training images of ``task`` (GPM's memory update)."""
    x = task.train_x[:n_samples]
    return memory.add_task([x[i : i + batch_size] for i in range(0, len(x), batch_size)])


def consolidate_task(anchor: ElasticAnchor, model: nn.Module, task: Task, n_samples: int) -> None:
    """Anchor R at the current weights and add ``task``'s Fisher, from its first ``n_samples`` training images
    (the images the memory records)."""
    anchor.consolidate(model, task.train_x[:n_samples], task.train_y[:n_samples])


def train_sequence(
    tasks: list[Task], spec: dict[str, Any], lr: float, problem: dict[str, Any], seed: int
) -> dict[str, Any]:
    """Train one MLP on ``tasks`` in order with the base optimizer ``spec`` at ``lr``, built afresh per task and
    wrapped in a :class:`~kaplinskiy.ForgettingGuard` when ``problem["guard"]`` is true, descending the potential
    ``L_t + R`` from the second task on when ``problem["potential"]`` gives R (``lam``, ``fisher``: ``identity``
    for L2-SP, else online EWC with ``gamma``); return the
    validation and test accuracy matrices, their metrics, how many losses were not finite, the task after which
    training had diverged (:func:`diverged`; it then stops, and the later rows repeat that task's row), and the
    memory's basis sizes."""
    torch.manual_seed(seed)
    model = MLP()
    batch, epochs = problem["batch_size"], problem["epochs"]
    steps_per_task = epochs * math.ceil(len(tasks[0].train_y) / batch)
    memory = LayerwiseMemory(model, threshold=problem["thresholds"]) if problem["guard"] else None
    if memory is not None:
        memory._backend = "torch"  # BLAS on every device, as the records were made
    potential = problem.get("potential")
    anchor = (
        None
        if potential is None
        else ElasticAnchor(model.parameters(), potential["lam"], fisher=potential["fisher"], gamma=potential["gamma"])
    )
    T = len(tasks)
    val = [[math.nan] * T for _ in range(T)]
    test = [[math.nan] * T for _ in range(T)]
    non_finite, diverged_at, start = 0, None, time.perf_counter()
    for t, task in enumerate(tasks):
        if spec["kind"] in OWN_PROJECTION:
            opt = build_optimizer(model, spec, lr, steps_per_task, memory=memory)
        else:
            opt = build_optimizer(model, spec, lr, steps_per_task)
            if memory is not None:
                opt = ForgettingGuard(opt, memory)
        gen = torch.Generator().manual_seed(seed * 1000 + t)
        non_finite += train_task(
            model,
            opt,
            task,
            batch_size=batch,
            epochs=epochs,
            gen=gen,
            regulariser=None if anchor is None or anchor.n_tasks == 0 else anchor.penalty,
        )
        for j, other in enumerate(tasks):
            val[t][j] = accuracy(model, other.val_x, other.val_y)
            test[t][j] = accuracy(model, other.test_x, other.test_y)
        if diverged(model, task.train_x[: problem["memory_samples"]]):
            diverged_at = t  # nothing more is learned: the later rows are this one (the model no longer changes)
            for later in range(t + 1, T):
                val[later], test[later] = list(val[t]), list(test[t])
            break
        if memory is not None and t < T - 1:
            record_task(memory, task, problem["memory_samples"], batch)
        if anchor is not None and t < T - 1:
            consolidate_task(anchor, model, task, problem["memory_samples"])
    return {
        "lr": lr,
        **({} if potential is None else {"lam": potential["lam"]}),
        "val": val,
        "test": test,
        "val_metrics": sequence_metrics(val),
        "test_metrics": sequence_metrics(test),
        "non_finite_losses": non_finite,
        "diverged_at_task": diverged_at,
        "basis_sizes": None if memory is None else [int(U.shape[1]) for U in memory.bases],
        "steps_per_task": steps_per_task,
        "seconds": time.perf_counter() - start,
    }
