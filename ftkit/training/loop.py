"""The training loop: ``fit`` and ``evaluate`` return data (a History, a dict).

The loop is the plain PyTorch one (forward, cross-entropy, backward, step),
with the bookkeeping a learner should not have to write each time:

* the data order is fixed by ``seed`` (a ``torch.Generator`` drives the
  shuffle, and dropout runs under ``torch.manual_seed(seed)`` inside a forked
  RNG), so two strategies trained with the same seed see exactly the same
  batches in the same order, and the caller's global RNG is left alone;
* learning-rate schedules are ``torch.optim.lr_scheduler`` objects stepped once
  per optimizer step over the whole run, so every param group keeps its own
  ratio to the others (discriminative LRs survive the schedule; see
  ``ftkit.training.optim``);
* a NaN/Inf loss, or a step that makes a parameter non-finite, stops the run
  and leaves the model at its last good weights; Ctrl-C returns what was
  recorded so far;
* every module's train/eval flag is restored when ``fit`` returns, and so are
  the optimizer's param-group settings (lr, momentum...), so an optimizer
  passed to the next ``fit`` starts from its LRs again.

Beside it: ``ftkit.training.history`` (the History record), ``ftkit.training.callbacks``
(the callback protocol, LivePlot), ``ftkit.training.checkpoints``, ``ftkit.lab.crossval``.

>>> history = fit(model, train, val, epochs=3, lr=1e-2, schedule="cosine")   # doctest: +SKIP
>>> history.epoch_frame()[["epoch", "train_loss", "val_acc"]]                 # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import warnings
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ftkit.core.runtime import Runtime, resolve_runtime, split_batch, to_device
from ftkit.core.state import (
    StepRollback,
    all_finite,
    changeable_params,
    preserved_modes,
    restore_group_settings,
    save_group_settings,
    seeded,
)
from ftkit.models.bn_stats import recompute_bn_stats
from ftkit.training.callbacks import StopTraining, callback_list, dispatch
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

__all__ = ["fit", "evaluate", "evaluate_loader", "TrainLoop", "BatchError", "FIT_DEFAULTS", "MAX_LOSS_FACTOR",
           "NamedItems", "check_inputs", "check_labels", "item_path", "resolve_spec"]


# ---------------------------------------------------------------- evaluation

def evaluate_loader(model: nn.Module, loader: Iterable, rt: Runtime,
                    criterion: Callable[[Any, Any], torch.Tensor] | None = None) -> dict:
    """Mean loss (and accuracy) of ``model`` over the batches of ``loader``, in eval mode.

    Runs without gradients, under ``rt``'s autocast, and restores every
    module's train/eval flag afterwards. Shared by :func:`fit`,
    :func:`evaluate` and ``ftkit.lr.finder`` (validation mode).

    Args:
        model: already on ``rt.device``.
        loader: batches ``(x, y, ...)``.
        rt: where and how to run (:func:`ftkit.core.runtime.resolve_runtime`).
        criterion: a mean-reduced loss ``criterion(out, y)``; None: cross-entropy
            on the logits ``(B, C)``, and accuracy as well.

    Returns:
        ``{"loss": float, "acc": float | None, "n": int}`` (``acc`` is None with a criterion).

    Raises:
        ValueError: when ``loader`` yields no samples.
    """
    loss_sum = torch.zeros((), dtype=torch.float64, device=rt.device)
    correct = torch.zeros((), dtype=torch.int64, device=rt.device)
    n = 0
    with preserved_modes(model):
        model.eval()
        with torch.no_grad():
            for batch in loader:
                x, y = split_batch(batch)
                x, y = rt.inputs(x), to_device(y, rt.device)
                with rt.autocast():
                    out = model(x)
                if criterion is None:
                    loss_sum += F.cross_entropy(out.float(), y, reduction="sum")
                    correct += (out.argmax(1) == y).sum()
                else:  # mean over the batch -> sum, so a short last batch weighs what it holds
                    loss_sum += criterion(out, y).detach().double() * len(y)
                n += len(y)
    if n == 0:
        raise ValueError("the evaluation data yielded no samples")
    return {"loss": loss_sum.item() / n, "acc": None if criterion is not None else correct.item() / n, "n": n}


def evaluate(model: nn.Module, data: Dataset, *, batch_size: int = 256,
             device: str | torch.device = "auto") -> dict:
    """Mean cross-entropy and accuracy of ``model`` on ``data``.

    Runs in eval mode without gradients and restores every module's mode
    afterwards. The model is moved to ``device`` (and stays there).

    Returns:
        ``{"loss": float, "acc": float, "n": int}``.
    """
    if len(data) == 0:
        raise ValueError("evaluate() got an empty data set")
    rt = resolve_runtime(device)
    model.to(rt.device)
    return evaluate_loader(model, DataLoader(data, batch_size=batch_size, shuffle=False), rt)


# ---------------------------------------------------------------- the loop

class _Diverged(Exception):
    """The divergence guard stopped the run; ``row`` is the step (or evaluation) that diverged.
    ``undo_last``: the last completed step is undone too (a non-finite evaluation after it)."""

    def __init__(self, message: str, row: dict, undo_last: bool = False):
        super().__init__(message)
        self.row, self.undo_last = row, undo_last


class BatchError(ValueError):
    """The first batch does not fit the model (labels, channels); raised before any change."""


# Divergence stop for a finite explosion: a batch loss above this multiple of the
# reference loss, max(first batch's loss, ln C) -- ln C is the loss of a uniform
# guess over C classes, so a pretrained model that starts near 0 is not stopped by
# ordinary noise. 10 x ln(10) = 23: the true class gets e^-23 of the probability.
MAX_LOSS_FACTOR = 10.0


def item_path(dataset: Any, i: int) -> str | None:
    """The file behind item ``i`` of ``dataset`` when it can name one, else None.

    Knows ``Subset`` (and nests of it), datasets with a ``path_of(i)`` method
    (``ftkit.data``'s ImageDataset) and torchvision's ``ImageFolder`` (``samples``).
    """
    while isinstance(dataset, torch.utils.data.Subset):
        dataset, i = dataset.dataset, int(dataset.indices[i])
    try:
        if hasattr(dataset, "path_of"):
            path = dataset.path_of(i)
            return None if path is None else str(path)
        samples = getattr(dataset, "samples", None)
        if isinstance(samples, list) and samples and isinstance(samples[i], tuple):
            return str(samples[i][0])
    except Exception:  # noqa: BLE001 - naming the file is a courtesy; never hide the real error
        return None
    return None


class NamedItems(Dataset):
    """``dataset`` as it is, but an error while reading item ``i`` names the item and its file.

    The exception keeps its type; it gets ``.path`` (None when the dataset cannot
    name a file), ``.item`` and a note (shown in the traceback, also from
    DataLoader workers) saying what to do.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        try:
            return self.dataset[i]
        except Exception as err:
            path = item_path(self.dataset, i)
            with contextlib.suppress(AttributeError):
                err.path, err.item = path, i
            err.add_note(f"ftkit: this happened reading item {i} of the data"
                         + (f", file {path}: fix or remove that file" if path else
                            ": fix or drop that item") + ", then run again")
            raise


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
            overrides["optimizer"] = optimizer
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
    return history


def _first_conv(model: nn.Module) -> tuple[str, nn.Module] | None:
    return next(((n, m) for n, m in model.named_modules()
                 if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d))), None)


