"""The written rule that gives every strategy its learning rate the same way.

A comparison between strategies is only fair when no strategy got a better-
tuned LR than another. The rule used throughout the kit:

    Every strategy trains at every LR of one shared grid, with the budget it
    will race with, on the training images minus a held-out part
    (``holdout_frac`` of each class); its LR is the grid point with the best
    mean held-out accuracy over the selection seeds (ties: the smaller LR).
    The test images are never used to choose.

``choose_lrs`` returns the choice *and* the whole table, so a learner sees
how flat or sharp each strategy's optimum is, and can apply it with
``LRChoice.apply(strategies)``.

>>> choice = choose_lrs(strategies, DataSpec("animals", n_per_class=30), grid=(1e-4, 1e-3, 1e-2))  # doctest: +SKIP
>>> race(choice.apply(strategies), data)                                                          # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from ftkit.lab.specs import DataSpec, RunSpec, Strategy
from ftkit.lab.sweep import sweep

__all__ = ["DEFAULT_GRID", "RULE", "LRChoice", "choose_lrs"]

DEFAULT_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)

RULE = ("each strategy's LR is the point of one shared grid with the best mean accuracy on images held out "
        "from the training set (same budget, same seeds; ties go to the smaller LR); the test images are never "
        "used to choose")


@dataclass
class LRChoice:
    """The outcome of :func:`choose_lrs`.

    Attributes:
        lrs: the chosen LR per strategy name.
        table: one row per (strategy, lr, seed) with the held-out accuracy.
        summary: one row per (strategy, lr): mean and std over seeds, and ``chosen``.
        rule: the rule in words (for a notebook or a report).
        grid: the LRs tried.
        holdout_frac: the fraction of each class held out to choose on.
    """

    lrs: dict[str, float]
    table: pd.DataFrame
    summary: pd.DataFrame
    rule: str
    grid: tuple[float, ...]
    holdout_frac: float

    def apply(self, strategies: Sequence[Strategy]) -> list[Strategy]:
        """The strategies at their chosen LRs (a strategy not in the choice is an error)."""
        missing = [s.name for s in strategies if s.name not in self.lrs]
        if missing:
            raise KeyError(f"no LR was chosen for {missing}; chosen: {sorted(self.lrs)}")
        return [s.with_lr(self.lrs[s.name]) for s in strategies]

    def at_edge(self) -> list[str]:
        """Strategies whose chosen LR is the smallest or largest of the grid (widen the grid for them)."""
        lo, hi = min(self.grid), max(self.grid)
        return [name for name, lr in self.lrs.items() if lr in (lo, hi)]


def choose_lrs(strategies: Sequence[Strategy], data: DataSpec, grid: Sequence[float] = DEFAULT_GRID, *,
               seeds: Sequence[int] = (0,), holdout_frac: float = 0.25, executor: Executor | None = None,
               out=None, resume: bool = False, progress: bool = False) -> LRChoice:
    """Give every strategy its LR by :data:`RULE`.

    Args:
        strategies: what will be compared (their budgets are used as they are).
        data: the data the comparison will train on; the choice holds out
            ``holdout_frac`` of its training images and never reads its test split.
        grid: the LRs every strategy tries.
        seeds: selection seeds (mean accuracy over them decides).
        holdout_frac: fraction of each class held out to choose on.
        executor, out, resume, progress: see :func:`ftkit.lab.sweep.sweep`.
    """
    grid = tuple(sorted(float(lr) for lr in grid))
    if not grid or any(not lr > 0 for lr in grid):
        raise ValueError(f"grid must hold positive learning rates, got {grid}")
    if not strategies:
        raise ValueError("choose_lrs() needs at least one strategy")
    if not seeds:
        raise ValueError("choose_lrs() needs at least one seed")
    selection = dataclasses.replace(data, holdout_frac=holdout_frac)
    specs = [RunSpec(s.with_lr(lr), selection, seed) for s in strategies for lr in grid for seed in seeds]
    records = sweep(specs, executor=executor, out=out, resume=resume, progress=progress)
    table = pd.DataFrame([{"strategy": r.labels["strategy"], "lr": r.lr, "seed": r.labels["seed"],
                           "holdout_acc": r.final_acc, "stopped_reason": r.stopped_reason} for r in records])
    g = table.groupby(["strategy", "lr"], sort=False)["holdout_acc"]
    summary = g.agg(["mean", "std"]).reset_index().rename(columns={"mean": "holdout_acc_mean",
                                                                     "std": "holdout_acc_std"})
    lrs = {}
    for name, rows in summary.groupby("strategy", sort=False):
        best = np.nan_to_num(rows["holdout_acc_mean"].to_numpy(), nan=-1.0)  # a diverged run never wins
        lrs[name] = float(rows["lr"].to_numpy()[int(np.argmax(best))])  # first max: the smaller LR on ties
    summary["chosen"] = [lrs[s] == lr for s, lr in zip(summary["strategy"], summary["lr"])]
    return LRChoice(lrs=lrs, table=table, summary=summary, rule=RULE, grid=grid, holdout_frac=holdout_frac)
