"""HybridAdamW(fused=True): the grouped AdamW-and-projection kernel takes the step the foreach path takes.

Runs on CUDA, or on the CPU under Triton's interpreter; skipped where Triton is not installed. The set-up is
shared: tests/triton_kernels.py.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 (the torch idiom)
from triton_kernels import DEVICE, requires_kernels

from kaplinskiy import DenseMemory, HybridAdamW, LayerwiseMemory, NonFiniteStepWarning

pytestmark = requires_kernels


class Net(nn.Module):
    """Linear layers with and without bias, odd sizes (masks at every edge), a convolution, an embedding and
    a LayerNorm (uncovered)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(11, 6)
        self.lin = nn.Linear(6, 37)
        self.norm = nn.LayerNorm(37)
        self.nob = nn.Linear(37, 5, bias=False)
        self.conv = nn.Conv1d(5, 7, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.nob(self.norm(self.lin(self.emb(x))))
        return self.conv(h.transpose(1, 2)).sum()


def gpt2() -> nn.Module:
    """A tiny GPT-2 (HF Conv1D layers, stored ``in x out``; a tied embedding and head)."""
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_embd=24, n_layer=1, n_head=2, vocab_size=11, n_positions=8)
    return transformers.GPT2LMHeadModel(config)


MODELS = {  # "attention": nn.MultiheadAttention's input projection (3E x E, shared with an AttentionInProjection)
    "net": Net,
    "gpt2": gpt2,
    "attention": lambda: nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0),
    "cross": lambda: nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0),  # its cross-attention: a basis per block
}


def setup(
    model: str, *, fused: bool, seed: int = 0, dtype: torch.dtype = torch.float32, **kw
) -> tuple[nn.Module, LayerwiseMemory, HybridAdamW]:
    """A model, a memory with random bases on its Linear/Conv layers (GPT-2's head among them, tied to its
    embedding: the grouped kernel does not take it) and protected embedding rows, and an optimizer with weights
    and biases in groups of different lr and weight decay."""
    torch.manual_seed(seed)
    net = MODELS[model]().to(DEVICE, dtype)
    backend = kw.pop("backend", "triton" if fused else "torch")
    memory = LayerwiseMemory(net, freeze_uncovered=kw.pop("freeze", False))
    memory._backend = backend
    for i, U in enumerate(memory.bases):
        if U.ndim == 1:
            memory.bases[i] = torch.randperm(memory.layers[i].num_embeddings, device=DEVICE)[:3]
        elif model == "cross" and memory.layers[i].weight is net.multihead_attn.in_proj_weight:
            bases = [torch.linalg.qr(torch.randn(U.shape[0], r, dtype=torch.float64))[0] for r in (2, 5, 3)]
            memory.bases[i] = torch.stack([F.pad(V, (0, 5 - V.shape[1])) for V in bases]).to(DEVICE, U.dtype)
        else:
            r = min(U.shape[0] - 1, 1 + 5 * i % 17)
            memory.bases[i] = torch.linalg.qr(torch.randn(U.shape[0], r, device=DEVICE, dtype=torch.float64))[0].to(U)
    named = list(net.named_parameters())
    groups = [
        {"params": [p for n, p in named if not n.endswith("bias")], "weight_decay": 0.1},
        {"params": [p for n, p in named if n.endswith("bias")], "weight_decay": 0.0, "lr": 0.02},
    ]
    opt = HybridAdamW(groups, memory=memory, fused=fused, **{"lr": 0.05, "betas": (0.8, 0.95), "eps": 1e-6, **kw})
    return net, memory, opt


def set_grads(net: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for p in net.parameters():
        p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype).to(DEVICE)


def run(net: nn.Module, opt: HybridAdamW, steps: range) -> None:
    for t in steps:
        set_grads(net, t)
        opt.step()


