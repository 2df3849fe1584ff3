"""The training loop: ``fit`` and ``evaluate`` return data (a History, a dict).

The loop is the plain PyTorch one (forward, cross-entropy, backward, step),
with the bookkeeping a learner should not have to write each time:

* the data order is fixed by ``seed`` (a ``torch.Generator`` drives the
  shuffle, and dropout runs seeded inside forked RNGs,
  ``ftkit.core.state.seeded``), so two strategies trained with the same seed see exactly the same
  batches in the same order, and the caller's global RNG is left alone;
* learning-rate schedules are ``torch.optim.lr_scheduler`` objects stepped once
  per optimizer step over the whole run, so every param group keeps its own
  ratio to the others (discriminative LRs survive the schedule; see
  ``ftkit.training.optim``);
* divergence (a NaN/Inf or exploding loss, non-finite weights, BatchNorm
  statistics or validation loss) stops the run and leaves the model at its
  last good step; Ctrl-C returns what was recorded so far; any other error
  carries the History so far;
* every module's train/eval flag is restored when ``fit`` returns, and so are
  the optimizer's param-group settings (lr, momentum...), so an optimizer
  passed to the next ``fit`` starts from its LRs again.

The loop itself is ``ftkit.training.engine.TrainLoop`` (``lr_find`` runs on it
too); the first-batch checks are in ``ftkit.training.checks``. Beside it:
``ftkit.training.spec`` (TrainSpec), ``ftkit.training.history`` (the History
record), ``ftkit.training.callbacks`` (the callback protocol, LivePlot),
``ftkit.training.checkpoints``.

>>> history = fit(model, train, val, epochs=3, lr=1e-2, schedule="cosine")   # doctest: +SKIP
>>> history.epoch_frame()[["epoch", "train_loss", "val_acc"]]                 # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ftkit.core.runtime import resolve_runtime
from ftkit.core.state import preserved_modes, restore_group_settings, save_group_settings
from ftkit.core.torchutil import release_freed_memory
from ftkit.training.callbacks import callback_list
from ftkit.training.checks import BatchError, NamedItems
from ftkit.training.engine import MAX_LOSS_FACTOR, TrainLoop, evaluate_loader
from ftkit.training.history import History
from ftkit.training.optim import (
    OPTIMIZERS,
    SCHEDULES,
    build_optimizer,
    group_names,
    make_scheduler,
    optimizer_to,
    starting_lrs,
)
from ftkit.training.spec import TrainSpec

# evaluate_loader, TrainLoop, BatchError, MAX_LOSS_FACTOR, NamedItems: re-exported from
# ftkit.training.engine / .checks, where they live, for ``from ftkit.training.loop import ...``
__all__ = ["fit", "evaluate", "evaluate_loader", "TrainLoop", "BatchError", "FIT_DEFAULTS", "MAX_LOSS_FACTOR",
           "NamedItems", "resolve_spec"]


# ---------------------------------------------------------------- evaluation

EVAL_BATCH_CPU, EVAL_BATCH_ACCELERATOR = 32, 256  # evaluate()'s batch size when none is given


def evaluate(model: nn.Module, data: Dataset, *, batch_size: int | None = None,
             device: str | torch.device = "auto") -> dict:
    """Mean cross-entropy and accuracy of ``model`` on ``data``.

    Runs in eval mode without gradients and restores every module's mode
    afterwards. The model is moved to ``device`` (and stays there).
    ``batch_size`` None: 32 on a CPU, 256 on an accelerator. On the 2-core CPU
    (MobileNetV2, 64 px, 500 images) 32 was 3x faster than 256 and needed a
    third of the memory (about 115 MB against 370 MB above the model).

    Returns:
        ``{"loss": float, "acc": float, "n": int}``.
    """
    if len(data) == 0:
        raise ValueError("evaluate() got an empty data set")
    rt = resolve_runtime(device)
    if batch_size is None:
        batch_size = EVAL_BATCH_CPU if rt.device.type == "cpu" else EVAL_BATCH_ACCELERATOR
    model.to(rt.device)
    return evaluate_loader(model, DataLoader(data, batch_size=batch_size, shuffle=False), rt)


# fit's defaults when called without a spec (they predate TrainSpec, whose defaults are a race's)
FIT_DEFAULTS = TrainSpec(optimizer="sgd", lr=1e-3, schedule="constant", epochs=1, batch_size=32,
                         momentum=0.9, weight_decay=0.0, precise_bn=False)
_SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(TrainSpec))


def resolve_spec(spec: TrainSpec | int | None, overrides: dict[str, Any], *, caller: str = "fit",
                 defaults: TrainSpec = FIT_DEFAULTS) -> tuple[TrainSpec, Any, Any]:
    """The TrainSpec a call means, plus an optimizer instance and a callable schedule if given.

    ``overrides`` are TrainSpec fields passed as keywords (the old ``fit(...,
    lr=..., epochs=...)`` calls); an ``optimizer`` instance or a callable
    ``schedule`` cannot live in a spec, so they come back beside it. An int
    ``spec`` is the old positional ``epochs``.

    Raises:
        TypeError: for a keyword that is no TrainSpec field, naming the fields.
        ValueError: for bad values (from TrainSpec, naming the choices).
    """
    overrides = dict(overrides)
    if isinstance(spec, int) and not isinstance(spec, bool):
        overrides.setdefault("epochs", spec)
        spec = None
    if spec is not None and not isinstance(spec, TrainSpec):
        raise TypeError(f"{caller}() spec must be a ftkit.training.spec.TrainSpec, not {type(spec).__name__}")
    unknown = sorted(set(overrides) - set(_SPEC_FIELDS))
    if unknown:
        raise TypeError(f"{caller}() got unexpected keyword arguments {unknown}; the training settings are "
                        f"TrainSpec's fields: {', '.join(_SPEC_FIELDS)}")
    optimizer = overrides.pop("optimizer", None)
    if optimizer is not None and not isinstance(optimizer, str):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError(f"optimizer must be one of {OPTIMIZERS} or a torch.optim.Optimizer, not {optimizer!r}")
        instance = optimizer
    else:
        instance = None
        if optimizer is not None:
            overrides["optimizer"] = optimizer.lower()  # "SGD" worked before TrainSpec
    schedule = overrides.pop("schedule", None)
    custom = schedule if callable(schedule) else None
    if schedule is not None and custom is None:
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES} or a callable, not {schedule!r}")
        overrides["schedule"] = schedule
    base = spec if spec is not None else defaults
    if "epochs" in overrides and "max_steps" not in overrides and spec is not None:
        overrides["max_steps"] = None  # epochs given by hand win over the spec's max_steps
    return (base.replace(**overrides) if overrides else base), instance, custom


def _validate(train_data, val_data) -> None:
    if len(train_data) == 0:
        raise ValueError("fit() got an empty training set")
    if val_data is not None and len(val_data) == 0:
        raise ValueError("fit() got an empty val_data; pass None to train without validation")


def fit(model: nn.Module, train_data: Dataset, val_data: Dataset | None = None,
        spec: TrainSpec | None = None, *, seed: int = 0, callbacks: Sequence[Any] = (),
        progress: bool = True, param_groups: Sequence[dict] | None = None,
        max_loss_factor: float | None = MAX_LOSS_FACTOR, **overrides: Any) -> History:
    """Train ``model`` with cross-entropy and return what happened.

    The settings come from ``spec`` (a :class:`~ftkit.training.spec.TrainSpec`),
    and any TrainSpec field passed as a keyword overrides it
    (``fit(model, train, val, spec, lr=1e-2)``). Without a spec, the keywords
    alone describe the run and the rest keeps fit's defaults
    (:data:`FIT_DEFAULTS`: SGD, lr 1e-3, 1 epoch, batch 32, constant schedule,
    no precise BN), so ``fit(model, train, val, epochs=3, lr=1e-2)`` works as
    it always did.

    Args:
        model: a classifier returning logits ``(B, C)``. Moved to ``device``
            (it stays there; on CUDA with amp also to channels_last memory
            format); ``fit`` never re-initialises or re-seeds its weights.
        train_data, val_data: datasets yielding ``(x, label)``.
        spec: the training settings (None: :data:`FIT_DEFAULTS`).
        seed: fixes the data order and the RNG seen by dropout/augmentation in
            this process; the caller's global RNG state is left unchanged.
        callbacks: objects with any of ``on_step``, ``on_eval``,
            ``on_epoch_end``, ``on_diverged``, each called as ``(history, row)``;
            raise :class:`StopTraining` to stop early (see
            ``ftkit.training.callbacks``, e.g. its ``LivePlot``).
        progress: show a tqdm progress bar.
        param_groups: dicts for ``torch.optim`` (e.g. ``ftkit.lr.groups.param_groups``),
            each may carry ``lr``, ``weight_decay`` and a ``name``; a group
            without them gets ``lr`` and ``weight_decay`` below. Default: one
            group "all" with every parameter that has ``requires_grad``.
        max_loss_factor: stop (and warn) when a batch loss exceeds this multiple
            of the starting loss, ``max(first batch's loss, ln C)`` for C classes
            (:data:`MAX_LOSS_FACTOR` = 10 by default): a finite explosion is
            divergence too. None: only non-finite values stop the run.

    Keyword overrides (TrainSpec fields; an optimizer instance and a callable
    schedule are accepted here too, beside the spec):
        epochs: passes over ``train_data`` (ignored when ``max_steps`` is given).
        lr: LR of every group that does not set its own (ignored with an
            optimizer instance, whose groups' current LRs are used).
        optimizer: "sgd" (with ``momentum``), "adam", "adamw", or an instance.
            An instance keeps its state (momentum...) across fits; its groups'
            settings (lr, momentum, betas) come back as they went in, so the
            next fit starts from the same LRs (set a group's ``lr`` to change
            it, or build a new optimizer). A group with lr 0 draws a warning.
        schedule: "constant" | "step" | "cosine" | "onecycle" | callable, per
            step over the whole run (see :func:`ftkit.training.optim.make_scheduler`).
        warmup_frac: the first ``warmup_frac`` of the steps raise each group's
            LR linearly up to its value, then the schedule runs over the rest.
        batch_size: minibatch size (the last batch may be smaller).
        device: "auto" (CUDA when present) or a torch device.
        max_steps: run exactly this many optimizer steps (over as many epochs as
            needed) instead of ``epochs`` full passes.
        eval_every: also evaluate ``val_data`` every N steps (always at each epoch end).
        amp: "auto" (bf16 autocast + channels_last on CUDA, fp32 on CPU), True, False.
        momentum, weight_decay: for the optimizers built from a name (the
            defaults of every param group that does not set its own).
        num_workers: DataLoader worker processes.
        precise_bn: before every evaluation, recompute the running statistics of
            the BatchNorm layers that train over ``train_data``
            (:func:`ftkit.models.bn_stats.recompute_bn_stats`). Their moving averages
            lag behind fast-changing weights, which can collapse a model trained
            from scratch to one class in eval mode. Weights and the training
            trajectory are unchanged; evaluation gets slower by one forward
            pass over ``train_data``.

    Returns:
        A :class:`History`; ``config["group_lrs"]`` holds each group's starting
        LR, ``config["lr"]`` the default LR (None when every group sets its own,
        or with an optimizer instance). On divergence -- a NaN/Inf loss, an
        exploding loss (``max_loss_factor``), non-finite weights or BatchNorm
        statistics after a step -- training stops with a warning,
        ``stopped_reason`` says why, and the model holds the weights and
        BatchNorm statistics of the last good step (the optimizer's momentum
        is not rolled back); a non-finite validation loss stops it the same
        way, undoing the step before that evaluation. Ctrl-C returns the
        History so far with ``interrupted=True``, model at the last completed
        step.

    Raises:
        BatchError: the first batch does not fit the model (labels out of range
            for the head, float labels, wrong number of image channels), before
            any step.
        ValueError, TypeError: bad settings or empty data, before anything changes.
        Any other error (from the data, the model...) after the same rollback,
        with the History so far as ``err.history``; an error while reading an
        item names it (``err.path`` when the data set can name its file).

    Every module's train/eval flag is restored on return (the model comes back
    in the mode it went in). During training the model is in train mode; when
    it arrives in train mode, submodules you put in eval mode (e.g. frozen
    BatchNorm) stay in eval mode; a model that arrives in eval mode is
    switched entirely to train mode. Call ``model.eval()`` before hand-written
    inference; :func:`evaluate` does that itself.
    """
    spec, instance, custom = resolve_spec(spec, overrides)
    _validate(train_data, val_data)
    rt = resolve_runtime(spec.device, spec.amp)
    optimizer = instance if instance is not None else spec.optimizer
    schedule = custom if custom is not None else spec.schedule
    lr, batch_size, num_workers = spec.lr, spec.batch_size, spec.num_workers
    opt = build_optimizer(model, optimizer, param_groups, lr, spec.momentum, spec.weight_decay)
    loader = DataLoader(NamedItems(train_data), batch_size=batch_size, shuffle=True, num_workers=num_workers,
                        generator=torch.Generator().manual_seed(seed), pin_memory=rt.device.type == "cuda")
    val_loader = None if val_data is None else DataLoader(NamedItems(val_data), batch_size=2 * batch_size,
                                                          num_workers=num_workers)
    total = spec.max_steps if spec.max_steps is not None else spec.epochs * len(loader)
    n_epochs = math.ceil(total / len(loader))

    model.to(rt.device)  # validated above: from here on the model changes
    if rt.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer_to(opt, rt.device)
    names = group_names(opt)
    group_lrs = starting_lrs(opt, names)
    settings = save_group_settings(opt)  # put back on return: schedules leave lr at its end value
    try:
        sched = make_scheduler(opt, schedule, total, warmup_frac=spec.warmup_frac)
    except Exception:
        restore_group_settings(opt, settings)
        raise
    named = isinstance(optimizer, str)
    uses_default = named and (param_groups is None or any("lr" not in g for g in param_groups))
    history = History(config={
        "optimizer": optimizer if named else type(optimizer).__name__, "lr": lr if uses_default else None,
        "group_lrs": group_lrs,
        "schedule": schedule if isinstance(schedule, str) else getattr(schedule, "__name__", "custom"),
        "batch_size": batch_size, "seed": seed, "epochs": n_epochs, "total_steps": total,
        "device": str(rt.device), "amp": rt.amp, "groups": names, "n_train": len(train_data),
        "n_val": None if val_data is None else len(val_data), "precise_bn": spec.precise_bn,
        "warmup_frac": spec.warmup_frac, "weight_decay": spec.weight_decay})
    loop = TrainLoop(model, opt, sched, rt, history, callback_list(callbacks), max_loss_factor=max_loss_factor)
    loop.val_loader = val_loader
    if spec.precise_bn:
        loop.bn_loader = DataLoader(NamedItems(train_data), batch_size=2 * batch_size, shuffle=False,
                                    num_workers=num_workers)
    bar = tqdm(total=total, desc="fit", unit="step", disable=not progress)
    with preserved_modes(model):
        if not model.training:
            model.train()  # pins (submodules in eval inside a model in train mode) are kept otherwise
        try:
            loop.run_guarded(lambda: (loader for _ in range(n_epochs)), total, seed=seed,
                             eval_every=spec.eval_every, bar=bar, caller="fit()")
        finally:
            bar.close()
            restore_group_settings(opt, settings)
            release_freed_memory()  # the run's activations: back to the OS, not kept by the allocator
    return history