def check_inputs(model: nn.Module, x: Any, y: Any, criterion: Callable | None) -> None:
    """Check a batch before the model sees it: image channels, and integer class labels.

    Raises:
        BatchError: naming what is wrong and the fix; nothing has changed yet.
    """
    if isinstance(x, torch.Tensor) and x.dim() == 4:
        conv = _first_conv(model)
        if conv is not None and x.shape[1] != conv[1].in_channels:
            name, layer = conv
            raise BatchError(
                f"the images have {x.shape[1]} channel(s) but the model's first convolution "
                f"({name}) expects {layer.in_channels}: convert the images (e.g. grey to RGB with "
                f"torchvision.transforms.Grayscale(num_output_channels={layer.in_channels}), or "
                "x.expand(-1, 3, -1, -1)), or replace that layer")
    if criterion is None and isinstance(y, torch.Tensor) and (y.is_floating_point() or y.is_complex()):
        raise BatchError(
            f"the labels are {y.dtype}, but cross-entropy needs class indices (int64, 0..C-1): "
            "return int labels from the data set (e.g. int(label)), or pass a criterion that takes "
            "these targets")


def check_labels(out: Any, y: Any, criterion: Callable | None) -> None:
    """Check class labels against the model's output width (cross-entropy only).

    Raises:
        BatchError: naming the label range, the width and the fix.
    """
    if criterion is not None or not isinstance(out, torch.Tensor) or out.dim() != 2:
        return
    if not isinstance(y, torch.Tensor) or y.numel() == 0:
        return
    lo, hi, width = int(y.min()), int(y.max()), out.shape[1]
    if lo < 0 or hi >= width:
        raise BatchError(
            f"labels in this batch go from {lo} to {hi}, but the model has {width} outputs (classes "
            f"0..{width - 1}): replace its head with one per class, e.g. "
            f"ftkit.models.heads.replace_head(model, num_classes={max(hi + 1, width)}), or fix the labels")


