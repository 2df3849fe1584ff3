"""A fair comparison in one call: every strategy's LR by the written rule, then the same seeds.

:func:`fair_sweep` is what the prescription lessons (freezing depth, BatchNorm,
discriminative LRs, feature vectors vs fine-tuning) share: for each data spec,
:func:`ftkit.lab.lr_rule.choose_lrs` gives every strategy its LR on images
held out from the training set (scratch included, same grid for everyone),
then every strategy runs with every seed under one budget through
:func:`ftkit.lab.sweep.sweep`. The result is one row per run, plus the LR
table that justified each choice.

>>> study = fair_sweep(strategies, [DataSpec("digits", n_per_class=20)], seeds=(0, 1, 2))   # doctest: +SKIP
>>> summarise(study.runs, ["strategy"])                                                    # doctest: +SKIP
"""
from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from ftkit.lab.lr_rule import RULE, choose_lrs
from ftkit.lab.race import BUDGET_FIELDS
from ftkit.lab.specs import DataSpec, RunSpec, Strategy
from ftkit.lab.sweep import sweep

__all__ = ["Study", "fair_sweep", "summarise", "check_budget"]


@dataclass
class Study:
    """What a fair sweep measured.

    Attributes:
        runs: one row per run: data, n_per_class, strategy, seed, lr, final_acc,
            start_acc, steps, time_s (the training run, evaluations included),
            train_s (the same without its evaluations), body_drift, stopped_reason.
        lr_table: one row per (data, n_per_class, strategy, lr): held-out
            accuracy mean/std over the selection seeds and ``chosen``.
        rule: how the LRs were chosen, in words.
    """

    runs: pd.DataFrame
    lr_table: pd.DataFrame
    rule: str = RULE


def check_budget(strategies: Sequence[Strategy]) -> None:
    """Raise unless the strategies share one budget (the fields of ``BUDGET_FIELDS``) and have unique names."""
    if not strategies:
        raise ValueError("need at least one strategy")
    names = [s.name for s in strategies]
    if len(set(names)) != len(names):
        raise ValueError(f"strategy names must be unique, got {names}")
    budgets = {s.name: tuple(getattr(s.train, f) for f in BUDGET_FIELDS) for s in strategies}
    if len(set(budgets.values())) > 1:
        raise ValueError(f"a fair comparison gives every strategy the same budget, but their {BUDGET_FIELDS} "
                         f"differ: {budgets}; build them from one TrainSpec")


def fair_sweep(strategies: Sequence[Strategy], datas: Sequence[DataSpec], *, seeds: Sequence[int] = (0, 1, 2),
               lr_grid: Sequence[float], lr_seeds: Sequence[int] = (0,), holdout_frac: float = 0.25,
               executor: Executor | None = None, out=None, resume: bool = False,
               progress: bool = False) -> Study:
    """Choose every strategy's LR by the rule on each data spec, then run every (strategy, data, seed).

    Args:
        strategies: what to compare; one budget for all (checked).
        datas: the data specs (a data set at one size each); LRs are chosen per data spec.
        seeds: the runs' seeds (head init and batch order; the same for every strategy).
        lr_grid: the LRs every strategy tries (one shared grid).
        lr_seeds: selection seeds for the LR rule.
        holdout_frac: the fraction of each class held out to choose LRs on.
        executor, out, resume, progress: see :func:`ftkit.lab.sweep.sweep`.
    """
    check_budget(strategies)
    if not datas:
        raise ValueError("fair_sweep() needs at least one DataSpec")
    if not seeds:
        raise ValueError("fair_sweep() needs at least one seed, e.g. seeds=(0, 1, 2)")
    bad = [d for d in datas if not isinstance(d, DataSpec)]
    if bad:
        raise TypeError(f"datas must be DataSpec values (DataSpec('digits', n_per_class=20)), got {bad}")
    lr_rows, specs = [], []
    for data in datas:
        choice = choose_lrs(strategies, data, lr_grid, seeds=lr_seeds, holdout_frac=holdout_frac,
                            executor=executor, out=out, resume=resume, progress=progress)
        lr_rows.append(choice.summary.assign(data=data.name, n_per_class=data.n_per_class))
        specs += [RunSpec(s, data, seed) for s in choice.apply(strategies) for seed in seeds]
    records = sweep(specs, executor=executor, out=out, resume=resume, progress=progress)
    rows = [{**r.labels, "lr": r.lr, "final_acc": r.final_acc, "start_acc": r.start_acc, "steps": r.steps,
             "time_s": r.time_s, "train_s": float(r.curve[-1]["elapsed_s"]), "body_drift": r.body_drift,
             "stopped_reason": r.stopped_reason}
            for r in records]
    lr_table = pd.concat(lr_rows, ignore_index=True)
    lr_table = lr_table[["data", "n_per_class"] + [c for c in lr_table.columns if c not in ("data", "n_per_class")]]
    return Study(runs=pd.DataFrame(rows), lr_table=lr_table)


def summarise(runs: pd.DataFrame, by: Sequence[str], metric: str = "final_acc") -> pd.DataFrame:
    """Mean, sample std (ddof=1; 0 for one seed), min, max and count of ``metric`` per group."""
    missing = [c for c in [*by, metric] if c not in runs.columns]
    if missing:
        raise KeyError(f"columns {missing} not in the runs table; it has {list(runs.columns)}")
    g = runs.groupby(list(by), sort=False, dropna=False)[metric]
    out = g.agg(["mean", "std", "min", "max", "count"]).reset_index()
    out["std"] = out["std"].fillna(0.0)
    out["sem"] = out["std"] / np.sqrt(out["count"])
    return out
