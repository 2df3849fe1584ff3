"""Does a kernel's resting memory creep as lesson 07's runs go by? Anonymous MB after each run, in one process.

    OMP_NUM_THREADS=1 python notes/h13_memory/creep07.py [--no-mkldnn]

Lesson 07's grid shape (every data set, every strategy, sizes 5 and 100, one seed, one LR) at 10 steps a run, so it
takes minutes, not hours. Each run ends with the heap trimmed (``fit``), so what is left after it is what the
process keeps. ``--no-mkldnn`` turns oneDNN off (about 5x slower a step) to see how much of the creep is its
per-shape caches.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _mem import anon  # noqa: E402

import torch  # noqa: E402

from ftkit.lab import runs, scenarios, sweep  # noqa: E402

if "--no-mkldnn" in sys.argv:
    torch.backends.mkldnn.enabled = False
torch.set_num_threads(1)
start = anon()
seen = []


def run_one_and_report(spec, *args, **kwargs):
    record = runs.run_one(spec, *args, **kwargs)
    seen.append(anon())
    print(f"run {len(seen):3d} {spec.data.name:13} n={spec.data.n_per_class:<4} {spec.strategy.name:14} "
          f"anon {seen[-1]} MB (+{seen[-1] - start} since the first import)", flush=True)
    return record


sweep.run_one = run_one_and_report
config = scenarios.ScenarioConfig(sizes=(5, 100), seeds=(0,), lr_grid=(1e-3,), min_steps=10, max_steps=10)
scenarios.run_scenarios(config)
print(f"start {start} MB; after the first run {seen[0]}; after the last {seen[-1]}; the highest {max(seen)}")
