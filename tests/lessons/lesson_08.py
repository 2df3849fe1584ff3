"""Lesson 08: what its notebook must show (read by tests/test_notebooks.py)."""

from lessons import Lesson


def check_08(r: dict) -> None:
    spread = {row["method"]: row for row in r["spread"]}
    # The lesson: k folds estimate with a smaller spread than one small split (measured: 2.5-3.5x smaller).
    assert spread["k-fold"]["spread"] < 0.75 * spread["single split"]["spread"], spread
    assert spread["k-fold"]["worst_abs_error"] <= spread["single split"]["worst_abs_error"], spread
    # Stratified folds keep every class's share exactly when the class sizes divide by k.
    balance = {row["folds"]: row for row in r["fold_balance"]}
    assert balance["stratified"]["gap"] < 1e-6 and balance["plain"]["gap"] > 1.0, balance
    # The real network was cross-validated fold by fold and learned something.
    chance = 1.0 / r["num_classes"]
    assert len(r["network_folds"]) >= 2 and all(0.0 <= a <= 1.0 for a in r["network_folds"]), r["network_folds"]
    assert r["deployed_acc"] > chance + 0.2, r["deployed_acc"]


LESSON = Lesson(notebook="08_cross_validation.ipynb", parameters={"fast": True}, check=check_08)
