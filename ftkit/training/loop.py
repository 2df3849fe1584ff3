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
    SCHEDULES,
    build_optimizer,
    group_names,
    make_scheduler,
    optimizer_to,
    starting_lrs,
)

__all__ = ["fit", "evaluate", "evaluate_loader", "TrainLoop"]


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
    """The divergence guard stopped the run; ``row`` is the step that diverged."""

    def __init__(self, message: str, row: dict):
        super().__init__(message)
        self.row = row


def _validate(train_data, val_data, epochs, max_steps, batch_size, eval_every, schedule) -> None:
    if len(train_data) == 0:
        raise ValueError("fit() got an empty training set")
    if val_data is not None and len(val_data) == 0:
        raise ValueError("fit() got an empty val_data; pass None to train without validation")
    if max_steps is None and (not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"epochs must be a positive int (or give max_steps), not {epochs!r}")
    for name, v in [("max_steps", max_steps), ("eval_every", eval_every)]:
        if v is not None and (not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} must be None or a positive int, not {v!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, not {batch_size!r}")
    if not callable(schedule) and schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES} or a callable, not {schedule!r}")


def fit(model: nn.Module, train_data: Dataset, val_data: Dataset | None = None, epochs: int = 1, *,
        lr: float = 1e-3, optimizer: str | torch.optim.Optimizer = "sgd",
        param_groups: Sequence[dict] | None = None, schedule: str | Callable = "constant",
        batch_size: int = 32, seed: int = 0, device: str | torch.device = "auto",
        max_steps: int | None = None, eval_every: int | None = None, callbacks: Sequence[Any] = (),
        progress: bool = True, amp: bool | str = "auto", momentum: float = 0.9,
        weight_decay: float = 0.0, num_workers: int = 0, precise_bn: bool = False) -> History:
    """Train ``model`` with cross-entropy and return what happened.

    Args:
        model: a classifier returning logits ``(B, C)``. Moved to ``device``
            (it stays there; on CUDA with amp also to channels_last memory
            format); ``fit`` never re-initialises or re-seeds its weights.
        train_data, val_data: datasets yielding ``(x, label)``.
        epochs: passes over ``train_data`` (ignored when ``max_steps`` is given).
        lr: LR of every group that does not set its own (ignored with an
            optimizer instance, whose groups' current LRs are used).
        optimizer: "sgd" (with ``momentum``), "adam", "adamw", or an instance.
            An instance keeps its state (momentum...) across fits; its groups'
            settings (lr, momentum, betas) come back as they went in, so the
            next fit starts from the same LRs (set a group's ``lr`` to change
            it, or build a new optimizer). A group with lr 0 draws a warning.
        param_groups: dicts for ``torch.optim`` (e.g. ``ftkit.lr.groups.param_groups``),
            each may carry ``lr``, ``weight_decay`` and a ``name``; a group
            without them gets ``lr`` and ``weight_decay`` below. Default: one
            group "all" with every parameter that has ``requires_grad``.
        schedule: "constant" | "step" | "cosine" | "onecycle" | callable, per
            step over the whole run (see :func:`ftkit.training.optim.make_scheduler`).
        batch_size: minibatch size (the last batch may be smaller).
        seed: fixes the data order and the RNG seen by dropout/augmentation in
            this process; the caller's global RNG state is left unchanged.
        device: "auto" (CUDA when present) or a torch device.
        max_steps: run exactly this many optimizer steps (over as many epochs as
            needed) instead of ``epochs`` full passes.
        eval_every: also evaluate ``val_data`` every N steps (always at each epoch end).
        callbacks: objects with any of ``on_step``, ``on_eval``,
            ``on_epoch_end``, each called as ``(history, row)``; raise
            :class:`StopTraining` to stop early (see ``ftkit.training.callbacks``,
            e.g. its ``LivePlot``).
        progress: show a tqdm progress bar.
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
        or with an optimizer instance). On a NaN/Inf loss (or non-finite weights after a
        step) training stops with a warning, ``stopped_reason`` says why, and
        the model holds the weights and BatchNorm statistics of the last
        completed step (the optimizer's momentum is not rolled back). Ctrl-C
        returns the History so far with ``interrupted=True``, model at the
        last completed step; any other error is raised after the same rollback.

    Every module's train/eval flag is restored on return (the model comes back
    in the mode it went in). During training the model is in train mode; when
    it arrives in train mode, submodules you put in eval mode (e.g. frozen
    BatchNorm) stay in eval mode; a model that arrives in eval mode is
    switched entirely to train mode. Call ``model.eval()`` before hand-written
    inference; :func:`evaluate` does that itself.
    """
    _validate(train_data, val_data, epochs, max_steps, batch_size, eval_every, schedule)
    rt = resolve_runtime(device, amp)
    opt = build_optimizer(model, optimizer, param_groups, lr, momentum, weight_decay)
    loader = DataLoader(train_data, batch_size=batch_size, shuffle=True, num_workers=num_workers,
                        generator=torch.Generator().manual_seed(seed), pin_memory=rt.device.type == "cuda")
    val_loader = None if val_data is None else DataLoader(val_data, batch_size=2 * batch_size,
                                                          num_workers=num_workers)
    total = max_steps if max_steps is not None else epochs * len(loader)
    n_epochs = math.ceil(total / len(loader))

    model.to(rt.device)  # validated above: from here on the model changes
    if rt.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer_to(opt, rt.device)
    names = group_names(opt)
    group_lrs = starting_lrs(opt, names)
    settings = save_group_settings(opt)  # put back on return: schedules leave lr at its end value
    try:
        sched = make_scheduler(opt, schedule, total)
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
        "n_val": None if val_data is None else len(val_data), "precise_bn": precise_bn})
    loop = TrainLoop(model, opt, sched, rt, history, callback_list(callbacks))
    loop.val_loader = val_loader
    if precise_bn:
        loop.bn_loader = DataLoader(train_data, batch_size=2 * batch_size, shuffle=False, num_workers=num_workers)
    bar = tqdm(total=total, desc="fit", unit="step", disable=not progress)
    with preserved_modes(model):
        if not model.training:
            model.train()  # pins (submodules in eval inside a model in train mode) are kept otherwise
        try:
            loop.run_guarded(lambda: (loader for _ in range(n_epochs)), total, seed=seed,
                             eval_every=eval_every, bar=bar, caller="fit()")
        finally:
            bar.close()
            restore_group_settings(opt, settings)
    return history


