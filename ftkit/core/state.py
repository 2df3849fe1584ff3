"""An exact, CPU-resident copy of what a short experiment changes, and its restore.

Used by ``ftkit.lr.finder`` to undo a range test bit-for-bit, whatever way it
ends. The copy lives on the CPU so a model on a GPU does not need twice its
memory there (torch-lr-finder's default in-memory cache deep-copies the
state dict on the model's device).

What is copied, and what is only remembered:

* parameter values -- of parameters that can change: those with
  ``requires_grad`` and those the optimizer holds (a frozen backbone outside
  the optimizer gets no gradient and no update, so it costs no copy);
* all buffers (BatchNorm running stats and ``num_batches_tracked``);
* the optimizer's per-parameter state tensors and its param-group dicts
  (everything except ``params``: lr, initial_lr, name, momentum, ...);
* the torch CPU / CUDA (if initialised), NumPy and Python RNG states;
* by reference only (no copy): ``requires_grad`` flags and each module's
  train/eval flag.

Gradients (``.grad``) are not part of the snapshot: they are scratch space that
the next ``zero_grad()`` discards, and keeping the old ones alive while an
experiment makes new ones would cost one more copy of the weights. Callers
decide what to do with them (``lr_find`` clears them, as ``zero_grad()`` does).

Restore copies values back *into* the existing tensors, so parameter and
buffer objects (and their ``data_ptr``) stay the same.

>>> snap = StateSnapshot(model, optimizer)     # doctest: +SKIP
>>> ...  # train a few steps
>>> snap.restore(model, optimizer)             # doctest: +SKIP
"""
from __future__ import annotations

import copy
import random
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from ftkit.core.runtime import restore_modes, save_modes

__all__ = ["StateSnapshot"]


def _cpu_copy(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", copy=True)


def _put(container: dict, key, saved) -> None:
    """Write a saved value into ``container[key]``: in place when the current
    tensor matches (keeps the object and its device), else as a fresh copy."""
    value, device = saved
    current = container.get(key)
    if isinstance(value, torch.Tensor):
        if (isinstance(current, torch.Tensor) and current.shape == value.shape
                and current.dtype == value.dtype):
            with torch.no_grad():
                current.copy_(value)
        else:
            container[key] = value.to(device, copy=True)
    else:
        container[key] = copy.deepcopy(value)


def _save(value: Any) -> tuple[Any, torch.device | None]:
    if isinstance(value, torch.Tensor):
        return _cpu_copy(value), value.device
    return copy.deepcopy(value), None


class StateSnapshot:
    """Capture ``model`` (and ``optimizer``) now; ``restore`` puts them back exactly.

    Args:
        model: the module.
        optimizer: optional torch optimizer over (some of) its parameters.
        rng: also capture the torch, NumPy and Python RNG states.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                 *, rng: bool = True) -> None:
        named = dict(model.named_parameters())
        held = {id(p) for g in optimizer.param_groups for p in g["params"]} if optimizer else set()
        self.params = {n: _cpu_copy(p) for n, p in named.items()
                       if p.requires_grad or id(p) in held}
        self.buffers = {n: _cpu_copy(b) for n, b in model.named_buffers()}
        self.requires_grad = {n: p.requires_grad for n, p in named.items()}
        self.modes = save_modes(model)
        self.groups = ([{k: _save(v) for k, v in g.items() if k != "params"}
                        for g in optimizer.param_groups] if optimizer else [])
        self.state = ({p: {k: _save(v) for k, v in s.items()} for p, s in optimizer.state.items()}
                      if optimizer else {})
        # plain attributes such as the ``_opt_called`` flag LR schedulers look at
        self.opt_flags = ({k: v for k, v in vars(optimizer).items() if _is_flag(v)}
                          if optimizer else {})
        self.rng = _capture_rng() if rng else None

    @property
    def nbytes(self) -> int:
        """Bytes held by the copied tensors (all on the CPU)."""
        return sum(t.numel() * t.element_size() for t in self.tensors())

    def tensors(self) -> Iterator[torch.Tensor]:
        """Every tensor this snapshot copied."""
        yield from self.params.values()
        yield from self.buffers.values()
        for g in self.groups:
            yield from (v for v, _ in g.values() if isinstance(v, torch.Tensor))
        for s in self.state.values():
            yield from (v for v, _ in s.values() if isinstance(v, torch.Tensor))

    def restore(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                *, rng: bool = True) -> None:
        """Put everything captured back, in place. ``rng=False`` leaves the RNGs."""
        named = dict(model.named_parameters())
        buffers = dict(model.named_buffers())
        missing = [n for n in self.params if n not in named] + [
            n for n in self.buffers if n not in buffers]
        if missing:
            raise RuntimeError(f"cannot restore: the model no longer has {missing[:5]}; "
                               "was a layer replaced since the snapshot?")
        with torch.no_grad():
            for n, saved in self.params.items():
                named[n].copy_(saved)
            for n, saved in self.buffers.items():
                buffers[n].copy_(saved)
        for n, flag in self.requires_grad.items():
            named[n].requires_grad_(flag)
        restore_modes(self.modes)
        if optimizer is not None:
            self._restore_optimizer(optimizer)
        if rng and self.rng is not None:
            _restore_rng(self.rng)

    def _restore_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        if len(optimizer.param_groups) != len(self.groups):
            raise RuntimeError(f"cannot restore: the optimizer has {len(optimizer.param_groups)} "
                               f"param groups, the snapshot {len(self.groups)}")
        for group, saved in zip(optimizer.param_groups, self.groups):
            for k in [k for k in group if k != "params" and k not in saved]:
                del group[k]
            for k, value in saved.items():
                _put(group, k, value)
        for k in [k for k, v in vars(optimizer).items() if _is_flag(v) and k not in self.opt_flags]:
            delattr(optimizer, k)
        for k, v in self.opt_flags.items():
            setattr(optimizer, k, v)
        for p in [p for p in optimizer.state if p not in self.state]:
            del optimizer.state[p]
        for p, saved in self.state.items():
            state = optimizer.state[p]
            for k in [k for k in state if k not in saved]:
                del state[k]
            for k, value in saved.items():
                _put(state, k, value)


def _is_flag(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _capture_rng() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def _restore_rng(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] is not None:
        torch.cuda.set_rng_state_all(states["cuda"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
