"""Small helpers shared by every ftkit module: addressing modules by
qualified name, seeding, devices, atomic file writes, glibc's heap.

Kept private (underscore) because they are plumbing, not lessons.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import random
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
import torch
from torch import nn

# Norm layers with running statistics (BatchNorm1d/2d/3d, SyncBatchNorm, and
# InstanceNorm with track_running_stats): what freezing "BatchNorm" pins and
# what the audit checks. LayerNorm/GroupNorm keep no statistics.
STAT_NORM = nn.modules.batchnorm._NormBase


def find_module(model: nn.Module, name: str) -> nn.Module | None:
    """The submodule called ``name`` ("" is the model itself), or None when there is none."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def get_module(model: nn.Module, name: str) -> nn.Module:
    """Return the submodule called ``name`` ("layer4", "classifier.1"; "" is the model).

    Raises:
        KeyError: listing the closest candidate names, so a typo is easy to fix.
    """
    module = find_module(model, name)
    if module is not None:
        return module
    names = [n for n, _ in model.named_modules() if n]
    candidates = [n for n in names if name.split(".")[0] in n or n in name]
    candidates = candidates or [n for n in names if "." not in n]
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


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU, and every CUDA device) globally, for a script.

    Library code never calls this: it runs seeded blocks with
    :func:`ftkit.core.state.seeded`, which forks every generator and gives the
    caller's states back.
    """
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


@functools.lru_cache(maxsize=1)
def _glibc():
    """The C library when it is glibc (``malloc_trim`` and ``mallopt``), or None (another C library or platform)."""
    if sys.platform != "linux":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None  # musl has no malloc_trim


# glibc's mallopt parameter (malloc.h); the threshold ftkit gives it where memory
# is scarce (blocks of at least this many bytes get a mapping of their own,
# handed back when freed), and what counts as scarce: Binder's pods have 2 GB.
M_MMAP_THRESHOLD = -3
LARGE_BLOCK_BYTES = 1 << 20
SCARCE_MEMORY_BYTES = 4 << 30
_CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def memory_limit_bytes() -> int | None:
    """The memory this process may use: the smaller of the machine's RAM and its cgroup's limit (None: unknown)."""
    limits = []
    with contextlib.suppress(ValueError, OSError, AttributeError):
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    for path in _CGROUP_LIMITS:
        with contextlib.suppress(OSError):
            text = Path(path).read_text().strip()
            if text.isdigit():  # "max" (v2) means none
                limits.append(int(text))
    return min(limits) if limits else None


def chosen_mmap_threshold(environ: Mapping[str, str], limit: int | None) -> int:
    """The mmap threshold ftkit sets, in bytes; 0 leaves glibc's own. See ``map_large_blocks_apart``."""
    if "FTKIT_MMAP_THRESHOLD" in environ:
        wanted = environ["FTKIT_MMAP_THRESHOLD"]
        if not wanted.isdigit():
            raise ValueError(f"FTKIT_MMAP_THRESHOLD={wanted!r} is not a number of bytes: use e.g. "
                             f"{LARGE_BLOCK_BYTES} (what ftkit sets where memory is scarce), or 0 to keep glibc's "
                             "dynamic mmap threshold")
        return int(wanted)
    if "MALLOC_MMAP_THRESHOLD_" in environ:
        return 0  # glibc has applied the user's own value at start-up
    return LARGE_BLOCK_BYTES if limit is not None and limit <= SCARCE_MEMORY_BYTES else 0


@functools.lru_cache(maxsize=1)
def map_large_blocks_apart() -> bool:
    """Where memory is scarce, give every block of 1 MiB or more its own mapping, so the heap cannot creep.

    By default glibc raises its mmap threshold each time a mapped block is
    freed (up to 32 MiB), so after the first training step a CPU run's
    activations all come from the heap. Small blocks that live on settle
    between them, and run after run the heap's high-water mark climbs: in
    lesson 07's grid the peaks of the training runs rose from 673 to 740 MB
    over 10 runs with the default and stayed at 606-628 MB with a 1 MiB
    threshold (notes/h13_memory.md, ``creep07.py``). The price is the OS
    zeroing fresh pages for each large block, time a learner waits
    (``python bench/bench_heap.py`` measures both).

    So ftkit pays it only where memory is scarce: when the machine or the
    process's cgroup has at most 4 GiB (Binder gives 2 GB), it fixes the
    threshold at 1 MiB; elsewhere glibc keeps its own. ``FTKIT_MMAP_THRESHOLD``
    decides instead (bytes; 0 keeps glibc's), and a ``MALLOC_MMAP_THRESHOLD_``
    the user set is left alone. Called once, when ftkit is imported. Returns
    whether it set a threshold (never without glibc).
    """
    threshold = chosen_mmap_threshold(os.environ, memory_limit_bytes())
    libc = _glibc()
    if libc is None or threshold == 0:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))


def release_freed_memory() -> None:
    """Hand the heap memory that Python and torch have freed back to the OS.

    glibc keeps freed blocks for reuse, and a CPU training run frees a few
    hundred MB of activations that then stay resident: lesson 01's kernel
    crept from 0.5 to 1.0 GB of anonymous memory over its runs without this
    (0.43 GB after each run with it; notes/h13_memory.md). That matters where
    a notebook has 1 GB (Binder). Costs milliseconds; a no-op without glibc.
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
