"""CPU processes (torch.distributed, gloo) with the model sharded by FSDP2's ``fully_shard``: the parameters are
DTensors split along dim 0, the output rows. A layer-wise projection acts on each row of ``[W, b]`` alone, so each
rank projects the rows it holds, and the guarded run equals the single-process one on the full batch (two ranks of
shards, or HSDP: two replicas of two shards). What cannot be done on shards (the dense memory, Armijo, an
embedding's rows, another split) is refused before anything moves."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from two_processes import run_on_processes, run_on_two_processes

from kaplinskiy import DenseMemory, ForgettingGuard, HybridAdamW, LayerwiseMemory
from kaplinskiy._tensor_lists import dot
from kaplinskiy.memory.layerwise.recording import factor_bytes, recording_passes

STEPS = 3
NAN_STEP = 1  # in the "nan" run, rank 1's shard of a gradient is NaN at this step: every rank must skip it
KINDS = ("adamw", "sgd", "hybrid", "nan", "attention", "cross_attention", "old_task", "hybrid_old_task")
CERTIFIED = ("old_task", "hybrid_old_task")  # steps given the old task's closure: their certificates hold grad L_A . d
MESHES = {2: (2,), 4: (2, 2)}  # by world size: FSDP (one dim of shards), HSDP (2 replicas of 2 shards each)


class _Attention(nn.Module):
    """Self-attention (nn.MultiheadAttention: an input projection of 24 rows and out_proj) and a head; with
    ``cross``, the keys and values are a Linear map of the input, so the input projection's query, key and value
    blocks get bases of their own, and two ranks' shards of its rows meet two blocks each."""

    def __init__(self, cross: bool = False) -> None:
        super().__init__()
        self.attention, self.head = nn.MultiheadAttention(8, 2, batch_first=True), nn.Linear(8, 3)
        self.memory = nn.Linear(8, 8) if cross else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kv = x if self.memory is None else self.memory(x)
        return self.head(self.attention(x, kv, kv, need_weights=False)[0].mean(1))


def _problem(kind: str = "mlp"):
    """16 hidden and 3 output rows: the last layer splits unevenly over two ranks (2 rows and 1). With ``kind``
    "attention", sequences of 4 tokens through self-attention."""
    torch.manual_seed(0)
    if kind in ("attention", "cross_attention"):
        model, shape = _Attention(cross=kind == "cross_attention"), (4, 8)
    else:
        model, shape = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.Tanh(), nn.Linear(16, 3)), (8,)
    gen = torch.Generator().manual_seed(1)
    xa = torch.randn(6, *shape, generator=gen)
    xb, yb = torch.randn(8, *shape, generator=gen), torch.randint(3, (8,), generator=gen)
    return model, xa, xb, yb


def _shard(model: nn.Module, world: int, **kwargs) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    shape = MESHES[world]
    mesh = init_device_mesh("cpu", shape, mesh_dim_names=("replicate", "shard")[-len(shape) :])
    if isinstance(model, _Attention):
        parts = (model.attention, model.head) if model.memory is None else (model.memory, model.attention, model.head)
    else:
        parts = (model[0], model[3])
    for layer in (*parts, model):
        fully_shard(layer, mesh=mesh, **kwargs)


def _optimizer(kind: str, model: nn.Module, memory: LayerwiseMemory) -> torch.optim.Optimizer:
    params = list(model.parameters())
    if kind.startswith("hybrid"):
        return HybridAdamW(params, lr=0.05, weight_decay=0.1, memory=memory)
    if kind == "sgd":
        return ForgettingGuard(torch.optim.SGD(params, lr=0.1, momentum=0.9), memory, project="gradient")
    if kind.endswith("attention"):  # not AdamW: the key bias's gradient is zero but for rounding, which Adam's step
        # normalises to lr-sized steps, so two runs' rounding would part them (without the guard, too)
        return ForgettingGuard(torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.1), memory)
    return ForgettingGuard(torch.optim.AdamW(params, lr=0.05, weight_decay=0.1), memory)


