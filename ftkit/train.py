"""Training: ``fit`` and ``evaluate`` return data (a :class:`History`, a dict);
checkpoints; k-fold cross-validation.

The loop is the plain PyTorch one (forward, cross-entropy, backward, step),
with the bookkeeping a learner should not have to write each time:

* the data order is fixed by ``seed`` (a ``torch.Generator`` drives the
  shuffle, and dropout runs under ``torch.manual_seed(seed)`` inside a forked
  RNG), so two strategies trained with the same seed see exactly the same
  batches in the same order, and the caller's global RNG is left alone;
* learning-rate schedules are ``torch.optim.lr_scheduler`` objects stepped once
  per optimizer step over the whole run, so every param group keeps its own
  ratio to the others (discriminative LRs survive the schedule);
* a NaN/Inf loss, or a step that makes a parameter non-finite, stops the run
  and leaves the model at its last good weights; Ctrl-C returns what was
  recorded so far;
* every module's train/eval flag is restored when ``fit`` returns.

>>> history = fit(model, train, val, epochs=3, lr=1e-2, schedule="cosine")   # doctest: +SKIP
>>> history.epoch_frame()[["epoch", "train_loss", "val_acc"]]                 # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import lr_scheduler
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from ftkit._torchutil import atomic_path, resolve_device

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "onecycle")
STEP_GAMMA = 0.1  # "step" schedule: LR x 0.1 after each third of the run
CHECKPOINT_FORMAT = "ftkit-checkpoint-1"


class StopTraining(Exception):
    """Raise from a callback to end :func:`fit` cleanly (e.g. early stopping).

    The message becomes ``History.stopped_reason``.
    """


# ---------------------------------------------------------------- History

@dataclass
class History:
    """What one :func:`fit` call recorded (all plain numbers: JSON-able).

    Attributes:
        steps: one row per optimizer step: ``step`` (1, 2, ...), ``epoch``
            (1-based), ``loss`` (the batch loss) and ``lr/<group name>`` (the LR
            the step used, per param group).
        evals: one row per validation pass: ``step``, ``epoch``, ``val_loss``,
            ``val_acc``, ``elapsed_s`` (training seconds so far, evaluation
            time excluded, so curves of different strategies compare fairly).
        epochs: one row per (possibly partial) epoch: ``epoch``, ``step``,
            ``train_loss``, ``train_acc`` (over the epoch's batches, in train
            mode), ``val_loss``, ``val_acc`` (None without validation data),
            ``time_s`` (training seconds in the epoch, evaluation excluded).
        interrupted: True when Ctrl-C (KeyboardInterrupt) ended the run.
        stopped_reason: why the run ended early; None when it ran to the end.
        config: the settings of the run (optimizer, lr, schedule, seed...).
    """

    steps: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    epochs: list[dict] = field(default_factory=list)
    interrupted: bool = False
    stopped_reason: str | None = None
    config: dict = field(default_factory=dict)

    def step_frame(self) -> pd.DataFrame:
        """Per-step rows as a DataFrame (columns present even when empty)."""
        lr_cols = [f"lr/{g}" for g in self.config.get("groups", [])]
        return pd.DataFrame(self.steps, columns=["step", "epoch", "loss", *lr_cols])

    def eval_frame(self) -> pd.DataFrame:
        """Per-evaluation rows as a DataFrame."""
        return pd.DataFrame(self.evals, columns=["step", "epoch", "val_loss", "val_acc", "elapsed_s"])

    def epoch_frame(self) -> pd.DataFrame:
        """Per-epoch rows as a DataFrame."""
        cols = ["epoch", "step", "train_loss", "train_acc", "val_loss", "val_acc", "time_s"]
        return pd.DataFrame(self.epochs, columns=cols)

    def to_dict(self) -> dict:
        """A JSON-able copy (``json.dumps(history.to_dict())`` works)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        """Inverse of :meth:`to_dict`."""
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})

    def __repr__(self) -> str:
        last = f", last loss={self.steps[-1]['loss']:.4g}" if self.steps else ""
        val = f", val_acc={self.evals[-1]['val_acc']:.3f}" if self.evals else ""
        return (f"History(steps={len(self.steps)}, epochs={len(self.epochs)}{last}{val}, "
                f"interrupted={self.interrupted}, stopped_reason={self.stopped_reason!r})")


