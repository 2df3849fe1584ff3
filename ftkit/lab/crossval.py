"""k-fold cross-validation of ``ftkit.training.loop.fit``: folds, one row per fold, a typed summary.

Every fold starts from the same initial weights and uses the same data order
seed, so folds differ only in their data. Given a model spec (or a strategy)
and a ``DataSpec``, each fold is a run spec and the folds are mapped over
with ``ftkit.lab.sweep.sweep``: on any executor, recorded, resumable.

>>> cv = cross_validate(ModelSpec(freeze="all_but_head"), DataSpec("animals", n_per_class=30), k=5,
...                     train=TrainSpec(lr=1e-2, epochs=3), executor=ex)    # doctest: +SKIP
>>> cv = cross_validate(lambda: make_net(), data, k=5, train=TrainSpec(lr=1e-2, epochs=3))   # doctest: +SKIP
>>> cv.summary.val_acc_mean, cv.folds                                       # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from concurrent.futures import Executor
from dataclasses import asdict, dataclass
from typing import Any, Callable

import pandas as pd
from torch import nn
from torch.utils.data import Dataset, Subset

from ftkit.core.runtime import seeded
from ftkit.core.torchutil import resolve_device
from ftkit.lab.specs import DataSpec, ModelSpec, RunRecord, RunSpec, Strategy, kfold_indices
from ftkit.lab.sweep import sweep
from ftkit.training.loop import fit
from ftkit.training.spec import TrainSpec

__all__ = ["kfold_indices", "CrossValSummary", "CrossValResult", "fold_summary", "cross_validate",
           "cross_validation_specs"]

FOLD_COLUMNS = ["fold", "n_train", "n_val", "val_loss", "val_acc", "time_s"]


@dataclass(frozen=True)
class CrossValSummary:
    """Mean and sample standard deviation (ddof=1; 0 for one fold) over the folds.

    All NaN when no fold finished.
    """

    n_folds: int
    val_loss_mean: float
    val_loss_std: float
    val_acc_mean: float
    val_acc_std: float

    def to_dict(self) -> dict:
        return asdict(self)


def fold_summary(folds: pd.DataFrame) -> CrossValSummary:
    """:class:`CrossValSummary` of a table with ``val_loss`` and ``val_acc`` columns, one row per fold."""
    def stats(col: str) -> tuple[float, float]:
        if not len(folds):
            return math.nan, math.nan
        std = float(folds[col].std(ddof=1)) if len(folds) > 1 else 0.0
        return float(folds[col].mean()), std

    (loss_m, loss_s), (acc_m, acc_s) = stats("val_loss"), stats("val_acc")
    return CrossValSummary(len(folds), loss_m, loss_s, acc_m, acc_s)


@dataclass(frozen=True)
class CrossValResult:
    """What :func:`cross_validate` measured.

    Attributes:
        folds: one row per finished fold: fold, n_train, n_val, val_loss, val_acc, time_s.
        k: folds asked for.
        seed: the seed of the folds, the initial weights and the data order.
        interrupted: True when Ctrl-C stopped a fold (``folds`` holds those finished before it).
        records: with run specs, each fold's :class:`~ftkit.lab.specs.RunRecord` (curves,
            step losses); empty for a model-building function.
    """

    folds: pd.DataFrame
    k: int
    seed: int
    interrupted: bool = False
    records: tuple[RunRecord, ...] = ()

    @property
    def summary(self) -> CrossValSummary:
        return fold_summary(self.folds)

    @property
    def complete(self) -> bool:
        """Every one of the k folds finished."""
        return not self.interrupted and len(self.folds) == self.k

    def to_dict(self) -> dict:
        """JSON-able: the settings, the summary and the fold rows."""
        return {"k": self.k, "seed": self.seed, "interrupted": self.interrupted,
                "summary": self.summary.to_dict(), "folds": self.folds.to_dict(orient="records")}


def cross_validate(model: Callable[[], nn.Module] | ModelSpec | Strategy, data: Dataset | DataSpec, k: int = 5,
                   *, train: TrainSpec | None = None, seed: int = 0, stratified: bool = True,
                   executor: Executor | None = None, out: str | os.PathLike | None = None, resume: bool = False,
                   progress: bool = True, **fit_kwargs: Any) -> CrossValResult:
    """k-fold cross-validation of ``fit`` on ``data``.

    Every fold starts from the same initial weights (built under ``seed``)
    and uses the same data order (``seed``), so the folds differ only in their data.

    Two forms:

    * ``model`` a :class:`~ftkit.lab.specs.ModelSpec` or :class:`~ftkit.lab.specs.Strategy`
      and ``data`` a :class:`~ftkit.lab.specs.DataSpec`: each fold is a
      :class:`~ftkit.lab.specs.RunSpec` with ``DataSpec.fold=(k, i)`` (folds of
      the training images, stratified, chosen by ``data.subset_seed``), mapped over
      with :func:`ftkit.lab.sweep.sweep` — on ``executor`` (any
      ``concurrent.futures.Executor``, e.g. a Dask cluster), each finished fold
      recorded in ``out``, ``resume`` skipping folds already done.
    * ``model`` a function that builds a model and ``data`` a dataset (with
      ``.targets`` the folds keep the class proportions): the folds run here,
      one after the other; ``seed`` also chooses the folds. The caller's CPU
      and CUDA RNGs are untouched (:func:`ftkit.core.runtime.seeded`).

    Args:
        train: how every fold trains (a Strategy's own ``train`` when None).
            With a model-building function, keyword arguments of :func:`fit`
            may be given instead (``epochs=3, lr=1e-2``), not both.
        k: number of folds.
        progress: a bar per fold's training (in-process form) or one that counts finished folds.

    Returns:
        :class:`CrossValResult`: the fold table and its summary. If Ctrl-C
        stops a fold (in-process form), the finished folds are returned with ``interrupted=True``.
    """
    if "seed" in fit_kwargs:
        raise TypeError("cross_validate() sets fit's seed itself; pass seed= once")
    if train is not None and not isinstance(train, TrainSpec):
        raise TypeError(f"train must be a TrainSpec, not {type(train).__name__}")
    if isinstance(model, (ModelSpec, Strategy)):
        return _cross_validate_specs(model, data, k, train=train, seed=seed, stratified=stratified,
                                     executor=executor, out=out, resume=resume, progress=progress,
                                     fit_kwargs=fit_kwargs)
    if isinstance(data, DataSpec):
        raise TypeError("a DataSpec needs a ModelSpec or Strategy (a picklable description of the model), "
                        "not a function; or pass a dataset (data.load()[0]) with the function")
    if executor is not None or out is not None or resume:
        raise ValueError("executor=, out= and resume= need run specs: pass a ModelSpec or Strategy and a "
                         "DataSpec instead of a function and a dataset (a function cannot be sent to a worker)")
    if train is not None:
        if fit_kwargs:
            raise TypeError(f"give either train=TrainSpec(...) or fit's keyword arguments {sorted(fit_kwargs)}, "
                            "not both")
        fit_kwargs = train.fit_kwargs()
    if not callable(model):
        raise TypeError(f"model must be a ModelSpec, a Strategy or a function that builds a model, "
                        f"not {type(model).__name__}")
    splits = kfold_indices(data, k, seed=seed, stratified=stratified)
    device = resolve_device(fit_kwargs.get("device", "auto"))
    rows, interrupted = [], False
    for fold, (tr, va) in enumerate(splits):
        with seeded(seed, device):
            net = model()
        val = Subset(data, va.tolist())
        t0 = time.perf_counter()
        history = fit(net, Subset(data, tr.tolist()), val, seed=seed, progress=progress, **fit_kwargs)
        if history.interrupted:
            interrupted = True
            break
        last = history.evals[-1]
        rows.append({"fold": fold, "n_train": len(tr), "n_val": len(va), "val_loss": last["val_loss"],
                     "val_acc": last["val_acc"], "time_s": time.perf_counter() - t0})
    return CrossValResult(pd.DataFrame(rows, columns=FOLD_COLUMNS), k=k, seed=seed, interrupted=interrupted)


def cross_validation_specs(model: ModelSpec | Strategy, data: DataSpec, k: int = 5, *,
                           train: TrainSpec | None = None, seed: int = 0) -> list[RunSpec]:
    """The k run specs of a cross-validation: one per fold, same strategy and seed."""
    if not isinstance(data, DataSpec):
        raise TypeError(f"with a {type(model).__name__}, data must be a DataSpec (e.g. DataSpec('animals', "
                        f"n_per_class=30)), not {type(data).__name__}")
    if data.holdout_frac or data.fold is not None:
        raise ValueError("cross_validate() sets DataSpec.fold itself; pass a DataSpec without holdout_frac or fold")
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(f"k must be an int >= 2, not {k!r}")
    if isinstance(model, ModelSpec):
        if train is None:
            raise TypeError("with a ModelSpec, give train=TrainSpec(...) (how every fold trains)")
        strategy = Strategy("cross_validation", model, train)
    else:
        strategy = model if train is None else dataclasses.replace(model, train=train)
    return [RunSpec(strategy, dataclasses.replace(data, fold=(k, i)), seed) for i in range(k)]


def _cross_validate_specs(model, data, k, *, train, seed, stratified, executor, out, resume, progress,
                          fit_kwargs) -> CrossValResult:
    if fit_kwargs:
        raise TypeError(f"with run specs, put fit's settings {sorted(fit_kwargs)} in train=TrainSpec(...)")
    if not stratified:
        raise ValueError("folds of a DataSpec are always stratified by class; pass stratified=True")
    specs = cross_validation_specs(model, data, k, train=train, seed=seed)
    records = sweep(specs, executor=executor, out=out, resume=resume, progress=progress)
    rows = [{"fold": i, "n_train": r.extra.get("n_train"), "n_val": r.extra.get("n_val"), "val_loss": r.final_loss,
             "val_acc": r.final_acc, "time_s": r.time_s} for i, r in enumerate(records)]
    return CrossValResult(pd.DataFrame(rows, columns=FOLD_COLUMNS), k=k, seed=seed, records=tuple(records))