@pytest.mark.parametrize("model", sorted(MODELS))
def test_fused_step_matches_the_foreach_step(model: str) -> None:
    """Three steps: parameters and moments agree with the foreach path (bias corrections in float32 on the
    device, as torch's fused AdamW computes them, hence the tolerance)."""
    net, _, fused = setup(model, fused=True)
    twin, _, ref = setup(model, fused=False)
    run(net, fused, range(3))
    run(twin, ref, range(3))
    assert fused._fused.plan is not None and fused._fused.plan.rows.layout == (2 if model == "gpt2" else 1)
    outside = fused.memory.fused_layers()[2]  # embeddings' rows, and GPT-2's head tied to its embedding
    kinds = {type(fused.memory.layers[i]).__name__ for i in outside}
    outside_kinds = {"gpt2": {"Embedding", "Linear"}, "net": {"Embedding"}, "cross": {"AttentionInProjection"}}
    assert kinds == outside_kinds.get(model, set())
    for p, q in zip(net.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(fused.state[p][key], ref.state[q][key], rtol=1e-5, atol=1e-7)
        assert float(fused.state[p]["step"]) == float(ref.state[q]["step"]) == 3.0
        assert fused.state[p]["step"].dtype == torch.float32 and fused.state[p]["step"].device == p.device


def old_task_residual(dtype: torch.dtype, **kw) -> float:
    """Two steps on bfloat16 weights: the norm of their coordinates along the bases (``D U``, in float64 on a
    float32 copy), relative to that of an unprojected AdamW step's."""
    net, memory, opt = setup("net", dtype=dtype, **kw)
    plain = HybridAdamW(copy.deepcopy(net).parameters(), lr=0.05, betas=(0.8, 0.95), eps=1e-6)
    check = LayerwiseMemory(copy.deepcopy(net).float())
    check._backend = "torch"
    check.load_state_dict({"bases": [U if U.ndim == 1 else U.float() for U in memory.bases], "n_tasks": 1})
    start = [p.detach().float().clone() for p in memory.params]  # a copy also for float32
    for t in range(2):
        set_grads(net, t)
        for p, q in zip(net.parameters(), plain.param_groups[0]["params"], strict=True):
            q.grad = p.grad.clone()
        opt.step()
        plain.step()
    moved = [p.detach().float() - s for p, s in zip(memory.params, start, strict=True)]
    unprojected = [q.detach().float() - s for q, s in zip(plain.param_groups[0]["params"], start, strict=True)]
    return check.residual(moved) / check.residual(unprojected)


def test_bfloat16_weights_take_the_float32_step_to_rounding() -> None:
    """bfloat16 weights, gradients and moments (as torch's fused AdamW keeps them), float32 arithmetic: the steps
    agree with float32 ones from the same start to a few bfloat16 roundings. Along the bases only rounding noise
    is left: the weights are rounded twice (after AdamW, after the projection; the foreach path rounds once, and
    Triton's interpreter truncates where a GPU rounds to nearest, hence the margin over the foreach path)."""
    net, _, opt = setup("net", fused=True, dtype=torch.bfloat16)
    twin, _, ref = setup("net", fused=False)
    with torch.no_grad():
        for p, q in zip(net.parameters(), twin.parameters(), strict=True):
            q.copy_(p)
    for t in range(2):
        set_grads(net, t)
        for p, q in zip(net.parameters(), twin.parameters(), strict=True):
            q.grad = p.grad.float()
        opt.step()
        ref.step()
    assert opt._fused.plan is not None and opt._fused.plan.rows.dtype == torch.bfloat16
    for p, q in zip(net.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p.float(), q, rtol=2**-6, atol=2**-9)
    fused, per_layer = old_task_residual(torch.bfloat16, fused=True), old_task_residual(torch.bfloat16, fused=False)
    assert fused < 0.1 and fused < 8 * per_layer
    assert old_task_residual(torch.float32, fused=True) < 1e-5  # float32: no rounding to speak of


@pytest.mark.parametrize(
    ("sizes", "ranks"),
    [
        ([(70, 33), (33, 129)], [64, 33]),  # ranks that take the 64- and 32-column blocks (64 = MAX_RANK)
        ([(17, 16), (16, 1), (1, 5)], [1, 16, 1]),  # a 1-wide input, a 1-row output, rank 1
    ],
)
def test_fused_step_matches_the_foreach_step_at_edge_ranks_and_widths(sizes, ranks) -> None:
    """Linear layers (in, out) with bases of the given ranks: the fused step equals the foreach step."""
    nets, opts = [], []
    for fused in (True, False):
        torch.manual_seed(0)
        net = nn.Sequential(*(nn.Linear(i, o) for i, o in sizes)).to(DEVICE, torch.float32)
        memory = LayerwiseMemory(net)
        memory._backend = "triton" if fused else "torch"
        for j, r in enumerate(ranks):
            g = torch.Generator().manual_seed(j)
            U = torch.linalg.qr(torch.randn(memory.bases[j].shape[0], r, generator=g, dtype=torch.float64))[0]
            memory.bases[j] = U.to(DEVICE, torch.float32)
        nets.append(net)
        opts.append(HybridAdamW(net.parameters(), lr=0.05, weight_decay=0.1, memory=memory, fused=fused))
        run(net, opts[-1], range(2))
    assert opts[0]._fused.plan is not None and len(opts[0]._fused.plan.rows.layers) == len(sizes)
    for p, q in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_fused_step_keeps_old_task_coordinates() -> None:
    """Eq. (12): every projected layer's step is orthogonal to its basis, weight decay included."""
    net, memory, opt = setup("net", fused=True)
    before = [p.detach().clone() for p in memory.params]
    run(net, opt, range(2))
    moved = [p.detach() - b for p, b in zip(memory.params, before, strict=True)]
    assert max(float(m.abs().max()) for m in moved) > 1e-2
    assert memory.residual(moved) < 1e-5


def test_frozen_parameters_keep_their_values_and_update_their_moments() -> None:
    net, memory, opt = setup("net", fused=True, freeze=True)
    frozen = memory.frozen_params()
    assert frozen and all(any(p is q for q in frozen) for p in net.norm.parameters())
    before = [p.detach().clone() for p in frozen]
    run(net, opt, range(2))
    assert all(torch.equal(p, b) for p, b in zip(frozen, before, strict=True))
    assert all(float(opt.state[p]["exp_avg"].abs().max()) > 0 for p in frozen)


def test_state_dict_round_trip_continues_bit_for_bit() -> None:
    net, memory, opt = setup("net", fused=True)
    run(net, opt, range(2))
    saved_net, saved_opt = copy.deepcopy(net.state_dict()), copy.deepcopy(opt.state_dict())
    run(net, opt, range(2, 4))
    net2, memory2, opt2 = setup("net", fused=True, seed=1)
    net2.load_state_dict(saved_net)
    memory2.load_state_dict(memory.state_dict())
    opt2.load_state_dict(saved_opt)
    assert opt2.state[next(net2.parameters())]["step"].device.type == DEVICE.type
    run(net2, opt2, range(2, 4))
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), net2.parameters(), strict=True))


