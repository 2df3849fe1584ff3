"""The one training loop of ftkit (``fit`` and ``lr_find`` both run on it), and evaluation.

:class:`TrainLoop` does one step the plain PyTorch way (forward, loss, backward,
step) with the guards around it: the first batch checked
(``ftkit.training.checks``), a divergence guard (non-finite loss, weights,
BatchNorm statistics or validation loss; a finite loss explosion) that rolls the
step back (``ftkit.core.state.StepRollback``), callbacks, and an ending for every
way a run stops. :func:`evaluate_loader` is the evaluation pass both use.
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
from torch.utils.data import DataLoader

from ftkit.core.runtime import Runtime, split_batch, to_device
from ftkit.core.state import StepRollback, all_finite, changeable_params, preserved_modes, seeded
from ftkit.models.bn_stats import recompute_bn_stats
from ftkit.training.callbacks import StopTraining, dispatch
from ftkit.training.checks import check_inputs, check_labels
from ftkit.training.history import History
from ftkit.training.optim import group_names

__all__ = ["MAX_LOSS_FACTOR", "TrainLoop", "evaluate_loader"]


# Divergence stop for a finite explosion: a batch loss above this multiple of the
# reference loss, max(first batch's loss, ln C) -- ln C is the loss of a uniform
# guess over C classes, so a pretrained model that starts near 0 is not stopped by
# ordinary noise. 10 x ln(10) = 23: the true class gets e^-23 of the probability.
MAX_LOSS_FACTOR = 10.0


class _Diverged(Exception):
    """The divergence guard stopped the run; ``row`` is the step (or evaluation) that diverged.
    ``undo_last``: the last completed step is undone too (a non-finite evaluation after it)."""

    def __init__(self, message: str, row: dict, undo_last: bool = False):
        super().__init__(message)
        self.row, self.undo_last = row, undo_last


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
