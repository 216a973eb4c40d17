"""The second coordinate round of permuted MNIST's potential search: each arm's rate ladder again with R at the
strength it selected; its cells' settings, its aggregation against round 1 and the arm without R, its numbers."""

from __future__ import annotations

import pytest
from permuted_mnist.aggregate_permuted_mnist_retune import comparisons, summarise
from permuted_mnist.numbers_permuted_mnist_retune import lines_for, retune_macros
from permuted_mnist.run_permuted_mnist import selected, settings
from test_permuted_mnist_potential import (
    EWC10,
    L2SP,
    LABELS,
    base_summary,
    potential_summary,
    run_entry,
    strength_record,
)

PROBLEM = {
    "batch_size": 32,
    "epochs": 1,
    "memory": {"thresholds": [0.9, 0.9, 0.9], "samples": 16},
    "lr_grid": {"ratio": 3.0, "steps": [-1, 0, 1]},
    "potential": EWC10,
}
RATES = [0.1 / 3, 0.1, 0.3]  # the ladder around the arm's rate 0.1


def test_a_second_round_cell_runs_the_rate_ladder_at_the_selected_strength() -> None:
    runs = settings(PROBLEM, {"lr": 0.1}, guarded=False, lr=None, lam=30.0)
    assert [r for r, _ in runs] == pytest.approx(RATES)
    assert all(p["potential"] == {**EWC10, "lam": 30.0} and not p["guard"] for _, p in runs)
    assert all("potential" not in p for _, p in settings(PROBLEM, {"lr": 0.1}, guarded=False, lr=None))
    with pytest.raises(ValueError, match="not both"):
        settings(PROBLEM, {"lr": 0.1}, guarded=False, lr=0.1, lam=30.0)
    assert selected({"arms": {"sgd/alone": {"selected_lam": 30.0}}}, "sgd", "alone", "lam") == 30.0


def retune_record(guarded: bool, seed: int, metrics: list[tuple[float, float]], lam: float = 1.0, potential=None):
    """A second-round cell of SGD at strength ``lam``: per rate of :data:`RATES`, (validation ACC, test ACC)."""
    runs = [run_entry(lr, lam, v, t, la=0.9) for lr, (v, t) in zip(RATES, metrics, strict=True)]
    return {
        "optimizer": "sgd",
        "guarded": guarded,
        "seed": seed,
        "tuned": "lr_at_lam",
        "config": {"problem": {"potential": EWC10 if potential is None else potential}},
        "lam_from": {"summary": "s.json", "lam": lam},
        "runs": runs,
    }


def summaries() -> tuple[dict, dict]:
    """The rate cells' summary (SGD alone 0.5/0.6, guarded 0.8/0.8) and round 1 with EWC at rate 0.1, where
    strength 1.0 is selected with test ACC 0.70/0.72 alone and 0.81/0.82 guarded."""
    base = base_summary({("sgd", False): [0.5, 0.6], ("sgd", True): [0.8, 0.8]})
    records = [
        strength_record("sgd", g, seed, [(0.5, 0.6), (0.9, acc)])
        for g, accs in ((False, (0.70, 0.72)), (True, (0.81, 0.82)))
        for seed, acc in enumerate(accs)
    ]
    for rec in records:  # strength_record's strengths are 1 and 10; round 1 selects the second
        for run in rec["runs"]:
            run["lam"] = {1.0: 0.1, 10.0: 1.0}[run["lam"]]
    return base, potential_summary(records, base, EWC10)


def cells(alone_best: int = 2) -> list[dict]:
    """Second-round cells that repeat round 1 at rate 0.1 and select rate index ``alone_best`` alone (0.3 by
    default: a larger rate) and rate 0.1 guarded."""
    alone = [[(0.6, 0.65), (0.8, 0.70), (0.7, 0.75)], [(0.6, 0.66), (0.8, 0.72), (0.7, 0.76)]]
    for seed_metrics in alone:
        t = seed_metrics[alone_best][1]
        seed_metrics[alone_best] = (0.95, t)
    guarded = [[(0.6, 0.8), (0.9, 0.81), (0.5, 0.7)], [(0.6, 0.8), (0.9, 0.82), (0.5, 0.7)]]
    return [retune_record(False, s, m) for s, m in enumerate(alone)] + [
        retune_record(True, s, m) for s, m in enumerate(guarded)
    ]


def test_the_second_round_selects_by_validation_and_pairs_against_both_references() -> None:
    base, round1 = summaries()
    s = summarise(cells(), round1, base, LABELS, EWC10)
    s |= comparisons(s, round1, base)
    alone, guarded = s["arms"]["sgd/alone"], s["arms"]["sgd/guarded"]
    assert (alone["selected_lr"], alone["steps"], alone["at_edge"], alone["lam"]) == (0.3, 1, True, 1.0)
    assert alone["gain"]["acc"]["values"] == pytest.approx([0.05, 0.04])  # 0.75 - 0.70, 0.76 - 0.72
    assert alone["effect"]["acc"]["values"] == pytest.approx([0.25, 0.16])  # against 0.5 and 0.6 without R
    assert (guarded["steps"], guarded["gain"]["acc"]["values"]) == (0, [0.0, 0.0])
    out = retune_macros(s, "P")
    assert (out["PLargerAlone"], out["PSmallerAlone"], out["PKeptGuarded"]) == ("1", "0", "1")
    assert out["PGuardWins"] == "1" and out["PClaimGuardOverR"] == ""  # guarded without R 0.8 > 0.755
    assert out["PGuardLosesList"] == "none" and out["PClaimKeptGuarded"] == ""
    assert "not supported" in out["PClaimNarrows"]  # the guard wins 1 of 1 in both rounds
    assert out["PClaimLargerAlone"] == ""
    assert out["PEdgeSentence"] == "With EWC, the re-tuned rate is an end of its ladder for SGD."
    lower = summarise(cells(alone_best=0), round1, base, LABELS, EWC10)
    lower |= comparisons(lower, round1, base)
    assert lower["arms"]["sgd/alone"]["steps"] == -1 and lower["moves"]["alone"]["smaller"] == 1
    assert "not supported" in retune_macros(lower, "P")["PClaimLargerAlone"]
    assert lines_for(s, "l2sp", "s.json")[0].startswith("\\newcommand{\\PmnistLTwospRetuneLargerAlone}{1}")


def test_a_second_round_cell_must_match_round_one() -> None:
    base, round1 = summaries()
    good = cells()
    summarise(good, round1, base, LABELS, EWC10)
    with pytest.raises(ValueError, match="another strength"):
        summarise([*good[:3], {**good[3], "lam_from": {"summary": "s.json", "lam": 10.0}}], round1, base, LABELS, EWC10)
    drifted = retune_record(True, 1, [(0.6, 0.8), (0.9, 0.83), (0.5, 0.7)])  # 0.83 at round 1's rate, not 0.82
    with pytest.raises(ValueError, match="does not repeat round 1"):
        summarise([*good[:3], drifted], round1, base, LABELS, EWC10)
    with pytest.raises(ValueError, match="another R"):
        summarise([*good[:3], retune_record(True, 1, [(0.6, 0.8)] * 3, potential=L2SP)], round1, base, LABELS, EWC10)
    with pytest.raises(ValueError, match="seeds"):
        summarise(good[:1] + good[2:], round1, base, LABELS, EWC10)
    with pytest.raises(ValueError, match="not a second-round cell"):
        summarise([{**good[0], "tuned": "lam"}], round1, base, LABELS, EWC10)
