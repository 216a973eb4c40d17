"""The baselines and their pieces at the edges a training loop reaches: EWC before its first task, A-GEM with
a non-finite or unused reference, a replay buffer's snapshot, padded language-model batches, a model left in
training mode."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kaplinskiy import (
    ElasticAnchor,
    NonFiniteStepWarning,
    ReplayBuffer,
    causal_lm_targets,
    per_sample_gradients,
    sample_loss,
    true_fisher_diagonal,
)
from kaplinskiy.baselines import AGEM, Replay


def test_ewc_acts_only_once_a_task_is_consolidated() -> None:
    """Before the first ``consolidate`` there is no old task: EWC's R is zero (not an L2 pull to the starting
    weights); L2-SP anchors at the starting weights from the start."""
    model = nn.Linear(3, 2)
    ewc, l2sp = (ElasticAnchor(model.parameters(), lam=1.0, fisher=kind) for kind in ("empirical", "identity"))
    with torch.no_grad():
        model.weight.add_(1.0)
    assert float(ewc.penalty().detach()) == 0.0 and float(l2sp.penalty().detach()) == pytest.approx(3.0)
    ewc.add_gradient_()
    assert model.weight.grad is None
    ewc.consolidate(model, torch.randn(5, 3), torch.randint(0, 2, (5,)))
    with torch.no_grad():
        model.weight.add_(0.5)
    assert float(ewc.penalty().detach()) > 0.0


def _buffer() -> ReplayBuffer:
    buffer = ReplayBuffer(4, seed=0)
    buffer.add(torch.randn(4, 3), torch.randint(0, 2, (4,)))
    return buffer


def test_agem_rejects_a_non_finite_reference_gradient() -> None:
    model = nn.Linear(3, 2)
    opt = AGEM(torch.optim.SGD(model.parameters(), lr=0.1), _buffer(), lambda x, y: model(x).sum() * float("inf"))
    before = [p.detach().clone() for p in model.parameters()]
    model(torch.randn(4, 3)).pow(2).sum().backward()
    with pytest.warns(NonFiniteStepWarning):
        opt.step()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))
    assert opt.state_dict()["agem"]["skipped"] == 1


def test_replay_rejects_a_non_finite_replay_gradient_and_counts_it() -> None:
    model = nn.Linear(3, 2)
    opt = Replay(torch.optim.SGD(model.parameters(), lr=0.1), _buffer(), lambda x, y: model(x).sum() * float("inf"))
    before = [p.detach().clone() for p in model.parameters()]
    model(torch.randn(4, 3)).pow(2).sum().backward()
    with pytest.warns(NonFiniteStepWarning):
        opt.step()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))
    assert opt.state_dict()["replay"]["skipped"] == 1 and opt.state_dict()["replay"]["step"] == 0
    older = opt.state_dict()  # a checkpoint from before the counter existed still loads, and a skip counts
    del older["replay"]["skipped"]
    opt.load_state_dict(older)
    opt.zero_grad()
    model(torch.randn(4, 3)).pow(2).sum().backward()
    with pytest.warns(NonFiniteStepWarning):
        opt.step()
    assert opt.state_dict()["replay"]["skipped"] == 2


def test_agem_leaves_unused_and_frozen_parameters_alone() -> None:
    """A parameter with no gradient keeps none (AdamW's weight decay would move it), a frozen one is not
    differentiated, whether the step projects or not."""
    heads = nn.ModuleDict({"new": nn.Linear(3, 2), "old": nn.Linear(3, 2), "frozen": nn.Linear(3, 2)})
    heads["frozen"].requires_grad_(False)
    opt = AGEM(
        torch.optim.AdamW(heads.parameters(), lr=0.1, weight_decay=0.5),
        _buffer(),
        lambda x, y: -nn.functional.cross_entropy(heads["new"](x), y),  # opposes the new task: A-GEM projects
    )
    before = {k: [p.detach().clone() for p in m.parameters()] for k, m in heads.items()}
    nn.functional.cross_entropy(heads["new"](torch.randn(4, 3)), torch.randint(0, 2, (4,))).backward()
    opt.step()
    assert opt.state_dict()["agem"]["n_projected"] == 1
    for k in ("old", "frozen"):
        assert all(torch.equal(p, q) for p, q in zip(heads[k].parameters(), before[k], strict=True))
        assert all(p.grad is None for p in heads[k].parameters())


def test_a_replay_snapshot_is_not_changed_by_later_additions() -> None:
    buffer = _buffer()
    snapshot = buffer.state_dict()
    kept = snapshot["inputs"].clone()
    buffer.add(torch.randn(8, 3), torch.randint(0, 2, (8,)))
    assert torch.equal(snapshot["inputs"], kept)
    other = ReplayBuffer(4)
    other.load_state_dict(snapshot)
    buffer.add(torch.randn(8, 3), torch.randint(0, 2, (8,)))
    other.add(torch.randn(8, 3), torch.randint(0, 2, (8,)))
    assert other.inputs.data_ptr() != snapshot["inputs"].data_ptr()


def test_causal_lm_targets_ignore_every_padded_position_and_refuse_left_padding() -> None:
    ids = torch.tensor([[5, 6, 7, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 0, 0]])
    assert causal_lm_targets(ids, mask).tolist() == [[6, 7, -100, -100, -100]]
    with pytest.raises(ValueError, match="padding must be on the right"):
        causal_lm_targets(torch.tensor([[0, 5, 6]]), torch.tensor([[0, 1, 1]]))


def test_a_model_in_training_mode_with_dropout_is_refused() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.1), nn.Linear(4, 2))
    x, y = torch.randn(5, 3), torch.randint(0, 2, (5,))
    with pytest.raises(ValueError, match=r"model.eval\(\)"):
        per_sample_gradients(model, sample_loss, x, y)
    with pytest.raises(ValueError, match=r"model.eval\(\)"):
        true_fisher_diagonal(model, x)
    model.eval()
    assert per_sample_gradients(model, sample_loss, x, y).shape[0] == 5


@pytest.mark.parametrize("kind", ["identity", "empirical"])
def test_anchored_leaves_a_frozen_parameter_alone(kind: str) -> None:
    """R gives a frozen parameter (``requires_grad=False``) no gradient, as autograd on R gives none: a gradient
    there would let AdamW's weight decay move a weight the user froze. The others get ``grad L + grad R``."""
    from kaplinskiy.baselines import Anchored

    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    model[0].requires_grad_(False)
    x, y = torch.randn(5, 3), torch.randint(0, 2, (5,))
    anchor = ElasticAnchor(model.parameters(), lam=1.0, fisher=kind)
    anchor.consolidate(model, x, y)
    with torch.no_grad():
        model[2].weight.add_(0.5)  # a displacement, so R pulls on the trainable layer
    frozen, trainable = list(model[0].parameters()), list(model[2].parameters())
    before = [p.detach().clone() for p in frozen]
    expected = torch.autograd.grad(nn.functional.cross_entropy(model(x), y) + anchor.penalty(), trainable)
    opt = Anchored(torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.5), anchor)
    nn.functional.cross_entropy(model(x), y).backward()
    anchor.add_gradient_()
    assert all(p.grad is None for p in frozen)
    assert all(torch.allclose(p.grad, e) for p, e in zip(trainable, expected, strict=True))
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    assert all(torch.equal(p, q) for p, q in zip(frozen, before, strict=True))


