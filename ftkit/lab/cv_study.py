"""What cross-validation does and does not do, measured.

Cross-validation *estimates* how well a training recipe generalises and
*chooses settings* (an LR); it does not make the network generalise: the
model you deploy is trained the same way whether or not you cross-validated.
The studies here make each part measurable on a small labelled pool:

* :func:`split_spread` — repeat "hold out one small validation split" and
  "k-fold" with different random splits: how far each estimate lands from
  the deployed model's test accuracy, and how much it moves with the split.
* :func:`lr_by_cv` — choose a learning rate by one split or by k folds,
  many times: how often each picks the LR that is best on the test images,
  and what the pick costs.
* :func:`fold_balance` — stratified vs plain folds: class counts per fold and
  the spread of the estimate.
* :func:`network_folds` — the real network through
  :func:`ftkit.lab.crossval.cross_validate`: the fold-to-fold spread.

The first three train on feature vectors of the pretrained body (extracted
once: a linear probe on frozen features is exactly a classifier on those
vectors), so hundreds of repeats cost seconds on a CPU.

>>> pool, test = pool_features("digits", 10)                  # doctest: +SKIP
>>> split_spread(pool, test, k=5, repeats=20)                 # doctest: +SKIP
"""
from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ftkit.analysis.features import Features, extract_features, fit_feature_classifier
from ftkit.data.catalogue import load_dataset
from ftkit.lab.crossval import cross_validate, kfold_indices
from ftkit.lab.runs import run_one
from ftkit.lab.specs import DataSpec, RunSpec, Strategy
from ftkit.models.zoo import load_backbone

__all__ = ["Pool", "pool_features", "single_split", "split_spread", "lr_by_cv", "fold_balance", "network_folds",
           "spread_summary"]


@dataclass
class Pool:
    """Labelled feature vectors: ``X`` (N, D), ``y`` (N,)."""

    X: np.ndarray
    y: np.ndarray

    @property
    def targets(self) -> np.ndarray:  # what kfold_indices stratifies on
        return self.y

    def __len__(self) -> int:
        return len(self.y)


def pool_features(data: str, n_per_class: int, *, test_n_per_class: int | None = None,
                  backbone: str = "mobilenet_v2", image_size: int = 64, subset_seed: int = 0,
                  device: str = "cpu") -> tuple[Pool, Pool]:
    """``(pool, test)``: pretrained-body feature vectors of ``n_per_class`` training images per class
    (the labelled data you have) and of the test split (the truth you never see in practice)."""
    bb = load_backbone(backbone)
    kw = dict(image_size=image_size, mean=bb.mean, std=bb.std, seed=subset_seed)
    train = load_dataset(data, "train", n_per_class=n_per_class, **kw)
    test = load_dataset(data, "test", n_per_class=test_n_per_class, **kw)
    f_train: Features = extract_features(bb.model, train, device=device)
    f_test: Features = extract_features(bb.model, test, device=device)
    return Pool(f_train.X, f_train.y), Pool(f_test.X, f_test.y)


def _fit_score(pool: Pool, train_idx, val: Pool | tuple, kind: str, settings: dict) -> float:
    clf = fit_feature_classifier((pool.X[train_idx], pool.y[train_idx]), kind, **settings)
    X, y = (val.X, val.y) if isinstance(val, Pool) else val
    return float(clf.score(X, y))


