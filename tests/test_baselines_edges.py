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
from kaplinskiy.baselines import AGEM


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
