"""Lesson 02: what its notebook must show (read by tests/test_notebooks.py)."""
import math

from lessons import Lesson


def check_02(r: dict) -> None:
    # Margins from fast runs with seeds 0, 1, 2 and the full run (seed 0):
    # suggested - too large >= 0.43, suggested - too small >= 0.56 in accuracy;
    # too large's max batch loss >= 8.0; drift ratios >= 68x either way.
    # The finder did not train the model: every weight and buffer bit-for-bit as before.
    assert r["restore_max_abs_diff"] == 0.0 and r["group_restore_max_abs_diff"] == 0.0, r
    assert r["tensors_compared"] > 300, r["tensors_compared"]
    # The suggestion lies inside the sweep and where fine-tuning with Adam is usually done
    # (measured 1.4e-4 .. 2.0e-4 on the fast runs, 1.7e-4 on the full run).
    lr, sweep = r["suggestion"], r["sweep"]
    assert lr is not None and sweep["start_lr"] < lr < sweep["end_lr"], (lr, sweep)
    assert 1e-5 <= lr <= 1e-3, lr
    # Discriminative LRs: every group kept its ratio to the head at every step.
    groups = r["groups"]
    assert groups["ratio_max_err"] < 1e-9, groups["ratio_max_err"]
    assert groups["reference"] == "head" and groups["ratios"]["head"] == 1.0, groups
    assert abs(min(groups["ratios"].values()) - 1 / groups["lr_spread"]) < 1e-12, groups["ratios"]
    # Same budget: every run made the same number of steps and none stopped early.
    runs = r["runs"]
    assert len({run["steps"] for run in runs.values()}) == 1, {k: v["steps"] for k, v in runs.items()}
    assert all(run["stopped_reason"] is None for run in runs.values()), runs
    good, large, small = runs["suggested"], runs["too_large"], runs["too_small"]
    chance, uniform = 1.0 / r["num_classes"], math.log(r["num_classes"])
    # The suggested LR learns; 100x larger and 100x smaller end far below it.
    assert good["final_acc"] > chance + 0.3, good
    assert good["final_acc"] > large["final_acc"] + 0.25, (good["final_acc"], large["final_acc"])
    assert good["final_acc"] > small["final_acc"] + 0.25, (good["final_acc"], small["final_acc"])
    # Too large: the loss explodes (a batch loss over twice that of a uniform guess)
    # and the pretrained body is pushed far from its weights.
    assert large["max_train_loss"] > 2 * uniform, large["max_train_loss"]
    assert large["body_drift"] > 10 * good["body_drift"], (large["body_drift"], good["body_drift"])
    # Too small: slow -- the validation loss falls by under a tenth of the suggested run's drop.
    good_drop = good["start_loss"] - good["final_loss"]
    assert good_drop > 0.5, good
    assert abs(small["start_loss"] - small["final_loss"]) < 0.1 * good_drop, (small, good_drop)
    assert small["body_drift"] < good["body_drift"] / 10, (small["body_drift"], good["body_drift"])


    # The course's rules measured: the finder ran for Adam and SGD, from scratch and pretrained.
    combos = {(m["optimizer"], m["init"]) for m in r["rules_measured"]}
    assert combos == {(o, i) for o in ("adam", "sgd") for i in ("scratch", "pretrained")}, combos
    # Accuracy against the LR: the smallest LR of the sweep (1e-6) barely learns in the budget,
    # the best is far above chance, and the usable range contains the best LR.
    sw = r["lr_sweep"]
    assert len(sw["grid"]) == len(sw["holdout_acc"]) and sw["grid"][0] == 1e-6 and sw["grid"][-1] == 1e-1, sw
    best = max(sw["holdout_acc"])
    assert best > chance + 0.2 and sw["holdout_acc"][0] < best - 0.15, sw
    assert sw["usable"][0] <= sw["best_lr"] <= sw["usable"][1], sw
    # LR schedules: same budget for all four, none stopped early.
    decay = r["decay"]
    assert set(decay["final_acc"]) == {"constant", "step", "cosine", "onecycle"}, decay
    assert len(set(decay["steps"].values())) == 1 and decay["stopped"] == 0, decay


LESSON = Lesson(notebook="02_lr_finder.ipynb", parameters={"fast": True}, check=check_02)
