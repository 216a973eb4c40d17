"""Hugging Face ``Trainer(optimizers=(opt, sched))`` with a guarded AdamW on a tiny GPT-2 built in the test.

Needs the optional ``transformers`` (and ``accelerate``) packages; skipped without them. No download: the
model comes from a config, the data are random token ids.
"""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from kaplinskiy import ForgettingGuard, HybridAdamW, LayerwiseMemory  # noqa: E402
from kaplinskiy.optimizers import LionMuon, SoftMuon, muon_param_groups  # noqa: E402


class _Tokens(torch.utils.data.Dataset):
    def __init__(self, ids: torch.Tensor) -> None:
        self.ids = ids

    def __len__(self) -> int:
        return self.ids.shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def _tiny_gpt2():
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=32, n_positions=8, n_embd=16, n_layer=1, n_head=2)
    return transformers.GPT2LMHeadModel(config).to(torch.float32)


def _args(tmp_path):
    return transformers.TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=6,
        per_device_train_batch_size=4,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["guard", "hybrid", "hybrid fused"])
def test_trainer_runs_a_guarded_optimizer_and_its_scheduler(tmp_path, kind: str) -> None:
    """Old-task tokens (drawn from 0-15) are protected: their embedding rows do not move; new tokens 16-31 train."""
    torch.set_default_dtype(torch.float32)
    model = _tiny_gpt2()
    old_ids = torch.randint(0, 16, (4, 8))
    mem = LayerwiseMemory(model, threshold=0.99, freeze_uncovered=True)
    model.eval()  # the memory records the inputs without dropout (add_task refuses training mode)
    mem.add_task([old_ids], forward=lambda m, ids: m(input_ids=ids))
    model.train()
    if kind == "guard":
        opt = ForgettingGuard(torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1), mem)
    else:  # fused=True on a CPU: the same step by the per-layer path around torch's fused AdamW
        opt = HybridAdamW(model.parameters(), lr=1e-2, weight_decay=0.1, memory=mem, fused=kind == "hybrid fused")
    sched = transformers.get_linear_schedule_with_warmup(opt, num_warmup_steps=1, num_training_steps=6)
    wte = model.transformer.wte.weight
    before = wte.detach().clone()
    new_ids = torch.randint(16, 32, (24, 8))
    trainer = transformers.Trainer(
        model=model, args=_args(tmp_path), train_dataset=_Tokens(new_ids), optimizers=(opt, sched)
    )
    trainer.train()
    assert opt.certificate["step"] == 6
    seen = old_ids.unique()
    assert torch.equal(wte.detach()[seen], before[seen])
    assert not torch.equal(wte.detach()[16:], before[16:])
    assert sched.get_last_lr()[0] == pytest.approx(0.0)


RECENT_BASES = {  # SoftMuon's temperatures are fitted at step 3, so the checkpoint holds them
    "guard LionMuon": lambda model: LionMuon(muon_param_groups(model, lr=1e-2), lr=1e-2, ns_dtype=torch.float32),
    "guard SoftMuon": lambda model: SoftMuon(
        muon_param_groups(model, lr=1e-2), lr=1e-2, sign_steps=2, transition_steps=3, ns_dtype=torch.float32
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["guard", "hybrid fused", *RECENT_BASES])
def test_trainer_resumes_a_guarded_run_from_its_checkpoint(tmp_path, kind: str) -> None:
    """A run stopped at step 3 and resumed from the Trainer's checkpoint (optimizer.pt holds the guard's state
    next to the base optimizer's) ends where the uninterrupted run ends; the memory is saved and loaded by the
    user."""
    torch.set_default_dtype(torch.float32)
    new_ids = torch.randint(16, 32, (24, 8))

    def train(out, resume=None, memory_state=None):
        model = _tiny_gpt2()
        mem = LayerwiseMemory(model, threshold=0.99)
        if memory_state is None:
            model.eval()
            mem.add_task([torch.randint(0, 16, (4, 8), generator=torch.Generator().manual_seed(3))])
            model.train()
        else:
            mem.load_state_dict(memory_state)
        if kind == "guard":
            opt = ForgettingGuard(torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1), mem)
        elif kind in RECENT_BASES:
            opt = ForgettingGuard(RECENT_BASES[kind](model), mem)
        else:
            opt = HybridAdamW(model.parameters(), lr=1e-2, weight_decay=0.1, memory=mem, fused=True)
        sched = transformers.get_linear_schedule_with_warmup(opt, num_warmup_steps=1, num_training_steps=6)
        args = _args(out)
        args.save_strategy, args.save_steps = "steps", 3
        trainer = transformers.Trainer(model=model, args=args, train_dataset=_Tokens(new_ids), optimizers=(opt, sched))
        trainer.train(resume_from_checkpoint=resume)
        return model, mem, opt

    full, mem, opt = train(tmp_path / "full")
    resumed, _, opt_resumed = train(tmp_path / "resumed", tmp_path / "full" / "checkpoint-3", mem.state_dict())
    assert opt_resumed.certificate["step"] == opt.certificate["step"] == 6
    for a, b in zip(full.parameters(), resumed.parameters(), strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
