"""Feature extraction (run the frozen network once, keep the vectors) and
classifiers trained on those vectors: transfer method (b) of the course.

Extraction is cached: the key is a hash of the model's architecture and
weights, the data's fingerprint and the layer, so a second identical call
costs no forward pass, and changing any weight (fine-tuning!) makes a new key.

>>> train_f = extract_features(model, train)           # doctest: +SKIP
>>> clf = fit_feature_classifier(train_f, "logistic")  # doctest: +SKIP
>>> clf.score(*extract_features(model, val).xy)        # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from ftkit.core.runtime import resolve_runtime
from ftkit.core.state import preserved_modes
from ftkit.core.torchutil import atomic_path, get_module
from ftkit.models.heads import find_head_block

CLASSIFIERS = ("logistic", "svm", "linear", "mlp")


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

    def __len__(self) -> int:
        return len(self.X)

    def __repr__(self) -> str:
        return (f"Features(N={self.X.shape[0]}, D={self.X.shape[1]}, layer={self.layer!r}, "
                f"hook={self.hook!r}, key={self.key[:12]!r})")


# ---------------------------------------------------------------- cache

_MEMORY: OrderedDict[str, Features] = OrderedDict()
_STATS = {"hits": 0, "disk_hits": 0, "misses": 0, "forward_batches": 0}
_SETTINGS: dict[str, Any] = {"max_items": 8, "cache_dir": os.environ.get("FTKIT_FEATURE_CACHE") or None}


def configure_feature_cache(*, max_items: int | None = None,
                            cache_dir: str | os.PathLike | None | bool = False) -> dict:
    """Set the in-memory LRU size and/or the default on-disk cache folder.

    Args:
        max_items: feature sets kept in memory (least recently used dropped first).
        cache_dir: a folder for ``<key>.npz`` files; None turns the disk cache
            off; False (default) leaves the setting as it is. The environment
            variable ``FTKIT_FEATURE_CACHE`` sets the initial folder.
    """
    if max_items is not None:
        if max_items < 0:
            raise ValueError(f"max_items must be >= 0, not {max_items}")
        _SETTINGS["max_items"] = int(max_items)
        _trim()
    if cache_dir is not False:
        _SETTINGS["cache_dir"] = None if cache_dir is None else str(cache_dir)
    return feature_cache_info()


def feature_cache_info() -> dict:
    """Counters: hits, disk_hits, misses, forward_batches (model forward calls
    made by :func:`extract_features`), items in memory, max_items, cache_dir."""
    return {**_STATS, "items": len(_MEMORY), **_SETTINGS}


def clear_feature_cache(*, counters: bool = True) -> None:
    """Empty the in-memory cache (files on disk are kept) and reset the counters."""
    _MEMORY.clear()
    if counters:
        _STATS.update(dict.fromkeys(_STATS, 0))


def _trim() -> None:
    while len(_MEMORY) > _SETTINGS["max_items"]:
        _MEMORY.popitem(last=False)


def _copy(f: Features) -> Features:
    return Features(f.X.copy(), f.y.copy(), f.layer, f.key, f.hook)


def _disk_path(cache_dir: str | os.PathLike, key: str) -> Path:
    return Path(cache_dir) / f"{key}.npz"


def _read_disk(path: Path) -> Features | None:
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        return Features(z["X"], z["y"], str(z["layer"]), str(z["key"]), str(z["hook"]))


def _write_disk(path: Path, f: Features) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, X=f.X, y=f.y, layer=f.layer, key=f.key, hook=f.hook)


# ---------------------------------------------------------------- keys

def _hash_tensor(h: "hashlib._Hash", t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous().reshape(-1)
    h.update(f"{t.dtype}:{t.numel()};".encode())
    h.update(t.view(torch.uint8).numpy())


def weights_hash(model: nn.Module) -> str:
    """Hash of the architecture (its repr) and every tensor in ``model.state_dict()``."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{type(model).__module__}.{type(model).__qualname__}\n{model!r}".encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(f"{name}:{tuple(t.shape)};".encode())
        _hash_tensor(h, t)
    return h.hexdigest()


def data_fingerprint(data: Dataset) -> str:
    """``data.fingerprint()`` when the dataset has one (ftkit's ImageDataset);
    for a ``Subset`` of such a dataset, its fingerprint plus the indices;
    otherwise a hash of every ``(x, y)`` the dataset yields (one pass over it).
    """
    fp = getattr(data, "fingerprint", None)
    if callable(fp):
        return f"fp:{fp()}"
    if isinstance(data, Subset):
        inner = data_fingerprint(data.dataset)
        if inner.startswith("fp:"):
            idx = np.asarray(data.indices, dtype=np.int64).tobytes()
            return "fp:" + hashlib.blake2b(inner.encode() + idx, digest_size=16).hexdigest()
    h = hashlib.blake2b(digest_size=16)
    for i in range(len(data)):
        x, y = data[i]
        _hash_tensor(h, torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x)
        h.update(f"|{int(y)};".encode())
    return "items:" + h.hexdigest()


