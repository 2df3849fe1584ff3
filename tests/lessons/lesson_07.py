"""Lesson 07: what its notebook must show (read by tests/test_notebooks.py)."""

from lessons import Lesson


def check_07(r: dict) -> None:
    acc = {(row["dataset"], row["n_per_class"], row["strategy"]): row["acc_mean"] for row in r["summary"]}
    cells = sorted({(d, n) for d, n, _ in acc})
    smallest = {d: min(n for dd, n in cells if dd == d) for d, _ in cells}
    # Pretrained beats scratch at small n on every data set, dissimilar ones included.
    for d, n in smallest.items():
        pretrained = max(a for (dd, nn, s), a in acc.items() if (dd, nn) == (d, n) and s != "scratch")
        assert pretrained > acc[(d, n, "scratch")] + 0.1, (d, n, acc)
    # The similarity number orders the natural photos above the pen-stroke digits.
    assert r["similarity"]["photo_crops"] > r["similarity"]["digits"] + 0.1, r["similarity"]
    # One verdict per cell, beside the course's table.
    assert len(r["course"]) == len(cells)
    assert all(c["verdict"] in ("agrees", "disagrees", "not measured") for c in r["course"])
    # The advisor's choice is within the error bar of the grid's best in the cells it was asked about.
    best = {(b["dataset"], b["n_per_class"]): b for b in r["best"]}
    for a in r["advice"]:
        assert a["strategy"] in best[tuple(a["cell"])]["tied"], (a, best[tuple(a["cell"])])
    # Same budget for every trained strategy of a cell.
    assert all(len(steps) == 1 for steps in r["steps"]), r["steps"]


LESSON = Lesson(notebook="07_four_scenarios.ipynb", parameters={"fast": True, "workers": 2}, check=check_07)
