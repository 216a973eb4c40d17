"""HybridAdamW(fused=True) across the things a training loop does around steps: a scheduler that fills a tensor
lr in place, a checkpoint from an unfused run, a rollback over a pending deferred verdict, layers the grouped
kernel cannot take. Same set-up as tests/test_hybrid_adamw_fused.py (CUDA, or Triton's CPU interpreter)."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from test_hybrid_adamw_fused import run, set_grads, setup
from torch import nn
from triton_kernels import DEVICE, requires_kernels

from kaplinskiy import HybridAdamW, LayerwiseMemory, NonFiniteStepWarning
from kaplinskiy._kernels.layerwise import RowLayer, RowPlan, padded_bases

pytestmark = requires_kernels


def test_a_tensor_learning_rate_filled_in_place_reaches_the_kernel() -> None:
    """torch's schedulers fill a tensor lr in place; the kernel's table must follow it as it follows a float."""
    runs = []
    for as_tensor in (True, False):
        net, _, opt = setup("net", fused=True)
        if as_tensor:
            for group in opt.param_groups:
                group["lr"] = torch.tensor(group["lr"])
        schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 / (1 + 3 * t))
        for t in range(3):
            set_grads(net, t)
            opt.step()
            schedule.step()
        runs.append([p.detach().clone() for p in net.parameters()])
    assert all(torch.equal(p, q) for p, q in zip(*runs, strict=True))


def _bases(memory: LayerwiseMemory) -> None:
    torch.manual_seed(1)
    for i, U in enumerate(memory.bases):
        memory.bases[i] = torch.linalg.qr(torch.randn(U.shape[0], 2, dtype=torch.float64))[0].to(U)


def test_layers_the_kernel_cannot_take_stay_out_of_its_plan() -> None:
    """A bias of another dtype than its weight's, and float64 weights, are not handed to the kernel (it would
    read them at the wrong width); a plan built by hand with such a layer is refused."""
    net = nn.Sequential(nn.Linear(8, 6), nn.Linear(6, 4)).to(DEVICE)
    net[0].weight.data = net[0].weight.data.bfloat16()
    net[1].to(torch.bfloat16)
    memory = LayerwiseMemory(net)
    memory._backend = "triton"
    _bases(memory)
    plan, layers, outside = memory.fused_layers()
    assert plan is not None and [w for w, _ in layers] == [net[1].weight] and outside == [0]
    U = memory.bases[0]
    with pytest.raises(ValueError, match="biases of their weights' dtype"):
        RowPlan([RowLayer(net[0].weight, net[0].bias, *padded_bases(U), False, U.shape[1])])
    wide = nn.Sequential(nn.Linear(8, 6)).to(DEVICE, torch.float64)
    memory = LayerwiseMemory(wide)
    memory._backend = "triton"
    _bases(memory)
    assert memory.fused_layers()[0] is None  # every layer by BLAS


def test_float64_model_takes_the_per_layer_path_and_the_foreach_step() -> None:
    net, _, opt = setup("net", fused=True, dtype=torch.float64)
    twin, _, ref = setup("net", fused=False, dtype=torch.float64)
    assert opt.memory.fused_layers()[0] is None
    run(net, opt, range(3))
    run(twin, ref, range(3))
    for p, q in zip(net.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("saved_fused", [False, True])
def test_a_checkpoint_resumes_across_fused_and_foreach(saved_fused: bool) -> None:
    """A run checkpointed with one setting of ``fused`` resumes with the other: the step counts are converted
    to what the loading optimizer keeps, its groups keep its flag, and the run goes on as the uninterrupted one
    (to rounding: the two paths round differently)."""
    net, _, opt = setup("net", fused=saved_fused)
    run(net, opt, range(2))
    saved_net, saved_opt = copy.deepcopy(net.state_dict()), copy.deepcopy(opt.state_dict())
    run(net, opt, range(2, 4))
    resumed, _, loaded = setup("net", fused=not saved_fused)
    resumed.load_state_dict(saved_net)
    loaded.load_state_dict(saved_opt)
    assert all(g["fused"] is (not saved_fused) for g in loaded.param_groups)
    for p, state in loaded.state.items():
        want = (torch.float32, p.device) if not saved_fused else (torch.float64, torch.device("cpu"))
        assert (state["step"].dtype, state["step"].device) == want
    run(resumed, loaded, range(2, 4))
    for p, q in zip(resumed.parameters(), net.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_a_rollback_reads_pending_verdicts_into_the_record_it_replaces() -> None:
    """Loading a checkpoint over a pending rejected step: its warning comes at the load, and neither the loaded
    record nor the caller's checkpoint is marked by it."""
    net, _, opt = setup("net", fused=True, defer_check=True)
    run(net, opt, range(3))
    checkpoint = copy.deepcopy(opt.state_dict())  # step 3, accepted
    twin, _, other = setup("net", fused=True, defer_check=True)
    run(twin, other, range(2))
    set_grads(twin, 2)
    twin.lin.weight.grad[0, 0] = float("inf")
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonFiniteStepWarning)
        other.step()  # step 3, rejected on the device, verdict pending
    with pytest.warns(NonFiniteStepWarning, match="step 3"):
        other.load_state_dict(checkpoint)
    assert other.certificate["accepted"] and other.hybrid_state.get("skipped", 0) == 0
    assert other.hybrid_state == checkpoint["hybrid"] and other.hybrid_state is not checkpoint["hybrid"]
    run(twin, other, range(3, 4))
    assert checkpoint["hybrid"]["certificate"]["step"] == 3  # the caller's dict is not written to later
    plain = HybridAdamW([{"params": g["params"]} for g in other.param_groups])
    plain.load_state_dict({k: v for k, v in copy.deepcopy(other.state_dict()).items() if k != "hybrid"})
    assert plain.hybrid_state == {"step": 0, "certificate": None}  # a torch-style state dict resets the record


def test_a_deferred_step_records_its_loss_when_the_verdict_arrives() -> None:
    net, _, opt = setup("net", fused=True, defer_check=True)
    set_grads(net, 0)
    opt.step(lambda: torch.tensor(2.5, device=DEVICE))
    assert opt.certificate["phi_before"] == 2.5 and opt.certificate["accepted"]