def _train(kind: str, rank: int = 0, world: int = 1) -> tuple[list[torch.Tensor], int, list[float]]:
    """The parameters after the guarded steps (gathered from the shards), the number of skipped steps, and (kind
    in :data:`CERTIFIED`) each step's certified ``grad L_A . d``."""
    torch.set_default_dtype(torch.float64)
    model, xa, xb, yb = _problem(kind if kind.endswith("attention") else "mlp")
    if world > 1:
        _shard(model, world)
    memory = LayerwiseMemory(model, threshold=0.95, freeze_uncovered=kind == "nan")
    # each rank records its own part of the old task: the covariances are summed over the ranks
    old = slice(rank * len(xa) // world, (rank + 1) * len(xa) // world)
    memory.add_task([xa[old]])
    opt = _optimizer(kind, model, memory)
    batch = slice(rank * len(yb) // world, (rank + 1) * len(yb) // world)
    skipped, slopes = 0, []

    def old_task_loss() -> None:  # the mean over all of xa: FSDP averages the ranks' gradients, whatever their share
        (model(xa[old]).square().sum() * world / len(xa)).backward()

    for step in range(STEPS):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xb[batch]), yb[batch]).backward()
        if kind == "nan" and step == NAN_STEP and rank == world - 1:
            grad = model[3].weight.grad
            (grad.to_local() if world > 1 else grad).view(-1)[0] = float("nan")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            opt.step(old_task_closure=old_task_loss if kind in CERTIFIED else None)
        skipped += sum("non-finite" in str(w.message) for w in caught)
        if kind in CERTIFIED:
            slopes.append(opt.certificate["old_task_slope"])
    full = [p.full_tensor() if world > 1 else p for p in model.parameters()]
    return [p.detach().clone() for p in full], skipped, slopes


def _refusals(world: int) -> dict[str, str]:
    """What each refused construction raised, by name."""
    torch.set_default_dtype(torch.float64)

    def sharded(**kwargs) -> nn.Module:
        model = _problem()[0]
        _shard(model, world, **kwargs)
        return model

    def dense() -> None:
        model = sharded()
        DenseMemory(list(model.parameters()))

    def guard_flag(flag: str) -> None:
        model = sharded()
        memory = LayerwiseMemory(model)
        ForgettingGuard(torch.optim.AdamW(model.parameters()), memory, **{flag: True})

    def hybrid_armijo() -> None:
        model = sharded()
        HybridAdamW(model.parameters(), memory=LayerwiseMemory(model), armijo=True)

    def columns() -> None:
        from torch.distributed.tensor import Shard

        model = sharded(shard_placement_fn=lambda p: Shard(p.ndim - 1))
        LayerwiseMemory(model)

    def embedding() -> None:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2))
        fully_shard(model, mesh=init_device_mesh("cpu", (world,)))
        LayerwiseMemory(model)

    def transposed_convolution() -> None:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        model = nn.Sequential(nn.ConvTranspose1d(4, 2, 3), nn.Flatten(), nn.Linear(10, 2))
        fully_shard(model, mesh=init_device_mesh("cpu", (world,)))
        LayerwiseMemory(model)

    cases = {
        "dense": dense,
        "transposed_convolution": transposed_convolution,
        "armijo": lambda: guard_flag("armijo"),
        "certify": lambda: guard_flag("certify"),
        "reuse_coefficients": lambda: guard_flag("reuse_coefficients"),
        "hybrid_armijo": hybrid_armijo,
        "columns": columns,
        "embedding": embedding,
    }
    out = {}
    for name, case in cases.items():
        try:
            case()
            out[name] = "accepted"
        except ValueError as err:
            out[name] = str(err)
    return out


def _dot_of_shards(world: int) -> tuple[float, float, int]:
    """``dot`` of the sharded parameters with themselves, the unsharded value, and the collectives it ran."""
    from torch.distributed.tensor.debug import CommDebugMode

    torch.set_default_dtype(torch.float64)
    full = [p.detach().clone() for p in _problem()[0].parameters()]
    model = _problem()[0]
    _shard(model, world)
    params = [p.detach() for p in model.parameters()]
    with CommDebugMode() as comms:
        value = dot(params, params)
    return value, dot(full, full), comms.get_total_counts()


