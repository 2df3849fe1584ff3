"""Checkpoints: model (and optimizer) state, a History and metadata in one file.

Files are written atomically (beside the target, flushed to disk with fsync,
then renamed), hold only plain data so they load with ``torch.load(...,
weights_only=True)``, and are checked against the model before anything is
loaded, so a mismatch leaves the model and optimizer unchanged. A file that
cannot be read (empty, truncated, garbage) raises one ``CheckpointError``
naming the file and the cause.

>>> save_checkpoint("run.pt", model, opt, history=history, note="head only")   # doctest: +SKIP
>>> meta = load_checkpoint("run.pt", model, opt)                               # doctest: +SKIP
>>> meta["note"], meta["history"]                                              # doctest: +SKIP
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ftkit.core.torchutil import atomic_path
from ftkit.training.history import History

__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "save_checkpoint", "load_checkpoint"]

CHECKPOINT_FORMAT = "ftkit-checkpoint-1"
_KEYS = ("model", "optimizer", "history", "meta")


class CheckpointError(ValueError):
    """A file that cannot be read as an ftkit checkpoint (empty, truncated, garbage, another
    format); the message names the file and the cause. Nothing is loaded then."""


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
               "optimizer_class": None if optimizer is None else type(optimizer).__name__,
               "history": None if history is None else history.to_dict(), "meta": dict(meta)}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
        _fsync(tmp)  # the bytes reach the disk before the rename makes them the checkpoint
    _fsync(Path(path).parent)  # and the rename itself survives a power cut
    return Path(path)


def _fsync(path: Path) -> None:
    """Flush a file's (or a folder's) data to disk; folders only where the OS allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if path.is_dir():
            return  # e.g. Windows cannot open folders: the rename is still atomic
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not path.is_dir():
            raise
    finally:
        os.close(fd)


def _read(path: Path) -> dict:
    """The checkpoint's payload, or one CheckpointError that names the file and the cause."""
    fix = "save it again, or load an earlier checkpoint"
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    size = path.stat().st_size  # FileNotFoundError for a missing file: clear as it is
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): the save never finished; {fix}")
    with open(path, "rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a bad file
        first = (str(err).strip().splitlines() or [""])[0][:200]
        cause = (f"truncated or damaged: a torch.save archive of {size} bytes that cannot be read"
                 if is_zip else "not a file written by torch.save or save_checkpoint")
        raise CheckpointError(f"{path} cannot be loaded: {cause} ({type(err).__name__}: {first}); "
                              f"{fix}") from err
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an ftkit checkpoint "
                              "(write one with ftkit.training.checkpoints.save_checkpoint)")
    missing = [k for k in _KEYS if k not in payload]
    if missing or not isinstance(payload["model"], dict):
        raise CheckpointError(f"{path} is an incomplete ftkit checkpoint (missing {missing or ['model']}); "
                              f"{fix}")
    return payload


def _check_compatible(model: nn.Module, state: dict, optimizer, opt_state, opt_class: str | None) -> None:
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
    given = type(optimizer).__name__
    if opt_class is not None and opt_class != given:
        raise ValueError(f"the checkpoint's optimizer is a {opt_class}, the one given a {given}: its state "
                         f"does not fit; build a torch.optim.{opt_class} over the same param groups (or "
                         "load without optimizer= and start the optimizer afresh)")
    sizes = [len(g["params"]) for g in optimizer.param_groups]
    saved = [len(g["params"]) for g in opt_state["param_groups"]]
    if sizes != saved:
        raise ValueError(f"optimizer groups hold {sizes} parameters, the checkpoint's {saved}; "
                         "build the optimizer over the same param groups before loading")


def _load_optimizer(optimizer: torch.optim.Optimizer, opt_state: dict, path) -> None:
    """``optimizer.load_state_dict``, undone when it fails half-way.

    torch replaces ``state`` and ``param_groups`` and then lets the optimizer
    class check them (Adam reads every state's "step"), so a state of another
    kind fails after the swap; the original objects are put back.
    """
    state, groups = optimizer.state, optimizer.param_groups
    contents = [dict(g) for g in groups]
    try:
        optimizer.load_state_dict(opt_state)
    except Exception as err:
        optimizer.state, optimizer.param_groups = state, groups
        for group, saved in zip(groups, contents):
            group.clear()
            group.update(saved)
        raise ValueError(f"the optimizer state in {path} does not fit this {type(optimizer).__name__} "
                         f"({type(err).__name__}: {err}); build the optimizer the checkpoint was saved "
                         "with, over the same param groups, or load without optimizer=") from err


def load_checkpoint(path: str | Path, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Restore a checkpoint written by :func:`save_checkpoint` into ``model`` (and ``optimizer``).

    Everything is checked before anything is loaded, so a mismatch leaves
    the model and optimizer unchanged.

    Returns:
        The ``meta`` saved with it, plus ``"history"`` (a :class:`History`)
        when one was saved.

    Raises:
        CheckpointError: (a ValueError) the file is empty, truncated, garbage
            or no ftkit checkpoint; the message names the file and the cause.
        ValueError: the checkpoint does not fit: other
            parameter names or shapes, an optimizer of another class (SGD state
            into an Adam), other param-group sizes, no optimizer state saved.
            Nothing is changed then.
    """
    payload = _read(Path(path))
    _check_compatible(model, payload["model"], optimizer, payload["optimizer"], payload.get("optimizer_class"))
    if optimizer is not None:
        _load_optimizer(optimizer, payload["optimizer"], path)
    model.load_state_dict(payload["model"])  # last: checked above, and nothing after it can fail
    meta = dict(payload["meta"])
    if payload["history"] is not None:
        meta["history"] = History.from_dict(payload["history"])
    return meta