# ---------------------------------------------------------------- devices, modes

@dataclass(frozen=True)
class _Runtime:
    """Where and how to run: device, bf16 autocast, channels_last inputs."""

    device: torch.device
    amp: bool
    channels_last: bool

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def _runtime(device: str | torch.device = "auto", amp: bool | str = "auto") -> _Runtime:
    dev = resolve_device(device)
    if amp == "auto":
        use = dev.type == "cuda"
    elif isinstance(amp, bool):
        use = amp
    else:
        raise ValueError(f"amp must be 'auto', True or False, not {amp!r}")
    # bf16 autocast alone can be slower than fp32 on GPU; with channels_last it
    # is ~1.7-2x faster (measured, see GPU.md), so the two go together.
    return _Runtime(dev, use, use and dev.type == "cuda")


def _modes(model: nn.Module) -> dict[nn.Module, bool]:
    return {m: m.training for m in model.modules()}


def _restore_modes(modes: dict[nn.Module, bool]) -> None:
    for m, training in modes.items():
        m.training = training  # per module: m.train() would recurse and undo pins


def _evaluate(model: nn.Module, loader: DataLoader, rt: _Runtime) -> dict:
    modes = _modes(model)
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=rt.device)
    correct = torch.zeros((), dtype=torch.int64, device=rt.device)
    n = 0
    try:
        with torch.no_grad():
            for x, y in loader:
                x, y = rt.inputs(x), y.to(rt.device)
                with rt.autocast():
                    out = model(x)
                loss_sum += F.cross_entropy(out.float(), y, reduction="sum")
                correct += (out.argmax(1) == y).sum()
                n += len(y)
    finally:
        _restore_modes(modes)
    return {"loss": loss_sum.item() / n, "acc": correct.item() / n, "n": n}


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
    rt = _runtime(device)
    model.to(rt.device)
    return _evaluate(model, DataLoader(data, batch_size=batch_size, shuffle=False), rt)


# ---------------------------------------------------------------- optimizer and schedule

def _check_owned(model: nn.Module, params: Iterable[nn.Parameter], what: str) -> None:
    own = {id(p) for p in model.parameters()}
    if any(id(p) not in own for p in params):
        raise ValueError(f"{what} holds parameters that are not in this model; build it from "
                         "this very model object (after any deepcopy or head replacement)")


def _build_optimizer(model: nn.Module, optimizer: str | torch.optim.Optimizer,
                     param_groups: Sequence[dict] | None, lr: float, momentum: float,
                     weight_decay: float) -> torch.optim.Optimizer:
    if isinstance(optimizer, torch.optim.Optimizer):
        if param_groups is not None:
            raise ValueError("pass either an optimizer instance or param_groups, not both")
        opt = optimizer
        groups = opt.param_groups
    else:
        if not isinstance(optimizer, str) or optimizer.lower() not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS} or a torch.optim.Optimizer, "
                             f"not {optimizer!r}")
        if param_groups is None:
            groups = [{"params": [p for p in model.parameters() if p.requires_grad], "name": "all"}]
        else:
            groups = [{**g, "params": list(g["params"]), "name": g.get("name", f"group{i}")}
                      for i, g in enumerate(param_groups)]
    params = [p for g in groups for p in g["params"]]
    _check_owned(model, params, "the optimizer" if isinstance(optimizer, torch.optim.Optimizer)
                 else "param_groups")
    if not any(p.requires_grad for p in params):
        raise ValueError(
            f"nothing to train: none of the {len(params)} parameters given to the optimizer has "
            "requires_grad=True (is the whole model frozen?). Unfreeze something first, e.g. "
            "ftkit.freeze.unfreeze(model, names=[...]), or set p.requires_grad_(True).")
    if isinstance(optimizer, torch.optim.Optimizer):
        return opt
    name = optimizer.lower()
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    return cls(groups, lr=lr, weight_decay=weight_decay)