def _passes(rank: int, world: int) -> tuple[int, bool]:
    """Cross-attention's bases recorded with each layer in a pass of its own (``max_factor_bytes``): how many
    passes, and whether they equal, bit for bit, the bases of one pass (the factors joined over the ranks on each)."""
    torch.set_default_dtype(torch.float64)
    model, xa, _, _ = _problem("cross_attention")
    _shard(model, world)
    old = [xa[rank * len(xa) // world : (rank + 1) * len(xa) // world]]
    one, passes = (LayerwiseMemory(model, threshold=0.95) for _ in range(2))
    one.add_task(old)
    budget = max(factor_bytes(m, b is not None) for m, (_, b) in zip(passes.layers, passes._slots, strict=True))
    passes.add_task(old, max_factor_bytes=budget)
    biased = [b is not None for _, b in passes._slots]
    n = len(recording_passes(model, passes.layers, biased, budget))
    return n, all(torch.equal(U, V) for U, V in zip(one.bases, passes.bases, strict=True))


def _record(rank: int, world: int) -> dict:
    runs = {kind: _train(kind, rank, world) for kind in KINDS}
    return {"runs": runs, "refusals": _refusals(world), "dot": _dot_of_shards(world), "passes": _passes(rank, world)}


def _record_hsdp(rank: int, world: int) -> dict:
    runs = {kind: _train(kind, rank, world) for kind in KINDS}
    return {"runs": runs, "dot": _dot_of_shards(world), "passes": _passes(rank, world)}


def _assert_every_rank_matches_the_single_process(records: list[dict], kind: str) -> int:
    """Each rank's run of ``kind``: the single process' skipped steps, certified slopes and parameters. Returns
    the single process' number of skipped steps."""
    single, single_skipped, single_slopes = _train(kind)
    for record in records:
        got, skipped, slopes = record["runs"][kind]
        assert skipped == single_skipped
        assert slopes == pytest.approx(single_slopes, rel=1e-9, abs=1e-15)
        assert all(torch.allclose(a, b, rtol=1e-12, atol=1e-13) for a, b in zip(single, got, strict=True))
    return single_skipped


@pytest.fixture(scope="module")
def sharded_runs(tmp_path_factory) -> list[dict]:
    """Each rank's record of the sharded runs and refusals (one spawn for every test here)."""
    return run_on_two_processes(_record, str(tmp_path_factory.mktemp("fsdp") / "record"))


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_sharded_guarded_update_equals_single_process(sharded_runs, kind: str) -> None:
    """Guarded AdamW (update mode), SGD (gradient mode), HybridAdamW, a NaN on one rank's shard only (every rank
    skips that step, as the single process does), guarded SGD over self- and cross-attention (its input
    projection and out_proj sharded by rows, a basis per block of rows for cross-attention), and guarded AdamW
    and HybridAdamW given the old task's closure (their certified ``grad L_A . d``, an inner product over every
    rank's shards): three steps on half a batch per rank equal three on the batch."""
    skipped = _assert_every_rank_matches_the_single_process(sharded_runs, kind)
    assert skipped == (1 if kind == "nan" else 0)


@pytest.mark.slow
@pytest.mark.parametrize("mesh", ["fsdp", "hsdp"])
def test_inner_product_of_shards_reduces_once(sharded_runs, hsdp_runs, mesh: str) -> None:
    """``tensor_lists.dot`` over sharded parameters (a certificate's ``grad L_A . d``) sums every tensor's local
    terms and reduces them over the ranks once, not once per tensor, and gives the unsharded inner product."""
    for record in sharded_runs if mesh == "fsdp" else hsdp_runs:
        value, unsharded, collectives = record["dot"]
        assert value == pytest.approx(unsharded, rel=1e-13)
        assert collectives == 1


@pytest.mark.slow
@pytest.mark.parametrize("mesh", ["fsdp", "hsdp"])
def test_sharded_recording_in_passes_grows_the_bases_of_one_pass(sharded_runs, hsdp_runs, mesh: str) -> None:
    """``add_task(max_factor_bytes=...)`` on every rank: each pass joins its layers' factors over the ranks, and the
    bases equal those of one pass, bit for bit, on every rank."""
    for record in sharded_runs if mesh == "fsdp" else hsdp_runs:
        n, equal = record["passes"]
        assert n > 1 and equal


@pytest.fixture(scope="module")
def hsdp_runs(tmp_path_factory) -> list[dict]:
    """Each of four ranks' record of the runs sharded by HSDP: a 2 x 2 mesh, replicas along one dim, shards along
    the other (the parameters are DTensors placed ``(Replicate(), Shard(0))``)."""
    return run_on_processes(_record_hsdp, str(tmp_path_factory.mktemp("hsdp") / "record"), world=4)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_hybrid_sharded_guarded_update_equals_single_process(hsdp_runs, kind: str) -> None:
    """The same runs under HSDP, each of four ranks on a quarter of the batch and of the old task: the covariances
    are summed over both mesh dims, the finite check too (the NaN is on the last rank only), and every rank ends
    with the single process' parameters."""
    _assert_every_rank_matches_the_single_process(hsdp_runs, kind)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "phrase"),
    [
        ("dense", "DTensors"),
        ("armijo", "Invalid armijo"),
        ("certify", "Invalid certify"),
        ("reuse_coefficients", "Invalid reuse_coefficients"),
        ("hybrid_armijo", "Invalid armijo"),
        ("columns", "other than along its output rows"),
        ("embedding", "an embedding whose weight is a DTensor"),
        ("transposed_convolution", "a ConvTranspose1d (dim 0 is its input) whose weight is a DTensor"),
    ],
)
def test_sharded_refusals_name_fsdp(sharded_runs, case: str, phrase: str) -> None:
    """What the shards cannot do is refused with a ValueError naming the DTensors and what to use instead."""
    for record in sharded_runs:
        message = record["refusals"][case]
        assert phrase in message
        assert "DTensor" in message and ("DistributedDataParallel" in message or "LayerwiseMemory" in message)
