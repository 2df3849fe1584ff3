"""Every notebook is a lesson, and every lesson is a test.

Each notebook in notebooks/ is executed with papermill on its fast
parameters (cwd = notebooks/, output written to a temp folder), its last cell's
JSON result is read back, and the lesson's claim is asserted on the numbers.

To add a lesson: write notebooks/NN_name.ipynb with a first code cell tagged
``parameters`` (including ``fast: bool``) and a last cell that calls
``ftkit.notebook.show_results({...})``; then add an entry to LESSONS below
with its fast parameters and a check function.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import nbformat
import papermill as pm
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
RESULTS_KEY = "ftkit"  # metadata key of the results display (see ftkit.notebook)


@dataclass
class Lesson:
    parameters: dict
    check: Callable[[dict], None]
    timeout_s: int = 900
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------- lessons


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


LESSONS: dict[str, Lesson] = {
    "01_scratch_vs_finetune.ipynb": Lesson(parameters={"fast": True}, check=check_01),
    "02_lr_finder.ipynb": Lesson(parameters={"fast": True}, check=check_02),
}

# ---------------------------------------------------------------- harness


def notebook_names() -> list[str]:
    return sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))


def read_results(nb) -> dict:
    """The JSON the notebook displayed with metadata {"ftkit": {"name": "results"}}."""
    for cell in reversed(nb.cells):
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get(RESULTS_KEY, {})
            if meta.get("name") == "results":
                data = out["data"]["application/json"]
                return json.loads(data) if isinstance(data, str) else data
    raise AssertionError("the notebook displayed no results (call ftkit.notebook.show_results in its last cell)")


def test_there_are_notebooks():
    assert notebook_names(), f"no notebooks found in {NOTEBOOKS}"


def test_every_notebook_has_a_lesson_entry():
    missing = set(notebook_names()) - set(LESSONS)
    stale = set(LESSONS) - set(notebook_names())
    assert not missing, f"notebooks without a test entry in LESSONS: {sorted(missing)}"
    assert not stale, f"LESSONS entries without a notebook: {sorted(stale)}"


@pytest.mark.parametrize("name", notebook_names())
def test_notebook_is_committed_clean(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and "parameters" in code[0].metadata.get("tags", []), "first code cell must be tagged 'parameters'"
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"cells {dirty} have outputs: run `nbstripout notebooks/{name}`"
    assert "sys.path" not in "".join(c.source for c in code), "notebooks import the installed ftkit, no sys.path hacks"


@pytest.mark.notebook
@pytest.mark.parametrize("name", sorted(LESSONS))
def test_notebook_teaches_its_lesson(name, tmp_path):
    lesson = LESSONS[name]
    src = NOTEBOOKS / name
    declared = pm.inspect_notebook(str(src))
    unknown = set(lesson.parameters) - set(declared)
    assert not unknown, f"parameters {sorted(unknown)} are not in {name}'s parameters cell: {sorted(declared)}"
    out = tmp_path / name
    pm.execute_notebook(
        str(src), str(out), parameters=lesson.parameters, kernel_name="python3",
        cwd=str(NOTEBOOKS), progress_bar=False, execution_timeout=lesson.timeout_s,
    )
    results = read_results(nbformat.read(out, as_version=4))
    lesson.check(results)
