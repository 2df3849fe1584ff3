"""Lesson 06: what its notebook must show (read by tests/test_notebooks.py)."""

from lessons import Lesson


def check_06(r: dict) -> None:
    chance = 1.0 / r["num_classes"]
    rows = {(row["n_per_class"], row["method"]): row for row in r["summary"]}
    largest = max(r["ratio"], key=lambda row: row["n_per_class"])
    # The course's claim, measured: feature vectors + logistic regression cost less than fine-tuning, and
    # far less once there are a few dozen images per class (wall times, so only a loose margin).
    assert largest["times_longer"] > 2.5, largest  # measured 4.5 at 20 images per class (fast settings)
    for ratio in r["ratio"]:
        n = ratio["n_per_class"]
        assert ratio["times_longer"] > 1.0, ratio
        # ...and they learn something real from the frozen ImageNet features.
        assert ratio["logistic_acc"] > chance + 0.2, ratio
        assert rows[(n, "svm")]["acc_mean"] > chance + 0.2, rows[(n, "svm")]
    # Reading cached feature vectors costs much less than extracting them.
    assert r["cached_s"] < r["extract_s"], (r["cached_s"], r["extract_s"])
    # Every network got its LR by the rule, once per size.
    assert {(row["n_per_class"], row["strategy"]) for row in r["lrs"]} >= {(n, "finetune") for n in r["sizes"]}


LESSON = Lesson(notebook="06_feature_vectors.ipynb", parameters={"fast": True}, check=check_06)
