"""The permuted-MNIST comparison: its tasks, metrics, optimizers, guard wiring, aggregation and data checks, on
synthetic images (the MNIST arrays themselves are checked by the smoke DAG of test_workflow.py)."""

from __future__ import annotations

import dataclasses
import gzip
import math
import pickle

import numpy as np
import permuted_mnist.prepare_mnist as prepare_mnist
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from permuted_mnist._grid import select
from permuted_mnist._training import (
    MLP,
    build_optimizer,
    make_tasks,
    normalised,
    record_task,
    train_sequence,
    train_task,
)
from permuted_mnist.aggregate_permuted_mnist import comparisons, same_rate_la, summarise
from permuted_mnist.numbers_permuted_mnist import note_sentence, ranking_sentences
from permuted_mnist.run_permuted_mnist import ladder
from permuted_mnist.tab_permuted_mnist import rows as table_rows
from synthetic_mnist import LRS, SPECS, synthetic_mnist

from kaplinskiy import ForgettingGuard, LayerwiseMemory
from kaplinskiy.metrics import average_accuracy, backward_transfer, learning_accuracy

WRAPPED = [kind for kind in SPECS if kind != "kaplinskiy"]  # the kinds ForgettingGuard wraps


@pytest.fixture(autouse=True)
def _float32():
    """The experiment runs in torch's default float32 (the suite's default is float64)."""
    torch.set_default_dtype(torch.float32)


def fingerprints(x: torch.Tensor) -> set[bytes]:
    """Rows as sorted pixel values: the same for an image under any permutation of its pixels."""
    return {row.tobytes() for row in np.sort(x.numpy(), axis=1)}


def test_tasks_permute_disjoint_draws_and_share_the_test_images() -> None:
    data = synthetic_mnist()
    tasks = make_tasks(data, n_tasks=3, n_train=200, n_val=100, n_test=50, seed=7)
    pool, test = normalised(data["train_x"]), normalised(data["test_x"][:50])
    for task in tasks:
        assert sorted(task.permutation.tolist()) == list(range(784))
        inverse = torch.argsort(task.permutation)
        assert fingerprints(task.train_x).isdisjoint(fingerprints(task.val_x))
        unpermuted = task.train_x[:, inverse]  # each training row is a pool image, its label that image's
        matches = (unpermuted[:, None, :] == pool[None]).all(-1)
        assert matches.sum(1).eq(1).all()
        assert torch.equal(task.train_y, torch.from_numpy(data["train_y"])[matches.float().argmax(1)])
        assert torch.equal(task.test_x[:, inverse], test)
    assert not torch.equal(tasks[0].permutation, tasks[1].permutation)
    again = make_tasks(data, n_tasks=3, n_train=200, n_val=100, n_test=50, seed=7)
    assert all(
        torch.equal(a.train_x, b.train_x) and torch.equal(a.val_y, b.val_y) for a, b in zip(tasks, again, strict=True)
    )
    other = make_tasks(data, n_tasks=1, n_train=200, n_val=100, n_test=50, seed=8)
    assert not torch.equal(other[0].permutation, tasks[0].permutation)


@pytest.mark.parametrize("split", [(0, 10, 10), (10, 0, 10), (300, 101, 10), (10, 10, 0), (10, 10, 101)])
def test_tasks_refuse_impossible_splits(split: tuple[int, int, int]) -> None:
    n_train, n_val, n_test = split
    with pytest.raises(ValueError, match="Invalid split"):
        make_tasks(synthetic_mnist(), n_tasks=2, n_train=n_train, n_val=n_val, n_test=n_test, seed=0)


def test_metrics_of_a_hand_written_matrix() -> None:
    R = [[0.9, 0.1, 0.1], [0.7, 0.8, 0.1], [0.6, 0.5, 0.95]]
    assert average_accuracy(R) == pytest.approx((0.6 + 0.5 + 0.95) / 3)
    assert backward_transfer(R) == pytest.approx(((0.6 - 0.9) + (0.5 - 0.8)) / 2)
    assert learning_accuracy(R) == pytest.approx((0.9 + 0.8 + 0.95) / 3)
    assert backward_transfer([[0.4]]) == 0.0


@given(
    st.integers(2, 8).flatmap(
        lambda T: st.lists(st.lists(st.floats(0, 1), min_size=T, max_size=T), min_size=T, max_size=T)
    )
)
def test_backward_transfer_is_the_gap_between_final_and_learning_accuracy(R: list[list[float]]) -> None:
    """Sum of the last row minus sum of the diagonal share R[T-1][T-1]: BWT = T (ACC - LA) / (T - 1)."""
    T = len(R)
    assert backward_transfer(R) == pytest.approx(T * (average_accuracy(R) - learning_accuracy(R)) / (T - 1), abs=1e-12)


