"""Lesson 10: what its notebook must show (read by tests/test_notebooks.py)."""
import json
from pathlib import Path

from lessons import Lesson


def check_10(r: dict) -> None:
    # The example folder passes its own check.
    assert not r["problems"], r["problems"]
    # Little data: the advice is a pretrained strategy, never scratch.
    assert r["advice"]["strategy"] != "scratch", r["advice"]
    # The top three candidates were cross-validated on the same folds.
    folds = {}
    for row in r["cv"]:
        folds.setdefault(row["strategy"], []).append(row["fold"])
    assert sorted(folds) == sorted(r["candidates"]) and len(r["candidates"]) == 3
    assert len({tuple(f) for f in folds.values()}) == 1
    # A model and its report were saved, and the model learned something.
    assert r["files"] == ["model.pt", "report.json", "report.md"], r["files"]
    assert json.loads((Path(r["out_dir"]) / "report.json").read_text())["test_acc"] == r["test_acc"]
    assert r["test_acc"] > 1.0 / len(r["classes"]) + 0.2, r["test_acc"]
    # The grid's time is part of the notebook's, and the text renders it.
    assert 0 < r["grid_s"] < r["total_s"], (r["grid_s"], r["total_s"])


LESSON = Lesson(notebook="10_your_own_data.ipynb", parameters={"fast": True}, check=check_10)
