"""Each lesson's run time and peak memory, as a learner (or Binder) runs it.

Runs every notebook with papermill in a subprocess and polls the memory of
the kernel's process tree (the kernel and anything it starts; not papermill
itself) with psutil. Prints, per notebook, the full run's wall time and peak
RSS, then the fast (CI) mode's times and their total. Binder guarantees 1 GB:
a full run above that is flagged. The kernels get the heap setting ftkit
picks on Binder (``FTKIT_MMAP_THRESHOLD=1048576``, see
``ftkit.core.torchutil.map_large_blocks_apart``) unless the environment
already sets ``FTKIT_MMAP_THRESHOLD``.

    python bench/bench_notebooks.py                 # full runs, then fast runs
    python bench/bench_notebooks.py --only fast     # just the CI mode
    python bench/bench_notebooks.py 01_scratch_vs_finetune.ipynb --only full
    python bench/bench_notebooks.py --only full --jobs 2 --threads 1   # two one-core kernels at a time
    python bench/bench_notebooks.py 07_four_scenarios.ipynb --only full -y "seeds=[0]" --timeout-s 7200

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
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import psutil

from ftkit.core.torchutil import LARGE_BLOCK_BYTES

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
BINDER_GUARANTEED_MB = 1024


def _anon_kb(pid: int) -> int:
    """RssAnon of one process (Linux): its resident memory that is not a mapped file."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_memory(proc: psutil.Process, cpu: dict[int, float]) -> tuple[int, int]:
    """Bytes resident (all, and anonymous only) in ``proc``'s descendants (the kernel tree
    under papermill); records each descendant's CPU seconds in ``cpu`` (pid -> user + system)."""
    rss = anon = 0
    for child in proc.children(recursive=True):
        try:
            rss += child.memory_info().rss
            t = child.cpu_times()
            cpu[child.pid] = t.user + t.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        anon += _anon_kb(child.pid) * 1024
    return rss, anon


def run(name: str, fast: bool, poll_s: float = 0.2, timeout_s: float = 3600, threads: int | None = None,
        parameters: dict[str, str] | None = None) -> dict:
    """Run one notebook; return wall time, the kernel tree's CPU time and peak memory, and the exit code.

    ``threads``: the kernel's torch/OpenMP threads (``OMP_NUM_THREADS``; None: torch's default).
    ``parameters``: papermill parameters as YAML values (passed with ``-y``, e.g. ``{"seeds": "[0]"}``),
    applied after ``fast``; the result records them. ``timeout_s``: the kernel tree is killed after
    this many seconds and the result says ``timed_out``.
    Peak RSS counts every resident page, the shared libraries' too; peak anonymous RSS leaves
    out mapped files (torch's CUDA libraries are a few hundred MB of those here; a CPU wheel
    maps far less), which the kernel can drop and reread under memory pressure.
    """
    env = dict(os.environ)
    env.setdefault("FTKIT_MMAP_THRESHOLD", str(LARGE_BLOCK_BYTES))  # Binder's 2 GB pod is "scarce": as there
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "papermill", str(NOTEBOOKS / name), str(Path(tmp) / name),
               "--cwd", str(NOTEBOOKS), "-k", "python3", "--no-progress-bar"]
        if fast:
            cmd += ["-p", "fast", "True"]
        for key, value in (parameters or {}).items():
            cmd += ["-y", f"{key}: {value}"]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        watched, peak, peak_anon, cpu, timed_out = psutil.Process(proc.pid), 0, 0, {}, False
        while proc.poll() is None:
            rss, anon = tree_memory(watched, cpu)
            peak, peak_anon = max(peak, rss), max(peak_anon, anon)
            if time.perf_counter() - t0 > timeout_s:
                for child in watched.children(recursive=True):  # the kernel and its workers, not only papermill
                    child.kill()
                proc.kill()
                proc.wait()
                timed_out = True
                break
            time.sleep(poll_s)
        wall = time.perf_counter() - t0
        err = proc.stderr.read() if proc.stderr else ""
    return {"notebook": name, "mode": "fast" if fast else "full", "wall_s": wall, "cpu_s": sum(cpu.values()),
            "peak_mb": peak / 2**20, "peak_anon_mb": peak_anon / 2**20, "threads": threads,
            "mmap_threshold": int(env["FTKIT_MMAP_THRESHOLD"]), "rc": proc.returncode, "timed_out": timed_out,
            "parameters": dict(parameters or {}),
            "load": os.getloadavg()[0], "error": err[-800:] if proc.returncode else ""}