def _group_names(opt: torch.optim.Optimizer) -> list[str]:
    names: list[str] = []
    for i, g in enumerate(opt.param_groups):
        base = str(g.get("name", f"group{i}"))
        name, k = base, 2
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return names


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: str | Callable,
                   total_steps: int) -> lr_scheduler.LRScheduler:
    """The per-step LR scheduler :func:`fit` uses, starting from each group's current LR.

    Args:
        optimizer: its groups' current ``lr`` are the base (peak for onecycle) LRs.
        schedule: "constant"; "step" (x0.1 after each third of the run);
            "cosine" (``lr * (1 + cos(pi t / T)) / 2``); "onecycle"
            (``OneCycleLR`` with each group's LR as its peak); or a callable
            ``(optimizer, total_steps) -> LRScheduler``.
        total_steps: T, the number of optimizer steps in the run.
    """
    for g in optimizer.param_groups:
        g["initial_lr"] = g["lr"]  # the base every torch scheduler scales, per group
    if callable(schedule):
        return schedule(optimizer, total_steps)
    if schedule == "constant":
        return lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    if schedule == "step":
        return lr_scheduler.StepLR(optimizer, step_size=max(1, math.ceil(total_steps / 3)), gamma=STEP_GAMMA)
    if schedule == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if schedule == "onecycle":
        cycle = any("betas" in g or g.get("momentum", 0) > 0 for g in optimizer.param_groups)
        return lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
                                       total_steps=total_steps, cycle_momentum=cycle)
    raise ValueError(f"schedule must be one of {SCHEDULES} or a callable, not {schedule!r}")


# ---------------------------------------------------------------- the loop

class _Diverged(Exception):
    pass


class _Snapshot:
    """Copies of the trainable parameters and all buffers, refreshed in place.

    Cost: one extra copy of the trainable weights and buffers in memory, and
    one device memcpy per step; it buys an exact rollback of a bad step.
    The optimizer's state (momentum, Adam moments) is not rolled back.
    """

    def __init__(self, params: list[torch.Tensor], buffers: list[torch.Tensor]):
        self.params, self.buffers = params, buffers
        self._p = [p.detach().clone() for p in params]
        self._b = [b.detach().clone() for b in buffers]

    @staticmethod
    def _copy(dst: list[torch.Tensor], src: list[torch.Tensor]) -> None:
        if dst:
            with torch.no_grad():
                torch._foreach_copy_(dst, [s.detach() for s in src])

    def save_params(self) -> None:
        self._copy(self._p, self.params)

    def save_buffers(self) -> None:
        self._copy(self._b, self.buffers)

    def restore(self, params: bool) -> None:
        self._copy(self.buffers, self._b)
        if params:
            self._copy(self.params, self._p)

    def params_finite(self) -> bool:
        total_norm = getattr(torch.nn.utils, "get_total_norm", None)  # torch >= 2.6
        if total_norm is None:
            return all(bool(torch.isfinite(p).all()) for p in self.params)
        return bool(torch.isfinite(total_norm(self.params, norm_type=math.inf)))  # max |p|: cannot overflow


