"""Benchmark: a 12-run sweep in this process vs on a 2-worker Dask LocalCluster.

The same 12 run specs (4 strategies x 3 seeds, MobileNetV2 on a small data
set) run with ``sweep(specs)`` in-process (torch using every core of this
machine, one run after another) and with ``sweep(specs, executor=...)`` on a
``LocalCluster`` of 2 worker processes, 1 thread each (each worker's torch
gets its share of the cores: cores // 2). The cluster's time includes
starting and stopping it. Repeats alternate which goes first (A, B, B, A...).

Prints each repeat, the median ratio in-process / cluster (> 1: the cluster
is faster), the load average before and after (other load on the machine
disturbs the figures; report them with it), and checks that both gave the
same per-run table (they need not: torch's thread count, different on purpose
here, changes float rounding; ``sweep(..., threads=1)`` everywhere gives
identical tables, see tests/test_sweep.py).

    .venv/bin/python bench/bench_sweep.py                 # 12 runs, 1 repeat
    .venv/bin/python bench/bench_sweep.py --repeats 2 --json bench/results/sweep.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import pandas as pd
import torch

from ftkit.lab.executors import cores_here, dask_executor
from ftkit.lab.race import make_strategies
from ftkit.lab.specs import DataSpec, RunSpec
from ftkit.lab.sweep import sweep


def specs(args) -> list[RunSpec]:
    data = DataSpec(args.data, n_per_class=args.n_per_class, image_size=args.image_size,
                    val_n_per_class=args.val_per_class)
    strategies = make_strategies(["scratch", "linear_probe", "partial_freeze", "finetune"], epochs=args.epochs,
                                 batch_size=args.batch_size)
    seeds = range(args.runs // len(strategies))
    return [RunSpec(s, data, seed) for s in strategies for seed in seeds]


def table(records) -> pd.DataFrame:
    """Per-run numbers; not wall times, nor the thread count, which differs on purpose here."""
    return pd.DataFrame([r.row() for r in records]).drop(columns=["time_s", "torch_threads"])


def in_process(run_specs):
    t0 = time.perf_counter()
    records = sweep(run_specs, progress=False, threads=cores_here())  # all cores for one run at a time
    return time.perf_counter() - t0, records


def on_cluster(run_specs, workers: int):
    t0 = time.perf_counter()
    with dask_executor(workers=workers) as ex:   # start-up and shut-down included
        records = sweep(run_specs, executor=ex, progress=False)
    return time.perf_counter() - t0, records


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=12, help="a multiple of 4 (4 strategies x runs/4 seeds)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--data", default="animals")
    p.add_argument("--n-per-class", type=int, default=10)
    p.add_argument("--val-per-class", type=int, default=10)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=25)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args()
    if args.runs % 4:
        p.error("--runs must be a multiple of 4")
    run_specs = specs(args)
    load_before = os.getloadavg()
    rows, tables = [], []
    for rep in range(args.repeats):
        order = [("in_process", lambda: in_process(run_specs)),
                 ("cluster", lambda: on_cluster(run_specs, args.workers))]
        if rep % 2:
            order.reverse()
        times = {}
        for name, fn in order:
            times[name], records = fn()
            tables.append(table(records))
        rows.append(times)
        print(f"repeat {rep}: in-process {times['in_process']:.1f} s, {args.workers}-worker LocalCluster "
              f"{times['cluster']:.1f} s, ratio {times['in_process'] / times['cluster']:.2f}", flush=True)
    load_after = os.getloadavg()
    ratio = statistics.median(r["in_process"] / r["cluster"] for r in rows)
    same = all(t.equals(tables[0]) for t in tables[1:])
    close = all(((t.select_dtypes("number") - tables[0].select_dtypes("number")).abs() < 1e-4).all().all()
                for t in tables[1:])
    result = {
        "runs": len(run_specs), "workers": args.workers, "threads_per_worker": 1, "cores": cores_here(),
        "torch_threads_in_process": cores_here(), "repeats": rows, "median_ratio_in_process_over_cluster": ratio,
        "same_table": same, "same_table_within_1e-4": close, "load_before": load_before, "load_after": load_after,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "torch": torch.__version__,
        "settings": vars(args),
    }
    print(f"{len(run_specs)} runs ({args.data}, {args.n_per_class}/class, {args.image_size}px, {args.epochs} epochs): "
          f"median in-process / cluster = {ratio:.2f}x; identical tables: {same} (within 1e-4: {close}); "
          f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} on {cores_here()} cores")
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2, default=str)


if __name__ == "__main__":
    main()
