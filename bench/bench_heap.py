"""Benchmark: what ftkit's fixed 1 MiB mmap threshold costs in time and saves in memory, against glibc's own.

Where memory is scarce (at most 4 GiB: Binder), importing ftkit fixes glibc's mmap threshold at 1 MiB
(``ftkit.core.torchutil.map_large_blocks_apart``) so that a long grid's heap does not creep past Binder's 1 GB;
elsewhere glibc keeps its own. This runs the same small lesson-07 grid
(``run_scenarios``: similarity, LR rule, grid and feature classifiers of one data set at two sizes, one seed) in a
fresh process per repeat, with ftkit's threshold (``FTKIT_MMAP_THRESHOLD=1048576``, as on Binder) and with glibc's
dynamic one (``FTKIT_MMAP_THRESHOLD=0``), in the
order A, B, B, A, ... One torch thread each, one process at a time. Prints each repeat's wall time and the highest
anonymous memory (polled every 20 ms), and the median ratios ftkit/glibc (time > 1: ftkit's setting is slower;
memory < 1: it saves), with the load average before and after (other work on the machine disturbs the times).

    .venv/bin/python bench/bench_heap.py                      # photo_crops at 5 and 100 per class, 30 steps, 2 repeats
    .venv/bin/python bench/bench_heap.py --steps 10 --repeats 1 --json bench/results/heap.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import fmt, load, machine, write_json  # noqa: E402
from ftkit.core.torchutil import LARGE_BLOCK_BYTES  # noqa: E402

SETTINGS = {"ftkit": {"FTKIT_MMAP_THRESHOLD": str(LARGE_BLOCK_BYTES)}, "glibc": {"FTKIT_MMAP_THRESHOLD": "0"}}

CHILD = r"""
import json, os, sys, threading, time
import torch
from bench.bench_notebooks import _anon_kb  # the notebooks' memory column measures the same
from ftkit.core.torchutil import map_large_blocks_apart
from ftkit.lab.scenarios import ScenarioConfig, run_scenarios

def anon_mb():
    return _anon_kb(os.getpid()) // 1024

peak = [anon_mb()]
def poll():
    while True:
        peak[0] = max(peak[0], anon_mb())
        time.sleep(0.02)

torch.set_num_threads(1)
dataset, sizes, steps = sys.argv[1], tuple(int(n) for n in sys.argv[2].split(",")), int(sys.argv[3])
config = ScenarioConfig(datasets=(dataset,), sizes=sizes, seeds=(0,), lr_grid=(1e-3,), min_steps=steps,
                        max_steps=steps)
start = anon_mb()
threading.Thread(target=poll, daemon=True).start()
t0 = time.perf_counter()
result = run_scenarios(config)
print(json.dumps({"wall_s": time.perf_counter() - t0, "peak_anon_mb": peak[0], "start_anon_mb": start,
                  "threshold_set": map_large_blocks_apart(), "runs": len(result.runs)}))
"""


def run_child(setting: str, args) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "FTKIT_MMAP_THRESHOLD")}
    env.update(SETTINGS[setting], OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", CHILD, args.data, args.sizes, str(args.steps)], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"the {setting} run failed (exit {done.returncode}): {done.stderr.strip()[-1500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(data: str = "photo_crops", sizes: str = "5,100", steps: int = 30, repeats: int = 2) -> dict:
    args = argparse.Namespace(data=data, sizes=sizes, steps=steps)
    before = load()
    reps = []
    for r in range(repeats):
        order = ["ftkit", "glibc"] if r % 2 == 0 else ["glibc", "ftkit"]
        rep = {name: run_child(name, args) for name in order}
        assert rep["ftkit"]["threshold_set"] and not rep["glibc"]["threshold_set"], rep
        reps.append(rep)
        print(f"repeat {r + 1}: " + "; ".join(f"{n} {rep[n]['wall_s']:.1f} s, peak {rep[n]['peak_anon_mb']} MB "
                                              f"anonymous ({rep[n]['runs']} grid runs)" for n in order), flush=True)
    time_ratio = statistics.median(r["ftkit"]["wall_s"] / r["glibc"]["wall_s"] for r in reps)
    peak_ratio = statistics.median(r["ftkit"]["peak_anon_mb"] / r["glibc"]["peak_anon_mb"] for r in reps)
    return {"settings": {"data": data, "sizes": sizes, "steps": steps, "repeats": repeats}, "repeats": reps,
            "time_ratio": time_ratio, "peak_ratio": peak_ratio,
            "peak_saved_mb": statistics.median(r["glibc"]["peak_anon_mb"] - r["ftkit"]["peak_anon_mb"] for r in reps),
            "load_before": before, "load_after": load(), "machine": machine()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="photo_crops")
    parser.add_argument("--sizes", default="5,100")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args()
    result = run(args.data, args.sizes, args.steps, args.repeats)
    print(f"ftkit/glibc: time {fmt(result['time_ratio'])}x, peak anonymous memory {fmt(result['peak_ratio'])}x "
          f"({fmt(result['peak_saved_mb'])} MB saved); load {result['load_before']} -> {result['load_after']}")
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
