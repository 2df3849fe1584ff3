"""The cache behind :func:`ftkit.analysis.features.extract_features`: an object you can pass in.

A :class:`FeatureCache` keeps extracted feature sets in memory (bounded in
bytes, least recently used dropped first) and, when given a folder, on disk
as ``<key>.npz`` files (also bounded in bytes, least recently used files
deleted first). Every entry read back is checked against what the caller
expects (rows, dtypes, shape, labels); a file that cannot be read or does not
fit is recomputed with a warning, never returned.

One default instance per process is made on first use
(:func:`default_feature_cache`); it reads the environment then, not at import:
``FTKIT_FEATURE_CACHE`` (a folder; unset: memory only),
``FTKIT_FEATURE_CACHE_BYTES`` (disk bound) and
``FTKIT_FEATURE_CACHE_MEMORY_BYTES`` (memory bound).

>>> cache = FeatureCache("feature-cache", disk_bytes=2**30)        # doctest: +SKIP
>>> extract_features(model, data, cache=cache)                     # doctest: +SKIP
>>> cache.info()["hits"]                                           # doctest: +SKIP
"""
from __future__ import annotations

import os
import warnings
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ftkit.core.torchutil import atomic_path

__all__ = ["Features", "Expected", "FeatureCache", "default_feature_cache", "set_default_feature_cache"]

DEFAULT_MEMORY_BYTES = 512 * 2**20   # 512 MiB: ~100 sets of 1,000 x 1,280 float32 vectors
DEFAULT_DISK_BYTES = 4 * 2**30       # 4 GiB


@dataclass
class Features:
    """Extracted feature vectors.

    Attributes:
        X: ``(N, D)`` float32, one row per item of the data set, in order.
        y: ``(N,)`` int64 labels.
        layer: qualified name of the layer the features come from.
        key: the cache key (hex) these features are stored under.
        hook: "output" (what ``layer`` returns) or "input" (what enters it:
            for the head block, the body's features).
    """

    X: np.ndarray
    y: np.ndarray
    layer: str
    key: str
    hook: str = "output"

    @property
    def xy(self) -> tuple[np.ndarray, np.ndarray]:
        """``(X, y)``, e.g. for ``clf.score(*features.xy)``."""
        return self.X, self.y

    @property
    def nbytes(self) -> int:
        return int(self.X.nbytes + self.y.nbytes)

    def copy(self) -> "Features":
        return Features(self.X.copy(), self.y.copy(), self.layer, self.key, self.hook)

    def __len__(self) -> int:
        return len(self.X)

    def __repr__(self) -> str:
        return (f"Features(N={self.X.shape[0]}, D={self.X.shape[1]}, layer={self.layer!r}, "
                f"hook={self.hook!r}, key={self.key[:12]!r})")


@dataclass(frozen=True)
class Expected:
    """What a cache entry for one call must look like.

    Attributes:
        key, layer, hook: must match the entry's own.
        rows: the data set's length.
        width: the feature width D when it is known without a forward pass
            (e.g. ``in_features`` of a Linear head), else None.
        labels: the data set's labels when it exposes them (``.targets``), else None.
    """

    key: str
    layer: str
    hook: str
    rows: int
    width: int | None = None
    labels: np.ndarray | None = None

    def problem(self, f: Features) -> str | None:
        """Why ``f`` cannot be these features, or None when it fits."""
        if (f.key, f.layer, f.hook) != (self.key, self.layer, self.hook):
            return f"it belongs to key/layer/hook {(f.key, f.layer, f.hook)}"
        if f.X.dtype != np.float32 or f.y.dtype != np.int64:
            return f"dtypes are X {f.X.dtype}, y {f.y.dtype} (expected float32, int64)"
        if f.X.ndim != 2 or f.y.shape != (f.X.shape[0],):
            return f"shapes are X {f.X.shape}, y {f.y.shape} (expected (N, D) and (N,))"
        if f.X.shape[0] != self.rows:
            return f"it has {f.X.shape[0]} rows for a data set of {self.rows} items"
        if self.width is not None and f.X.shape[1] != self.width:
            return f"its vectors have {f.X.shape[1]} values where the layer gives {self.width}"
        if self.labels is not None and not np.array_equal(f.y, self.labels):
            return "its labels differ from the data set's"
        return None