def single_split(pool: Pool, val_frac: float, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, val indices): ``val_frac`` of every class held out (at least one image), chosen by ``seed``."""
    if not 0.0 < val_frac < 1.0:
        raise ValueError(f"val_frac must be in (0, 1), not {val_frac!r}")
    rng = np.random.default_rng(seed)
    tr, va = [], []
    for c in np.unique(pool.y):
        idx = rng.permutation(np.flatnonzero(pool.y == c))
        n_val = max(1, int(round(val_frac * len(idx))))
        if n_val >= len(idx):
            raise ValueError(f"class {c} has {len(idx)} images: too few to hold out {val_frac:.0%} "
                             "and train on the rest")
        va += idx[:n_val].tolist()
        tr += idx[n_val:].tolist()
    return np.sort(tr), np.sort(va)


def _check(pool: Pool, k: int, repeats: int) -> None:
    if not isinstance(pool, Pool):
        raise TypeError(f"pool must be a Pool (see pool_features), not {type(pool).__name__}")
    counts = np.bincount(pool.y)
    if not isinstance(k, int) or k < 2 or k > counts[counts > 0].min():
        raise ValueError(f"k must be an int from 2 to the smallest class size ({counts[counts > 0].min()}), not {k!r}")
    if not isinstance(repeats, int) or repeats < 2:
        raise ValueError(f"repeats must be an int >= 2 (a spread needs several splits), not {repeats!r}")


def split_spread(pool: Pool, test: Pool, *, k: int = 5, val_frac: float = 0.2, repeats: int = 20,
                 kind: str = "logistic", settings: dict[str, Any] | None = None) -> pd.DataFrame:
    """Estimate accuracy ``repeats`` times by one held-out split and by k-fold, each time with other random splits.

    Returns:
        One row per (method, repeat): method ("single split" or "k-fold"),
        repeat, estimate, n_val (images the estimate is computed on), and
        deployed_acc: the test accuracy of the model trained on the whole
        pool (what you deploy; the same number in every row: the estimates
        try to predict it).
    """
    _check(pool, k, repeats)
    settings = settings or {}
    everything = np.arange(len(pool))
    deployed = _fit_score(pool, everything, test, kind, settings)
    rows = []
    for r in range(repeats):
        tr, va = single_split(pool, val_frac, seed=r)
        rows.append({"method": "single split", "repeat": r, "estimate": _fit_score(pool, tr, (pool.X[va], pool.y[va]),
                                                                                  kind, settings), "n_val": len(va)})
        folds = kfold_indices(pool, k, seed=r, stratified=True)
        accs = [_fit_score(pool, tr, (pool.X[va], pool.y[va]), kind, settings) for tr, va in folds]
        sizes = [len(va) for _, va in folds]
        rows.append({"method": "k-fold", "repeat": r, "estimate": float(np.average(accs, weights=sizes)),
                     "n_val": len(pool)})
    out = pd.DataFrame(rows)
    out["deployed_acc"] = deployed
    out["error"] = out["estimate"] - deployed
    return out


def spread_summary(table: pd.DataFrame, by: str = "method") -> pd.DataFrame:
    """Per method: mean estimate, spread (std over repeats), mean |error| and the worst |error|."""
    g = table.assign(abs_error=table["error"].abs()).groupby(by, sort=False)
    return pd.DataFrame({"estimate_mean": g["estimate"].mean(), "spread": g["estimate"].std(ddof=1),
                         "mean_abs_error": g["abs_error"].mean(), "worst_abs_error": g["abs_error"].max(),
                         "repeats": g["estimate"].count()}).reset_index()


def lr_by_cv(pool: Pool, test: Pool, lrs: Sequence[float], *, k: int = 5, val_frac: float = 0.2, repeats: int = 10,
             epochs: int = 50) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Choose the LR of a linear head (Adam, ``epochs`` full-batch steps) by one split or by k folds, ``repeats`` times.

    Returns:
        ``(picks, test_by_lr)``: ``picks`` has one row per (method, repeat):
        the chosen lr, its test accuracy when trained on the whole pool, the
        best test accuracy over the grid, and ``regret`` (best minus chosen);
        ``test_by_lr`` has the test accuracy of each LR trained on the whole pool.
    """
    _check(pool, k, repeats)
    lrs = sorted(float(lr) for lr in lrs)
    if len(lrs) < 2 or any(not lr > 0 for lr in lrs):
        raise ValueError(f"lrs must hold at least two positive learning rates, got {lrs}")
    everything = np.arange(len(pool))
    test_acc = {lr: _fit_score(pool, everything, test, "linear", {"lr": lr, "epochs": epochs}) for lr in lrs}
    best = max(test_acc.values())
    rows = []
    for r in range(repeats):
        tr, va = single_split(pool, val_frac, seed=r)
        folds = kfold_indices(pool, k, seed=r, stratified=True)
        single = {lr: _fit_score(pool, tr, (pool.X[va], pool.y[va]), "linear", {"lr": lr, "epochs": epochs})
                  for lr in lrs}
        kfold = {lr: np.mean([_fit_score(pool, t, (pool.X[v], pool.y[v]), "linear", {"lr": lr, "epochs": epochs})
                              for t, v in folds]) for lr in lrs}
        for method, scores in (("single split", single), ("k-fold", kfold)):
            lr = max(lrs, key=lambda x: (scores[x], -x))  # ties: the smaller LR, as ftkit.lab.lr_rule does
            rows.append({"method": method, "repeat": r, "lr": lr, "test_acc": test_acc[lr], "best_test_acc": best,
                         "regret": best - test_acc[lr]})
    return pd.DataFrame(rows), pd.DataFrame({"lr": lrs, "test_acc": [test_acc[lr] for lr in lrs]})