def _call(callbacks: Sequence[Any], event: str, history: History, row: dict) -> None:
    for cb in callbacks:
        fn = getattr(cb, event, None)
        if fn is not None:
            fn(history, row)


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
        weight_decay: float = 0.0, num_workers: int = 0) -> History:
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
        param_groups: dicts for ``torch.optim`` (e.g. ``ftkit.groups.param_groups``),
            each may carry ``lr``, ``weight_decay`` and a ``name``. Default: one
            group "all" with every parameter that has ``requires_grad``.
        schedule: "constant" | "step" | "cosine" | "onecycle" | callable, per
            step over the whole run (see :func:`make_scheduler`).
        batch_size: minibatch size (the last batch may be smaller).
        seed: fixes the data order and the RNG seen by dropout/augmentation in
            this process; the caller's global RNG state is left unchanged.
        device: "auto" (CUDA when present) or a torch device.
        max_steps: run exactly this many optimizer steps (over as many epochs as
            needed) instead of ``epochs`` full passes.
        eval_every: also evaluate ``val_data`` every N steps (always at each epoch end).
        callbacks: objects with any of ``on_step``, ``on_eval``,
            ``on_epoch_end``, each called as ``(history, row)``; raise
            :class:`StopTraining` to stop early.
        progress: show a tqdm progress bar.
        amp: "auto" (bf16 autocast + channels_last on CUDA, fp32 on CPU), True, False.
        momentum, weight_decay: for the optimizers built from a name.
        num_workers: DataLoader worker processes.

    Returns:
        A :class:`History`. On a NaN/Inf loss (or non-finite weights after a
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
    rt = _runtime(device, amp)
    opt = _build_optimizer(model, optimizer, param_groups, lr, momentum, weight_decay)
    loader = DataLoader(train_data, batch_size=batch_size, shuffle=True, num_workers=num_workers,
                        generator=torch.Generator().manual_seed(seed), pin_memory=rt.device.type == "cuda")
    val_loader = None if val_data is None else DataLoader(val_data, batch_size=2 * batch_size,
                                                          num_workers=num_workers)
    total = max_steps if max_steps is not None else epochs * len(loader)
    n_epochs = math.ceil(total / len(loader))

    model.to(rt.device)  # validated above: from here on the model changes
    if rt.channels_last:
        model.to(memory_format=torch.channels_last)
    _optimizer_to(opt, rt.device)
    sched = make_scheduler(opt, schedule, total)
    names = _group_names(opt)
    named = isinstance(optimizer, str)
    history = History(config={
        "optimizer": optimizer if named else type(optimizer).__name__, "lr": lr if named else None,
        "schedule": schedule if isinstance(schedule, str) else getattr(schedule, "__name__", "custom"),
        "batch_size": batch_size, "seed": seed, "epochs": n_epochs, "total_steps": total,
        "device": str(rt.device), "amp": rt.amp, "groups": names, "n_train": len(train_data),
        "n_val": None if val_data is None else len(val_data)})
    if any(hasattr(callbacks, a) for a in ("on_step", "on_eval", "on_epoch_end")):
        callbacks = [callbacks]  # a single callback object
    callbacks = list(callbacks or ())
    loop = _Loop(model, opt, sched, loader, val_loader, rt, history, callbacks, names)

    modes = _modes(model)
    if not model.training:
        model.train()  # pins (submodules in eval inside a model in train mode) are kept otherwise
    bar = tqdm(total=total, desc="fit", unit="step", disable=not progress)
    try:
        with torch.random.fork_rng(devices=_rng_devices(rt.device)):
            torch.manual_seed(seed)  # dropout and in-process augmentation: same seed, same draws
            loop.run(n_epochs, total, eval_every, bar)
    except _Diverged as err:
        loop.undo_partial_step()
        history.stopped_reason = f"{err}; model restored to the weights after step {loop.step}"
        warnings.warn(f"fit() stopped: {history.stopped_reason}. Try a smaller lr.", RuntimeWarning, stacklevel=2)
        loop.close_epoch_quietly()
    except StopTraining as err:
        history.stopped_reason = f"stopped by a callback: {err}" if str(err) else "stopped by a callback"
        loop.close_epoch_quietly()
    except KeyboardInterrupt:
        loop.undo_partial_step()
        history.interrupted = True
        history.stopped_reason = f"interrupted (KeyboardInterrupt) after step {loop.step}"
    except Exception:
        loop.undo_partial_step()  # e.g. an error inside optimizer.step(): no half-updated weights
        raise
    finally:
        bar.close()
        _restore_modes(modes)
    return history


class _Loop:
    """The state of one fit() run: counters, clocks, running sums, the snapshot."""

    def __init__(self, model, opt, sched, loader, val_loader, rt, history, callbacks, names):
        self.model, self.opt, self.sched, self.rt = model, opt, sched, rt
        self.loader, self.val_loader = loader, val_loader
        self.history, self.callbacks, self.names = history, callbacks, names
        params = [p for g in opt.param_groups for p in g["params"] if p.requires_grad]
        self.snap = _Snapshot(params, list(model.buffers()))
        self.step, self.epoch, self.epoch_open = 0, 0, False
        self.dirty: str | None = None  # what a half-done step has touched: None | "buffers" | "params"
        self.t_start = self.t_epoch = time.perf_counter()
        self.eval_s = self.epoch_eval_s = 0.0
        self.sums: dict[str, Any] = {}

    def train_s(self) -> float:
        """Wall time since the start, evaluation excluded."""
        return time.perf_counter() - self.t_start - self.eval_s

    def run(self, n_epochs: int, total: int, eval_every: int | None, bar) -> None:
        for self.epoch in range(1, n_epochs + 1):
            correct = torch.zeros((), dtype=torch.int64, device=self.rt.device)
            self.sums = {"loss": 0.0, "correct": correct, "n": 0}
            self.t_epoch, self.epoch_eval_s, self.epoch_open = time.perf_counter(), 0.0, True
            for x, y in self.loader:
                row = self.train_step(x, y)
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.4g}", refresh=False)
                _call(self.callbacks, "on_step", self.history, row)
                if eval_every is not None and self.step % eval_every == 0:
                    self.evaluate()
                if self.step >= total:
                    break
            self.end_epoch()

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict:
        rt, opt, snap = self.rt, self.opt, self.snap
        x, y = rt.inputs(x), y.to(rt.device)
        snap.save_buffers()
        self.dirty = "buffers"  # BatchNorm running stats change in the forward pass
        with rt.autocast():
            out = self.model(x)                                  # (B, C) logits
        loss = F.cross_entropy(out.float(), y)
        loss_v = loss.item()
        if not math.isfinite(loss_v):  # checked before the step: the bad batch never updates weights
            raise _Diverged(f"loss became {loss_v} at step {self.step + 1} (epoch {self.epoch})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        lrs = {f"lr/{n}": float(g["lr"]) for n, g in zip(self.names, opt.param_groups)}
        snap.save_params()
        self.dirty = "params"
        opt.step()
        if not snap.params_finite():  # finite loss, overflowing update: roll it back
            raise _Diverged(f"a parameter became non-finite in step {self.step + 1} "
                            f"(epoch {self.epoch}, loss {loss_v:.4g})")
        self.sched.step()
        self.dirty, self.step = None, self.step + 1
        self.sums["loss"] += loss_v * len(y)
        self.sums["correct"] += (out.argmax(1) == y).sum()  # stays on the device: no extra sync
        self.sums["n"] += len(y)
        row = {"step": self.step, "epoch": self.epoch, "loss": loss_v, **lrs}
        self.history.steps.append(row)
        return row

    def undo_partial_step(self) -> None:
        if self.dirty is not None:
            self.snap.restore(params=self.dirty == "params")
            self.dirty = None

    def evaluate(self) -> dict | None:
        if self.val_loader is None:
            return None
        evals = self.history.evals
        if evals and evals[-1]["step"] == self.step:  # e.g. eval_every hit the epoch's last step
            return evals[-1]
        t0 = time.perf_counter()
        res = _evaluate(self.model, self.val_loader, self.rt)
        row = {"step": self.step, "epoch": self.epoch, "val_loss": res["loss"], "val_acc": res["acc"],
               "elapsed_s": self.train_s() - (time.perf_counter() - t0)}
        evals.append(row)
        _call(self.callbacks, "on_eval", self.history, row)
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
        _call(self.callbacks, "on_epoch_end", self.history, row)

    def close_epoch_quietly(self) -> None:
        """After an early stop: record the partial epoch (a callback may stop again)."""
        if self.epoch_open:
            with contextlib.suppress(StopTraining):
                self.end_epoch()


def _rng_devices(device: torch.device) -> list[int]:
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def _optimizer_to(opt: torch.optim.Optimizer, device: torch.device) -> None:
    """Move optimizer state (momentum buffers...) beside the parameters."""
    for state in opt.state.values():
        for k, v in state.items():
            if isinstance(v, torch.Tensor) and v.dim() > 0:
                state[k] = v.to(device)


# ---------------------------------------------------------------- live plot

def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class LivePlot:
    """Callback that redraws the loss and accuracy curves in a notebook during :func:`fit`.

    It updates one figure in place (a display handle, so the tqdm bar above
    it survives). Outside a Jupyter kernel it does nothing.

    >>> fit(model, train, val, epochs=5, callbacks=[LivePlot(every=10)])   # doctest: +SKIP
    """

    def __init__(self, every: int = 20, figsize: tuple[float, float] = (9.0, 3.0)):
        self.every, self.figsize = every, figsize
        self._fig = self._handle = self._history = None

    def on_step(self, history: History, row: dict) -> None:
        if row["step"] % self.every == 0:
            self.draw(history)

    def on_eval(self, history: History, row: dict) -> None:
        self.draw(history)

    def draw(self, history: History) -> None:
        """Redraw now (called by the events above)."""
        if not _in_notebook():
            return
        import matplotlib.pyplot as plt
        from IPython.display import display

        if self._fig is None or history is not self._history:
            self._fig, _ = plt.subplots(1, 2, figsize=self.figsize)
            plt.close(self._fig)  # shown through the handle only
            self._handle, self._history = None, history
        ax_loss, ax_acc = self._fig.axes
        steps, evals = history.step_frame(), history.eval_frame()
        ax_loss.clear()
        ax_loss.plot(steps["step"], steps["loss"], lw=0.8, label="train (batch)")
        ax_loss.plot(evals["step"], evals["val_loss"], "o-", label="val")
        ax_loss.set(xlabel="step", ylabel="loss")
        ax_loss.legend()
        ax_acc.clear()
        ax_acc.plot(evals["step"], evals["val_acc"], "o-")
        ax_acc.set(xlabel="step", ylabel="val accuracy")
        if self._handle is None:
            self._handle = display(self._fig, display_id=True)
        else:
            self._handle.update(self._fig)


# ---------------------------------------------------------------- checkpoints

_PLAIN = (type(None), bool, int, float, str, torch.Tensor)


def _check_plain(value: Any, where: str) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"checkpoint meta {where}: keys must be str, got {k!r}")
            _check_plain(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
    elif not isinstance(value, _PLAIN):
        raise TypeError(f"checkpoint meta {where} is a {type(value).__name__}; use plain data "
                        "(numbers, strings, lists, dicts, tensors) so it loads with weights_only=True")


def save_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    history: History | None = None, **meta: Any) -> Path:
    """Write model (and optimizer) state, the history and ``meta`` to ``path``.

    The file is written beside ``path`` and renamed into place, so a crash
    never leaves a half-written checkpoint (an earlier file stays intact).

    Returns:
        ``path`` as a Path.
    """
    _check_plain(meta, "meta")
    payload = {"format": CHECKPOINT_FORMAT, "model": model.state_dict(),
               "optimizer": None if optimizer is None else optimizer.state_dict(),
               "history": None if history is None else history.to_dict(), "meta": dict(meta)}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def _check_compatible(model: nn.Module, state: dict, optimizer, opt_state) -> None:
    own = model.state_dict()
    problems = [f"missing in checkpoint: {k}" for k in own if k not in state]
    problems += [f"not in model: {k}" for k in state if k not in own]
    problems += [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                 for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if problems:
        raise ValueError(f"checkpoint does not fit {type(model).__name__} ({len(problems)} problems): "
                         + "; ".join(problems[:10]) + ". Build the same architecture before loading.")
    if optimizer is None:
        return
    if opt_state is None:
        raise ValueError("the checkpoint has no optimizer state; call load_checkpoint without optimizer=")
    sizes = [len(g["params"]) for g in optimizer.param_groups]
    saved = [len(g["params"]) for g in opt_state["param_groups"]]
    if sizes != saved:
        raise ValueError(f"optimizer groups hold {sizes} parameters, the checkpoint's {saved}; "
                         "build the optimizer over the same param groups before loading")


def load_checkpoint(path: str | Path, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Restore a checkpoint written by :func:`save_checkpoint` into ``model`` (and ``optimizer``).

    Everything is checked before anything is loaded, so a mismatch leaves
    the model and optimizer unchanged.

    Returns:
        The ``meta`` saved with it, plus ``"history"`` (a :class:`History`)
        when one was saved.
    """
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an ftkit checkpoint (write one with ftkit.train.save_checkpoint)")
    _check_compatible(model, payload["model"], optimizer, payload["optimizer"])
    model.load_state_dict(payload["model"])
    if optimizer is not None:
        optimizer.load_state_dict(payload["optimizer"])
    meta = dict(payload["meta"])
    if payload["history"] is not None:
        meta["history"] = History.from_dict(payload["history"])
    return meta


# ---------------------------------------------------------------- cross-validation

def kfold_indices(data: Dataset, k: int = 5, *, seed: int = 0,
                  stratified: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train indices, val indices) per fold; stratified by ``data.targets`` when present."""
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(data)
    if not isinstance(k, int) or not 2 <= k <= n:
        raise ValueError(f"k must be an int between 2 and len(data)={n}, not {k!r}")
    targets = getattr(data, "targets", None)
    if stratified and targets is not None:
        y = np.asarray(targets)
        folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(n), y)
    else:
        folds = KFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(n))
    return [(np.asarray(tr), np.asarray(va)) for tr, va in folds]


