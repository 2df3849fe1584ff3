"""One run, start to finish: ``run_one(RunSpec) -> RunRecord``.

``run_one`` is the unit of work every sweep maps over (races, LR choices,
scenario grids, transfer-lab curves). It is a pure function of its spec: it
builds the model and loads the data itself, so it can be pickled and sent to
another process or machine (``ftkit.lab.sweep``), and the same spec gives the
same numbers wherever it runs (on the same hardware and library versions).

>>> record = run_one(RunSpec(STRATEGY, DataSpec("animals", n_per_class=30), seed=0))   # doctest: +SKIP
>>> record.final_acc                                                                   # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import json
import math
import time

import torch
from torch import nn

from ftkit.analysis.drift import weight_drift, weights_copy
from ftkit.core.runtime import seeded
from ftkit.lab.specs import DataSpec, ModelSpec, RunRecord, RunSpec, Strategy
from ftkit.lr.groups import param_groups
from ftkit.models.bn_stats import recompute_bn_stats
from ftkit.models.freeze import freeze, unfreeze
from ftkit.models.groups import layer_groups
from ftkit.models.heads import replace_head
from ftkit.models.zoo import Backbone, load_backbone
from ftkit.training.loop import evaluate, fit

__all__ = ["build_model", "build_backbone", "run_one"]

_CPU = torch.device("cpu")


def build_backbone(spec: ModelSpec, num_classes: int, *, seed: int = 0) -> Backbone:
    """The :class:`~ftkit.models.zoo.Backbone` for ``spec``: source weights kept or
    re-initialised per group, a new head of ``num_classes``, freezing applied.

    The seed fixes every random part (a scratch model, re-initialised groups,
    the new head); the caller's random number generators are left as they were.
    """
    backbone, _ = _build(spec, seed, num_classes=num_classes)
    return backbone


def build_model(strategy: Strategy | ModelSpec, num_classes: int, *, seed: int = 0,
                backbone: str | None = None) -> nn.Module:
    """A fresh model for ``strategy`` (see :func:`build_backbone`); ``backbone`` overrides its backbone name."""
    spec = strategy.model if isinstance(strategy, Strategy) else strategy
    if backbone is not None and backbone != spec.backbone:
        spec = dataclasses.replace(spec, backbone=backbone)
    return build_backbone(spec, num_classes, seed=seed).model


def _build(spec: ModelSpec, seed: int, *, num_classes: int | None = None, data: DataSpec | None = None):
    """Backbone (+ the data, normalised as the backbone expects), new head, freezing.

    Everything random happens inside one seeded block, in a fixed order, so a
    seed gives the same model whether or not the data are loaded here (loading
    draws nothing from torch's RNG).
    """
    datasets = None
    with seeded(seed, _CPU):
        backbone = load_backbone(spec.backbone, pretrained=spec.pretrained)
        model = backbone.model
        if spec.copy_groups is not None:
            _reinitialise_from(model, spec.copy_groups)
        if data is not None:
            datasets = data.load(mean=backbone.mean, std=backbone.std)
            num_classes = len(datasets[0].classes)
        replace_head(model, num_classes, hidden=spec.head_hidden)
    _apply_freezing(model, spec)
    return backbone, datasets


def _apply_freezing(model: nn.Module, spec: ModelSpec) -> None:
    if spec.freeze == "all_but_head":
        freeze(model, all_but_head=True, bn=spec.bn)
    elif isinstance(spec.freeze, int) and spec.freeze > 0:
        freeze(model, k=spec.freeze, bn=spec.bn)
    elif spec.train_groups is not None:
        groups = layer_groups(model)
        bad = [i for i in spec.train_groups if not -len(groups) <= i < len(groups)]
        if bad:
            raise ValueError(f"train_groups {bad} out of range: the model has {len(groups)} groups "
                             f"{[g.name for g in groups]}")
        keep = {i % len(groups) for i in spec.train_groups}
        frozen = [g.name for i, g in enumerate(groups) if i not in keep]
        if frozen:
            freeze(model, names=frozen, bn=spec.bn)


def _reinitialise_from(model: nn.Module, k: int) -> None:
    """Keep the first ``k`` layer groups' weights; give every later group a fresh init."""
    groups = layer_groups(model)
    if k > len(groups):
        raise ValueError(f"copy_groups={k} but the model has only {len(groups)} groups {[g.name for g in groups]}")
    modules = dict(model.named_modules())
    for group in groups[k:]:
        for name in group.modules:
            for m in modules[name].modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
                if hasattr(m, "reset_running_stats"):
                    m.reset_running_stats()


def run_one(spec: RunSpec, *, progress: bool = False) -> RunRecord:
    """Build, train and evaluate one run; return what it measured.

    Step 0 is evaluated before any training (after precise BN when the spec
    asks for it). With a probe phase (LP-FT) only the head trains first, then
    the main phase trains what the model spec leaves trainable; steps count
    across both. A run whose loss becomes NaN/Inf stops (weights rolled back
    to the last good step) and says so in ``stopped_reason``: a diverging
    strategy is a result, not an error.
    """
    strategy, train_spec = spec.strategy, spec.strategy.train
    backbone, (train_data, val_data) = _build(strategy.model, spec.seed, data=spec.data)
    model = backbone.model
    head = layer_groups(model)[-1].modules  # left out of the drift: its init is new and random
    start_weights = weights_copy(model)
    if train_spec.precise_bn:
        recompute_bn_stats(model, train_data, batch_size=2 * train_spec.batch_size)
    start = evaluate(model, val_data)

    t0 = time.perf_counter()
    phases = []
    if strategy.probe is not None:
        phases.append(_train_probe(model, strategy, train_data, val_data, spec.seed, progress))
    groups = None
    if strategy.groups is not None:
        g = strategy.groups
        groups = param_groups(model, train_spec.lr, head_mult=g.head_mult, lr_range=g.lr_range, decay=g.decay)
    phases.append(fit(model, train_data, val_data, seed=spec.seed, progress=progress, param_groups=groups,
                      **train_spec.fit_kwargs()))
    elapsed = time.perf_counter() - t0

    curve = [{"step": 0, "epoch": 0, "val_loss": start["loss"], "val_acc": start["acc"], "elapsed_s": 0.0}]
    step_losses: list[dict] = []
    offset, stopped = 0, None
    for history in phases:
        for row in history.evals:
            curve.append({"step": row["step"] + offset, "epoch": row["epoch"], "val_loss": row["val_loss"],
                          "val_acc": row["val_acc"], "elapsed_s": row["elapsed_s"]})
        step_losses += [{"step": r["step"] + offset, "epoch": r["epoch"], "loss": r["loss"]} for r in history.steps]
        offset += len(history.steps)
        stopped = stopped or history.stopped_reason
    curve = list({row["step"]: row for row in curve}.values())  # one row per step, the last one wins
    last = curve[-1]
    return RunRecord(
        key=spec.key, labels=spec.labels, lr=train_spec.lr, start_acc=start["acc"], start_loss=start["loss"],
        final_acc=float(last["val_acc"]), final_loss=float(last["val_loss"]),
        max_train_loss=max((r["loss"] for r in step_losses), default=math.nan),
        body_drift=weight_drift(model, start_weights, exclude=head), steps=offset, time_s=elapsed,
        stopped_reason=stopped, curve=curve, step_losses=step_losses,
        # torch's thread count changes float rounding (a run is reproducible at a fixed count): recorded
        extra={"n_train": len(train_data), "n_val": len(val_data), "torch_threads": torch.get_num_threads()},
        spec=json.loads(json.dumps(dataclasses.asdict(spec), default=str)),
    )


def _train_probe(model: nn.Module, strategy: Strategy, train_data, val_data, seed: int, progress: bool):
    """LP-FT's first phase: only the head trains; then the model spec's own freezing is put back."""
    freeze(model, all_but_head=True)
    try:
        return fit(model, train_data, val_data, seed=seed, progress=progress, **strategy.probe.fit_kwargs())
    finally:
        unfreeze(model)
        _apply_freezing(model, strategy.model)
