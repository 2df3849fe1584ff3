"""Optimizer steps of lesson 07's default grid: ``python notes/h13_memory/steps07.py``.

Per data set: the LR rule (every trained strategy at every LR of the grid, on the largest size it has) and the
grid per seed (every trained strategy at every size), from ``available_sizes`` and ``cell_steps``.
"""
from ftkit.lab.scenarios import TRAINED, ScenarioConfig, available_sizes, cell_steps, scored_per_class

config = ScenarioConfig()
strategies = len([s for s in config.strategies if s in TRAINED])
lr_total = grid_total = 0
for ds in config.datasets:
    sizes, smallest, classes = available_sizes(ds, config.sizes)
    lr_n = min(config.lr_size or max(sizes), smallest)
    lr_steps = strategies * len(config.lr_grid) * cell_steps(config, lr_n, classes)
    grid_steps = sum(strategies * cell_steps(config, n, classes) for n in sizes)
    lr_total, grid_total = lr_total + lr_steps, grid_total + grid_steps
    print(f"{ds:14} sizes {sizes}, LR rule {lr_steps} steps, grid {grid_steps} steps a seed, "
          f"scored on {scored_per_class(ds, config.val_per_class)} test images per class")
print(f"LR rule {lr_total} steps; grid {grid_total} a seed, {grid_total * len(config.seeds)} at "
      f"{len(config.seeds)} seeds; total {lr_total + grid_total * len(config.seeds)}")
