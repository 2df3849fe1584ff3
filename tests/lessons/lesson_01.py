"""Lesson 01: what its notebook must show (read by tests/test_notebooks.py)."""

from lessons import Lesson


def check_01(r: dict) -> None:
    acc = {row["strategy"]: row["final_acc_mean"] for row in r["summary"]}
    chance = 1.0 / r["num_classes"]
    # The lesson: starting from ImageNet weights beats random init on the same budget,
    # each strategy at the LR that one written rule chose for it.
    assert acc["finetune"] > acc["scratch"] + 0.10, acc
    assert acc["linear_probe"] > chance + 0.2, acc
    assert acc["finetune"] > chance + 0.3, acc
    # Same budget for everyone: every run made the same number of steps.
    assert len(set(r["steps"].values())) == 1, r["steps"]
    # Fair LRs: every strategy's LR comes from the same grid, chosen on held-out training images.
    choice = r["lr_choice"]
    assert set(choice["lrs"]) == set(acc) and all(lr in choice["grid"] for lr in choice["lrs"].values()), choice
    assert choice["holdout_frac"] > 0 and "never used" in choice["rule"], choice
    assert {row["strategy"]: row["lr"] for row in r["summary"]} == choice["lrs"]
    # The transfer report: every backbone tensor copied, the 1000-way head not.
    assert r["transfer"]["copied"] > 300 and r["transfer"]["shape mismatch"] == 2, r["transfer"]
    # What trains: the probe only its 10-way head (1280 x 10 + 10), the others everything.
    assert r["trainable"]["linear_probe"] == 1280 * 10 + 10, r["trainable"]
    assert r["trainable"]["finetune"] == r["trainable"]["scratch"] > 2_000_000, r["trainable"]


LESSON = Lesson(notebook="01_scratch_vs_finetune.ipynb", parameters={"fast": True}, check=check_01)
