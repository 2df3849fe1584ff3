"""The optimizer and the per-step LR schedule that ``ftkit.training.loop.fit`` builds.

Schedules are ``torch.optim.lr_scheduler`` objects stepped once per optimizer
step over the whole run, each starting from its group's own LR, so every
param group keeps its ratio to the others (discriminative LRs survive the
schedule). ``fit`` hands the groups back with the settings they came with
(``ftkit.core.state.save_group_settings`` / ``restore_group_settings``), so an
optimizer reused by the next ``fit`` (gradual unfreezing) starts from its
LRs again, not from where the last schedule ended (0 after "cosine").

>>> opt = build_optimizer(model, "sgd", None, lr=0.1, momentum=0.9, weight_decay=0.0)  # doctest: +SKIP
>>> sched = make_scheduler(opt, "cosine", total_steps=100)                             # doctest: +SKIP
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, Iterable, Sequence

import torch
from torch import nn
from torch.optim import lr_scheduler

from ftkit.core.state import restore_group_settings, save_group_settings  # noqa: F401 (re-exported)

__all__ = ["OPTIMIZERS", "SCHEDULES", "STEP_GAMMA", "Warmup", "build_optimizer", "group_names", "make_scheduler",
           "optimizer_to", "restore_group_settings", "save_group_settings", "starting_lrs"]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "onecycle")
STEP_GAMMA = 0.1  # "step" schedule: LR x 0.1 after each third of the run


def _check_owned(model: nn.Module, params: Iterable[nn.Parameter], what: str) -> None:
    own = {id(p) for p in model.parameters()}
    if any(id(p) not in own for p in params):
        raise ValueError(f"{what} holds parameters that are not in this model; build it from "
                         "this very model object (after any deepcopy or head replacement)")


def build_optimizer(model: nn.Module, optimizer: str | torch.optim.Optimizer,
                    param_groups: Sequence[dict] | None, lr: float, momentum: float,
                    weight_decay: float) -> torch.optim.Optimizer:
    """The optimizer :func:`ftkit.training.loop.fit` trains with, checked against ``model``.

    Args:
        model: every parameter optimised must belong to it.
        optimizer: "sgd" (with ``momentum``), "adam", "adamw", or an instance
            (returned as it is, after the checks).
        param_groups: dicts for ``torch.optim``; each may set its own ``lr``,
            ``weight_decay`` and ``name``; what a group leaves out comes from
            ``lr``/``weight_decay``. None: one group "all" with every
            parameter that has ``requires_grad``.
        lr, momentum, weight_decay: the defaults of an optimizer built by name.

    Raises:
        ValueError: for an unknown name, parameters of another model, or
            nothing with ``requires_grad``.
    """
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
            "ftkit.models.freeze.unfreeze(model, names=[...]), or set p.requires_grad_(True).")
    if isinstance(optimizer, torch.optim.Optimizer):
        return opt
    name = optimizer.lower()
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    return cls(groups, lr=lr, weight_decay=weight_decay)


def group_names(groups: torch.optim.Optimizer | Sequence[dict]) -> list[str]:
    """One unique name per param group: its ``name`` (``group<i>`` without), ``_2``... on repeats.

    Args:
        groups: an optimizer, or param-group dicts (e.g. ``ftkit.lr.groups.param_groups``).
    """
    if isinstance(groups, torch.optim.Optimizer):
        groups = groups.param_groups
    names: list[str] = []
    for i, g in enumerate(groups):
        base = str(g.get("name", f"group{i}"))
        name, k = base, 2
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return names


def starting_lrs(opt: torch.optim.Optimizer, names: list[str]) -> dict[str, float]:
    """Each group's current LR by name; warns when a group with trainable parameters is at 0.

    A group at LR 0 never moves: usually a leftover of a schedule run by hand
    on a reused optimizer (fit itself hands the LRs back as they came).
    """
    lrs = {n: float(g["lr"]) for n, g in zip(names, opt.param_groups)}
    idle = [n for n, g in zip(names, opt.param_groups)
            if lrs[n] == 0 and any(p.requires_grad for p in g["params"])]
    if idle:
        warnings.warn(f"param groups {idle} have lr 0: their parameters will not change. Set each "
                      "group's 'lr' (a scheduler's end value, e.g. after a hand-run cosine schedule?) "
                      "or build a new optimizer.", RuntimeWarning, stacklevel=3)
    return lrs


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: str | Callable,
                   total_steps: int, *, warmup_frac: float = 0.0) -> lr_scheduler.LRScheduler:
    """The per-step LR scheduler :func:`ftkit.training.loop.fit` uses, starting from each group's current LR.

    Args:
        optimizer: its groups' current ``lr`` are the base (peak for onecycle) LRs;
            ``initial_lr`` is overwritten with them. To change a group's LR
            between two fits, set its ``lr`` (or build a new optimizer).
        schedule: "constant"; "step" (x0.1 after each third of the run);
            "cosine" (``lr * (1 + cos(pi t / T)) / 2``); "onecycle"
            (``OneCycleLR`` with each group's LR as its peak); or a callable
            ``(optimizer, total_steps) -> LRScheduler``.
        total_steps: T, the number of optimizer steps in the run.
        warmup_frac: the first ``W = round(warmup_frac * T)`` steps use
            ``lr * t / W`` (t = 1..W, so the first step is not wasted at 0),
            then ``schedule`` runs over the remaining ``T - W`` steps as if they
            were the whole run (see :class:`Warmup`). 0: no warm-up.
    """
    if not 0.0 <= warmup_frac < 1.0:
        raise ValueError(f"warmup_frac must be in [0, 1), not {warmup_frac!r}")
    warmup = min(round(warmup_frac * total_steps), total_steps - 1)
    for g in optimizer.param_groups:
        g["initial_lr"] = g["lr"]  # the base every torch scheduler scales, per group
    base = [float(g["lr"]) for g in optimizer.param_groups]  # before onecycle rewrites initial_lr
    inner = _schedule(optimizer, schedule, total_steps - warmup)
    return Warmup(optimizer, inner, warmup, base) if warmup > 0 else inner


def _schedule(optimizer: torch.optim.Optimizer, schedule: str | Callable,
              total_steps: int) -> lr_scheduler.LRScheduler:
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


class Warmup:
    """Linear warm-up for ``warmup`` steps, then ``inner`` (a scheduler built over the rest).

    Step t = 1..W uses ``base_g * t / W`` for each group g (its ratio to the
    others is kept); at step W + 1 the groups get the LRs ``inner`` set when it
    was built (its step 0) and from then on ``inner.step()`` drives them.
    ``inner`` is not stepped during the warm-up, so recursive schedulers
    (cosine, step) see exactly the LRs they set.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, inner, warmup: int, base: list[float]) -> None:
        self.optimizer, self.inner, self.warmup, self.base = optimizer, inner, warmup, list(base)
        self.targets = [float(g["lr"]) for g in optimizer.param_groups]  # inner's step-0 LRs
        self.t = 0
        self._set([b / warmup for b in self.base])

    def _set(self, lrs) -> None:
        for g, lr in zip(self.optimizer.param_groups, lrs):
            if isinstance(g["lr"], torch.Tensor):
                g["lr"].fill_(float(lr))
            else:
                g["lr"] = lr

    def step(self) -> None:
        self.t += 1
        if self.t < self.warmup:
            self._set([b * (self.t + 1) / self.warmup for b in self.base])
        elif self.t == self.warmup:
            self._set(self.targets)
        else:
            self.inner.step()

    def get_last_lr(self) -> list[float]:
        return [float(g["lr"]) for g in self.optimizer.param_groups]


def optimizer_to(opt: torch.optim.Optimizer, device: torch.device) -> None:
    """Move optimizer state (momentum buffers, Adam moments...) beside the parameters, in place.

    Scalar ``step`` counters stay on the CPU, where torch keeps them, unless
    the group is ``capturable`` or ``fused`` (then every tensor moves).
    """
    for group in opt.param_groups:
        everything = bool(group.get("capturable") or group.get("fused"))
        for p in group["params"]:
            state = opt.state.get(p, {})
            for k, v in state.items():
                if isinstance(v, torch.Tensor) and (v.dim() > 0 or everything):
                    state[k] = v.to(device)
