"""Feature vectors + classical classifiers (the course's transfer mode (b)), with their cost.

Run the frozen pretrained body once over the training and test images, keep
one vector per image (:func:`ftkit.analysis.features.extract_features`,
cached), then train a logistic regression, a linear SVM or a small MLP on the
vectors (:func:`ftkit.analysis.features.fit_feature_classifier`). Every step
is timed separately, because the course's claim is about cost: "cheap enough
for a CPU".

>>> table = feature_classifier_costs("digits", [20, 100], kinds=("logistic", "svm"))  # doctest: +SKIP
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import pandas as pd

from ftkit.analysis.features import CLASSIFIERS, extract_features, fit_feature_classifier
from ftkit.data.catalogue import load_dataset
from ftkit.models.zoo import load_backbone

__all__ = ["DEFAULT_KINDS", "classifier_settings", "feature_classifier_costs"]

DEFAULT_KINDS = ("logistic", "svm", "mlp")


def classifier_settings(kind: str, seed: int = 0) -> dict[str, Any]:
    """The fixed settings each classifier kind trains with (library defaults, no tuning; the MLP seeded)."""
    if kind not in CLASSIFIERS:
        raise ValueError(f"kind must be one of {CLASSIFIERS}, not {kind!r}")
    return {"mlp": {"hidden": 256, "epochs": 200, "lr": 1e-2, "seed": seed},
            "linear": {"epochs": 200, "lr": 1e-2, "seed": seed}}.get(kind, {})


def feature_classifier_costs(data: str, sizes: Sequence[int], *, kinds: Sequence[str] = DEFAULT_KINDS,
                             seeds: Sequence[int] = (0, 1, 2), backbone: str = "mobilenet_v2",
                             image_size: int = 64, val_n_per_class: int | None = None, subset_seed: int = 0,
                             device: str = "cpu") -> pd.DataFrame:
    """Extract features once per size, train every classifier kind on them with every seed, time each part.

    The images a size trains on are the catalogue's subsample with
    ``subset_seed`` (``load_dataset(..., n_per_class=size, seed=subset_seed)``):
    the same images as a ``DataSpec(data, n_per_class=size, subset_seed=subset_seed)``
    run, and as in a fine-tuning race the seed changes only the training
    randomness (the MLP's init and batches; logistic regression and the SVM
    are deterministic given the images).

    Args:
        data: a catalogue name or an image-folder path.
        sizes: training images per class.
        kinds: classifiers (see :data:`ftkit.analysis.features.CLASSIFIERS`).
        seeds: one fit per seed and kind.
        backbone: whose pretrained body computes the vectors.
        image_size, val_n_per_class, subset_seed: as in ``DataSpec``; the test images are the same for every size.
        device: where the body runs ("cpu": the course's claim).

    Returns:
        One row per (n_per_class, seed, kind): acc (on the test split),
        extract_s (one forward pass over the training images, cache off),
        fit_s (training the classifier), total_s (extract_s + fit_s),
        cached_s (the same extraction again, from the cache), n_train, dim.
    """
    bad = [k for k in kinds if k not in CLASSIFIERS]
    if not kinds or bad:
        raise ValueError(f"kinds must be a non-empty list from {CLASSIFIERS}; bad: {bad or 'empty'}")
    if not sizes or any(isinstance(n, bool) or not isinstance(n, int) or n < 2 for n in sizes):
        raise ValueError(f"sizes must be ints >= 2 (training images per class), got {list(sizes)}")
    if not seeds:
        raise ValueError("feature_classifier_costs() needs at least one seed")
    bb = load_backbone(backbone)
    kw = dict(image_size=image_size, mean=bb.mean, std=bb.std)
    val = load_dataset(data, "test", n_per_class=val_n_per_class, seed=subset_seed, **kw)
    val_f = extract_features(bb.model, val, device=device)
    rows = []
    for n in sizes:
        train = load_dataset(data, "train", n_per_class=n, seed=subset_seed, **kw)
        t0 = time.perf_counter()
        train_f = extract_features(bb.model, train, device=device, cache=False)
        extract_s = time.perf_counter() - t0
        extract_features(bb.model, train, device=device)  # fills the cache (not timed)
        t0 = time.perf_counter()
        extract_features(bb.model, train, device=device)
        cached_s = time.perf_counter() - t0
        for seed in seeds:
            for kind in kinds:
                t0 = time.perf_counter()
                clf = fit_feature_classifier(train_f, kind, **classifier_settings(kind, seed))
                fit_s = time.perf_counter() - t0
                rows.append({"data": data, "n_per_class": n, "seed": seed, "method": kind,
                             "acc": float(clf.score(*val_f.xy)), "extract_s": extract_s, "fit_s": fit_s,
                             "total_s": extract_s + fit_s, "cached_s": cached_s, "n_train": len(train_f),
                             "dim": int(train_f.X.shape[1])})
    return pd.DataFrame(rows)