class TrainLoop:
    """The one training loop of ftkit: ``fit`` and ``ftkit.lr.finder.lr_find`` both run on it.

    One step is: forward under the runtime's autocast, the loss, a finiteness
    check of the loss and the BatchNorm statistics, and a check for a finite
    explosion (before the step: a bad batch never updates weights), backward,
    ``optimizer.step()``, a check that parameters are still finite,
    ``scheduler.step()``, then the ``on_step`` callbacks. A guard stop (NaN/Inf
    loss, non-finite weights or BatchNorm statistics) rolls the step back
    (:class:`~ftkit.core.state.StepRollback`) and calls ``on_diverged``; a
    non-finite validation loss undoes the step before it as well.

    Args:
        model, opt: the model (on ``rt.device``) and its optimizer.
        sched: anything with ``step()``, called after each optimizer step.
        rt: device and precision.
        history: where the rows go.
        callbacks: see ``ftkit.training.callbacks``.
        criterion: a mean-reduced loss ``criterion(out, y)``; None: cross-entropy
            on logits ``(B, C)``, and training accuracy is counted as well.
        rollback: keep the per-step on-device copy (``lr_find`` turns it off: it
            restores everything from its CPU snapshot anyway).
        max_loss_factor: stop when a batch loss exceeds this multiple of the
            starting loss (see :data:`MAX_LOSS_FACTOR`); None: no such stop.

    The first batch is checked before the first step (:func:`check_inputs`,
    :func:`check_labels`): a mismatch raises :class:`BatchError` and changes nothing.
    """

    def __init__(self, model, opt, sched, rt: Runtime, history: History, callbacks: Sequence[Any] = (),
                 *, criterion: Callable | None = None, rollback: bool = True,
                 max_loss_factor: float | None = None):
        self.model, self.opt, self.sched, self.rt = model, opt, sched, rt
        self.history, self.callbacks, self.criterion = history, list(callbacks), criterion
        self.names = group_names(opt)
        self.val_loader: DataLoader | None = None
        self.bn_loader: DataLoader | None = None  # set for precise BN before each evaluation
        self.snap = StepRollback(model, opt) if rollback else None
        self.params = list(changeable_params(model, opt).values())
        self.buffers = [b for b in model.buffers() if b.is_floating_point()]  # BN running stats
        self.max_loss_factor, self.loss_limit = max_loss_factor, math.inf
        self.step, self.epoch, self.epoch_open, self.closing = 0, 0, False, False
        self.dirty: str | None = None  # what a half-done step has touched: None | "buffers" | "params"
        self.t_start = self.t_epoch = time.perf_counter()
        self.eval_s = self.epoch_eval_s = 0.0
        self.sums: dict[str, Any] = {}

    def train_s(self) -> float:
        """Wall time since the start, evaluation excluded."""
        return time.perf_counter() - self.t_start - self.eval_s

    def run_guarded(self, epochs: Callable[[], Iterable[Iterable]], total: int, *, seed: int,
                    eval_every: int | None = None, bar=None, caller: str = "fit()") -> None:
        """Run, seeded, and turn every ending into ``history`` fields; re-raise other errors.

        A divergence stop warns (``caller`` names who stopped) and leaves the
        model at its last good step; :class:`StopTraining` from a callback and
        Ctrl-C end the run cleanly; any other exception is raised after the
        half-done step is undone, carrying the History so far as ``err.history``.
        """
        history = self.history
        try:
            with seeded(seed, self.rt.device):  # dropout and in-process augmentation: same seed, same draws
                self.run(epochs(), total, eval_every, bar)
        except _Diverged as err:
            self.undo_partial_step()
            good = self.step
            if err.undo_last and self.snap is not None:
                self.snap.restore(params=True)
                good = self.step - 1
            history.stopped_reason = f"{err}; model restored to the weights after step {good}"
            dispatch(self.callbacks, "on_diverged", history, err.row)
            if caller:
                warnings.warn(f"{caller} stopped: {history.stopped_reason}. Try a smaller lr.", RuntimeWarning,
                              stacklevel=3)
            self.close_epoch_quietly()
        except StopTraining as err:
            history.stopped_reason = f"stopped by a callback: {err}" if str(err) else "stopped by a callback"
            self.close_epoch_quietly()
        except KeyboardInterrupt:
            self.undo_partial_step()
            history.interrupted = True
            history.stopped_reason = f"interrupted (KeyboardInterrupt) after step {self.step}"
        except Exception as err:
            self.undo_partial_step()  # e.g. an error inside optimizer.step(): no half-updated weights
            with contextlib.suppress(AttributeError):
                err.history = history  # what was recorded before the error: nothing is lost
            raise

    def run(self, epochs: Iterable[Iterable], total: int, eval_every: int | None, bar=None) -> None:
        """Train over ``epochs`` (each an iterable of batches) until ``total`` steps."""
        for self.epoch, batches in enumerate(epochs, start=1):
            correct = torch.zeros((), dtype=torch.int64, device=self.rt.device)
            self.sums = {"loss": 0.0, "correct": correct, "n": 0}
            self.t_epoch, self.epoch_eval_s, self.epoch_open = time.perf_counter(), 0.0, True
            for batch in batches:
                row = self.train_step(*split_batch(batch))
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{row['loss']:.4g}", refresh=False)
                dispatch(self.callbacks, "on_step", self.history, row)
                if eval_every is not None and self.step % eval_every == 0:
                    self.evaluate()
                if self.step >= total:
                    break
            self.end_epoch()
            if self.step >= total:
                break

    def loss(self, out: Any, y: Any) -> torch.Tensor:
        if self.criterion is None:
            return F.cross_entropy(out.float(), y)
        return self.criterion(out, y)

    def train_step(self, x: Any, y: Any) -> dict:
        rt, opt, snap = self.rt, self.opt, self.snap
        first = self.step == 0
        if first:
            check_inputs(self.model, x, y, self.criterion)
        x, y = rt.inputs(x), to_device(y, rt.device)
        if snap is not None:
            snap.save_buffers()
        self.dirty = "buffers"  # BatchNorm running stats change in the forward pass
        with rt.autocast():
            out = self.model(x)                                  # (B, C) logits
        if first:
            check_labels(out, y, self.criterion)
        loss = self.loss(out, y)
        loss_v = loss.item()
        lrs = {f"lr/{n}": float(g["lr"]) for n, g in zip(self.names, opt.param_groups)}
        row = {"step": self.step + 1, "epoch": self.epoch, "loss": loss_v, **lrs}
        where = f"at step {self.step + 1} (epoch {self.epoch})"
        # all checked before the step: the bad batch never updates weights
        if not math.isfinite(loss_v):
            raise _Diverged(f"loss became {loss_v} {where}", row)
        if self.buffers and not all_finite(self.buffers):
            raise _Diverged(f"BatchNorm running statistics became non-finite {where} (loss {loss_v:.4g})", row)
        if self.max_loss_factor is not None:
            if first:
                width = out.shape[1] if self.criterion is None and out.dim() == 2 else 1
                self.loss_limit = self.max_loss_factor * max(loss_v, math.log(max(width, 2)))
            elif loss_v > self.loss_limit:
                raise _Diverged(f"loss exploded to {loss_v:.4g} {where}, above {self.max_loss_factor:g} x the "
                                f"starting loss ({self.loss_limit:.4g}; max_loss_factor=None turns this off)", row)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if snap is not None:
            snap.save_params()
        self.dirty = "params"
        opt.step()
        if not all_finite(self.params):  # finite loss, overflowing update: roll it back
            raise _Diverged(f"a parameter became non-finite in step {self.step + 1} "
                            f"(epoch {self.epoch}, loss {loss_v:.4g})", row)
        self.sched.step()
        self.dirty, self.step = None, self.step + 1
        self.sums["loss"] += loss_v * len(y)
        if self.criterion is None:
            self.sums["correct"] += (out.argmax(1) == y).sum()  # stays on the device: no extra sync
        self.sums["n"] += len(y)
        self.history.steps.append(row)
        return row

    def undo_partial_step(self) -> None:
        if self.dirty is not None and self.snap is not None:
            self.snap.restore(params=self.dirty == "params")
        self.dirty = None
    def evaluate(self) -> dict | None:
        if self.val_loader is None:
            return None
        evals = self.history.evals
        if evals and evals[-1]["step"] == self.step:  # e.g. eval_every hit the epoch's last step
            return evals[-1]
        t0 = time.perf_counter()
        if self.bn_loader is not None:
            recompute_bn_stats(self.model, self.bn_loader)
        res = evaluate_loader(self.model, self.val_loader, self.rt)
        row = {"step": self.step, "epoch": self.epoch, "val_loss": res["loss"], "val_acc": res["acc"],
               "elapsed_s": self.train_s() - (time.perf_counter() - t0)}
        evals.append(row)
        if not math.isfinite(res["loss"]) and not self.closing:  # finite weights can overflow in eval mode
            raise _Diverged(f"the validation loss became {res['loss']} after step {self.step}", row,
                            undo_last=self.step > 0)
        dispatch(self.callbacks, "on_eval", self.history, row)
        dt = time.perf_counter() - t0
        self.eval_s += dt
        self.epoch_eval_s += dt
        return row

    def end_epoch(self) -> None:
        ev = self.evaluate() or {"val_loss": None, "val_acc": None}
        n = max(self.sums["n"], 1)
        row = {"epoch": self.epoch, "step": self.step, "train_loss": self.sums["loss"] / n,
               "train_acc": int(self.sums["correct"]) / n, "val_loss": ev["val_loss"], "val_acc": ev["val_acc"],
               "time_s": time.perf_counter() - self.t_epoch - self.epoch_eval_s}
        self.history.epochs.append(row)
        self.epoch_open = False
        dispatch(self.callbacks, "on_epoch_end", self.history, row)

    def close_epoch_quietly(self) -> None:
        """After an early stop: record the partial epoch (a callback may stop again)."""
        if self.epoch_open:
            self.closing = True  # the run has stopped: a bad evaluation is recorded, not raised
            with contextlib.suppress(StopTraining):
                self.end_epoch()