class FeatureCache:
    """Feature sets by key, in memory and (optionally) in a folder, both bounded in bytes.

    Args:
        cache_dir: folder for ``<key>.npz`` files; None keeps everything in memory only.
        memory_bytes: bound on the arrays held in memory (0 keeps nothing).
        disk_bytes: bound on the ``.npz`` files in ``cache_dir``.

    Counters (:meth:`info`): hits (memory), disk_hits, misses, rejected
    (entries found but unusable: unreadable or not matching), evicted_memory,
    evicted_files, forward_batches (model forward calls made by
    ``extract_features`` on a miss).
    """

    def __init__(self, cache_dir: str | os.PathLike | None = None, *,
                 memory_bytes: int = DEFAULT_MEMORY_BYTES, disk_bytes: int = DEFAULT_DISK_BYTES):
        for name, v in (("memory_bytes", memory_bytes), ("disk_bytes", disk_bytes)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"{name} must be an int >= 0 (bytes), not {v!r}")
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.memory_bytes, self.disk_bytes = int(memory_bytes), int(disk_bytes)
        self._memory: OrderedDict[str, Features] = OrderedDict()
        self._stats = dict.fromkeys(("hits", "disk_hits", "misses", "rejected", "evicted_memory",
                                     "evicted_files", "forward_batches"), 0)

    def __repr__(self) -> str:
        return (f"FeatureCache(cache_dir={str(self.cache_dir) if self.cache_dir else None!r}, "
                f"memory_bytes={self.memory_bytes}, disk_bytes={self.disk_bytes})")

    # ------------------------------------------------------------ info

    def info(self) -> dict:
        """Counters plus items and bytes in memory, and the settings."""
        return {**self._stats, "items": len(self._memory), "memory_used": self._memory_used(),
                "memory_bytes": self.memory_bytes, "disk_bytes": self.disk_bytes,
                "cache_dir": None if self.cache_dir is None else str(self.cache_dir)}

    def clear(self, *, counters: bool = True) -> None:
        """Empty the memory part (files on disk are kept) and, by default, reset the counters."""
        self._memory.clear()
        if counters:
            self._stats.update(dict.fromkeys(self._stats, 0))

    def count_forward(self, n: int = 1) -> None:
        self._stats["forward_batches"] += n

    def count_miss(self) -> None:
        self._stats["misses"] += 1

    # ------------------------------------------------------------ lookup / store

    def get(self, expected: Expected, *, cache_dir: str | os.PathLike | None = None) -> Features | None:
        """A copy of the entry for ``expected.key`` when one is held and fits ``expected``, else None.

        ``cache_dir`` overrides the instance's folder for this call.
        """
        folder = self._folder(cache_dir)
        f = self._memory.get(expected.key)
        if f is not None:
            problem = expected.problem(f)
            if problem is None:
                self._memory.move_to_end(expected.key)
                self._stats["hits"] += 1
                return f.copy()
            self._reject(f"in-memory entry {expected.key}", problem)
            del self._memory[expected.key]
        if folder is None:
            return None
        f = self._read(folder / f"{expected.key}.npz", expected)
        if f is None:
            return None
        self._stats["disk_hits"] += 1
        self._remember(f)
        return f.copy()

    def put(self, f: Features, *, cache_dir: str | os.PathLike | None = None) -> None:
        """Store ``f`` in memory and, with a folder, on disk (atomically); enforce both bounds."""
        self._remember(f.copy())
        folder = self._folder(cache_dir)
        if folder is None:
            return
        if f.nbytes > self.disk_bytes:
            warnings.warn(f"features of {f.nbytes} bytes exceed the disk cache bound of {self.disk_bytes} bytes; "
                          "not written (raise disk_bytes to keep them)", stacklevel=3)
            return
        path = folder / f"{f.key}.npz"
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, X=f.X, y=f.y, layer=f.layer, key=f.key, hook=f.hook)
        self._evict_files(folder, keep=path)

    # ------------------------------------------------------------ internals

    def _folder(self, cache_dir: str | os.PathLike | None) -> Path | None:
        return Path(cache_dir) if cache_dir is not None else self.cache_dir

    def _memory_used(self) -> int:
        return sum(f.nbytes for f in self._memory.values())

    def _remember(self, f: Features) -> None:
        self._memory.pop(f.key, None)
        if f.nbytes > self.memory_bytes:
            return
        self._memory[f.key] = f
        self._trim_memory()

    def _trim_memory(self) -> None:
        used = self._memory_used()
        while used > self.memory_bytes:
            _, old = self._memory.popitem(last=False)
            used -= old.nbytes
            self._stats["evicted_memory"] += 1

    def _reject(self, what: str, problem: str) -> None:
        self._stats["rejected"] += 1
        warnings.warn(f"feature cache: {what} is not usable ({problem}); recomputing it", stacklevel=4)

    def _read(self, path: Path, expected: Expected) -> Features | None:
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                f = Features(z["X"], z["y"], str(z["layer"]), str(z["key"]), str(z["hook"]))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            self._reject(f"file {path}", f"cannot be read: {type(err).__name__}: {err}")
            return None
        problem = expected.problem(f)
        if problem is not None:
            self._reject(f"file {path}", problem)
            return None
        try:
            os.utime(path)  # mark as recently used: eviction goes by modification time
        except OSError:
            pass
        return f

    def _evict_files(self, folder: Path, keep: Path) -> None:
        files = []
        for p in folder.glob("*.npz"):
            try:
                st = p.stat()
            except FileNotFoundError:  # removed by another process meanwhile
                continue
            files.append((st.st_mtime_ns, st.st_size, p))
        total = sum(size for _, size, _ in files)
        for _, size, p in sorted(files, key=lambda t: t[0]):
            if total <= self.disk_bytes:
                break
            if p == keep:
                continue
            try:
                p.unlink()
            except FileNotFoundError:
                pass
            total -= size
            self._stats["evicted_files"] += 1


