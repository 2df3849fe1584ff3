"""Each lesson's run time and peak memory, as a learner (or Binder) runs it.

Runs every notebook with papermill in a subprocess and polls the memory of
the kernel's process tree (the kernel and anything it starts; not papermill
itself) with psutil. Prints, per notebook, the full run's wall time and peak
RSS, then the fast (CI) mode's times and their total. Binder guarantees 1 GB:
a full run above that is flagged.

    python bench/bench_notebooks.py                 # full runs, then fast runs
    python bench/bench_notebooks.py --only fast     # just the CI mode
    python bench/bench_notebooks.py 01_scratch_vs_finetune.ipynb --only full

Timings on a shared machine are disturbed by other load: the load average is
printed beside every figure.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
BINDER_GUARANTEED_MB = 1024


def tree_rss(proc: psutil.Process) -> int:
    """Bytes resident in ``proc``'s descendants (the kernel tree under papermill)."""
    total = 0
    for child in proc.children(recursive=True):
        try:
            total += child.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def run(name: str, fast: bool, poll_s: float = 0.2, timeout_s: float = 3600) -> dict:
    """Run one notebook; return wall time, peak kernel-tree RSS and the exit code."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "papermill", str(NOTEBOOKS / name), str(Path(tmp) / name),
               "--cwd", str(NOTEBOOKS), "-k", "python3", "--no-progress-bar"]
        if fast:
            cmd += ["-p", "fast", "True"]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        watched, peak = psutil.Process(proc.pid), 0
        while proc.poll() is None:
            peak = max(peak, tree_rss(watched))
            if time.perf_counter() - t0 > timeout_s:
                proc.kill()
                break
            time.sleep(poll_s)
        wall = time.perf_counter() - t0
        err = proc.stderr.read() if proc.stderr else ""
    return {"notebook": name, "mode": "fast" if fast else "full", "wall_s": wall, "peak_mb": peak / 2**20,
            "rc": proc.returncode, "load": os.getloadavg()[0], "error": err[-800:] if proc.returncode else ""}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", help="file names in notebooks/ (default: all)")
    ap.add_argument("--only", choices=["full", "fast"], help="run one mode only")
    args = ap.parse_args(argv)
    names = args.notebooks or sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    unknown = [n for n in names if not (NOTEBOOKS / n).exists()]
    if unknown:
        ap.error(f"not in {NOTEBOOKS}: {unknown}; choose from {sorted(p.name for p in NOTEBOOKS.glob('*.ipynb'))}")
    modes = [m == "fast" for m in (["full", "fast"] if args.only is None else [args.only])]
    failed = 0
    print(f"{'notebook':34} {'mode':5} {'wall s':>8} {'peak MB':>8} {'load':>5}  note")
    for fast in modes:
        total = 0.0
        for name in names:
            r = run(name, fast)
            total += r["wall_s"]
            note = "FAILED: " + r["error"].strip().splitlines()[-1] if r["rc"] else ""
            if not fast and r["peak_mb"] > BINDER_GUARANTEED_MB:
                note += f" over Binder's guaranteed {BINDER_GUARANTEED_MB} MB"
            failed += bool(r["rc"])
            print(f"{name:34} {r['mode']:5} {r['wall_s']:8.1f} {r['peak_mb']:8.0f} {r['load']:5.1f}  {note}",
                  flush=True)
        print(f"{'total':34} {'fast' if fast else 'full':5} {total:8.1f}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
