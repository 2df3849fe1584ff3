"""binder/ as mybinder.org reads it: repo2docker validates it and prints the Dockerfile it would build.

``jupyter-repo2docker --no-build`` needs no Docker and no network; it catches a bad
runtime.txt and shows the order of the build steps, which this test checks: the
repository is copied before ``pip install -r binder/requirements.txt`` (it holds
``-e .``), and postBuild runs last.
"""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"


def _repo2docker() -> str:
    exe = Path(sys.executable).parent / "jupyter-repo2docker"
    found = str(exe) if exe.exists() else shutil.which("jupyter-repo2docker")
    if found is None:
        pytest.fail("jupyter-repo2docker is not installed: pip install -e '.[test]' (scripts/setup.sh does it)")
    return found


def test_repo2docker_accepts_binder_folder(tmp_path):
    proc = subprocess.run([_repo2docker(), "--no-build", "--debug", str(ROOT)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "python=3.11" in out, "runtime.txt (python-3.11) was not picked up"
    copy = out.index("COPY --chown=0:0 src/ ${REPO_DIR}/")
    pip = out.index('pip install --no-cache-dir -r "binder/requirements.txt"')
    post = out.index("RUN ./binder/postBuild")
    assert copy < pip < post, "the repository must be in place before `-e .` and postBuild"
    assert "binder/start" in out, "repo2docker did not pick up binder/start (Binder's heap setting)"


def test_binder_files_say_what_a_binder_user_gets():
    req = (BINDER / "requirements.txt").read_text().split()
    assert "-e" in req and "." in req, "binder/ replaces the repo root: the kit itself must be installed from here"
    assert "https://download.pytorch.org/whl/cpu" in req, "CPU wheels: Binder has no GPU and little disk"
    assert (BINDER / "runtime.txt").read_text().strip() == "python-3.11"
    post = (BINDER / "postBuild").read_text()
    assert "--no-deps -r requirements-nodeps.txt" in post and "scripts/lab_settings.py" in post


def test_binder_start_gives_kernels_the_small_machine_heap_setting():
    probe = [sys.executable, "-c", "import os; print(os.environ['FTKIT_MMAP_THRESHOLD'])"]
    env = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run([str(BINDER / "start"), *probe], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0 and done.stdout.strip() == "1048576", done.stderr
    mine = subprocess.run([str(BINDER / "start"), *probe], capture_output=True, text=True, timeout=60,
                          env={**env, "FTKIT_MMAP_THRESHOLD": "0"})
    assert mine.stdout.strip() == "0", "a user's own FTKIT_MMAP_THRESHOLD must win"
