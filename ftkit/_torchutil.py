"""Small helpers shared by every ftkit module: addressing modules by
qualified name, seeding, devices, atomic file writes.

Kept private (underscore) because they are plumbing, not lessons.
"""
from __future__ import annotations

import contextlib
import os
import random
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn


def get_module(model: nn.Module, name: str) -> nn.Module:
    """Return the submodule called ``name`` ("layer4", "classifier.1").

    Raises:
        KeyError: listing the closest candidate names, so a typo is easy to fix.
    """
    if name == "":
        return model
    modules = dict(model.named_modules())
    if name in modules:
        return modules[name]
    candidates = [n for n in modules if n and (name.split(".")[0] in n or n in name)]
    candidates = candidates or [n for n in modules if n and "." not in n]
    raise KeyError(
        f"{type(model).__name__} has no submodule {name!r}; "
        f"candidates: {', '.join(candidates[:20])}"
    )


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the submodule called ``name`` by ``new`` (works inside Sequential)."""
    parent_name, _, child = name.rpartition(".")
    parent = get_module(model, parent_name)
    if not hasattr(parent, child) and child not in dict(parent.named_children()):
        raise KeyError(f"{parent_name or type(model).__name__!r} has no child {child!r}")
    setattr(parent, child, new)


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (optionally only those with requires_grad)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) for a repeatable run."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when present, else CPU; anything else as torch reads it."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only on success.

    A crash or exception leaves no half-written file behind.

    >>> with atomic_path("out.json") as tmp:          # doctest: +SKIP
    ...     tmp.write_text("{}")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
