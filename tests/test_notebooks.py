"""Every notebook is a lesson, and every lesson is a test.

Each notebook in notebooks/ is executed with papermill on its fast
parameters (cwd = notebooks/, output written to a temp folder), its last cell's
JSON result is read back, and the lesson's claim is asserted on the numbers.

To add a lesson: write notebooks/NN_name.ipynb with a first code cell tagged
``parameters`` (including ``fast: bool``) and a last cell that calls
``ftkit.viz.notebook.show_results({...})``; then add an entry to LESSONS below
with its fast parameters and a check function.
"""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import papermill as pm
import pytest
from lessons import Lesson, all_lessons

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
RESULTS_KEY = "ftkit"  # metadata key of the results display (see ftkit.viz.notebook)


# ---------------------------------------------------------------- lessons
# One module per lesson in tests/lessons/ (lesson_NN.py defines LESSON), so that
# lessons are added without touching this harness.
LESSONS: dict[str, Lesson] = all_lessons()

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
    raise AssertionError("the notebook displayed no results (call ftkit.viz.notebook.show_results in its last cell)")


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