def _resolve_layer(model: nn.Module, layer: str | None) -> tuple[str, str]:
    if layer is not None:
        get_module(model, layer)  # KeyError listing candidates
        return layer, "output"
    # The whole head, not its last layer: after replace_head(hidden=...) the
    # input of "fc.out" would be the new random hidden layer's output.
    return find_head_block(model), "input"


# ---------------------------------------------------------------- extraction

class _Captured(Exception):
    """Raised by the hook once the features are taken: the rest of the forward pass is skipped."""


def _pool(t: Any) -> torch.Tensor:
    if isinstance(t, (tuple, list)):
        t = t[0]
    if t.dim() == 4:
        return t.float().mean(dim=(2, 3))  # (B, C, H, W) -> (B, C): global average pooling
    return t.float().reshape(len(t), -1)


def _run(model: nn.Module, data: Dataset, layer: str, hook: str, batch_size: int,
         rt) -> tuple[np.ndarray, np.ndarray]:
    module = get_module(model, layer)
    grabbed: list[torch.Tensor] = []

    def grab(t):
        grabbed.append(_pool(t).cpu())
        raise _Captured

    handle = (module.register_forward_pre_hook(lambda m, args: grab(args[0])) if hook == "input"
              else module.register_forward_hook(lambda m, args, out: grab(out)))
    xs, ys = [], []
    try:
        with torch.no_grad():
            for x, y in DataLoader(data, batch_size=batch_size, shuffle=False):
                with rt.autocast():
                    try:
                        model(rt.inputs(x))
                    except _Captured:
                        pass
                _STATS["forward_batches"] += 1
                if not grabbed:
                    raise RuntimeError(f"layer {layer!r} did not run in {type(model).__name__}'s forward pass; "
                                       "pick a layer that forward() uses")
                xs.append(grabbed.pop())
                ys.append(torch.as_tensor(y).reshape(-1))
    finally:
        handle.remove()
    return torch.cat(xs).numpy().astype(np.float32, copy=False), torch.cat(ys).numpy().astype(np.int64)


def extract_features(model: nn.Module, data: Dataset, layer: str | None = None, *, batch_size: int = 128,
                     device: str | torch.device = "auto", cache: bool | str | os.PathLike = True) -> Features:
    """Run ``model`` once over ``data`` (eval mode, no gradients) and keep one vector per item.

    Args:
        model: any network; its train/eval flags and ``requires_grad`` are
            left as they were. It is moved to ``device`` on every call, cache
            hit or not, and stays there.
        data: yields ``(x, label)``.
        layer: None -> the input of the whole classifier head
            (:func:`ftkit.models.heads.find_head_block`: ``"fc"`` also after
            ``replace_head(..., hidden=)``), i.e. the body's features;
            a qualified name ("features.6", "layer3") -> that layer's output,
            global-average-pooled when it is a ``(B, C, H, W)`` map.
        batch_size: items per forward pass.
        device: "auto" (CUDA with bf16 autocast when present) or a device.
        cache: True -> in-memory LRU (and the configured disk folder, see
            :func:`configure_feature_cache`); a path -> also that folder;
            False -> compute afresh and store nothing.

    Returns:
        :class:`Features`. A cached result is returned as a copy, so
        changing ``X`` in place never changes the cache.
    """
    if len(data) == 0:
        raise ValueError("extract_features() got an empty data set")
    layer_name, hook = _resolve_layer(model, layer)
    rt = resolve_runtime(device)
    model.to(rt.device)  # on a hit too: where the model ends up must not depend on the cache
    precision = f"{rt.device.type}-{'bf16' if rt.amp else 'fp32'}"
    key = hashlib.blake2b("|".join([weights_hash(model), data_fingerprint(data), layer_name, hook,
                                    precision]).encode(), digest_size=16).hexdigest()
    cache_dir = (str(cache) if not isinstance(cache, bool) else _SETTINGS["cache_dir"]) if cache else None
    if cache and key in _MEMORY:
        _MEMORY.move_to_end(key)
        _STATS["hits"] += 1
        return _copy(_MEMORY[key])
    found = _read_disk(_disk_path(cache_dir, key)) if cache_dir else None
    if found is not None:
        _STATS["disk_hits"] += 1
    else:
        _STATS["misses"] += 1
        with preserved_modes(model):
            model.eval()
            X, y = _run(model, data, layer_name, hook, batch_size, rt)
        found = Features(X, y, layer_name, key, hook)
        if cache_dir:
            _write_disk(_disk_path(cache_dir, key), found)
    if cache:
        _MEMORY[key] = found
        _trim()
        return _copy(found)
    return found


