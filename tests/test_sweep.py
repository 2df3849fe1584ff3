"""Sweeps for real: a Dask LocalCluster on loopback gives the in-process table, a sweep killed
halfway resumes to the same table, records are atomic and never overwritten, workers use their
share of the cores."""
import pickle
import signal
import subprocess
import sys
import warnings

import pandas as pd
import pytest
import torch

from ftkit.lab.executors import call_with_share, dask_executor, slots_per_host, thread_share
from ftkit.lab.folders import RunFolderError
from ftkit.lab.race import make_strategies, race
from ftkit.lab.specs import DataSpec, ModelSpec, RunSpec, Strategy
from ftkit.lab.sweep import load_records, sweep
from ftkit.training.spec import TrainSpec

DATA = DataSpec("digits", n_per_class=3, image_size=32, val_n_per_class=2)
PROBE = Strategy("linear_probe", ModelSpec(freeze="all_but_head"), TrainSpec(lr=1e-2, epochs=1, batch_size=10))
SPECS = [RunSpec(PROBE.with_lr(lr), DATA, seed) for lr in (1e-2, 3e-2) for seed in (0, 1)]


def table(records) -> pd.DataFrame:
    """The per-run table, without wall-clock times."""
    return pd.DataFrame([r.row() for r in records]).drop(columns=["time_s"])


def measured(records):
    return [([{k: v for k, v in row.items() if k != "elapsed_s"} for row in r.curve], r.step_losses)
            for r in records]


@pytest.fixture(scope="module")
def reference():
    """The sweep run once, uninterrupted, in this process."""
    return sweep(SPECS, progress=False)


@pytest.mark.slow
def test_a_dask_local_cluster_gives_the_in_process_race_table():
    strategies = make_strategies(["scratch", "linear_probe"], epochs=1, batch_size=10)
    # One torch thread per run on both sides: the thread count changes float rounding, so equal
    # tables need equal counts (on a 2-core machine that is also each worker's automatic share).
    here = race(strategies, DATA, seeds=(0, 1), threads=1)
    from distributed import LocalCluster

    # 2 worker processes, 1 thread each, loopback, no dashboard; reached by its address as a remote
    # cluster would be (``dask_executor(workers=2)`` starts the same itself: see the demo test below)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1") as cluster, dask_executor(cluster.scheduler_address) as ex:
        assert slots_per_host(ex) == {"127.0.0.1": 2}
        there = race(strategies, DATA, seeds=(0, 1), executor=ex, threads=1)
        shares = [ex.submit(call_with_share, lambda _: torch.get_num_threads(), None, slots_per_host(ex)).result()
                  for _ in range(2)]
    cols = [c for c in here.runs.columns if c != "time_s"]
    pd.testing.assert_frame_equal(here.runs[cols], there.runs[cols], rtol=1e-4)
    assert here.runs["final_acc"].tolist() == there.runs["final_acc"].tolist()
    assert here.runs["steps"].tolist() == there.runs["steps"].tolist() == [3] * 4
    curve = [c for c in here.curves.columns if c != "elapsed_s"]
    pd.testing.assert_frame_equal(here.curves[curve], there.curves[curve], rtol=1e-4)
    pd.testing.assert_frame_equal(here.steps, there.steps, rtol=1e-4)
    # each of the 2 workers on this machine gets its share of the cores, at least 1
    from ftkit.lab.executors import cores_here

    assert shares == [max(1, cores_here() // 2)] * 2


def test_thread_share_and_its_restoration():
    before = torch.get_num_threads()
    assert thread_share(None) is None and thread_share(10**6) == 1
    assert call_with_share(lambda _: torch.get_num_threads(), None, None, threads=1) == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="scheduler address"):
        with dask_executor():
            pass
    with pytest.raises(ValueError, match="workers must be"):
        with dask_executor(workers=0):
            pass


def test_a_sweep_that_fails_halfway_resumes_to_the_same_table(reference, tmp_path, monkeypatch):
    import ftkit.lab.sweep as sweep_module

    real = sweep_module.run_one
    calls = []

    def dies_on_the_third(spec):
        calls.append(spec.key)
        if len(calls) == 3:
            raise RuntimeError("power cut")
        return real(spec)

    monkeypatch.setattr(sweep_module, "run_one", dies_on_the_third)
    with pytest.raises(RuntimeError, match="power cut"):
        sweep(SPECS, out=tmp_path, progress=False)
    assert set(load_records(tmp_path)) == {s.key for s in SPECS[:2]}  # the two finished runs are on disk
    with pytest.raises(ValueError, match="already holds 2 run records; pass resume=True"):
        sweep(SPECS, out=tmp_path, progress=False)
    calls.clear()
    monkeypatch.setattr(sweep_module, "run_one", lambda spec: calls.append(spec.key) or real(spec))
    resumed = sweep(SPECS, out=tmp_path, resume=True, progress=False)
    assert calls == [s.key for s in SPECS[2:]]  # only the missing runs ran
    pd.testing.assert_frame_equal(table(resumed), table(reference))
    assert measured(resumed) == measured(reference)


KILLER = """
import os, pickle, signal, sys
import torch
import ftkit.lab.sweep as sweep_module
specs, out = pickle.load(open(sys.argv[1], "rb")), sys.argv[2]
torch.set_num_threads(int(sys.argv[3]))   # the parent's count: records keep it, and the tables must match
real = sweep_module._write_record
written = []
def write_then_die(folder, record):
    real(folder, record)
    written.append(record.key)
    if len(written) == 2:
        os.kill(os.getpid(), signal.SIGKILL)   # no cleanup, no finally: as a killed job dies
sweep_module._write_record = write_then_die
sweep_module.sweep(specs, out=out, progress=False)
"""


def test_a_sweep_killed_halfway_resumes_to_the_same_table(reference, tmp_path):
    (tmp_path / "specs.pkl").write_bytes(pickle.dumps(SPECS))
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", KILLER, str(tmp_path / "specs.pkl"), str(out),
                           str(torch.get_num_threads())],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert sorted(p.name for p in (out / "records").iterdir()) == sorted(f"{s.key}.json" for s in SPECS[:2])
    resumed = sweep(SPECS, out=out, resume=True, progress=False)
    pd.testing.assert_frame_equal(table(resumed), table(reference))
    assert measured(resumed) == measured(reference)
    assert not [p for p in (out / "records").iterdir() if p.name.startswith(".")]