def test_non_finite_gradient_leaves_everything_bit_identical() -> None:
    net, _, opt = setup("net", fused=True)
    run(net, opt, range(1))
    params = [p.detach().clone() for p in net.parameters()]
    state = copy.deepcopy(opt.state_dict()["state"])
    set_grads(net, 5)
    net.lin.weight.grad[0, 0] = float("nan")
    with pytest.warns(NonFiniteStepWarning):
        opt.step()
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), params, strict=True))
    for i, s in opt.state_dict()["state"].items():
        assert all(torch.equal(s[k], state[i][k]) for k in s)


def test_a_rejected_first_step_creates_no_state_and_a_zero_gradient_moves_nothing() -> None:
    """The host prepares the fused step while the device checks the gradients: that preparation must not create
    state (a first step rejected leaves none) nor move anything (an all-zero gradient is a no-op)."""
    net, _, opt = setup("net", fused=True)
    params = [p.detach().clone() for p in net.parameters()]
    set_grads(net, 0)
    net.lin.weight.grad[0, 0] = float("inf")
    with pytest.warns(NonFiniteStepWarning):
        opt.step()
    assert len(opt.state) == 0 and opt.hybrid_state["step"] == 0
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    assert len(opt.state) == 0 and all(torch.equal(p, q) for p, q in zip(net.parameters(), params, strict=True))
    run(net, opt, range(1))
    assert len(opt.state) == len(params) and not all(
        torch.equal(p, q) for p, q in zip(net.parameters(), params, strict=True)
    )


