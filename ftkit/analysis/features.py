"""Feature extraction (run the frozen network once, keep the vectors) and
classifiers trained on those vectors: transfer method (b) of the course.

Extraction is cached (:class:`~ftkit.analysis.feature_cache.FeatureCache`):
the key is a hash of the model's architecture and weights, the data's
fingerprint (for image folders also every file's size and modification time),
the layer and the precision, so a second identical call costs no forward pass,
and changing any weight (fine-tuning!) or any image makes a new key. A model
with forward hooks (which can change what a layer outputs) is never cached.

>>> train_f = extract_features(model, train)           # doctest: +SKIP
>>> clf = fit_feature_classifier(train_f, "logistic")  # doctest: +SKIP
>>> clf.score(*extract_features(model, val).xy)        # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import os
import warnings
import weakref
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from ftkit.analysis.feature_cache import (
    Expected,
    FeatureCache,
    Features,
    default_feature_cache,
    set_default_feature_cache,
)
from ftkit.core.runtime import resolve_runtime
from ftkit.core.state import preserved_modes
from ftkit.core.torchutil import get_module, release_freed_memory
from ftkit.models.heads import find_head_block

__all__ = ["Features", "FeatureCache", "default_feature_cache", "set_default_feature_cache",
           "configure_feature_cache", "feature_cache_info", "clear_feature_cache", "weights_hash",
           "data_fingerprint", "extract_features", "TorchProbe", "fit_feature_classifier", "CLASSIFIERS"]

CLASSIFIERS = ("logistic", "svm", "linear", "mlp")


# ---------------------------------------------------------------- the default cache

def configure_feature_cache(*, memory_bytes: int | None = None, disk_bytes: int | None = None,
                            cache_dir: str | os.PathLike | None | bool = False) -> dict:
    """Change the default cache (:func:`default_feature_cache`): its bounds and/or its folder.

    Args:
        memory_bytes: bound on the feature arrays kept in memory.
        disk_bytes: bound on the ``.npz`` files in the folder.
        cache_dir: a folder for ``<key>.npz`` files; None turns the disk cache
            off; False (default) leaves the setting as it is.
    """
    return default_feature_cache().configure(cache_dir=cache_dir, memory_bytes=memory_bytes,
                                             disk_bytes=disk_bytes).info()


def feature_cache_info() -> dict:
    """The default cache's counters and settings (:meth:`FeatureCache.info`)."""
    return default_feature_cache().info()


def clear_feature_cache(*, counters: bool = True) -> None:
    """Empty the default cache's memory (files on disk are kept) and reset its counters."""
    default_feature_cache().clear(counters=counters)


# ---------------------------------------------------------------- keys

def _hash_tensor(h: "hashlib._Hash", t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous().reshape(-1)
    h.update(f"{t.dtype}:{t.numel()};".encode())
    h.update(t.view(torch.uint8).numpy())


def weights_hash(model: nn.Module) -> str:
    """Hash of the architecture (its repr) and every tensor in ``model.state_dict()``."""
    # SHA-256, not BLAKE2: with the CPU's SHA instructions it is about 2x faster (27 vs 60 ms for
    # MobileNetV2's 14 MB here), and this pass is most of what a cache hit costs.
    h = hashlib.sha256()
    h.update(f"{type(model).__module__}.{type(model).__qualname__}\n{model!r}".encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(f"{name}:{tuple(t.shape)};".encode())
        _hash_tensor(h, t)
    return h.hexdigest()[:32]


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


def file_stamps(data: Dataset) -> str:
    """A hash of the size and modification time of every image file ``data`` reads, "" when it
    reads no files (in-memory sources). Checked on every call: images replaced on disk change it,
    although an :class:`~ftkit.data.catalogue.ImageDataset` computes its fingerprint only once."""
    indices = None
    while isinstance(data, Subset):
        idx = np.asarray(data.indices, dtype=np.int64)
        indices = idx if indices is None else indices[idx]
        data = data.dataset
    paths = getattr(getattr(data, "_source", None), "paths", None)  # ImageDataset over a folder
    if paths is None:
        return ""
    selected = np.asarray(getattr(data, "indices", np.arange(len(paths))), dtype=np.int64)
    if indices is not None:
        selected = selected[indices]
    h = hashlib.blake2b(digest_size=16)
    for i in selected:
        st = os.stat(paths[int(i)])
        h.update(f"{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()


def _hooks(model: nn.Module) -> list[str]:
    """Modules with forward (pre-)hooks, and torch's global ones: any of them may change the features."""
    found = [f"{name or '<model>'} ({kind})" for name, m in model.named_modules()
             for kind in ("_forward_pre_hooks", "_forward_hooks") if getattr(m, kind, None)]
    g = nn.modules.module
    found += [f"global ({kind})" for kind in ("_global_forward_pre_hooks", "_global_forward_hooks")
              if getattr(g, kind, None)]
    return found


# Per model object: the modules it is made of and the head block traced for them. find_head_block
# runs a (meta) forward pass; a cache hit must not pay for it again. Swapping a module re-traces.
_HEAD_BLOCKS: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple, str]]" = weakref.WeakKeyDictionary()


def _head_block(model: nn.Module) -> str:
    structure = tuple((name, id(m)) for name, m in model.named_modules())
    memo = _HEAD_BLOCKS.get(model)
    if memo is None or memo[0] != structure:
        memo = (structure, find_head_block(model))
        _HEAD_BLOCKS[model] = memo
    return memo[1]


def _resolve_layer(model: nn.Module, layer: str | None) -> tuple[str, str]:
    if layer is not None:
        get_module(model, layer)  # KeyError listing candidates
        return layer, "output"
    # The whole head, not its last layer: after replace_head(hidden=...) the
    # input of "fc.out" would be the new random hidden layer's output.
    return _head_block(model), "input"


def _width(module: nn.Module, hook: str) -> int | None:
    """The width of the features entering a head block, known without running it (to check cached
    entries); None for other layers, whose output may be pooled or flattened."""
    if hook != "input":
        return None
    first = module
    while isinstance(first, nn.Sequential) and len(first):
        first = first[0]
    if isinstance(first, nn.Linear):
        return first.in_features
    if isinstance(first, nn.Conv2d):
        return first.in_channels  # (B, C, H, W) is average-pooled to (B, C)
    return None


def _labels(data: Dataset) -> np.ndarray | None:
    indices = None
    while isinstance(data, Subset):
        idx = np.asarray(data.indices, dtype=np.int64)
        indices = idx if indices is None else indices[idx]
        data = data.dataset
    targets = getattr(data, "targets", None)
    if targets is None:
        return None
    try:
        y = np.asarray(targets, dtype=np.int64).reshape(-1)
        return y if indices is None else y[indices]
    except (TypeError, ValueError, IndexError):
        return None


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
         rt, counter: FeatureCache) -> tuple[np.ndarray, np.ndarray]:
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
                counter.count_forward()
                if not grabbed:
                    raise RuntimeError(f"layer {layer!r} did not run in {type(model).__name__}'s forward pass; "
                                       "pick a layer that forward() uses")
                xs.append(grabbed.pop())
                ys.append(torch.as_tensor(y).reshape(-1))
    finally:
        handle.remove()
        release_freed_memory()  # the forward passes' activations: back to the OS, not kept by the allocator
    return torch.cat(xs).numpy().astype(np.float32, copy=False), torch.cat(ys).numpy().astype(np.int64)


