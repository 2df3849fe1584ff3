"""Matched-compute races between transfer strategies.

A *strategy* (``ftkit.lab.specs.Strategy``) says how a model starts (random or
pretrained weights, what is frozen) and how it trains (a ``TrainSpec``).
:func:`race` runs several strategies under the same rules — same seeds, same
data order, same step budget, same evaluation points — so that the only
thing that differs between two curves is the strategy itself. Each (strategy,
seed) is one ``RunSpec`` and the race maps ``run_one`` over them with
``ftkit.lab.sweep.sweep`` (in this process or on any executor).

>>> from ftkit.lab.race import STRATEGIES, race          # doctest: +SKIP
>>> result = race([STRATEGIES["scratch"], STRATEGIES["finetune"]], DataSpec("animals", n_per_class=30))
>>> result.summary()                                    # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import json
import math
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Sequence

import pandas as pd

from ftkit.lab.runs import build_model
from ftkit.lab.specs import DataSpec, ModelSpec, RunRecord, RunSpec, Strategy
from ftkit.lab.sweep import sweep
from ftkit.training.spec import TrainSpec

__all__ = ["Strategy", "STRATEGIES", "RaceResult", "build_model", "make_strategies", "race", "race_frame", "race_specs",
           "mean_curves", "steps_to_target", "BUDGET_FIELDS"]


def _strategy(name: str, model: ModelSpec, lr: float, description: str) -> Strategy:
    return Strategy(name, model, TrainSpec(optimizer="adam", lr=lr), description=description)


# Starting LRs only: a fair comparison gives every strategy its LR by one written
# rule (``ftkit.lab.lr_rule.choose_lrs``). These are the values that rule picked
# for the demo's setting, kept as defaults so a quick call works.
STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in [
        _strategy("scratch", ModelSpec(weights=None), 1e-3, "random init, train everything"),
        _strategy("linear_probe", ModelSpec(freeze="all_but_head"), 1e-2, "ImageNet body frozen, train a new head"),
        _strategy("partial_freeze", ModelSpec(freeze=4), 3e-4,
                  "ImageNet init, freeze the first 4 groups, train the rest"),
        _strategy("finetune", ModelSpec(), 3e-4, "ImageNet init, train everything with a small LR"),
    ]
}

# What a race holds equal across strategies (the budget and how it is measured).
BUDGET_FIELDS = ("epochs", "max_steps", "batch_size", "eval_every", "precise_bn")


def make_strategies(names: Sequence[str] = ("scratch", "linear_probe", "finetune"), *,
                    backbone: str = "mobilenet_v2", lrs: dict[str, float] | None = None,
                    **train: object) -> list[Strategy]:
    """Strategies from :data:`STRATEGIES` on ``backbone``, with LRs from ``lrs`` and
    ``TrainSpec`` fields from ``train`` (e.g. ``epochs=4, batch_size=32``) applied to all."""
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategy {unknown}; choose from {list(STRATEGIES)}")
    out = []
    for n in names:
        s = STRATEGIES[n]
        s = dataclasses.replace(s, model=dataclasses.replace(s.model, backbone=backbone),
                                train=s.train.replace(**train))
        if lrs and n in lrs:
            s = s.with_lr(lrs[n])
        out.append(s)
    return out


@dataclass
class RaceResult:
    """Everything a race measured.

    Attributes:
        curves: one row per evaluation: strategy, seed, step, epoch, val_acc,
            val_loss, elapsed_s (step 0 is the untrained start).
        runs: one row per (strategy, seed): lr, start/final accuracy and
            loss, max_train_loss (the worst batch), body_drift (relative
            distance the weights outside the head moved, see
            :func:`ftkit.analysis.drift.weight_drift`), steps, time_s, stopped_reason
            (None, or why training stopped early, e.g. a NaN loss), and
            steps_to_target.
        steps: one row per optimizer step: strategy, seed, step, epoch, loss
            (the training loss of that batch).
        target_acc: the accuracy used for steps-to-target.
        config: the settings of the race (for the record and the JSON summary).
    """

    curves: pd.DataFrame
    runs: pd.DataFrame
    steps: pd.DataFrame
    target_acc: float
    config: dict = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """Per strategy: mean and std over seeds of the final accuracy, and steps to target.

        ``final_acc_std`` is NaN with one seed (no spread measured; tables show "one seed"), not 0.
        """
        g = self.runs.groupby("strategy", sort=False)
        out = pd.DataFrame(
            {
                "lr": g["lr"].first(),
                "final_acc_mean": g["final_acc"].mean(),
                "final_acc_std": g["final_acc"].std(ddof=1),
                "steps_to_target_mean": g["steps_to_target"].mean(),
                "reached_target": g["steps_to_target"].apply(lambda s: f"{int(s.notna().sum())}/{len(s)}"),
                "body_drift_mean": g["body_drift"].mean(),
                "stopped_early": g["stopped_reason"].apply(lambda s: int(s.notna().sum())),
                "time_s_mean": g["time_s"].mean(),
                "seeds": g["seed"].count(),
            }
        )
        return out.reset_index()

    def mean_curves(self, metric: str = "val_acc") -> pd.DataFrame:
        """:func:`mean_curves` of ``metric``: "val_acc"/"val_loss" from ``curves``, "loss" from ``steps``."""
        return mean_curves(self.steps if metric == "loss" else self.curves, metric)

    def to_json_dict(self) -> dict:
        """A JSON-able summary (what the demo and the notebooks hand to tests)."""
        summary = self.summary()
        return {
            "target_acc": self.target_acc,
            "config": self.config,
            "summary": json.loads(summary.to_json(orient="records")),
            "final_acc": {
                s: [float(a) for a in grp["final_acc"]] for s, grp in self.runs.groupby("strategy", sort=False)
            },
        }


def steps_to_target(curve: pd.DataFrame, target: float) -> float:
    """First evaluated step whose val_acc reaches ``target`` (NaN if never)."""
    hit = curve.loc[curve["val_acc"] >= target, "step"]
    return float(hit.iloc[0]) if len(hit) else math.nan


def race(
    strategies: Sequence[Strategy],
    data: DataSpec,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    target_acc: float | None = None,
    executor: Executor | None = None,
    out=None,
    resume: bool = False,
    progress: bool = False,
    threads: int | None = None,
) -> RaceResult:
    """Train every strategy with every seed under one budget and record the curves.

    Same seed -> same head init and the same batches in the same order for
    every strategy; every run gets the same number of optimizer steps and is
    evaluated at the same steps on the same validation set (the strategies
    must agree on :data:`BUDGET_FIELDS`). A run whose loss becomes NaN/Inf
    stops there (its weights rolled back to the last good step) and says so
    in ``runs.stopped_reason``: a diverging strategy is a result, not an error.

    Args:
        strategies: what to compare (see :data:`STRATEGIES`, :func:`make_strategies`).
        data: which data (``DataSpec("animals", n_per_class=30)``).
        seeds: one run per seed and strategy.
        target_acc: accuracy for "steps to target"; default 90% of the best
            strategy's mean final accuracy.
        executor, out, resume, threads: see :func:`ftkit.lab.sweep.sweep` (e.g. a Dask
            cluster: ``ftkit.lab.executors.dask_executor(workers=2)``).
        progress: a bar that counts finished runs.
    """
    specs = race_specs(strategies, data, seeds)
    records = sweep(specs, executor=executor, out=out, resume=resume, progress=progress, threads=threads)
    return race_frame(records, strategies, data, seeds, target_acc)


def race_specs(strategies: Sequence[Strategy], data: DataSpec, seeds: Sequence[int]) -> list[RunSpec]:
    """The run specs of a race, after checking that it is a fair one."""
    if not strategies:
        raise ValueError("race() needs at least one strategy, e.g. list(ftkit.lab.race.STRATEGIES.values())")
    names = [s.name for s in strategies]
    if len(set(names)) != len(names):
        raise ValueError(f"strategy names must be unique, got {names}")
    if not seeds:
        raise ValueError("race() needs at least one seed, e.g. seeds=(0, 1, 2)")
    if not isinstance(data, DataSpec):
        raise TypeError(f"race() takes data as a DataSpec (e.g. DataSpec('animals', n_per_class=30)), "
                        f"not {type(data).__name__}")
    budgets = {s.name: tuple(getattr(s.train, f) for f in BUDGET_FIELDS) for s in strategies}
    if len(set(budgets.values())) > 1:
        raise ValueError(f"a race compares strategies under one budget, but their {BUDGET_FIELDS} differ: "
                         f"{budgets}; give them the same TrainSpec budget (make_strategies(..., epochs=...))")
    return [RunSpec(s, data, seed) for s in strategies for seed in seeds]


def race_frame(records: Sequence[RunRecord], strategies: Sequence[Strategy], data: DataSpec,
               seeds: Sequence[int], target_acc: float | None = None) -> RaceResult:
    """A :class:`RaceResult` from the records of a race's runs."""
    curve_rows, step_rows, run_rows = [], [], []
    for r in records:
        label = {"strategy": r.labels["strategy"], "seed": r.labels["seed"]}
        curve_rows.append(pd.DataFrame(r.curve).assign(**label))
        step_rows.append(pd.DataFrame(r.step_losses, columns=["step", "epoch", "loss"]).assign(**label))
        run_rows.append({**label, "lr": r.lr, "start_acc": r.start_acc, "start_loss": r.start_loss,
                         "final_acc": r.final_acc, "final_loss": r.final_loss, "max_train_loss": r.max_train_loss,
                         "body_drift": r.body_drift, "steps": r.steps, "time_s": r.time_s,
                         "stopped_reason": r.stopped_reason})
    order = ["strategy", "seed"]
    curves = pd.concat(curve_rows, ignore_index=True)
    curves = curves[order + [c for c in curves.columns if c not in order]]
    steps = pd.concat(step_rows, ignore_index=True)
    steps = steps[order + [c for c in steps.columns if c not in order]]
    runs = pd.DataFrame(run_rows)
    if target_acc is None:
        target_acc = round(0.9 * float(runs.groupby("strategy")["final_acc"].mean().max()), 3)
    runs["steps_to_target"] = [
        steps_to_target(curves[(curves.strategy == r.strategy) & (curves.seed == r.seed)], target_acc)
        for r in runs.itertuples()
    ]
    first = strategies[0].train
    config = {
        "backbone": strategies[0].model.backbone, "seeds": list(seeds), "data": dataclasses.asdict(data),
        **{f: getattr(first, f) for f in BUDGET_FIELDS},
        "strategies": [s.to_dict() for s in strategies],
    }
    return RaceResult(curves=curves, runs=runs, steps=steps, target_acc=float(target_acc), config=config)


def mean_curves(curves: pd.DataFrame, metric: str = "val_acc") -> pd.DataFrame:
    """Mean, std, min and max of ``metric`` over seeds at each step, per strategy."""
    g = curves.groupby(["strategy", "step"], sort=False)[metric]
    out = g.agg(["mean", "std", "min", "max", "count"]).reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out