def test_muon_kinds_give_the_head_to_adamw_at_the_ratio() -> None:
    model = MLP()
    for kind, ratio in (("muon", 0.05), ("lion_muon", 1.0)):
        opt = build_optimizer(model, SPECS[kind], 0.02, steps_per_task=10)
        muon, aux = ({id(p) for p in g["params"]} for g in sorted(opt.param_groups, key=lambda g: not g["use_muon"]))
        assert muon == {id(layer.weight) for layer in model.hidden}
        assert aux == {id(model.head.weight)}
        assert next(g["lr"] for g in opt.param_groups if not g["use_muon"]) == pytest.approx(ratio * 0.02)


def test_lion_and_soft_signum_take_their_rates_and_schedules() -> None:
    model = MLP()
    lion = build_optimizer(model, SPECS["lion"], 3e-4, steps_per_task=10)
    assert lion.param_groups[0]["lion_lr_ratio"] == 1.0 and lion.param_groups[0]["muon_every"] is None
    soft = build_optimizer(model, SPECS["soft_signum"], 3e-4, steps_per_task=10)
    assert (soft.param_groups[0]["sign_steps"], soft.param_groups[0]["transition_steps"]) == (5, 2)
    with pytest.raises(ValueError, match="kind 'adagrad'"):
        build_optimizer(model, {"kind": "adagrad"}, 0.1, steps_per_task=10)
    with pytest.raises(ValueError, match=r"options \['momentun'\]"):  # a misspelt option is not dropped in silence
        build_optimizer(model, {"kind": "sgd", "options": {"momentun": 0.5}}, 0.1, steps_per_task=10)


@pytest.mark.parametrize("kind", WRAPPED)
def test_guarded_training_keeps_the_recorded_outputs_of_the_old_task(kind: str) -> None:
    """With every direction kept (threshold 1), a guarded task 2 leaves task 1's recorded outputs where they were
    (the network has no bias, and every layer is covered); unguarded, they move."""
    tasks = make_tasks(synthetic_mnist(), n_tasks=2, n_train=128, n_val=32, n_test=32, seed=1)
    moves = {}
    for guarded in (True, False):
        torch.manual_seed(0)
        model = MLP()
        first = build_optimizer(model, SPECS[kind], LRS[kind], steps_per_task=4)
        train_task(model, first, tasks[0], batch_size=32, epochs=1, gen=torch.Generator().manual_seed(0))
        memory = LayerwiseMemory(model, threshold=1.0)
        memory._backend = "torch"
        record_task(memory, tasks[0], n_samples=64, batch_size=32)
        with torch.no_grad():
            before = model(tasks[0].train_x[:64])
        opt = build_optimizer(model, SPECS[kind], LRS[kind], steps_per_task=4)
        if guarded:
            opt = ForgettingGuard(opt, memory)
        train_task(model, opt, tasks[1], batch_size=32, epochs=1, gen=torch.Generator().manual_seed(1))
        with torch.no_grad():
            moves[guarded] = float((model(tasks[0].train_x[:64]) - before).abs().max() / before.abs().max())
    assert moves[True] < 1e-4 and moves[False] > 1e-2, moves


def test_a_sequence_is_reproducible_and_reports_its_matrices() -> None:
    tasks = make_tasks(synthetic_mnist(), n_tasks=3, n_train=96, n_val=32, n_test=32, seed=2)
    problem = {"batch_size": 32, "epochs": 1, "guard": True, "thresholds": [0.95, 0.99, 0.99], "memory_samples": 64}
    runs = [train_sequence(tasks, SPECS["adamw"], 1e-3, problem, seed=3) for _ in range(2)]
    for run in runs:
        run.pop("seconds")
    assert runs[0] == runs[1]
    run = runs[0]
    assert len(run["test"]) == 3 and all(len(row) == 3 and all(0 <= a <= 1 for a in row) for row in run["test"])
    assert run["test_metrics"]["acc"] == pytest.approx(average_accuracy(run["test"]))
    assert len(run["basis_sizes"]) == 3 and all(k > 0 for k in run["basis_sizes"])
    assert run["steps_per_task"] == 3


def test_the_ladder_is_geometric() -> None:
    assert ladder(0.01, 3.0, [-1, 0, 2]) == pytest.approx([0.01 / 3, 0.01, 0.09])