def _cache_of(cache: Any) -> tuple[FeatureCache | None, str | os.PathLike | None]:
    if isinstance(cache, FeatureCache):
        return cache, None
    if cache is True:
        return default_feature_cache(), None
    if cache is False or cache is None:
        return None, None
    if isinstance(cache, (str, os.PathLike)):
        return default_feature_cache(), cache
    raise TypeError(f"cache must be a FeatureCache, True, False or a folder path, not {type(cache).__name__}")


# Measured on the 2-core CPU this kit targets (MobileNetV2, 64 and 128 px): 32 images per
# forward pass cost the least per image; 128 was up to 1.9x slower per image (notes/h7b.md).
DEFAULT_BATCH_SIZE = 32


def extract_features(model: nn.Module, data: Dataset, layer: str | None = None, *,
                     batch_size: int = DEFAULT_BATCH_SIZE, device: str | torch.device = "auto",
                     cache: FeatureCache | bool | str | os.PathLike = True) -> Features:
    """Run ``model`` once over ``data`` (eval mode, no gradients) and keep one vector per item.

    Args:
        model: any network; its train/eval flags and ``requires_grad`` are
            left as they were. It is moved to ``device`` on every call, cache
            hit or not, and stays there. A model with forward hooks is
            computed afresh and not cached (with a warning): a hook can change
            what a layer outputs, and no key can tell.
        data: yields ``(x, label)``.
        layer: None -> the input of the whole classifier head
            (:func:`ftkit.models.heads.find_head_block`: ``"fc"`` also after
            ``replace_head(..., hidden=)``), i.e. the body's features;
            a qualified name ("features.6", "layer3") -> that layer's output,
            global-average-pooled when it is a ``(B, C, H, W)`` map.
        batch_size: items per forward pass.
        device: "auto" (CUDA with bf16 autocast when present) or a device.
        cache: a :class:`FeatureCache`; True -> this process's default one
            (:func:`default_feature_cache`); a folder path -> the default one
            with that folder for its files; False -> compute afresh, store nothing.

    Returns:
        :class:`Features`. A cached result is returned as a copy, so
        changing ``X`` in place never changes the cache.
    """
    if len(data) == 0:
        raise ValueError("extract_features() got an empty data set")
    store, folder = _cache_of(cache)
    layer_name, hook = _resolve_layer(model, layer)
    rt = resolve_runtime(device)
    model.to(rt.device)  # on a hit too: where the model ends up must not depend on the cache
    hooks = _hooks(model)
    if store is not None and hooks:
        warnings.warn(f"extract_features: the model has forward hooks on {', '.join(hooks[:5])}; they can change "
                      "the features, so these are computed afresh and not cached. Remove the hooks "
                      "(handle.remove()) to use the cache, or pass cache=False to silence this.", stacklevel=2)
        store = None
    precision = f"{rt.device.type}-{'bf16' if rt.amp else 'fp32'}"
    key = hashlib.blake2b("|".join([weights_hash(model), data_fingerprint(data), file_stamps(data), layer_name,
                                    hook, precision]).encode(), digest_size=16).hexdigest()
    labels = _labels(data)
    expected = Expected(key, layer_name, hook, len(data), _width(get_module(model, layer_name), hook),
                        labels if labels is not None and len(labels) == len(data) else None)
    if store is not None:
        found = store.get(expected, cache_dir=folder)
        if found is not None:
            return found
        store.count_miss()
    with preserved_modes(model):
        model.eval()
        X, y = _run(model, data, layer_name, hook, batch_size, rt, store or default_feature_cache())
    result = Features(X, y, layer_name, key, hook)
    if store is not None:
        store.put(result, cache_dir=folder)
    return result


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