# ---------------------------------------------------------------- classifiers on features

class TorchProbe:
    """A linear layer (``hidden=None``) or a one-hidden-layer MLP trained with
    Adam on standardised features; sklearn-like ``fit``/``predict``/``score``.

    Args:
        hidden: width of the hidden ReLU layer; None for a linear classifier.
        epochs: passes over the features.
        lr, weight_decay: Adam settings.
        batch_size: None -> full batch (one step per epoch).
        seed: fixes the initial weights and the minibatch order.
    """

    def __init__(self, hidden: int | None = None, *, epochs: int = 200, lr: float = 1e-2,
                 weight_decay: float = 0.0, batch_size: int | None = None, seed: int = 0):
        self.hidden, self.epochs, self.lr, self.weight_decay = hidden, epochs, lr, weight_decay
        self.batch_size, self.seed = batch_size, seed

    def _inputs(self, X: np.ndarray) -> torch.Tensor:
        return torch.as_tensor((np.asarray(X, dtype=np.float32) - self.mean_) / self.scale_)

    def fit(self, X: np.ndarray, y: np.ndarray) -> "TorchProbe":
        X, y = np.asarray(X, dtype=np.float32), np.asarray(y)
        self.classes_ = np.unique(y)
        self.mean_ = X.mean(0)
        self.scale_ = np.where(X.std(0) > 0, X.std(0), 1.0).astype(np.float32)
        xt, yt = self._inputs(X), torch.as_tensor(np.searchsorted(self.classes_, y))
        d, c = X.shape[1], len(self.classes_)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.net_ = (nn.Linear(d, c) if self.hidden is None
                         else nn.Sequential(nn.Linear(d, self.hidden), nn.ReLU(), nn.Linear(self.hidden, c)))
            opt = torch.optim.Adam(self.net_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            bs = self.batch_size or len(xt)
            for _ in range(self.epochs):
                for idx in torch.randperm(len(xt)).split(bs):
                    loss = nn.functional.cross_entropy(self.net_(xt[idx]), yt[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.net_(self._inputs(X)).numpy()

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return torch.softmax(torch.as_tensor(self.decision_function(X)), 1).numpy()

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[self.decision_function(X).argmax(1)]

    def score(self, X: np.ndarray, y: np.ndarray) -> float:
        """Accuracy, as sklearn's classifiers report it."""
        return float((self.predict(X) == np.asarray(y)).mean())


def fit_feature_classifier(features: Features | tuple[np.ndarray, np.ndarray], kind: str = "logistic",
                           **kw: Any):
    """Train a classifier on extracted features.

    Args:
        features: a :class:`Features` or ``(X, y)``.
        kind: "logistic" (StandardScaler + LogisticRegression), "svm"
            (StandardScaler + LinearSVC; ``kernel="rbf"`` etc. -> SVC), "linear"
            or "mlp" (:class:`TorchProbe`; ``hidden`` defaults to 256).
        **kw: passed to the estimator (``C=``, ``max_iter=``, ``epochs=``, ``lr=``...).

    Returns:
        A fitted estimator with ``predict(X)`` and ``score(X, y)`` (accuracy).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC, LinearSVC

    X, y = features.xy if isinstance(features, Features) else features
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"need X of shape (N, D) and y of shape (N,), got {X.shape} and {y.shape}")
    if len(np.unique(y)) < 2:
        raise ValueError("need at least two classes in y to train a classifier")
    if kind == "logistic":
        est = make_pipeline(StandardScaler(), LogisticRegression(**{"max_iter": 2000, **kw}))
    elif kind == "svm":
        kernel = kw.pop("kernel", "linear")
        svm = LinearSVC(**{"max_iter": 5000, **kw}) if kernel == "linear" else SVC(kernel=kernel, **kw)
        est = make_pipeline(StandardScaler(), svm)
    elif kind == "linear":
        est = TorchProbe(None, **kw)
    elif kind == "mlp":
        est = TorchProbe(kw.pop("hidden", 256), **kw)
    else:
        raise ValueError(f"kind must be one of {CLASSIFIERS}, not {kind!r}")
    return est.fit(X, y)