def test_old_task_slope_is_certified() -> None:
    """The certificate's ``grad L_A . d`` is ~0 for an old-task gradient inside the memory's span (eq. 12)."""
    net, memory, opt = setup("net", fused=True)
    set_grads(net, 7)
    outside = [p.grad.clone() for p in memory.params]
    memory.project_(outside)
    inside = [p.grad - o for p, o in zip(memory.params, outside, strict=True)]
    set_grads(net, 0)

    def old_task() -> torch.Tensor:
        for p, g in zip(memory.params, inside, strict=True):
            p.grad = g.clone()
        return torch.zeros(())

    opt.step(old_task_closure=old_task)
    cert = opt.certificate
    assert cert is not None and cert["forward_passes"] == 1
    scale = sum(float(g.norm()) for g in inside) * 0.05
    assert scale > 0.1 and abs(cert["old_task_slope"]) < 1e-5 * scale


def test_invalid_fused_uses_raise() -> None:
    net = Net().to(DEVICE, torch.float32)
    with pytest.raises(ValueError, match="Armijo"):
        HybridAdamW(net.parameters(), fused=True, armijo=True)
    with pytest.raises(ValueError, match="LayerwiseMemory"):
        HybridAdamW(net.parameters(), fused=True, memory=DenseMemory(list(net.parameters())))
    with pytest.raises(ValueError, match="whole optimizer"):
        HybridAdamW([{"params": net.parameters(), "fused": True}])
    net2, _, opt2 = setup("net", fused=True)
    set_grads(net2, 0)
    net2.lin.bias.grad = None
    with warnings.catch_warnings(), pytest.raises(RuntimeError, match="gradient for every projected layer"):
        opt2.step()


def test_deferred_check_takes_the_same_steps_and_skips_a_non_finite_one_on_the_device() -> None:
    """``defer_check=True``: finite steps are the host-checked ones bit for bit; a NaN gradient leaves parameters,
    moments and step counts bit-identical, and its warning comes when the verdict is read."""
    net, _, opt = setup("net", fused=True, defer_check=True)
    twin, _, ref = setup("net", fused=True)
    run(net, opt, range(2))
    run(twin, ref, range(2))
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), twin.parameters(), strict=True))
    params = [p.detach().clone() for p in net.parameters()]
    state = copy.deepcopy(opt.state_dict()["state"])
    set_grads(net, 5)
    net.nob.weight.grad[1, 2] = float("inf")
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonFiniteStepWarning)  # not yet: the verdict has not been read
        opt.step()
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), params, strict=True))
    with pytest.warns(NonFiniteStepWarning, match="step 3"):
        cert = opt.certificate
    assert cert is not None and not cert["accepted"] and opt.hybrid_state["skipped"] == 1
    for i, s in opt.state_dict()["state"].items():
        assert all(torch.equal(s[k], state[i][k]) for k in s)
    with pytest.raises(ValueError, match="defer_check"):
        HybridAdamW(net.parameters(), defer_check=True)