def fold_summary(folds: pd.DataFrame) -> dict:
    """Mean and sample std (ddof=1) of val_loss and val_acc over the folds."""
    out = {}
    for col in ("val_loss", "val_acc"):
        out[f"{col}_mean"] = float(folds[col].mean())
        out[f"{col}_std"] = float(folds[col].std(ddof=1)) if len(folds) > 1 else 0.0
    return out


def cross_validate(make_model: Callable[[], nn.Module], data: Dataset, k: int = 5, *, seed: int = 0,
                   stratified: bool = True, **fit_kwargs: Any) -> pd.DataFrame:
    """k-fold cross-validation of ``fit`` on ``data``.

    Each fold trains a fresh ``make_model()``, built under
    ``torch.manual_seed(seed)`` (a forked RNG: the caller's is untouched) so
    every fold starts from the same weights and differs only in its data.
    ``seed`` also fixes the folds and each fit's data order.

    Args:
        make_model: builds a new model.
        data: a dataset; with ``.targets`` the folds keep the class proportions.
        k: number of folds.
        **fit_kwargs: passed to :func:`fit` (epochs, lr, max_steps...).

    Returns:
        One row per fold: fold, n_train, n_val, val_loss, val_acc, time_s.
        ``df.attrs["summary"]`` holds mean/std (see :func:`fold_summary`).
        If Ctrl-C stops a fold, the finished folds are returned and
        ``df.attrs["interrupted"]`` is True.
    """
    if "seed" in fit_kwargs:
        raise TypeError("cross_validate() sets fit's seed itself; pass seed= once")
    splits = kfold_indices(data, k, seed=seed, stratified=stratified)
    rows, interrupted = [], False
    for fold, (tr, va) in enumerate(splits):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = make_model()
        val = Subset(data, va.tolist())
        t0 = time.perf_counter()
        history = fit(model, Subset(data, tr.tolist()), val, seed=seed, **fit_kwargs)
        if history.interrupted:
            interrupted = True
            break
        last = history.evals[-1]
        rows.append({"fold": fold, "n_train": len(tr), "n_val": len(va), "val_loss": last["val_loss"],
                     "val_acc": last["val_acc"], "time_s": time.perf_counter() - t0})
    df = pd.DataFrame(rows, columns=["fold", "n_train", "n_val", "val_loss", "val_acc", "time_s"])
    df.attrs["summary"] = fold_summary(df) if len(df) else {}
    df.attrs["interrupted"] = interrupted
    return df
