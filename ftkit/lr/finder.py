"""LR range test (Smith 2015): sweep the learning rate, watch the loss, restore.

``lr_find`` trains for ``num_iter`` steps while the learning rate grows from
``start_lr`` to ``end_lr``, records the loss, and returns an
:class:`~ftkit.lr.result.LRFindResult` with every rule's suggestion (see ``ftkit.lr.rules``).
Whatever happens -- the sweep finishes, diverges, raises, or is interrupted --
the model, the optimizer and the random number generators are put back
bit-for-bit as they were, from a copy kept on the CPU (see :class:`~ftkit.core.state.StateSnapshot`).

What is different from fastai / torch-lr-finder / Lightning:

* Parameter groups keep their LR ratios during the sweep (discriminative LRs),
  or one group is swept while the others stay put (``group=``).
* ``seeds=n`` repeats the sweep over different batch orders; the result says
  when rules or seeds disagree by more than a decade instead of giving one
  confident number.
* Restore is automatic, exact and on the CPU (no second copy in GPU memory).
* Ctrl-C / "interrupt kernel" returns the partial result, marked
  ``interrupted``, after restoring -- like ``ftkit.training.loop.fit``'s History.

>>> result = lr_find(model, train_ds, optimizer="adam")     # doctest: +SKIP
>>> result.suggestion, result.reliable                       # doctest: +SKIP
(0.0012, True)
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, SequentialSampler

from ftkit.core.runtime import Runtime, resolve_runtime
from ftkit.core.state import StateSnapshot, restore_modes, save_modes
from ftkit.core.torchutil import release_freed_memory, resolve_device
from ftkit.lr.result import LRFindResult, LRFindSettings, SweepRecord, assemble_result
from ftkit.lr.rules import rule_names
from ftkit.training.callbacks import StopTraining
from ftkit.training.checks import NamedItems
from ftkit.training.engine import TrainLoop, evaluate_loader
from ftkit.training.history import History
from ftkit.training.optim import build_optimizer, group_names, optimizer_to
from ftkit.training.spec import TrainSpec

__all__ = ["lr_find", "sweep_lrs", "smooth_losses", "SmoothedLoss", "LRSweep", "SweepRecorder"]

SGD_MOMENTUM = 0.9  # optimizer="sgd"
# lr_find's defaults without a spec (lr and schedule are the sweep's own)
FINDER_DEFAULTS = TrainSpec(optimizer="adam", batch_size=32, momentum=SGD_MOMENTUM, weight_decay=0.0,
                            device="auto", amp="auto")


def sweep_lrs(start_lr: float, end_lr: float, num_iter: int, step_mode: str = "exp") -> np.ndarray:
    """The LR at each step: both ends included (as torch-lr-finder; fastai stops
    one step short of ``end_lr``). ``"exp"``: equal ratios; ``"linear"``: equal steps."""
    t = np.arange(num_iter) / max(num_iter - 1, 1)
    if step_mode == "exp":
        return start_lr * (end_lr / start_lr) ** t
    if step_mode == "linear":
        return start_lr + (end_lr - start_lr) * t
    raise ValueError(f"step_mode must be 'exp' or 'linear', not {step_mode!r}")


def smooth_losses(losses: Sequence[float], beta: float = 0.98) -> np.ndarray:
    """Bias-corrected exponential moving average, as fastai's smooth loss:
    ``avg_t = beta * avg_(t-1) + (1 - beta) * loss_t``, reported as ``avg_t / (1 - beta**t)``."""
    smoother = SmoothedLoss(beta)
    return np.array([smoother.update(loss) for loss in losses], dtype=np.float64)


class SmoothedLoss:
    """The running bias-corrected EMA of :func:`smooth_losses`, one value at a time."""

    def __init__(self, beta: float = 0.98) -> None:
        self.beta, self.avg, self.t = beta, 0.0, 0

    def update(self, loss: float) -> float:
        """Add ``loss``; return the smoothed value so far."""
        self.t += 1
        self.avg = self.beta * self.avg + (1 - self.beta) * loss
        return self.avg / (1 - self.beta**self.t)


def lr_find(
    model: nn.Module,
    data: Dataset | DataLoader,
    *,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    optimizer: torch.optim.Optimizer | str | None = None,
    param_groups: list[dict] | None = None,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_iter: int = 100,
    step_mode: str = "exp",
    beta: float = 0.98,
    diverge_factor: float | None = 4.0,
    val_data: Dataset | DataLoader | None = None,
    group: str | int | None = None,
    seeds: int = 1,
    seed: int = 0,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    amp: bool | str | None = None,
    skip_start: int | None = None,
    skip_end: int = 5,
    rules: Sequence[str] | None = None,
    spec: TrainSpec | None = None,
) -> LRFindResult:
    """Run an LR range test and restore everything afterwards.

    Args:
        model: any module; trained in its current per-module modes (a model in
            eval mode is switched to train mode for the sweep).
        data: a Dataset (shuffled into batches of ``batch_size``, order fixed by
            the seed) or a DataLoader (cycled when shorter than ``num_iter``).
        criterion: loss function; default ``nn.CrossEntropyLoss()``.
        optimizer: an Optimizer (any param groups, existing state welcome) or
            "sgd" (momentum 0.9) | "adam" | "adamw" (default: the spec's, else
            "adam"), built over ``param_groups``
            or over the parameters with ``requires_grad`` (one group "all"),
            by :func:`ftkit.training.optim.build_optimizer`, as ``fit`` does.
        param_groups: groups of this very model for a string optimizer
            (e.g. ``ftkit.lr.groups.param_groups(model, ...)``).
        start_lr, end_lr, num_iter, step_mode: the sweep (``sweep_lrs``).
        beta: smoothing of the loss (bias-corrected EMA).
        diverge_factor: stop when the smoothed loss exceeds this multiple of the
            best so far (None: never); a non-finite loss always stops.
        val_data: if given, the loss recorded at each step is the mean loss on
            all of it (eval mode, no grad) after the step. Keep it small.
        group: None sweeps all groups together keeping their LR ratios; a group
            name (its "name" key, else "group<i>") or index sweeps that group only.
        seeds: repeat the sweep this many times (seeds ``seed .. seed+seeds-1``),
            restoring the model in between, to see how stable the curve is.
        device: "auto" (CUDA when present) or a device; a model elsewhere moves
            there for the sweep and back after (same Parameter objects, new
            storage). The snapshot stays on the CPU.
        amp: as in ``fit``: "auto" (bf16 autocast + channels_last on CUDA,
            fp32 on CPU), True, False. The sweep runs on fit's loop
            (:class:`ftkit.training.loop.TrainLoop`), so it trains as ``fit``
            will: same precision, same memory format, same divergence guard.
        skip_start, skip_end: points cut before applying the rules (fastai's
            ``num_iter // 10`` and 5).
        rules: rule names (default: all of ``ftkit.lr.rules.RULES``).
        spec: the :class:`~ftkit.training.spec.TrainSpec` the LR is for: its
            optimizer (with its momentum and weight decay), batch size, device
            and precision are used for the sweep unless given above (its lr
            and schedule are what the sweep replaces). None: "adam", 32,
            "auto", "auto", no weight decay.

    Returns:
        LRFindResult. The model (parameters, buffers, ``requires_grad``, each
        module's train/eval mode), the optimizer (state and param-group dicts)
        and the torch/NumPy/Python RNGs are bit-for-bit as before the call.
        Gradients are cleared (``.grad`` is None), as ``optimizer.zero_grad()``
        does: they are scratch, and keeping stale ones would cost a copy of
        the weights.

    Raises:
        ValueError, KeyError, TypeError: for bad arguments (ValueError for an
            unknown optimizer or groups of another model, as in ``fit``),
            before anything changes.
        ftkit.training.loop.BatchError: the first batch does not fit the model
            (labels, channels), after restoring (nothing changed).
        Any exception from the model, data or criterion, after restoring, with
        the partial result as ``err.result`` (that sweep's ending: "failed");
        an error while reading an item of a Dataset names it (``err.path``).
    """
    base_spec = spec if spec is not None else FINDER_DEFAULTS
    if not isinstance(base_spec, TrainSpec):
        raise TypeError(f"spec must be a ftkit.training.spec.TrainSpec, not {type(spec).__name__}")
    optimizer = optimizer if optimizer is not None else base_spec.optimizer
    batch_size = batch_size if batch_size is not None else base_spec.batch_size
    device = device if device is not None else base_spec.device
    amp = amp if amp is not None else base_spec.amp
    skip_start = num_iter // 10 if skip_start is None else skip_start
    _check_args(start_lr, end_lr, num_iter, beta, diverge_factor, seeds, skip_start, skip_end)
    for name, d in (("data", data), ("val_data", val_data)):
        if d is not None and not isinstance(d, DataLoader) and len(d) == 0:
            raise ValueError(f"{name} is empty: there are no batches to train on")
    opt = build_optimizer(model, optimizer, param_groups, lr=start_lr, momentum=base_spec.momentum,
                          weight_decay=base_spec.weight_decay)
    names = group_names(opt)
    base = [float(g["lr"]) for g in opt.param_groups]
    ratios, reference = _ratios(base, names, group)
    schedule = sweep_lrs(start_lr, end_lr, num_iter, step_mode)
    rules = rule_names(rules)  # unknown names fail now, not after the sweep
    dev = resolve_device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    rt = resolve_runtime(dev, amp)
    home = _single_device(model)
    move = home is not None and home != dev
    generators = _loader_generators(data)
    gen_states = [g.get_state() for g in generators]

    if dev.type == "cuda":
        torch.cuda.init()  # so the CUDA RNG state captured below is the user's, not a lazy default
    snapshot = StateSnapshot(model, opt)  # every change below is undone from this copy
    _clear_grads(model)  # stale grads would add into the sweep's, and cost memory
    runs: list[SweepRecord] = []
    failure: Exception | None = None
    formats: dict[nn.Parameter, torch.Tensor] = {}
    try:
        if move:
            model.to(dev)
            optimizer_to(opt, dev)
        if rt.channels_last:  # as fit trains; the original storage is put back below
            formats = {p: p.data for p in model.parameters() if p.dim() == 4}
            model.to(memory_format=torch.channels_last)
        if not model.training:
            model.train()
        train_modes = save_modes(model)
        for k in range(seeds):
            if k:
                snapshot.restore(model, opt, rng=False)
                restore_modes(train_modes)
            for g in generators:
                g.manual_seed(seed + k)
            loader = _as_loader(data, batch_size, shuffle=True, seed=seed + k)
            val_loader = None if val_data is None else _as_loader(val_data, batch_size, False, 0)
            runs.append(SweepRecord())
            if not _sweep(model, opt, criterion, loader, val_loader, schedule, ratios, base, beta,
                          diverge_factor, rt, seed + k, runs[-1]):
                break  # Ctrl-C: partial result below, marked "interrupted"
    except KeyboardInterrupt:  # between two sweeps
        if not runs or runs[-1].ending != "interrupted":
            runs.append(SweepRecord())  # the next sweep has 0 steps
    except Exception as err:  # raised below, after the restore, with the partial result
        failure = err
        if runs:
            runs[-1].ending = "failed"
    finally:
        for p, data in formats.items():
            p.data = data  # same storage (and data_ptr) as before; values come back from the snapshot
        if move:
            model.to(home)
            optimizer_to(opt, home)
        snapshot.restore(model, opt)
        _clear_grads(model)
        for g, state in zip(generators, gen_states):
            g.set_state(state)
        release_freed_memory()  # the sweep's activations: back to the OS, not kept by the allocator

    settings = LRFindSettings(
        start_lr=start_lr, end_lr=end_lr, num_iter=num_iter, step_mode=step_mode, beta=beta,
        diverge_factor=diverge_factor, group=group, seeds=seeds, seed=seed,
        mode="train" if val_data is None else "val", batch_size=batch_size, device=str(dev),
        skip_start=skip_start, skip_end=skip_end, reference_group=reference, group_names=tuple(names),
        swept_ratios=dict(zip(names, ratios)), base_lrs=dict(zip(names, base)), amp=rt.amp)
    result = assemble_result(runs, schedule, names, settings, rules, snapshot.nbytes)
    if seeds > 1 and isinstance(getattr(data, "sampler", None), SequentialSampler):
        result.notes.append("the DataLoader is not shuffled: every seed saw the same batches, "
                            "so the band shows only the model's own randomness")
    if failure is not None:
        with contextlib.suppress(AttributeError):
            failure.result = result  # what was measured before the error
        raise failure
    return result


class LRSweep:
    """The LR schedule of a range test, for fit's loop: step ``t`` gives each group
    ``lrs[t] * ratio`` (its ratio to the reference group), or its own LR when it
    is not swept (ratio None). ``step()`` moves to the next LR, as a torch scheduler."""

    def __init__(self, optimizer: torch.optim.Optimizer, lrs: np.ndarray,
                 ratios: Sequence[float | None], base: Sequence[float]) -> None:
        self.optimizer, self.lrs, self.ratios, self.base = optimizer, lrs, list(ratios), list(base)
        self.t = 0
        self._apply()

    def _apply(self) -> None:
        lr = self.lrs[min(self.t, len(self.lrs) - 1)]
        for g, ratio, lr0 in zip(self.optimizer.param_groups, self.ratios, self.base):
            _set_lr(g, lr * ratio if ratio is not None else lr0)

    def step(self) -> None:
        self.t += 1
        self._apply()


class SweepRecorder:
    """Callback for fit's loop: records each step of a range test into ``run``, smooths
    the loss (:class:`SmoothedLoss`) and stops the sweep when it diverges.

    Args:
        run: the record to fill (kept on an interrupt).
        names: the param groups, in ``lr/<name>`` column order.
        beta, diverge_factor: smoothing; stop when the smoothed loss exceeds
            ``diverge_factor`` x the best so far (None: never).
        val_loss: None records the training loss; else a function returning the
            validation loss after the step.
    """

    def __init__(self, run: SweepRecord, names: Sequence[str], beta: float, diverge_factor: float | None,
                 val_loss: Callable[[], float] | None = None) -> None:
        self.run, self.names, self.diverge_factor, self.val_loss = run, list(names), diverge_factor, val_loss
        self.smoother, self.best = SmoothedLoss(beta), math.inf

    def _record(self, row: dict, value: float) -> float:
        self.run.group_lrs.append([row[f"lr/{n}"] for n in self.names])
        self.run.train.append(row["loss"])
        smooth = self.smoother.update(value)
        self.run.losses.append(value)
        self.run.smoothed.append(smooth)
        return smooth

    def on_step(self, history, row: dict) -> None:
        value = row["loss"] if self.val_loss is None else self.val_loss()
        smooth = self._record(row, value)
        if not math.isfinite(smooth):
            self.run.ending = "diverged"
            raise StopTraining(f"the smoothed loss became {smooth}")
        self.best = min(self.best, smooth)
        if self.diverge_factor is not None and smooth > self.diverge_factor * self.best:
            self.run.ending = "diverged"
            raise StopTraining(f"the smoothed loss exceeded {self.diverge_factor} x its best")

    def on_diverged(self, history, row: dict) -> None:
        """fit's guard stopped the step (NaN/Inf loss, or non-finite weights): the sweep diverged."""
        self._record(row, math.nan)
        self.run.ending = "diverged"


def _sweep(model, opt, criterion, loader, val_loader, schedule, ratios, base, beta,
           diverge_factor, rt: Runtime, seed: int, run: SweepRecord) -> bool:
    """One sweep on fit's loop; fills ``run`` and sets ``run.ending``. False on Ctrl-C."""
    val_criterion = criterion if criterion is not None else nn.CrossEntropyLoss()
    val_loss = None if val_loader is None else (
        lambda: evaluate_loader(model, val_loader, rt, val_criterion)["loss"])
    recorder = SweepRecorder(run, group_names(opt), beta, diverge_factor, val_loss)
    loop = TrainLoop(model, opt, LRSweep(opt, schedule, ratios, base), rt, History(), [recorder],
                     criterion=criterion, rollback=False)  # the CPU snapshot undoes everything anyway
    batches = _cycle(loader)
    try:
        loop.run_guarded(lambda: [batches], len(schedule), seed=seed, caller="")
    finally:
        batches.close()  # shuts down DataLoader workers now, not at garbage collection
    if loop.history.interrupted:
        run.ending = "interrupted"
        return False
    if run.ending == "interrupted":  # no stop: the sweep ran to its end
        run.ending = "finished"
    return True


# ---- argument checks and set-up (nothing here changes the model) -----------------------


def _check_args(start_lr, end_lr, num_iter, beta, diverge_factor, seeds, skip_start,
                skip_end) -> None:
    if not (start_lr > 0 and end_lr > start_lr):
        raise ValueError(f"need 0 < start_lr < end_lr, got start_lr={start_lr}, end_lr={end_lr}")
    if num_iter < 2:
        raise ValueError(f"num_iter must be >= 2 (100 is usual), got {num_iter}")
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    if diverge_factor is not None and diverge_factor <= 1:
        raise ValueError(f"diverge_factor must be > 1 or None, got {diverge_factor}")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    if skip_start < 0 or skip_end < 0:
        raise ValueError(f"skip_start and skip_end must be >= 0, got {skip_start}, {skip_end}")


def _ratios(base: list[float], names: list[str], group) -> tuple[list[float | None], str]:
    """Factor of the swept LR per group (None: the group keeps its LR), and the
    name of the group whose LR is the x axis."""
    if group is None:
        ref = int(np.argmax(base))
        if len(base) > 1 and base[ref] <= 0:
            raise ValueError("cannot keep LR ratios: every param group has lr 0; give the "
                             "groups their LRs or sweep one group with group=")
        return [b / base[ref] if len(base) > 1 else 1.0 for b in base], names[ref]
    if isinstance(group, int) and not isinstance(group, bool):
        if not -len(names) <= group < len(names):
            raise IndexError(f"group index {group} out of range; groups: {names}")
        idx = group % len(names)
    elif group in names:
        idx = names.index(group)
    else:
        raise KeyError(f"no param group named {group!r}; groups: {names}")
    return [1.0 if i == idx else None for i in range(len(names))], names[idx]


def _single_device(model) -> torch.device | None:
    devices = {t.device for t in [*model.parameters(), *model.buffers()]}
    return devices.pop() if len(devices) == 1 else None


def _loader_generators(data) -> list[torch.Generator]:
    """Generators that decide a user DataLoader's order; reseeded per repeat, restored after."""
    if not isinstance(data, DataLoader):
        return []
    found = [data.generator, getattr(data.sampler, "generator", None),
             getattr(getattr(data.batch_sampler, "sampler", None), "generator", None)]
    unique: list[torch.Generator] = []
    for g in found:
        if isinstance(g, torch.Generator) and all(g is not u for u in unique):
            unique.append(g)
    return unique


def _as_loader(data, batch_size, shuffle, seed) -> DataLoader:
    if isinstance(data, DataLoader):
        return data
    if not (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        raise TypeError(f"data must be a torch Dataset or DataLoader, not {type(data).__name__}")
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(NamedItems(data), batch_size=batch_size, shuffle=shuffle, generator=generator)


# ---- per-step helpers -------------------------------------------------------------------


def _cycle(loader) -> Iterator:
    """Batches forever: a loader shorter than the sweep starts a new epoch."""
    while True:
        count = 0
        for batch in loader:
            count += 1
            yield batch
        if count == 0:
            raise ValueError("the data loader yielded no batches (empty data set, or "
                             "drop_last=True with fewer samples than batch_size)")


def _clear_grads(model: nn.Module) -> None:
    for p in model.parameters():
        p.grad = None


def _set_lr(group: dict, lr: float) -> None:
    if isinstance(group["lr"], torch.Tensor):  # tensor LRs (e.g. capturable Adam) stay tensors
        group["lr"].fill_(lr)
    else:
        group["lr"] = lr
