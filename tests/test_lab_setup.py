"""What JupyterLab needs from the repository: kernel metadata, overrides.json, `make lab`, Binder."""
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_carries_what_jupyterlab_writes(path):
    """Without kernelspec, language_info and cell ids, JupyterLab fills them in and shows 'modified' on open."""
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", nb.metadata
    assert nb.metadata["kernelspec"].get("display_name") == "Python 3 (ipykernel)"
    info = nb.metadata.get("language_info", {})
    assert {"name", "codemirror_mode", "file_extension", "mimetype", "pygments_lexer"} <= set(info), info
    assert nb.nbformat == 4 and nb.nbformat_minor >= 5 and all(c.get("id") for c in nb.cells)


def test_lab_settings_writes_overrides_where_jupyterlab_reads_them(tmp_path):
    target = tmp_path / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps({"other": {"keep": 1}}))
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "lab_settings.py"), str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert Path(out) == target
    assert json.loads(target.read_text()) == {
        "other": {"keep": 1}, "@jupyterlab/apputils-extension:notification": {"fetchNews": "false"}}


def test_make_lab_and_binder_use_it():
    make = (ROOT / "Makefile").read_text()
    lab = make[make.index("\nlab:"):]
    assert "scripts/lab_settings.py" in lab and "$(ROOT_FLAG)" in lab and "--allow-root" in make
    post = (ROOT / "binder" / "postBuild").read_text()
    assert "python scripts/lab_settings.py" in post
    assert (ROOT / "binder" / "postBuild").stat().st_mode & 0o111, "postBuild must be executable"
