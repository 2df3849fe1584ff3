"""Outputs that must never drift, pinned with nbval.

Cells tagged ``nbval-check-output`` (lesson 00's layer table and parameter
counts, lesson 01's transfer report and its trainable-parameter table) have
their expected outputs in tests/nbval/<notebook>.json, keyed by cell id. The
test prepares a copy of each notebook at fast settings (``papermill
--prepare-only -p fast True``), cut after its last tagged cell, puts the pinned
outputs into the tagged cells, and runs ``pytest --nbval-lax`` on it in a
subprocess: nbval executes every cell of the copy and compares the tagged ones with the pins (text and HTML; images are
not compared).

After an intended change, re-pin and review the diff:

    python tests/test_nbval.py            # rewrites tests/nbval/*.json
    python tests/test_nbval.py 01_scratch_vs_finetune.ipynb --executed out.ipynb   # from a fast papermill run
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill as pm
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
PINS = Path(__file__).resolve().parent / "nbval"
TAG = "nbval-check-output"
FAST = {"fast": True}


def tagged(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code" and TAG in c.metadata.get("tags", [])]


def pinned_notebooks() -> list[str]:
    return sorted(p.name for p in NOTEBOOKS.glob("*.ipynb") if tagged(nbformat.read(p, as_version=4)))


def _prepare(name: str, out: Path) -> Path:
    path = out / name
    pm.execute_notebook(str(NOTEBOOKS / name), str(path), parameters=FAST, prepare_only=True, progress_bar=False)
    return path


def _clean(outputs: list) -> list:
    """Outputs as nbval compares them: no execution counts, no widget views (their ids are random)."""
    kept = []
    for o in outputs:
        o = json.loads(json.dumps(o))
        o.pop("execution_count", None)
        o.get("data", {}).pop("application/vnd.jupyter.widget-view+json", None)
        kept.append(o)
    return kept


def pin(name: str, workdir: Path, executed: Path | None = None) -> Path:
    """Write the tagged cells' outputs of ``name`` at fast settings to tests/nbval/.

    ``executed``: a copy already run with ``fast=True`` (papermill); matched to the
    notebook's tagged cells by source. Without it, the notebook is run here.
    """
    if executed is None:
        executed = _prepare(name, workdir)
        pm.execute_notebook(str(executed), str(executed), cwd=str(workdir), kernel_name="python3",
                            progress_bar=False)
    ran = {c.source: c for c in tagged(nbformat.read(executed, as_version=4))}
    cells = tagged(nbformat.read(NOTEBOOKS / name, as_version=4))
    stale = [c.id for c in cells if c.source not in ran]
    if stale:
        raise SystemExit(f"{executed} was run from another version of {name} (cells {stale} differ): run it again")
    pins = {c.id: {"source": c.source, "outputs": _clean(ran[c.source].outputs)} for c in cells}
    PINS.mkdir(exist_ok=True)
    target = PINS / f"{name.removesuffix('.ipynb')}.json"
    target.write_text(json.dumps(pins, indent=1, sort_keys=True) + "\n")
    return target


def test_every_tagged_notebook_has_pins():
    names = pinned_notebooks()
    assert {"00_tour.ipynb", "01_scratch_vs_finetune.ipynb"} <= set(names), names
    for name in names:
        pins = json.loads((PINS / f"{name.removesuffix('.ipynb')}.json").read_text())
        cells = tagged(nbformat.read(NOTEBOOKS / name, as_version=4))
        assert {c.id for c in cells} == set(pins), f"re-pin {name}: python tests/test_nbval.py"
        for c in cells:
            assert c.source == pins[c.id]["source"], f"cell {c.id} of {name} changed: re-pin and review"
            assert pins[c.id]["outputs"], f"cell {c.id} of {name} has an empty pin"


@pytest.mark.notebook
@pytest.mark.parametrize("name", pinned_notebooks())
def test_pinned_outputs_do_not_drift(name, tmp_path):
    pins = json.loads((PINS / f"{name.removesuffix('.ipynb')}.json").read_text())
    path = _prepare(name, tmp_path)
    nb = nbformat.read(path, as_version=4)
    # Run up to the last pinned cell only: the cells after it are the lesson's papermill test's job
    # (tests/test_notebooks.py runs every cell at the same settings), not this one's.
    pinned = {c.id for c in tagged(nb)}
    last = max(i for i, c in enumerate(nb.cells) if c.id in pinned)
    nb.cells = nb.cells[:last + 1]
    for i, cell in enumerate(tagged(nb), start=1):
        cell.outputs = [nbformat.from_dict(o) for o in pins[cell.id]["outputs"]]
        cell.execution_count = i  # nbval skips cells without one
        for o in cell.outputs:
            if o.output_type == "execute_result":
                o.execution_count = i
    nbformat.write(nb, path)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # not the project's settings or conftest
    # The tables' style sheet is presentation, not a pinned number: compared without it.
    (tmp_path / "sanitize.cfg").write_text("[style]\nregex: <style>.*?</style>\nreplace: <style/>\n")
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         "-c", str(tmp_path / "pytest.ini"),
         "--nbval-sanitize-with", str(tmp_path / "sanitize.cfg"), "--nbval-cell-timeout", "600", str(path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout, proc.stdout[-2000:]


if __name__ == "__main__":
    import argparse
    import tempfile

    ap = argparse.ArgumentParser(description="Re-pin the nbval-check-output cells of the lessons.")
    ap.add_argument("notebooks", nargs="*", help="file names in notebooks/ (default: every tagged one)")
    ap.add_argument("--executed", type=Path, help="reuse this copy already run with fast=True (one notebook)")
    args = ap.parse_args()
    for n in (args.notebooks or pinned_notebooks()):
        with tempfile.TemporaryDirectory() as d:
            print(pin(n, Path(d), args.executed))