def test_a_learning_rate_schedule_reaches_the_kernel() -> None:
    """The kernel's hyperparameter table follows the groups' lr from step to step (a scheduler rebuilds it)."""
    runs = []
    for fused in (True, False):
        net, _, opt = setup("net", fused=fused)
        schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 / (1 + 3 * t))
        for t in range(3):
            set_grads(net, t)
            opt.step()
            schedule.step()
        runs.append(list(net.parameters()))
    for p, q in zip(*runs, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_bias_corrections_keep_float32_precision_where_beta2_t_is_near_one() -> None:
    """Step 1 with beta2 = 0.9999: ``1 - beta2^t`` formed as ``1 - exp(t ln beta2)`` in float32 would carry a
    relative error of up to ~1e-3 (cancellation) into the step; the kernel's ``-expm1`` keeps the step of each projected
    tensor within 1e-5 of the float64 path's."""
    net, _, fused = setup("net", fused=True, betas=(0.9, 0.9999), eps=1e-12)
    twin, _, ref = setup("net", fused=False, betas=(0.9, 0.9999), eps=1e-12)
    before = [p.detach().clone() for p in net.parameters()]
    run(net, fused, range(1))
    run(twin, ref, range(1))
    in_kernel = set(fused._fused.plan.tensors)
    pairs = [(p, q, w) for p, q, w in zip(net.parameters(), twin.parameters(), before, strict=True) if p in in_kernel]
    assert len(pairs) >= 4
    for p, q, w in pairs:
        torch.testing.assert_close(p - w, q - w, rtol=1e-5, atol=1e-7)  # 1e-7: float32 rounding of w


def test_loading_a_state_dict_into_a_running_optimizer_takes_effect() -> None:
    """The fused step keeps its lists of state tensors between steps; loading a state dict replaces them."""
    net, _, opt = setup("net", fused=True)
    run(net, opt, range(2))
    saved_net, saved_opt = copy.deepcopy(net.state_dict()), copy.deepcopy(opt.state_dict())
    run(net, opt, range(2, 4))
    after = [p.detach().clone() for p in net.parameters()]
    net.load_state_dict(saved_net)
    opt.load_state_dict(saved_opt)
    run(net, opt, range(2, 4))
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), after, strict=True))


@pytest.mark.parametrize("reset", ["clear", "one tensor"])
def test_state_reset_between_steps_takes_effect(reset: str) -> None:
    """Optimizer state reset between steps (``opt.state.clear()`` at a task switch, or one moment replaced) is
    what the next fused step uses, as with the foreach path: the kept lists must not outlive the state."""
    nets, opts = {}, {}
    for fused in (True, False):
        nets[fused], _, opts[fused] = setup("net", fused=fused)
        run(nets[fused], opts[fused], range(2))
        if reset == "clear":
            opts[fused].state.clear()
        else:
            p = nets[fused].lin.weight
            opts[fused].state[p]["exp_avg"] = torch.zeros_like(p)
        run(nets[fused], opts[fused], range(2, 4))
    for p, q in zip(nets[True].parameters(), nets[False].parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
        assert float(opts[True].state[p]["step"]) == float(opts[False].state[q]["step"])
        m, n = opts[True].state[p]["exp_avg"], opts[False].state[q]["exp_avg"]
        torch.testing.assert_close(m, n, rtol=1e-5, atol=1e-7)


def test_without_the_grouped_kernel_the_same_step_takes_the_per_layer_path() -> None:
    """``fused=True`` with a memory that projects layer by layer (``_backend = "torch"``, as on a CPU without
    Triton): no kernel, every layer projected around torch's fused AdamW, the same step."""
    net, memory, fused = setup("gpt2", fused=True, backend="torch")
    twin, _, ref = setup("gpt2", fused=False)
    run(net, fused, range(2))
    run(twin, ref, range(2))
    assert fused._fused.plan is None and len(memory.fused_layers()[2]) == len(memory.layers)
    for p, q in zip(net.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_cache_hints_change_the_launch_not_the_step() -> None:
    import kaplinskiy._kernels.adamw_rows as adamw_rows_kernel

    steps = {}
    try:
        for hints in (True, False):
            adamw_rows_kernel.set_cache_hints(hints)
            net, _, opt = setup("net", fused=True)
            run(net, opt, range(2))
            steps[hints] = [p.detach().clone() for p in net.parameters()]
            group, tensors = opt.param_groups[0], opt._fused.plan.tensors
            hyper = [(group["lr"], group["weight_decay"], *group["betas"], group["eps"])] * len(tensors)
            moments = [tuple(opt.state[p][k] for k in ("exp_avg", "exp_avg_sq", "step")) for p in tensors]
            launch = opt._fused.plan.launch(moments, hyper)
            assert (launch.constants["STREAM"], launch.constants["KEEP"]) == (
                ("evict_first", "evict_last") if hints else ("", "")
            )
        with pytest.raises(ValueError, match="Invalid cache hints"):
            adamw_rows_kernel.set_cache_hints(1)
    finally:
        adamw_rows_kernel.set_cache_hints(True)
    assert all(torch.equal(a, b) for a, b in zip(steps[True], steps[False], strict=True))