_DEFAULT: dict[int, FeatureCache] = {}


def _env_bytes(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return int(float(raw))
    except ValueError:
        raise ValueError(f"environment variable {name} must be a number of bytes (e.g. 1e9), not {raw!r}") from None


def default_feature_cache() -> FeatureCache:
    """This process's default cache, made on first use from the environment (see the module doc)."""
    pid = os.getpid()
    if pid not in _DEFAULT:  # a forked worker gets its own, not a copy of its parent's memory
        _DEFAULT.clear()
        _DEFAULT[pid] = FeatureCache(os.environ.get("FTKIT_FEATURE_CACHE") or None,
                                     memory_bytes=_env_bytes("FTKIT_FEATURE_CACHE_MEMORY_BYTES",
                                                             DEFAULT_MEMORY_BYTES),
                                     disk_bytes=_env_bytes("FTKIT_FEATURE_CACHE_BYTES", DEFAULT_DISK_BYTES))
    return _DEFAULT[pid]


def set_default_feature_cache(cache: FeatureCache | None) -> None:
    """Replace this process's default cache (None: make a new one from the environment on next use)."""
    if cache is not None and not isinstance(cache, FeatureCache):
        raise TypeError(f"expected a FeatureCache or None, not {type(cache).__name__}")
    _DEFAULT.clear()
    if cache is not None:
        _DEFAULT[os.getpid()] = cache
