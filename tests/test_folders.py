"""Run folders (issue 8 item 4): the output folder is checked before any work, run folders are
claimed exclusively (next suffix on a clash), results are never deleted, permissions follow the umask."""
import json
import os
import stat

import pandas as pd
import pytest

import ftkit.lab.folders as folders
from ftkit.lab.folders import RACE_FILES, RunFolderError, atomic_file, check_writable, create_run_dir, write_race
from ftkit.lab.race import RaceResult
from ftkit.viz.plots import save_race_figure


@pytest.fixture(scope="module")
def result():
    """A hand-made two-strategy result (no training: the folder code only reads the tables)."""
    curves = pd.DataFrame({"strategy": ["a", "a", "b", "b"], "seed": [0] * 4, "step": [0, 5, 0, 5],
                           "epoch": [0, 1, 0, 1], "val_acc": [0.1, 0.6, 0.1, 0.4],
                           "val_loss": [2.3, 1.0, 2.3, 1.5], "elapsed_s": [0.0, 1.0, 0.0, 1.0]})
    runs = pd.DataFrame({"strategy": ["a", "b"], "seed": [0, 0], "lr": [1e-3, 1e-2], "start_acc": [0.1, 0.1],
                         "final_acc": [0.6, 0.4], "final_loss": [1.0, 1.5], "body_drift": [0.1, 0.0],
                         "steps": [5, 5], "time_s": [1.0, 1.0], "stopped_reason": [None, None],
                         "steps_to_target": [5.0, float("nan")]})
    steps = pd.DataFrame({"strategy": ["a", "b"], "seed": [0, 0], "step": [1, 1], "epoch": [0, 0],
                          "loss": [2.0, 2.1]})
    return RaceResult(curves=curves, runs=runs, steps=steps, target_acc=0.54)


@pytest.fixture
def frozen_clock(monkeypatch):
    """Every run folder asks for the same time stamp: names clash as two runs in one second would."""
    monkeypatch.setattr(folders.time, "strftime", lambda fmt: "20261129-101500")


def test_an_unwritable_output_folder_is_refused_at_once(tmp_path):
    a_file = tmp_path / "taken"
    a_file.write_text("not a folder")
    with pytest.raises(RunFolderError, match="is a file, not a folder"):
        check_writable(a_file)
    with pytest.raises(RunFolderError, match="cannot write to output folder .*pass --out"):
        check_writable(a_file / "runs")
    assert a_file.read_text() == "not a folder" and sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    assert check_writable(tmp_path / "new" / "runs").is_dir()
    assert list((tmp_path / "new" / "runs").iterdir()) == []  # the probe file is gone


def test_a_read_only_folder_is_refused(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders; the file-in-the-way case above covers the check")
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    with pytest.raises(RunFolderError, match="cannot write"):
        check_writable(ro)


def test_run_folders_take_the_next_suffix_and_never_touch_an_existing_one(tmp_path, frozen_clock):
    earlier = tmp_path / "demo-20261129-101500"
    earlier.mkdir()
    (earlier / "runs.csv").write_text("precious")
    a = create_run_dir(tmp_path, "demo")
    b = create_run_dir(tmp_path, "demo")
    assert (a.name, b.name) == ("demo-20261129-101500-2", "demo-20261129-101500-3")
    assert list(a.iterdir()) == [] and (earlier / "runs.csv").read_text() == "precious"


def test_a_name_taken_between_claim_and_rename_loses_nothing(result, tmp_path, frozen_clock, monkeypatch):
    """The old code checked, then renamed, then deleted its results on 'Directory not empty'."""
    real_rename = os.rename
    intruder = []

    def rename_after_someone_writes_there(src, dst):
        if not intruder:  # another process writes into the folder we just claimed
            intruder.append(dst)
            (folders.Path(dst) / "theirs.txt").write_text("theirs")
        return real_rename(src, dst)

    monkeypatch.setattr(folders.os, "rename", rename_after_someone_writes_there)
    out = write_race(result, tmp_path, prefix="demo", draw=save_race_figure)
    assert out.name == "demo-20261129-101500-2"
    assert {p.name for p in out.iterdir()} == set(RACE_FILES)
    taken = folders.Path(intruder[0])
    assert [p.name for p in taken.iterdir()] == ["theirs.txt"]    # their folder is theirs, untouched
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_run_folders_and_files_follow_the_umask(result, tmp_path):
    old = os.umask(0o022)
    try:
        out = write_race(result, tmp_path, prefix="demo", draw=save_race_figure)
        claimed = create_run_dir(tmp_path, "sweep")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755 and stat.S_IMODE(claimed.stat().st_mode) == 0o755
    assert {stat.S_IMODE((out / f).stat().st_mode) for f in RACE_FILES} == {0o644}
    assert json.loads((out / "summary.json").read_text())["target_acc"] == 0.54


def test_writing_into_an_existing_run_folder_adds_files_and_removes_nothing(result, tmp_path):
    run = create_run_dir(tmp_path, "sweep")
    (run / "records").mkdir()
    (run / "records" / "abc.json").write_text("{}")
    assert write_race(result, folder=run, draw=save_race_figure) == run
    assert {p.name for p in run.iterdir()} == set(RACE_FILES) | {"records"}
    assert (run / "records" / "abc.json").read_text() == "{}"
    with pytest.raises(RunFolderError, match="does not exist"):
        write_race(result, folder=tmp_path / "nope")


def test_a_failed_atomic_write_leaves_neither_file_nor_temp(tmp_path):
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_file(tmp_path / "x.json") as fh:
            fh.write("{half")
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_the_demo_refuses_an_unwritable_out_before_training(tmp_path):
    import subprocess
    import sys

    a_file = tmp_path / "out"
    a_file.write_text("x")
    out = subprocess.run([sys.executable, "-m", "ftkit.cli", "demo", "--out", str(a_file / "runs"), "--quiet"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "cannot write to output folder" in out.stderr
    assert "ftkit demo:" not in out.stdout  # nothing was loaded or trained