def record(optimizer: str, guarded: bool, seed: int, metrics: list[tuple[float, float]]) -> dict:
    """A synthetic cell: per learning rate, (validation ACC, test ACC); BWT and LA derived from them."""
    runs = [
        {
            "lr": 10.0**-i,
            "non_finite_losses": 0,
            "diverged_at_task": None,
            "basis_sizes": [1, 2, 3] if guarded else None,
            "val_metrics": {"acc": v, "bwt": v - 1, "la": 1.0},
            "test_metrics": {"acc": t, "bwt": t - 1, "la": 1.0},
        }
        for i, (v, t) in enumerate(metrics)
    ]
    return {"optimizer": optimizer, "guarded": guarded, "seed": seed, "runs": runs}


def test_each_arm_selects_its_best_validation_rate_and_the_guard_effect_is_paired() -> None:
    records = [
        record("sgd", False, 0, [(0.5, 0.50), (0.7, 0.60), (0.6, 0.90)]),
        record("sgd", False, 1, [(0.5, 0.50), (0.7, 0.70), (0.6, 0.90)]),
        record("sgd", True, 1, [(0.9, 0.85), (0.1, 0.10), (0.1, 0.10)]),
        record("sgd", True, 0, [(0.9, 0.80), (0.1, 0.10), (0.1, 0.10)]),
    ]
    s = summarise(records, {"sgd": "SGD"})
    alone, guarded = s["arms"]["sgd/alone"], s["arms"]["sgd/guarded"]
    assert (alone["selected"], alone["at_edge"]) == (1, False)  # by validation, not by the better test ACC at 2
    assert (guarded["selected"], guarded["at_edge"]) == (0, True)
    assert alone["test"]["acc"]["values"] == [0.6, 0.7] and guarded["seeds"] == [0, 1]
    assert s["guard_effect"]["sgd"]["acc"]["values"] == pytest.approx([0.2, 0.15])  # seed by seed
    body = table_rows(s)
    assert body.count(r"\\") == 1 and body.count("&") == 9 and r"$^\dagger$" in body  # the section's ten columns
    with pytest.raises(ValueError, match="other seeds"):
        summarise([*records[:2], record("sgd", True, 2, [(0.1, 0.1)] * 3), *records[3:]], {"sgd": "SGD"})


def test_selection_takes_the_first_of_equal_rates() -> None:
    rows = [{"val": {"acc": {"mean": m}}} for m in (0.5, 0.8, 0.8)]
    assert select(rows) == 1


def test_ranking_sentences_split_helped_hurt_and_mixed() -> None:
    records = []
    for name, gain in (("sgd", [0.1, 0.2]), ("lion", [-0.1, -0.05]), ("muon", [0.1, -0.1])):
        for seed, g in enumerate(gain):
            records += [record(name, False, seed, [(0.5, 0.5)]), record(name, True, seed, [(0.5, 0.5 + g)])]
    s = summarise(records, {"sgd": "SGD", "lion": "Lion", "muon": "Muon"})
    out = ranking_sentences(s | comparisons(s))
    assert out["PmnistGuardSentence"] == (
        "The guard raised the test ACC on every seed for SGD, lowered it on every seed for Lion and changed it in "
        "both directions across seeds for Muon."
    )
    assert out["PmnistBestArm"] == "guarded SGD" and out["PmnistGuardHelpedCount"] == "1"
    assert out["PmnistEdgeSentence"].startswith("The rate selected for SGD, guarded SGD")


def test_pixels_convert_back_to_exact_bytes_and_refuse_other_values() -> None:
    x = np.arange(256, dtype=np.uint8)
    assert np.array_equal(prepare_mnist.to_uint8(x.astype(np.float32) / 256), x)
    with pytest.raises(ValueError, match="uint8 / 256"):
        prepare_mnist.to_uint8(np.array([0.5 / 256], dtype=np.float32))


def test_class_counts_must_be_mnists() -> None:
    labels = np.repeat(np.arange(10), prepare_mnist.TEST_COUNTS)
    prepare_mnist.check_counts(labels, prepare_mnist.TEST_COUNTS, "test")
    with pytest.raises(ValueError, match="class counts"):
        prepare_mnist.check_counts(labels[1:], prepare_mnist.TEST_COUNTS, "test")


def test_a_pickle_with_another_digest_is_refused_before_it_is_opened(tmp_path, monkeypatch) -> None:
    opened = []

    class Trap:
        def __reduce__(self):
            return (opened.append, ("unpickled",))

    fake = tmp_path / "mnist.pkl.gz"
    with gzip.open(fake, "wb") as f:
        pickle.dump(Trap(), f)
    monkeypatch.setattr(prepare_mnist, "packaged_pickle", lambda: fake)
    with pytest.raises(ValueError, match="SHA-256"):
        prepare_mnist.main(tmp_path / "out.npz", tmp_path / "out.json")
    assert opened == [] and not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize("kind", ["adamw", "lion_muon", "kaplinskiy"])
