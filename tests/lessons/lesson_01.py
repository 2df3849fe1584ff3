"""Lesson 01: what its notebook must show (read by tests/test_notebooks.py)."""

from lessons import Lesson


def check_01(r: dict) -> None:
    acc = {row["strategy"]: row["final_acc_mean"] for row in r["summary"]}
    chance = 1.0 / r["num_classes"]
    # The lesson: starting from ImageNet weights beats random init on the same budget.
    assert acc["finetune"] > acc["scratch"] + 0.10, acc
    assert acc["linear_probe"] > chance + 0.2, acc
    assert acc["finetune"] > chance + 0.3, acc
    # Same budget for everyone: every run made the same number of steps.
    assert len(set(r["steps"].values())) == 1, r["steps"]
    # The transfer report: every backbone tensor copied, the 1000-way head not.
    assert r["transfer"]["copied"] > 300 and r["transfer"]["shape mismatch"] == 2, r["transfer"]


LESSON = Lesson(notebook="01_scratch_vs_finetune.ipynb", parameters={"fast": True}, check=check_01)
