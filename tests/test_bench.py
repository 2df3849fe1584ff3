"""The benchmarks' quick modes at tiny sizes, so ``make bench`` cannot rot.

No timing is asserted (speed goals are measured by ``make bench``, as ratios):
each test runs a benchmark's core function and checks that the figures it
reports are there, and that the table code turns them into a row. The one
exactness check: fit and the hand-written loop end at the same weights.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import bench_features, bench_fit, bench_heap, bench_lr_finder, bench_scaling, run_all
from bench.common import interleave, median_ratio, ratios

ROOT = Path(__file__).resolve().parent.parent
LOAD = {"load_before": [0.0, 0.0, 0.0], "load_after": [0.0, 0.0, 0.0], "part_wall_s": 0.0}


def table_row(name: str, result: dict) -> tuple[str, str, str]:
    fig, goal, met = run_all.summary({"name": name, **result, **LOAD})
    assert not fig.startswith("ERROR"), fig
    return fig, goal, met


def test_interleave_alternates_order_and_keeps_every_repeat():
    calls = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    reps = interleave(fns, 3)
    assert calls == ["a", "b", "b", "a", "a", "b"]
    assert len(ratios(reps, "a", "b")) == 3 and median_ratio(reps, "a", "b") > 0


def test_fit_bench_quick_same_weights_as_the_hand_loop():
    res = bench_fit.run(steps=3, repeats=1, n_per_class=4, image_size=32)
    assert {"ftkit_s", "hand_s", "ratios", "median_ratio", "max_weight_diff", "goal", "met"} <= res.keys()
    assert len(res["ratios"]) == 1
    assert res["max_weight_diff"] <= 1e-6  # the same maths: same batches, dropout draws and Adam steps
    table_row("fit", res)


def test_features_bench_quick():
    res = bench_features.run(n_per_class=4, test_per_class=2, image_size=32, epochs=1, repeats=1)
    for key in ("median_speedup_cold", "median_speedup_hit", "acc_features", "acc_tutorial", "goal", "met"):
        assert key in res
    assert 0.0 <= res["acc_features"] <= 1.0 and 0.0 <= res["acc_tutorial"] <= 1.0
    table_row("features", res)


def test_lr_finder_bench_quick():
    res = bench_lr_finder.run(quick=True, repeats=1, num_iter=4, size=16, batch_size=4)
    assert res["runs"]["ftkit"][0]["steps"] == 4 and res["runs"]["torch-lr-finder"][0]["steps"] == 4
    assert res["saved_copies"]["ftkit"] == pytest.approx(1.0, abs=0.01)
    table_row("lr_finder", res)


def test_scaling_bench_quick_writes_the_plot(tmp_path):
    png = tmp_path / "scaling.png"
    res = bench_scaling.run(sizes=(2, 3), model_n=2, models=("mobilenet_v2", "resnet18"), image_size=32,
                            epochs=1, repeats=1, out=png)
    assert [r["n_per_class"] for r in res["by_images_per_class"]] == [2, 3]
    assert [r["backbone"] for r in res["by_model"]] == ["mobilenet_v2", "resnet18"]
    assert png.stat().st_size > 1000
    table_row("scaling", res)


def test_run_all_quick_writes_json_and_markdown(tmp_path):
    assert run_all.main(["--quick", "--only", "fit", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "quick.json").read_text())
    assert report["quick"] and {"cpu", "cores", "torch"} <= report["machine"].keys()
    assert len(report["load_before"]) == 3 and report["parts"][0]["name"] == "fit"
    table = (tmp_path / "quick.md").read_text()
    assert "| 1 | fit |" in table and "load average" in table


def test_a_failing_part_is_recorded_and_the_run_says_so(tmp_path, monkeypatch):
    def broken(quick):
        raise RuntimeError("disk full")

    monkeypatch.setattr(run_all, "part_fit", broken)
    assert run_all.main(["--quick", "--only", "fit", "--out", str(tmp_path)]) == 1
    report = json.loads((tmp_path / "quick.json").read_text())
    assert report["parts"][0]["error"] == "RuntimeError: disk full"
    assert "ERROR: RuntimeError: disk full" in (tmp_path / "quick.md").read_text()


@pytest.mark.notebook
def test_notebooks_part_quick_runs_one_notebook_fast():
    res = run_all.part_notebooks(quick=True)
    assert [(r["notebook"], r["mode"]) for r in res["rows"]] == [("00_tour.ipynb", "fast")]
    assert res["failed"] == [] and res["max_peak_mb"] > 0
    table_row("notebooks", res)


@pytest.mark.notebook
def test_a_notebook_past_its_limit_is_stopped_and_reported_not_failed():
    from bench import bench_notebooks

    r = bench_notebooks.run("00_tour.ipynb", fast=True, timeout_s=1.0, parameters={"fast": "true"})
    assert r["timed_out"] and r["parameters"] == {"fast": "true"} and r["rc"] != 0
    res = {"rows": [r], "failed": [], "stopped": ["00_tour.ipynb/fast"], "full_total_s": 0, "fast_total_s": 1,
           "max_peak_mb": r["peak_mb"], "over_binder": [], "goal": "peak <= 1024 MB each (full settings)"}
    fig, _, met = table_row("notebooks", res)
    assert "stopped at the per-notebook limit" in fig and met == "no"


def test_bench_notebooks_refuses_a_parameter_without_a_name(capsys):
    from bench import bench_notebooks

    with pytest.raises(SystemExit):
        bench_notebooks.main(["00_tour.ipynb", "-y", "seeds"])
    assert "NAME=YAML" in capsys.readouterr().err


def test_sweep_part_passes_flags_bench_sweep_knows(capsys, monkeypatch):
    """bench_sweep.py (another engineer's; a full quick sweep takes minutes) takes every flag part_sweep passes."""
    from bench import bench_sweep

    monkeypatch.setattr(sys, "argv", ["bench_sweep.py", "--help"])
    with pytest.raises(SystemExit):
        bench_sweep.main()
    out = capsys.readouterr().out
    for flag in ("--json", "--runs", "--n-per-class", "--val-per-class", "--image-size", "--epochs"):
        assert flag in out


def test_fastai_bench_quick_in_its_virtualenv(tmp_path):
    """Runs only where ``make bench`` (bench/fastai_env.sh) has made the fastai virtualenv."""
    venv = ROOT / ".venv-fastai"
    if not (venv / ".fastai-ready").exists():
        pytest.skip("no .venv-fastai: `make bench` (or bash bench/fastai_env.sh .venv .venv-fastai) makes it")
    out = tmp_path / "fastai.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([str(venv / "bin" / "python"), "-m", "bench.bench_fastai", "--quick", "--json", str(out)],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    res = json.loads(out.read_text())
    assert len(res["per_seed"]) == 1 and {"valley", "minimum", "steep"} <= res["lr_find"]["fastai"].keys()
    table_row("fastai", res)


def test_gpu_script_dry_run(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh"), "--dry-run", "--out", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_dry_run.json").read_text())
    names = [p["name"] for p in report["parts"]]
    assert names == ["throughput_mobilenet_v2", "throughput_resnet50", "lr_finder", "race"]
    tp = report["parts"][0]
    assert {"ftkit", "ftkit_workers0", "hand_loader", "hand_gpu_data"} == tp["median_img_per_s"].keys()
    assert tp["runtime"]["device"] == "cpu" and tp["runtime"]["bf16_autocast"] is False  # auto on a CPU: fp32
    assert "| mobilenet_v2 |" in (tmp_path / "gpu_dry_run.md").read_text()


def test_heap_bench_alternates_settings_and_reports_both_ratios(monkeypatch):
    """bench_heap's bookkeeping; the two child processes themselves are tests/test_heap.py's probe, writ large."""
    calls = []

    def fake_child(setting, args):
        calls.append(setting)
        return {"wall_s": 12.0 if setting == "ftkit" else 10.0, "peak_anon_mb": 600 if setting == "ftkit" else 750,
                "start_anon_mb": 250, "threshold_set": setting == "ftkit", "runs": 10}

    monkeypatch.setattr(bench_heap, "run_child", fake_child)
    res = bench_heap.run(steps=2, repeats=2)
    assert calls == ["ftkit", "glibc", "glibc", "ftkit"]
    assert res["time_ratio"] == pytest.approx(1.2) and res["peak_ratio"] == pytest.approx(0.8)
    assert res["peak_saved_mb"] == 150
    fig, _, _ = table_row("heap", res)
    assert "time 1.20x" in fig and "0.80x (150 MB saved)" in fig
