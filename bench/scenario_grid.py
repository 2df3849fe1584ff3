"""Measure a four-scenario grid and save it as JSON (the figures in notes/h10b.md).

    python bench/scenario_grid.py OUT.json [--preset medium|much|full] [--workers N]

Runs are written to OUT.runs/records as they finish: rerunning the same
command resumes an interrupted grid.
"""
from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor

from ftkit.lab.scenarios import ScenarioConfig, run_scenarios

PRESETS = {
    # what fits a shared 2-core CPU in well under an hour
    "medium": ScenarioConfig(sizes=(5, 20), image_size=32, val_per_class=20, batch_size=16, epochs=3,
                             min_steps=20, max_steps=20, lr_grid=(1e-3, 1e-2), similarity_per_class=20),
    # the course's "much data" row at the medium preset's settings, except the step budget: three full
    # passes over 100 images per class (189 steps at batch 16; the small rows' 20 steps would be a tenth of one)
    "much": ScenarioConfig(sizes=(100,), image_size=32, val_per_class=20, batch_size=16, epochs=3,
                           min_steps=20, max_steps=200, lr_grid=(1e-3, 1e-2), similarity_per_class=20),
    # the grid: 5, 20, 100, 500 per class, 64 px, 3 seeds (hours on a CPU)
    "full": ScenarioConfig(),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--preset", default="medium", choices=sorted(PRESETS))
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    ex = ProcessPoolExecutor(args.workers) if args.workers else None
    try:
        result = run_scenarios(PRESETS[args.preset], executor=ex, out=args.out + ".runs", resume=True, progress=True)
    finally:
        if ex is not None:
            ex.shutdown()
    result.save(args.out)
    print(f"wall {time.perf_counter() - t0:.0f} s")
    print(result.course_table().to_string())


if __name__ == "__main__":
    main()
