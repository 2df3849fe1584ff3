"""Matched-compute races between transfer strategies.

A *strategy* says how a model starts (random or pretrained weights) and what
trains (everything, only the head, everything above the first k groups).
:func:`race` runs several strategies under the same rules — same seeds, same
data order, same step budget, same evaluation points — so that the only thing
that differs between two curves is the strategy itself.

>>> from ftkit.lab.race import STRATEGIES, race      # doctest: +SKIP
>>> result = race([STRATEGIES["scratch"], STRATEGIES["finetune"]], train, val)
>>> result.summary()                                    # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import pandas as pd
from torch import nn

from ftkit.analysis.drift import weight_drift, weights_copy
from ftkit.core.state import seeded
from ftkit.models.bn_stats import recompute_bn_stats
from ftkit.models.freeze import freeze
from ftkit.models.groups import layer_groups
from ftkit.models.heads import replace_head
from ftkit.models.zoo import load_backbone
from ftkit.training.loop import evaluate, fit

__all__ = ["Strategy", "STRATEGIES", "RaceResult", "build_model", "race", "mean_curves", "steps_to_target"]


@dataclass(frozen=True)
class Strategy:
    """How a model starts and what it trains.

    Attributes:
        name: short label used in tables and plots.
        pretrained: start from ImageNet weights (True) or a random init (False).
        freeze: None trains everything; "all_but_head" trains only the new head
            (a linear probe); an int k freezes the first k layer groups.
        lr: learning rate (Adam) for this strategy.
        description: one sentence for learners.
    """

    name: str
    pretrained: bool
    freeze: str | int | None
    lr: float
    description: str = ""

    def with_lr(self, lr: float) -> "Strategy":
        return dataclasses.replace(self, lr=lr)


# Learning rates: fine-tuning a pretrained body wants a small LR (MISSION #6);
# scratch and a fresh linear head can take a larger one. Each strategy gets
# the rate that suits it, and the race prints them, so nothing is hidden.
STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in [
        Strategy("scratch", False, None, 1e-3, "random init, train everything"),
        Strategy("linear_probe", True, "all_but_head", 1e-2, "ImageNet body frozen, train a new head"),
        Strategy("partial_freeze", True, 4, 3e-4, "ImageNet init, freeze the first 4 groups, train the rest"),
        Strategy("finetune", True, None, 3e-4, "ImageNet init, train everything with a small LR"),
    ]
}


def build_model(strategy: Strategy, num_classes: int, *, backbone: str = "mobilenet_v2", seed: int = 0) -> nn.Module:
    """A fresh model for ``strategy``: backbone, new head, freezing applied.

    The seed fixes the random parts (scratch weights, the new head), so every
    strategy with the same seed starts from the same head init. The caller's
    random number generators are left as they were.
    """
    if not (strategy.freeze is None or strategy.freeze == "all_but_head" or isinstance(strategy.freeze, int)):
        raise ValueError(f"Strategy.freeze must be None, 'all_but_head' or an int, not {strategy.freeze!r}")
    with seeded(seed):  # built on the CPU: its generator (and NumPy's, Python's) forked and seeded
        model = load_backbone(backbone, pretrained=strategy.pretrained).model
        replace_head(model, num_classes)
    if strategy.freeze == "all_but_head":
        freeze(model, all_but_head=True)
    elif isinstance(strategy.freeze, int):
        freeze(model, k=strategy.freeze)
    return model


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
        """Per strategy: mean and std over seeds of the final accuracy, and steps to target."""
        g = self.runs.groupby("strategy", sort=False)
        out = pd.DataFrame(
            {
                "lr": g["lr"].first(),
                "final_acc_mean": g["final_acc"].mean(),
                "final_acc_std": g["final_acc"].std(ddof=1).fillna(0.0),
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
    train_data,
    val_data,
    *,
    backbone: str = "mobilenet_v2",
    seeds: Sequence[int] = (0, 1, 2),
    epochs: int = 5,
    batch_size: int = 32,
    eval_every: int | None = None,
    target_acc: float | None = None,
    precise_bn: bool = True,
    progress: bool = False,
) -> RaceResult:
    """Train every strategy with every seed under one budget and record the curves.

    Same seed -> same head init and the same batches in the same order for
    every strategy; every run gets the same number of optimizer steps and is
    evaluated at the same steps on the same validation set. A run whose loss
    becomes NaN/Inf stops there (its weights rolled back to the last good
    step) and says so in ``runs.stopped_reason``: a diverging strategy is a
    result, not an error.

    Args:
        strategies: what to compare (see :data:`STRATEGIES`).
        train_data, val_data: datasets with ``.classes``.
        backbone: a name known to :func:`ftkit.models.zoo.load_backbone`.
        seeds: one run per seed and strategy.
        epochs: passes over ``train_data`` (the step budget is epochs * batches).
        batch_size: minibatch size.
        eval_every: evaluate every N steps (default: once per epoch).
        target_acc: accuracy for "steps to target"; default 90% of the best
            strategy's mean final accuracy.
        precise_bn: before every evaluation (step 0 included), recompute the
            running statistics of the BatchNorm layers that train
            (:func:`ftkit.models.bn_stats.recompute_bn_stats`). Without it, a model
            trained from scratch for a few dozen steps is judged by moving
            averages of its *earlier* weights and often predicts one class in
            eval mode. Frozen BN layers keep their statistics; no weight and
            no training step changes.
        progress: show tqdm bars.
    """
    if not strategies:
        raise ValueError("race() needs at least one strategy, e.g. list(ftkit.lab.race.STRATEGIES.values())")
    names = [s.name for s in strategies]
    if len(set(names)) != len(names):
        raise ValueError(f"strategy names must be unique, got {names}")
    if not seeds:
        raise ValueError("race() needs at least one seed, e.g. seeds=(0, 1, 2)")
    num_classes = len(train_data.classes)
    curve_rows, step_rows, run_rows = [], [], []
    for strategy in strategies:
        for seed in seeds:
            model = build_model(strategy, num_classes, backbone=backbone, seed=seed)
            head = layer_groups(model)[-1].modules  # left out of the drift: its init is new and random
            start_weights = weights_copy(model)
            if precise_bn:
                recompute_bn_stats(model, train_data, batch_size=2 * batch_size)
            start = evaluate(model, val_data)
            t0 = time.perf_counter()
            history = fit(
                model, train_data, val_data, epochs=epochs, lr=strategy.lr, optimizer="adam",
                batch_size=batch_size, seed=seed, eval_every=eval_every, progress=progress,
                precise_bn=precise_bn,
            )
            elapsed = time.perf_counter() - t0
            evals = history.eval_frame()
            first = {"step": 0, "epoch": 0, "val_loss": start["loss"], "val_acc": start["acc"], "elapsed_s": 0.0}
            curve = pd.concat(
                [pd.DataFrame([first]), evals[["step", "epoch", "val_loss", "val_acc", "elapsed_s"]]],
                ignore_index=True,
            ).drop_duplicates("step", keep="last")
            label = {"strategy": strategy.name, "seed": seed}
            curve_rows.append(curve.assign(**label))
            step_rows.append(history.step_frame()[["step", "epoch", "loss"]].assign(**label))
            last = curve.iloc[-1]
            run_rows.append({
                **label, "lr": strategy.lr, "start_acc": start["acc"], "start_loss": start["loss"],
                "final_acc": float(last["val_acc"]), "final_loss": float(last["val_loss"]),
                "max_train_loss": max((r["loss"] for r in history.steps), default=math.nan),
                "body_drift": weight_drift(model, start_weights, exclude=head),
                "steps": len(history.steps), "time_s": elapsed, "stopped_reason": history.stopped_reason,
            })
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
    config = {
        "backbone": backbone, "seeds": list(seeds), "epochs": epochs, "batch_size": batch_size,
        "eval_every": eval_every, "precise_bn": precise_bn, "n_train": len(train_data), "n_val": len(val_data),
        "strategies": [dataclasses.asdict(s) for s in strategies],
    }
    return RaceResult(curves=curves, runs=runs, steps=steps, target_acc=float(target_acc), config=config)


def mean_curves(curves: pd.DataFrame, metric: str = "val_acc") -> pd.DataFrame:
    """Mean, std, min and max of ``metric`` over seeds at each step, per strategy."""
    g = curves.groupby(["strategy", "step"], sort=False)[metric]
    out = g.agg(["mean", "std", "min", "max", "count"]).reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out