def test_a_damaged_record_is_reported_and_run_again(reference, tmp_path):
    sweep(SPECS[:1], out=tmp_path, progress=False)
    (path,) = (tmp_path / "records").glob("*.json")
    path.write_text('{"key": "trunc')
    with pytest.warns(UserWarning, match="cannot be read"):
        assert load_records(tmp_path) == {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = sweep(SPECS[:1], out=tmp_path, resume=True, progress=False)
    assert table(again).equals(table(reference[:1]))


def test_an_unwritable_out_is_refused_before_any_run(tmp_path, monkeypatch):
    import ftkit.lab.sweep as sweep_module

    monkeypatch.setattr(sweep_module, "run_one", lambda spec: pytest.fail("a run started"))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RunFolderError, match="cannot write"):
        sweep(SPECS, out=blocker / "sweep", progress=False)
    with pytest.raises(ValueError, match="threads must be"):
        sweep(SPECS, threads=0)


@pytest.mark.slow
def test_the_demo_runs_on_a_local_dask_cluster_and_resumes_its_folder(tmp_path):
    import json

    def demo(*extra):
        out = subprocess.run([sys.executable, "-m", "ftkit.cli", "demo", "--data", "digits", "--n-per-class", "4",
                              "--val-per-class", "2", "--image-size", "32", "--epochs", "1", "--seeds", "0", "1",
                              "--strategies", "linear_probe", "--out", str(tmp_path), "--quiet", *extra],
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    text = demo("--workers", "2")
    assert "a local Dask cluster of 2 worker processes" in text
    (folder,) = list(tmp_path.iterdir())
    assert len(list((folder / "records").glob("*.json"))) == 2
    first = json.loads((folder / "summary.json").read_text())
    (folder / "records" / sorted(p.name for p in (folder / "records").iterdir())[0]).unlink()  # "lost" a run
    demo("--resume", str(folder))
    assert list(tmp_path.iterdir()) == [folder] and len(list((folder / "records").glob("*.json"))) == 2
    again = json.loads((folder / "summary.json").read_text())
    assert again["final_acc"] == first["final_acc"]
    bad = subprocess.run([sys.executable, "-m", "ftkit.cli", "demo", "--workers", "2", "--scheduler", "tcp://x:1",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "not allowed with argument" in bad.stderr
