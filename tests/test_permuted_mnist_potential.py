"""Permuted MNIST's potential runs: R in the training closure, its consolidation across a sequence, the strength
cells, their aggregation against the arms without R, the table and the sentences, and the numbers that compare
every variant (each arm without R and with each R)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from permuted_mnist._training import MLP, build_optimizer, make_tasks, train_sequence, train_task
from permuted_mnist.aggregate_permuted_mnist import comparisons as rate_comparisons
from permuted_mnist.aggregate_permuted_mnist import summarise as summarise_rates
from permuted_mnist.aggregate_permuted_mnist_potential import comparisons as potential_comparisons
from permuted_mnist.aggregate_permuted_mnist_potential import summarise
from permuted_mnist.aggregate_permuted_mnist_variants import compare, head_wins, higher_means
from permuted_mnist.fig_permuted_mnist_potential import plot
from permuted_mnist.numbers_permuted_mnist_potential import comparisons, edge_sentence, lines_for, note_sentence
from permuted_mnist.numbers_permuted_mnist_potentials import best_macros
from permuted_mnist.numbers_permuted_mnist_potentials import lines_for as all_lines
from permuted_mnist.run_permuted_mnist import selected, settings
from permuted_mnist.tab_permuted_mnist_potential import rows as table_rows
from synthetic_mnist import LRS, SPECS, synthetic_mnist

from kaplinskiy import ElasticAnchor

PROBLEM = {"batch_size": 32, "epochs": 1, "thresholds": [0.95, 0.99, 0.99], "memory_samples": 64}
EWC = {"fisher": "empirical", "gamma": 1.0}
EWC10 = {**EWC, "lam": 10.0}
L2SP = {"lam": 0.1, "fisher": "identity", "gamma": 1.0}


@pytest.fixture(autouse=True)
def _float32():
    """The experiment runs in torch's default float32 (the suite's default is float64)."""
    torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("kind", ["sgd", "adamw", "kaplinskiy"])
def test_the_regulariser_pulls_training_towards_its_anchor(kind: str) -> None:
    """Task 2 trained on L + R (L2-SP around the weights after task 1) ends nearer those weights than on L alone:
    R's gradient reaches every kind's step (the Kaplinskiy kind's line search too)."""
    tasks = make_tasks(synthetic_mnist(), n_tasks=2, n_train=128, n_val=32, n_test=32, seed=1)
    distance = {}
    for lam in (0.0, 30.0):
        torch.manual_seed(0)
        model = MLP()
        anchor = ElasticAnchor(model.parameters(), lam, fisher="identity")
        opt = build_optimizer(model, SPECS[kind], LRS[kind], steps_per_task=4)
        train_task(model, opt, tasks[0], batch_size=32, epochs=2, gen=torch.Generator().manual_seed(0))
        anchor.consolidate()
        opt = build_optimizer(model, SPECS[kind], LRS[kind], steps_per_task=4)
        gen = torch.Generator().manual_seed(1)
        train_task(model, opt, tasks[1], batch_size=32, epochs=2, gen=gen, regulariser=anchor.penalty)
        with torch.no_grad():
            moved = zip(model.parameters(), anchor.anchors, strict=True)
            distance[lam] = sum(float((p - a).pow(2).sum()) for p, a in moved)
    assert distance[30.0] < 0.5 * distance[0.0], distance


@pytest.mark.parametrize("kind", ["sgd", "kaplinskiy"])
def test_the_closure_loss_is_the_potential(kind: str) -> None:
    """A regulariser that is not finite makes every mini-batch's potential non-finite: the count sees R, so the
    closure (and a line search's acceptance) evaluates L + R, not L."""
    task = make_tasks(synthetic_mnist(), n_tasks=1, n_train=96, n_val=32, n_test=32, seed=2)[0]
    model = MLP()
    opt = build_optimizer(model, SPECS[kind], LRS[kind], steps_per_task=3)
    gen = torch.Generator().manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the Kaplinskiy kind warns of each step it rejects
        bad = train_task(model, opt, task, batch_size=32, epochs=1, gen=gen, regulariser=lambda: torch.tensor(math.nan))
    assert bad == 3
    assert train_task(model, opt, task, batch_size=32, epochs=1, gen=gen, regulariser=lambda: torch.tensor(0.0)) == 0


@pytest.mark.parametrize("guard", [False, True])
def test_a_sequence_with_the_potential_consolidates_after_each_task(guard: bool) -> None:
    """A zero strength is the arm without R, bit for bit; a positive one changes what is learned after the first
    task (EWC acts from the first consolidation on, not before: task 1's row is the same)."""
    tasks = make_tasks(synthetic_mnist(), n_tasks=3, n_train=96, n_val=32, n_test=32, seed=3)
    problem = {**PROBLEM, "guard": guard, "epochs": 4}
    without = train_sequence(tasks, SPECS["adamw"], 3e-3, problem, seed=0)
    zero = train_sequence(tasks, SPECS["adamw"], 3e-3, {**problem, "potential": {**EWC, "lam": 0.0}}, seed=0)
    strong = train_sequence(tasks, SPECS["adamw"], 3e-3, {**problem, "potential": {**EWC, "lam": 1e3}}, seed=0)
    for run in (without, zero, strong):
        run.pop("seconds")
    assert zero.pop("lam") == 0.0 and zero == without
    assert strong["lam"] == 1e3 and strong["val"][0] == without["val"][0]
    assert (strong["val"][1:], strong["test"][1:]) != (without["val"][1:], without["test"][1:])


def test_a_strength_cell_runs_the_ladder_at_the_selected_rate() -> None:
    problem = {
        "batch_size": 32,
        "epochs": 1,
        "memory": {"thresholds": [0.9, 0.9, 0.9], "samples": 16},
        "lr_grid": {"ratio": 3.0, "steps": [-1, 0, 1]},
        "potential": {**EWC, "lam": 10.0},
    }
    rates = settings(problem, {"lr": 0.01}, guarded=True, lr=None)
    assert [r for r, _ in rates] == pytest.approx([0.01 / 3, 0.01, 0.03]) and "potential" not in rates[0][1]
    strengths = settings(problem, {"lr": 0.01}, guarded=True, lr=0.5)
    assert [r for r, _ in strengths] == [0.5] * 3
    assert [p["potential"]["lam"] for _, p in strengths] == pytest.approx([10 / 3, 10.0, 30.0])
    assert strengths[0][1]["guard"] and strengths[0][1]["potential"]["fisher"] == "empirical"
    summary = {"arms": {"sgd/guarded": {"selected_lr": 0.5}}}
    assert selected(summary, "sgd", "guarded") == 0.5
    with pytest.raises(ValueError, match="no arm sgd/alone"):
        selected(summary, "sgd", "alone")


def rate_record(optimizer: str, guarded: bool, seed: int, test_acc: float) -> dict:
    """A rate cell with one learning rate (0.1) and the given test ACC."""
    metrics = {"acc": test_acc, "bwt": -0.1, "la": 0.9}
    run = {"lr": 0.1, "non_finite_losses": 0, "diverged_at_task": None, "basis_sizes": None}
    return {
        "optimizer": optimizer,
        "guarded": guarded,
        "seed": seed,
        "runs": [{**run, "val_metrics": metrics, "test_metrics": metrics}],
    }


def run_entry(lr: float, lam: float, val_acc: float, test_acc: float, la: float) -> dict:
    """One run of a potential cell's grid: BWT is ACC - 1 on both splits."""
    return {
        "lr": lr,
        "lam": lam,
        "non_finite_losses": 0,
        "diverged_at_task": None,
        "basis_sizes": None,
        "val_metrics": {"acc": val_acc, "bwt": val_acc - 1, "la": la},
        "test_metrics": {"acc": test_acc, "bwt": test_acc - 1, "la": la},
    }


def strength_record(
    optimizer: str,
    guarded: bool,
    seed: int,
    metrics: list[tuple[float, float]],
    lr: float = 0.1,
    potential: dict | None = None,
):
    """A potential cell of R ``potential`` (EWC by default): per strength, (validation ACC, test ACC); LA is 0.8
    at every strength."""
    runs = [run_entry(lr, 10.0**i, v, t, la=0.8) for i, (v, t) in enumerate(metrics)]
    return {
        "optimizer": optimizer,
        "guarded": guarded,
        "seed": seed,
        "tuned": "lam",
        "config": {"problem": {"potential": EWC10 if potential is None else potential}},
        "lr_from": {"summary": "s.json", "lr": lr},
        "runs": runs,
    }


LABELS = {"sgd": "SGD", "kaplinskiy": "Kaplinskiy"}


def base_summary(accs: dict[tuple[str, bool], list[float]]) -> dict:
    """The rate cells' summary of arms with the given test ACC per seed."""
    body = summarise_rates(
        [rate_record(n, g, seed, a) for (n, g), values in accs.items() for seed, a in enumerate(values)],
        {n: LABELS[n] for n, _ in accs},
    )
    return body | rate_comparisons(body)


def potential_summary(records: list[dict], base: dict, potential: dict) -> dict:
    """One R's potential summary as its aggregation writes it: the arms and what the text compares."""
    body = summarise(records, base, LABELS, potential)
    return body | potential_comparisons(body, base)


def test_each_potential_arm_selects_by_validation_and_pairs_its_effect_by_seed() -> None:
    base = base_summary({("sgd", False): [0.5, 0.6], ("sgd", True): [0.8, 0.8]})
    records = [
        strength_record("sgd", False, 1, [(0.5, 0.9), (0.7, 0.70), (0.6, 0.6)]),
        strength_record("sgd", False, 0, [(0.5, 0.9), (0.7, 0.65), (0.6, 0.6)]),
        strength_record("sgd", True, 0, [(0.5, 0.5), (0.6, 0.6), (0.9, 0.79)]),
        strength_record("sgd", True, 1, [(0.5, 0.5), (0.6, 0.6), (0.9, 0.81)]),
    ]
    s = potential_summary(records, base, EWC10)
    alone, guarded = s["arms"]["sgd/alone"], s["arms"]["sgd/guarded"]
    assert (alone["selected_lam"], alone["at_edge"], alone["lr"]) == (10.0, False, 0.1)  # not the test's best, 1
    assert (guarded["selected_lam"], guarded["at_edge"]) == (100.0, True)
    assert alone["effect"]["acc"]["values"] == pytest.approx([0.15, 0.1])  # seed 0: 0.65 - 0.5; seed 1: 0.7 - 0.6
    assert guarded["effect"]["acc"]["values"] == pytest.approx([-0.01, 0.01])
    assert alone["effect"]["la"]["values"] == pytest.approx([-0.1, -0.1])
    body = table_rows(s, ["sgd", "kaplinskiy"])
    assert body.count(r"\\") == 1 and body.count("&") == 10 and body.count(r"$^\dagger$") == 1  # eleven columns
    assert s["potential"] == EWC10
    out = comparisons(s, "PmnistEwc")
    assert out["PmnistEwcSentenceAlone"] == "$R$ raised the test ACC on every seed for SGD."
    assert out["PmnistEwcSentenceGuarded"] == (
        "Added to the guard, $R$ changed the test ACC in both directions across seeds for SGD."
    )
    assert out["PmnistEwcGuardWins"] == "1"  # guarded without R (0.8) beats R without the guard (0.675)
    assert out["PmnistEwcClaimLaCost"] == "" and out["PmnistEwcLowerLa"] == "2"  # R lowered LA (0.9 -> 0.8) in both
    assert out["PmnistEwcSmallerLam"] == "0" and "not supported" in out["PmnistEwcClaimSmallerLam"]  # 100 > 10
    assert best_macros(compare(base, {"ewc": s})) == {
        "PmnistAllBestArm": "guarded SGD",
        "PmnistAllBestAcc": "\\ensuremath{80.0}",
        "PmnistAllVariants": "4",
        "PmnistAllTiedCount": "3",  # two seeds: a t-interval with one degree of freedom separates none
        "PmnistAllTiedClause": " (over these seeds not separated from 3 other arms)",
        "PmnistAllTiedSentence": "Over these seeds its lead is not separated from SGD, SGD with EWC and guarded SGD "
        "with EWC (paired 95\\% intervals of the difference include zero), so these data name no single best arm.",
    }
    assert out["PmnistEwcEdgeSentence"] == (
        "The selected strength (marked $^\\dagger$) is the largest for guarded SGD with $R$: a larger one might do "
        "better."
    )


def test_the_figure_draws_each_arm(tmp_path) -> None:
    base = base_summary({("sgd", False): [0.5, 0.6], ("sgd", True): [0.8, 0.8]})
    records = [strength_record("sgd", g, seed, [(0.5, 0.6), (0.7, 0.7)]) for g in (False, True) for seed in (0, 1)]
    s = summarise(records, base, LABELS, EWC10)
    assert s["arms"]["sgd/alone"]["test_without"]["acc"]["values"] == [0.5, 0.6]
    plot(s, tmp_path / "fig.pdf")
    assert (tmp_path / "fig.pdf").stat().st_size > 1000


def test_a_potential_cell_must_match_its_arm() -> None:
    base = base_summary({("sgd", False): [0.5, 0.6]})
    good = [strength_record("sgd", False, s, [(0.5, 0.5)]) for s in (0, 1)]
    summarise(good, base, LABELS, EWC10)
    with pytest.raises(ValueError, match="another rate"):
        summarise([good[0], strength_record("sgd", False, 1, [(0.5, 0.5)], lr=0.3)], base, LABELS, EWC10)
    with pytest.raises(ValueError, match="seeds"):
        summarise(good[:1], base, LABELS, EWC10)
    with pytest.raises(ValueError, match="no such arm"):
        summarise([strength_record("sgd", True, s, [(0.5, 0.5)]) for s in (0, 1)], base, LABELS, EWC10)
    with pytest.raises(ValueError, match="not a potential cell"):
        summarise([rate_record("sgd", False, 0, 0.5)], base, LABELS, EWC10)
    with pytest.raises(ValueError, match="ran R"):  # an L2-SP cell among EWC's
        summarise([good[0], strength_record("sgd", False, 1, [(0.5, 0.5)], potential=L2SP)], base, LABELS, EWC10)


def test_the_note_sentence_ranks_its_full_method() -> None:
    base = base_summary({("sgd", True): [0.9], ("kaplinskiy", True): [0.7]})
    records = [strength_record("sgd", True, 0, [(0.5, 0.85)]), strength_record("kaplinskiy", True, 0, [(0.5, 0.8)])]
    s = potential_summary(records, base, EWC10)
    assert note_sentence(s) == (
        "The note's full method (its optimizer, guarded, descending the potential) reaches a test ACC of "
        "\\ensuremath{80.0}\\%: 2 of the 2 guarded arms with $R$."
    )
    assert note_sentence(s, name="adamw") == ""
    lines = all_lines(compare(base, {"ewc": s}), "s.json")
    assert "\\newcommand{\\PmnistEwcNoteRank}{3 of 4} % from s.json" in lines


def test_the_edge_sentence_names_which_end() -> None:
    def arm(name: str, guard: str, selected: int) -> dict:
        return {"optimizer": name, "guard": guard, "label": name, "selected": selected, "at_edge": selected in (0, 6)}

    arms = [arm("SGD", "alone", 0), arm("Lion", "guarded", 6), arm("Muon", "alone", 3)]
    sentence = edge_sentence({"arms": {f"{a['optimizer']}/{a['guard']}": a for a in arms}})
    assert sentence == (
        "The selected strength (marked $^\\dagger$) is the smallest of its ladder for SGD with $R$: a smaller one "
        "tends to the arm without $R$, which the $\\Delta$ACC column compares; the largest for guarded Lion with "
        "$R$: a larger one might do better."
    )
    assert edge_sentence({"arms": {"m": arms[2]}}) == "No arm selected a strength at an end of its ladder."


@pytest.mark.parametrize(
    ("name", "fisher", "gamma", "holds"),
    [
        ("ewc", "empirical", 1.0, True),
        ("ewc", "identity", 1.0, False),
        ("ewc", "empirical", 0.9, False),
        ("l2sp", "identity", 1.0, True),
        ("l2sp", "empirical", 1.0, False),
        ("other", "identity", 1.0, None),
    ],
)
def test_the_text_s_description_of_r_is_marked_when_the_config_runs_another(
    name: str, fisher: str, gamma: float, holds: bool | None
) -> None:
    base = base_summary({("sgd", False): [0.5]})
    potential = {"lam": 10.0, "fisher": fisher, "gamma": gamma}
    s = potential_summary([strength_record("sgd", False, 0, [(0.5, 0.6)], potential=potential)], base, potential)
    lines = lines_for(s, name, potential, "summary.json")
    prefix = {"ewc": "PmnistEwc", "l2sp": "PmnistLTwosp", "other": "PmnistOther"}[name]
    kind = next(line for line in lines if line.startswith(f"\\newcommand{{\\{prefix}ClaimKind}}"))
    assert ("not supported" in kind, "(n/a)" in kind) == (holds is False, holds is None)
    assert any(line.startswith(f"\\newcommand{{\\{prefix}LamCentre}}{{10}}") for line in lines)


def test_the_best_arm_leads_only_where_a_paired_interval_separates_it() -> None:
    def arm(name: str, values: list[float]) -> dict:
        return {
            "optimizer": name,
            "guard": "guarded",
            "label": name,
            "test": {"acc": {"mean": sum(values) / 3, "values": values}},
        }

    best = arm("A", [0.90, 0.80, 0.85])
    steady = arm("B", [0.88, 0.79, 0.83])  # 0.01 to 0.02 below on every seed: separated
    noisy = arm("C", [0.95, 0.70, 0.84])  # lower mean, but above the best on one seed: not separated
    out = compare({"arms": {"a": best, "b": steady}}, {"ewc": {"arms": {"c": noisy}, "potential": EWC10}})
    assert out["variants"][out["best"]]["arm"] == "a"
    assert [(out["variants"][i]["arm"], out["variants"][i]["potential"]) for i in out["tied"]] == [("c", "ewc")]
    assert compare({"arms": {"a": best}}, {})["tied"] == []


def test_l2sp_runs_through_the_same_sequence() -> None:
    """``fisher: identity`` is L2-SP around the weights after the last task; like EWC it acts from the second task
    on (during the first there is no old task: no pull towards the random initial weights), so task 1's row is
    the one without R and the later rows differ."""
    tasks = make_tasks(synthetic_mnist(), n_tasks=2, n_train=96, n_val=32, n_test=32, seed=7)
    problem = {**PROBLEM, "guard": False, "epochs": 4}
    without = train_sequence(tasks, SPECS["sgd"], 0.05, problem, seed=0)
    l2sp = {"lam": 10.0, "fisher": "identity", "gamma": 1.0}
    with_r = train_sequence(tasks, SPECS["sgd"], 0.05, {**problem, "potential": l2sp}, seed=0)
    assert with_r["lam"] == 10.0 and with_r["diverged_at_task"] is None
    assert (with_r["val"][0], with_r["test"][0]) == (without["val"][0], without["test"][0])
    assert (with_r["val"][1], with_r["test"][1]) != (without["val"][1], without["test"][1])


def test_the_rs_compare_arm_by_arm_in_paired_intervals() -> None:
    """Per arm, an R wins when its selected variant beats every other R's on every seed by a separated margin;
    a higher mean alone is counted apart."""
    base = base_summary({("sgd", False): [0.5, 0.5, 0.5], ("sgd", True): [0.8, 0.8, 0.8]})

    def cells(potential: dict, alone: list[float], guarded: list[float]) -> dict:
        records = [
            strength_record(n, g, seed, [(0.5, acc)], potential=potential)
            for n, g, accs in (("sgd", False, alone), ("sgd", True, guarded))
            for seed, acc in enumerate(accs)
        ]
        return potential_summary(records, base, potential)

    summaries = {
        "ewc": cells(EWC10, alone=[0.70, 0.72, 0.71], guarded=[0.80, 0.90, 0.81]),
        "l2sp": cells(L2SP, alone=[0.60, 0.61, 0.62], guarded=[0.82, 0.81, 0.82]),
    }
    assert head_wins(summaries, "ewc") == ["sgd/alone"] and head_wins(summaries, "l2sp") == []
    assert higher_means(summaries, "ewc") == ["sgd/alone", "sgd/guarded"] and higher_means(summaries, "l2sp") == []
    assert head_wins({"ewc": summaries["ewc"]}, "ewc") == higher_means({"ewc": summaries["ewc"]}, "ewc") == []
    lines = all_lines(compare(base, summaries), "s.json")
    assert "\\newcommand{\\PmnistAllVariants}{6} % from s.json" in lines
    assert "\\newcommand{\\PmnistAllBestArm}{guarded SGD with EWC} % from s.json" in lines
    assert "\\newcommand{\\PmnistLTwospHeadWins}{0} % from s.json" in lines
    claims = {line.split("}")[0][13:]: "not supported" in line for line in lines if "ClaimMostHigher" in line}
    assert claims == {
        "PmnistEwcClaimMostHigher": False,
        "PmnistEwcClaimMostHigherAlone": False,
        "PmnistEwcClaimMostHigherGuarded": False,
        "PmnistLTwospClaimMostHigher": True,
        "PmnistLTwospClaimMostHigherAlone": True,
        "PmnistLTwospClaimMostHigherGuarded": True,
    }
    assert "\\newcommand{\\PmnistEwcHeadWinsGuarded}{0} % from s.json" in lines  # 0.80/0.90/0.81 vs 0.82/0.81/0.82
    assert "\\newcommand{\\PmnistEwcHigherMeanListAlone}{SGD} % from s.json" in lines
    assert "\\newcommand{\\PmnistLTwospHigherMeanListGuarded}{none} % from s.json" in lines
