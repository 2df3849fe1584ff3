"""The `ftkit` command, run as a user runs it (a subprocess, network blocked)."""
import json
import subprocess
import sys


def ftkit(*args, cwd=None):
    out = subprocess.run([sys.executable, "-m", "ftkit.cli", *args], capture_output=True, text=True, cwd=cwd,
                         timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_info_shows_versions_offline_assets_and_real_predictions():
    text = ftkit("info")
    assert "torch" in text and "device: cpu" in text
    assert "mobilenet_v2" in text and "efficientnet_lite0" in text and "animals" in text
    lines = [line for line in text.splitlines() if "mobilenet_v2" in line and "->" in line]
    assert any("coffee" in line and "espresso" in line for line in lines), lines


def test_demo_writes_a_run_folder_and_prints_the_table(tmp_path):
    text = ftkit("demo", "--data", "digits", "--n-per-class", "4", "--val-per-class", "2", "--image-size", "32",
                 "--epochs", "1", "--seeds", "0", "1", "--strategies", "scratch", "finetune", "--lr-grid", "1e-3",
                 "1e-2", "--out", str(tmp_path), "--quiet")
    assert "fine-tuned minus scratch" in text and "± " in text
    assert "LR rule: each strategy's LR" in text and "held-out accuracy per LR" in text
    (folder,) = list(tmp_path.iterdir())
    summary = json.loads((folder / "summary.json").read_text())
    assert [row["strategy"] for row in summary["summary"]] == ["scratch", "finetune"]
    assert summary["config"]["seeds"] == [0, 1]


def test_demo_rejects_an_unknown_strategy(tmp_path):
    out = subprocess.run([sys.executable, "-m", "ftkit.cli", "demo", "--strategies", "magic", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "unknown strategy" in out.stderr and "finetune" in out.stderr
    assert list(tmp_path.iterdir()) == []