def test_the_eval_check_reads_every_layer_not_only_the_root() -> None:
    """What makes a per-sample gradient wrong is a layer that is stochastic or reads its batch, wherever it sits:
    a dropout or batch norm left in training mode under a root in eval mode is refused (GPM's recording would
    otherwise update the norm's running statistics), and so is a batch norm without running statistics (it
    normalises by the batch in eval mode too); a model fine-tuned with its batch norm frozen in eval mode is not."""
    from kaplinskiy import LayerwiseMemory

    x, y = torch.randn(5, 3), torch.randint(0, 2, (5,))
    for layer in (nn.Dropout(0.1), nn.BatchNorm1d(4)):
        model = nn.Sequential(nn.Linear(3, 4), layer, nn.Linear(4, 2)).eval()
        layer.train()
        with pytest.raises(ValueError, match=r"model.eval\(\)"):
            per_sample_gradients(model, sample_loss, x, y)
    stats = model[1].running_mean.clone()
    with pytest.raises(ValueError, match=r"model.eval\(\)"):
        LayerwiseMemory(model).add_task([x])
    assert torch.equal(model[1].running_mean, stats)
    batch_stats = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="running statistics"):
        true_fisher_diagonal(batch_stats.eval(), x)
    frozen_norm = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    frozen_norm[1].eval()
    assert per_sample_gradients(frozen_norm, sample_loss, x, y).shape[0] == 5


@pytest.mark.parametrize("kind", ["empirical", "true"])
def test_a_single_logit_is_refused_by_the_fisher(kind: str) -> None:
    """A softmax over one class is constant: its cross-entropy and log-probability are 0 whatever the weights, so
    a Fisher of a one-logit model (a binary classifier trained with BCE) would be 0 and EWC silently off."""
    model = nn.Linear(3, 1)
    anchor = ElasticAnchor(model.parameters(), lam=1.0, fisher=kind)
    with pytest.raises(ValueError, match="single logit"):
        anchor.consolidate(model, torch.randn(4, 3), torch.zeros(4, dtype=torch.long))


def test_an_anchor_loads_onto_its_parameters_device() -> None:
    """A checkpoint read on another device (``torch.load(..., map_location="cpu")`` to resume a CUDA run) follows
    the parameters, as ``torch.optim``'s state does. The meta device stands in for a GPU in this CPU test."""
    model = nn.Linear(3, 2)
    anchor = ElasticAnchor(model.parameters(), lam=1.0)
    anchor.consolidate(model, torch.randn(4, 3), torch.randint(0, 2, (4,)))
    resumed = ElasticAnchor(nn.Linear(3, 2, device="meta").parameters(), lam=1.0)
    resumed.load_state_dict(anchor.state_dict())
    assert all(t.is_meta for t in [*resumed.anchors, *resumed.fisher])
    assert resumed.penalty().is_meta
    with pytest.raises(ValueError, match="Invalid state: 2 anchors for 1 parameters"):
        ElasticAnchor([model.weight], lam=1.0).load_state_dict(anchor.state_dict())


def test_agem_writes_the_projected_gradient_into_the_existing_grad_tensors() -> None:
    """A projected step keeps each ``p.grad`` tensor (a view into DDP's buckets must stay one)."""
    torch.manual_seed(4)
    model = nn.Linear(3, 2)
    buffer = ReplayBuffer(8, seed=0)
    x_old, y_old = torch.randn(8, 3), torch.randint(2, (8,))
    buffer.add(x_old, y_old)
    opt = AGEM(
        torch.optim.SGD(model.parameters(), lr=0.1), buffer, lambda x, y: nn.functional.cross_entropy(model(x), y)
    )
    with torch.no_grad():  # the new task's gradient: the negative of the old one, so the two conflict
        model.zero_grad()
        with torch.enable_grad():
            (-nn.functional.cross_entropy(model(x_old), y_old)).backward()
    before = [p.grad for p in model.parameters()]
    opt.step()
    assert opt.state_dict()["agem"]["n_projected"] == 1
    assert all(p.grad is g for p, g in zip(model.parameters(), before, strict=True))