def run_many(names: list[str], fast: bool, *, jobs: int = 1, threads: int | None = None,
             timeout_s: float = 3600, parameters: dict[str, str] | None = None):
    """``run`` for each name, ``jobs`` notebooks at a time; yields results as they finish."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run, n, fast, threads=threads, timeout_s=timeout_s, parameters=parameters)
                   for n in names]
        for f in as_completed(futures):
            yield f.result()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", help="file names in notebooks/ (default: all)")
    ap.add_argument("--only", choices=["full", "fast"], help="run one mode only")
    ap.add_argument("--jobs", type=int, default=1, help="notebooks run at a time (default 1)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads per kernel (OMP_NUM_THREADS; default: torch's own choice)")
    ap.add_argument("--timeout-s", type=float, default=3600,
                    help="stop a notebook after this many seconds (default 3600); it is reported as stopped")
    ap.add_argument("-y", "--parameter", action="append", default=[], metavar="NAME=YAML",
                    help="override a notebook parameter, e.g. -y 'seeds=[0]' (repeatable; recorded in the output)")
    args = ap.parse_args(argv)
    names = args.notebooks or sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    unknown = [n for n in names if not (NOTEBOOKS / n).exists()]
    if unknown:
        ap.error(f"not in {NOTEBOOKS}: {unknown}; choose from {sorted(p.name for p in NOTEBOOKS.glob('*.ipynb'))}")
    modes = [m == "fast" for m in (["full", "fast"] if args.only is None else [args.only])]
    if args.jobs < 1 or (args.threads is not None and args.threads < 1):
        ap.error("--jobs and --threads must be at least 1")
    if args.timeout_s <= 0:
        ap.error(f"--timeout-s must be positive, not {args.timeout_s}")
    bad = [p for p in args.parameter if "=" not in p or not p.split("=", 1)[0].strip()]
    if bad:
        ap.error(f"parameters must read NAME=YAML (e.g. seeds=[0]), not {bad}")
    parameters = {k.strip(): v for k, v in (p.split("=", 1) for p in args.parameter)}
    failed = 0
    print(f"{'notebook':34} {'mode':5} {'wall s':>8} {'CPU s':>8} {'peak MB':>8} {'anon MB':>8} {'load':>5}  note")
    for fast in modes:
        total = 0.0
        for r in run_many(names, fast, jobs=args.jobs, threads=args.threads, timeout_s=args.timeout_s,
                          parameters=parameters):
            name = r["notebook"]
            total += r["wall_s"]
            if r["timed_out"]:
                note = f"stopped at the {args.timeout_s:.0f} s limit, unfinished (peak until then)"
            else:
                note = "FAILED: " + (r["error"].strip().splitlines() or ["?"])[-1] if r["rc"] else ""
            if parameters:
                note += " parameters: " + ", ".join(f"{k}={v}" for k, v in parameters.items())
            if not fast and r["peak_mb"] > BINDER_GUARANTEED_MB:
                note += f" over Binder's guaranteed {BINDER_GUARANTEED_MB} MB"
            failed += bool(r["rc"]) and not r["timed_out"]
            print(f"{name:34} {r['mode']:5} {r['wall_s']:8.1f} {r['cpu_s']:8.1f} {r['peak_mb']:8.0f} "
                  f"{r['peak_anon_mb']:8.0f} {r['load']:5.1f}  {note}", flush=True)
        print(f"{'total':34} {'fast' if fast else 'full':5} {total:8.1f}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
