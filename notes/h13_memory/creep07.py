"""Does memory creep as lesson 07's runs go by? Anonymous MB after each run and at most during it, in one process.

    OMP_NUM_THREADS=1 python notes/h13_memory/creep07.py [--no-mkldnn] [--steps N] [--datasets a,b] [--sizes 5,100]

Lesson 07's grid shape (every data set, every strategy, sizes 5 and 100, one seed, one LR) at 10 steps a run, so it
takes minutes, not hours; ``--steps``, ``--datasets`` and ``--sizes`` change that (``--steps 300 --datasets animals
--sizes 500`` is the lesson's largest cell). Each run ends with the heap trimmed (``fit``), so what is left after it
is what the process keeps; the highest level during a run is polled every 50 ms. ``--no-mkldnn`` turns oneDNN off
(a step about 9x slower, ``onednn_shapes.py``) to see how much of the creep is its per-shape caches.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _mem import Peak, anon  # noqa: E402

import torch  # noqa: E402

from ftkit.lab import runs, scenarios, sweep  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--no-mkldnn", action="store_true")
parser.add_argument("--steps", type=int, default=10)
parser.add_argument("--datasets", default="photo_crops,animals,fashion_mnist,digits")
parser.add_argument("--sizes", default="5,100")
args = parser.parse_args()
if args.no_mkldnn:
    torch.backends.mkldnn.enabled = False
torch.set_num_threads(1)
start = anon()
seen = []
peak = Peak(every_s=0.05)


def run_one_and_report(spec, *args, **kwargs):
    peak.reset()
    record = runs.run_one(spec, *args, **kwargs)
    seen.append(anon())
    print(f"run {len(seen):3d} {spec.data.name:13} n={spec.data.n_per_class:<4} {spec.strategy.name:14} "
          f"anon {seen[-1]} MB after it (+{seen[-1] - start} since the first import), {peak.value} MB at most "
          f"during it", flush=True)
    return record


sweep.run_one = run_one_and_report
config = scenarios.ScenarioConfig(datasets=tuple(args.datasets.split(",")),
                                  sizes=tuple(int(n) for n in args.sizes.split(",")), seeds=(0,), lr_grid=(1e-3,),
                                  min_steps=args.steps, max_steps=args.steps)
scenarios.run_scenarios(config)
print(f"start {start} MB; after the first run {seen[0]}; after the last {seen[-1]}; the highest {max(seen)}")