class TrainLoop:
    """The one training loop of ftkit: ``fit`` and ``ftkit.lr.finder.lr_find`` both run on it.

    One step is: forward under the runtime's autocast, the loss, a finiteness
    check (before the step: a bad batch never updates weights), backward,
    ``optimizer.step()``, a check that parameters and buffers are still finite,
    ``scheduler.step()``, then the ``on_step`` callbacks. A guard stop (NaN/Inf
    loss, non-finite weights or BatchNorm statistics) rolls the step back
    (:class:`~ftkit.core.state.StepRollback`) and calls ``on_diverged``.

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
    """

    def __init__(self, model, opt, sched, rt: Runtime, history: History, callbacks: Sequence[Any] = (),
                 *, criterion: Callable | None = None, rollback: bool = True):
        self.model, self.opt, self.sched, self.rt = model, opt, sched, rt
        self.history, self.callbacks, self.criterion = history, list(callbacks), criterion
        self.names = group_names(opt)
        self.val_loader: DataLoader | None = None
        self.bn_loader: DataLoader | None = None  # set for precise BN before each evaluation
        self.snap = StepRollback(model, opt) if rollback else None
        self.params = list(changeable_params(model, opt).values())
        self.step, self.epoch, self.epoch_open = 0, 0, False
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
        half-done step is undone.
        """
        history = self.history
        try:
            with seeded(seed, self.rt.device):  # dropout and in-process augmentation: same seed, same draws
                self.run(epochs(), total, eval_every, bar)
        except _Diverged as err:
            self.undo_partial_step()
            history.stopped_reason = f"{err}; model restored to the weights after step {self.step}"
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
        except Exception:
            self.undo_partial_step()  # e.g. an error inside optimizer.step(): no half-updated weights
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
        x, y = rt.inputs(x), to_device(y, rt.device)
        if snap is not None:
            snap.save_buffers()
        self.dirty = "buffers"  # BatchNorm running stats change in the forward pass
        with rt.autocast():
            out = self.model(x)                                  # (B, C) logits
        loss = self.loss(out, y)
        loss_v = loss.item()
        lrs = {f"lr/{n}": float(g["lr"]) for n, g in zip(self.names, opt.param_groups)}
        row = {"step": self.step + 1, "epoch": self.epoch, "loss": loss_v, **lrs}
        if not math.isfinite(loss_v):  # checked before the step: the bad batch never updates weights
            raise _Diverged(f"loss became {loss_v} at step {self.step + 1} (epoch {self.epoch})", row)
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
            with contextlib.suppress(StopTraining):
                self.end_epoch()