def fold_balance(pool: Pool, *, k: int = 5, repeats: int = 20, kind: str = "logistic",
                 settings: dict[str, Any] | None = None) -> pd.DataFrame:
    """Stratified vs plain k-fold, ``repeats`` times: the k-fold estimate and how unbalanced the folds were.

    Returns:
        One row per (folds, repeat): folds ("stratified" or "plain"),
        estimate, worst_class_gap (over folds and classes: the largest
        difference between a class's share of a validation fold and its share
        of the pool, in percentage points) and missing_classes (validation
        folds in which some class has no image at all, summed over folds).
    """
    _check(pool, k, repeats)
    settings = settings or {}
    classes = np.unique(pool.y)
    share = np.array([(pool.y == c).mean() for c in classes])
    rows = []
    for stratified in (True, False):
        for r in range(repeats):
            folds = kfold_indices(pool, k, seed=r, stratified=stratified)
            accs, gaps, missing = [], [], 0
            for tr, va in folds:
                fold_share = np.array([(pool.y[va] == c).mean() for c in classes])
                gaps.append(100 * np.abs(fold_share - share).max())
                missing += int((fold_share == 0).any())
                accs.append(_fit_score(pool, tr, (pool.X[va], pool.y[va]), kind, settings))
            sizes = [len(va) for _, va in folds]
            rows.append({"folds": "stratified" if stratified else "plain", "repeat": r,
                         "estimate": float(np.average(accs, weights=sizes)), "worst_class_gap": float(max(gaps)),
                         "missing_classes": missing})
    return pd.DataFrame(rows)


def network_folds(strategy: Strategy, data: DataSpec, *, k: int = 3, seed: int = 0,
                  executor: Executor | None = None) -> tuple[pd.DataFrame, float]:
    """Cross-validate a real network (``strategy`` on ``data``'s training images) and train it once on all of them.

    Each fold is a run spec (``DataSpec.fold``) run by :func:`ftkit.lab.crossval.cross_validate`;
    the deployed model is the same strategy run on every training image and
    scored on ``data``'s validation split (the test images).

    Returns:
        ``(folds, deployed_acc)``: the fold table (one row per fold: fold,
        n_train, n_val, val_loss, val_acc, time_s) and the deployed model's test accuracy.
    """
    if data.holdout_frac or data.fold is not None:
        raise ValueError("network_folds splits the training images itself: give a DataSpec without holdout_frac "
                         "or fold")
    cv = cross_validate(strategy, data, k, seed=seed, executor=executor, progress=False)
    deployed = run_one(RunSpec(strategy, data, seed)).final_acc
    return cv.folds, float(deployed)