def test_a_guarded_sequence_keeps_the_accuracy_on_what_it_recorded(kind: str) -> None:
    """Validation sets made of the images the memory records: with threshold 1, the guarded sequence's validation
    BWT is zero (the recorded outputs do not move); unguarded, old tasks' validation accuracy changes. In float64,
    so that the outputs are kept to rounding: in float32, threshold 1 keeps a layer's input directions only down to
    sqrt(d eps) of the largest (the LayerwiseMemory docstring), and what leaks through the rest may flip a label."""
    torch.set_default_dtype(torch.float64)
    tasks = make_tasks(synthetic_mnist(), n_tasks=3, n_train=96, n_val=32, n_test=32, seed=4)
    tasks = [
        dataclasses.replace(
            t, train_x=t.train_x.double(), val_x=t.train_x[:64].double(), val_y=t.train_y[:64], test_x=t.test_x.double()
        )
        for t in tasks
    ]
    problem = {"batch_size": 32, "epochs": 2, "thresholds": [1.0, 1.0, 1.0], "memory_samples": 64}
    guarded = train_sequence(tasks, SPECS[kind], LRS[kind], {**problem, "guard": True}, seed=0)
    alone = train_sequence(tasks, SPECS[kind], LRS[kind], {**problem, "guard": False}, seed=0)
    assert all(guarded["val"][2][j] == guarded["val"][j][j] for j in range(2))
    assert any(alone["val"][2][j] != alone["val"][j][j] for j in range(2))


@pytest.mark.parametrize("guard", [False, True])
def test_a_diverging_rate_is_recorded_not_fatal(guard: bool) -> None:
    """A rate far too large blows the weights up: the run says after which task, stops training, and its later
    rows repeat that row (the guard's memory is not asked to record non-finite inputs)."""
    tasks = make_tasks(synthetic_mnist(), n_tasks=3, n_train=64, n_val=32, n_test=32, seed=5)
    problem = {"batch_size": 32, "epochs": 1, "guard": guard, "thresholds": [0.95, 0.99, 0.99], "memory_samples": 32}
    run = train_sequence(tasks, SPECS["sgd"], 1e6, problem, seed=0)
    t = run["diverged_at_task"]
    assert t is not None and all(run["test"][later] == run["test"][t] for later in range(t, 3))
    assert math.isfinite(run["test_metrics"]["acc"])
    ok = train_sequence(tasks, SPECS["sgd"], 1e-3, problem, seed=0)
    assert ok["diverged_at_task"] is None


def test_same_rate_learning_counts_only_rates_where_nothing_diverged() -> None:
    records = [record("sgd", g, 0, [(0.5, 0.5)] * 3) for g in (False, True)]
    s = summarise(records, {"sgd": "SGD"})
    for row, la in zip(s["arms"]["sgd/guarded"]["grid"], (0.9, 1.0, 0.2), strict=True):
        row["test"]["la"]["mean"] = la  # the alone arm's LA is 1.0 at every rate
    s["arms"]["sgd/alone"]["grid"][2]["diverged_runs"] = 1
    assert same_rate_la(s) == {"lower": 1, "pairs": 2}


def test_the_kaplinskiy_kind_projects_with_the_memory_it_is_given() -> None:
    model = MLP()
    memory = LayerwiseMemory(model, threshold=0.99)
    memory._backend = "torch"
    assert build_optimizer(model, SPECS["kaplinskiy"], 0.1, steps_per_task=4, memory=memory).memory is memory
    assert build_optimizer(model, SPECS["kaplinskiy"], 0.1, steps_per_task=4).memory is None
    with pytest.raises(ValueError, match="momentum"):
        build_optimizer(model, {"kind": "kaplinskiy", "options": {"momentum": 0.9}}, 0.1, steps_per_task=4)


def test_the_note_sentence_ranks_its_optimizer_within_each_guard() -> None:
    records = []
    for name, accs in (("sgd", (0.5, 0.9)), ("kaplinskiy", (0.6, 0.8))):
        for guarded, acc in zip((False, True), accs, strict=True):
            records.append(record(name, guarded, 0, [(0.5, acc)]))
    s = summarise(records, {"sgd": "SGD", "kaplinskiy": "Kaplinskiy"})
    s |= comparisons(s)
    assert note_sentence(s) == (
        "The note's optimizer: guarded, it ranks 2 of the 2 guarded arms by test ACC (\\ensuremath{80.0}\\%, "
        "against \\ensuremath{90.0}\\% for guarded SGD); unguarded, it ranks 1 of the 2 unguarded arms by test ACC "
        "(\\ensuremath{60.0}\\%)."
    )
    assert note_sentence(s, name="adamw") == ""
