"""How many layer groups to freeze, the BatchNorm pitfall, and discriminative LRs — measured.

Three studies of the course's freezing advice ("little data: train only the
last layer; medium data: freeze the first few layers too"), each a set of
strategies that differ in one thing only, run fairly by
:func:`ftkit.lab.fair.fair_sweep` (every strategy's LR by the written rule,
same seeds, same batches, same step budget):

* :func:`freeze_depth_grid` — accuracy vs k, the number of frozen groups
  (0 = fine-tune everything ... all but the head = a linear probe), on several
  data sets and sizes.
* :func:`bn_pitfall` — the same frozen layers with their BatchNorm statistics
  pinned (``bn="frozen"``) or still moving with the target data (``bn="train"``).
* :func:`discriminative_vs_single` — one LR for every group vs a
  discriminative policy (lower groups slower), same budget.

>>> train = TrainSpec(epochs=3, batch_size=32)
>>> [s.name for s in freeze_ladder([0, 4], train)]
['freeze_0', 'freeze_4']
"""
from __future__ import annotations

import dataclasses
from concurrent.futures import Executor
from typing import Sequence

import pandas as pd

from ftkit.lab.fair import Study, fair_sweep
from ftkit.lab.specs import DataSpec, LRGroups, ModelSpec, Strategy
from ftkit.models.groups import layer_groups
from ftkit.models.zoo import load_backbone
from ftkit.training.spec import TrainSpec

__all__ = ["group_names", "freeze_ladder", "freeze_depth_grid", "bn_pitfall", "discriminative_vs_single",
           "freeze_verdicts", "within_error", "ULMFIT_DECAY", "ULMFIT"]

ULMFIT_DECAY = 2.6  # Howard & Ruder 2018: each lower group at 1/2.6 of the LR above
ULMFIT = LRGroups(decay=ULMFIT_DECAY)


def group_names(backbone: str = "mobilenet_v2") -> list[str]:
    """The backbone's layer groups, input side first, the new head last (what ``freeze(k=)`` counts)."""
    return [g.name for g in layer_groups(load_backbone(backbone, pretrained=False).model)]


def _check_ks(ks: Sequence[int], backbone: str) -> list[int]:
    names = group_names(backbone)
    top = len(names) - 1  # freezing every group but the head
    ks = list(ks)
    bad = [k for k in ks if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= top]
    if not ks or bad:
        raise ValueError(f"ks must be ints from 0 (fine-tune everything) to {top} (all but the head) for "
                         f"{backbone}'s groups {names}; got {ks}")
    if len(set(ks)) != len(ks):
        raise ValueError(f"ks has duplicates: {ks}")
    return ks


def freeze_ladder(ks: Sequence[int], train: TrainSpec, *, backbone: str = "mobilenet_v2",
                  bn: str = "frozen") -> list[Strategy]:
    """One pretrained strategy per k: the first k groups frozen (``freeze_0`` trains everything)."""
    ks = _check_ks(ks, backbone)
    out = []
    for k in ks:
        model = ModelSpec(backbone=backbone, freeze=k if k else None, bn=bn)
        out.append(Strategy(f"freeze_{k}", model, train, description=f"ImageNet init, first {k} groups frozen"))
    return out


def _with_k(study: Study) -> Study:
    for table in (study.runs, study.lr_table):
        table["k"] = [int(s.split("_")[1]) if s.startswith("freeze_") else -1 for s in table["strategy"]]
    return study


def freeze_depth_grid(datas: Sequence[DataSpec], ks: Sequence[int], *, train: TrainSpec,
                      lr_grid: Sequence[float], seeds: Sequence[int] = (0, 1, 2), lr_seeds: Sequence[int] = (0,),
                      backbone: str = "mobilenet_v2", include_scratch: bool = True,
                      executor: Executor | None = None, out=None, resume: bool = False,
                      progress: bool = False) -> Study:
    """Accuracy vs the number of frozen groups k on every data spec (a data set at one size).

    Args:
        datas: e.g. ``[DataSpec("photo_crops", n_per_class=n), DataSpec("digits", n_per_class=n)]`` for two n.
        ks: the depths (0 .. ``len(group_names(backbone)) - 1``).
        train: the one budget every strategy trains with (its ``lr`` is replaced by the rule's choice).
        lr_grid, seeds, lr_seeds: see :func:`ftkit.lab.fair.fair_sweep`.
        include_scratch: add random-init training of everything (k = -1 in the table) as the reference.

    Returns:
        A :class:`~ftkit.lab.fair.Study` whose tables have a ``k`` column (-1: scratch).
    """
    strategies = freeze_ladder(ks, train, backbone=backbone)
    if include_scratch:
        strategies.append(Strategy("scratch", ModelSpec(backbone=backbone, weights=None), train,
                                   description="random init, train everything"))
    study = fair_sweep(strategies, datas, seeds=seeds, lr_grid=lr_grid, lr_seeds=lr_seeds, executor=executor,
                       out=out, resume=resume, progress=progress)
    return _with_k(study)


def bn_pitfall(data: DataSpec, k: int, *, train: TrainSpec, lr_grid: Sequence[float],
               seeds: Sequence[int] = (0, 1, 2), lr_seeds: Sequence[int] = (0,), backbone: str = "mobilenet_v2",
               executor: Executor | None = None, out=None, resume: bool = False, progress: bool = False) -> Study:
    """The first ``k`` groups frozen two ways: BatchNorm pinned (``bn_frozen``) or still updating (``bn_train``).

    With ``bn="train"`` the frozen layers' weights stay put but their running
    statistics follow the target data's batches (and precise BN, when the
    budget asks for it, recomputes them too): the "frozen" features change.
    """
    k = _check_ks([k], backbone)[0]
    if k == 0:
        raise ValueError("bn_pitfall needs k >= 1 frozen groups: with k=0 nothing is frozen and the two policies agree")
    strategies = [
        Strategy("bn_frozen", ModelSpec(backbone=backbone, freeze=k, bn="frozen"), train,
                 description=f"first {k} groups frozen, their BatchNorm statistics pinned"),
        Strategy("bn_train", ModelSpec(backbone=backbone, freeze=k, bn="train"), train,
                 description=f"first {k} groups frozen, their BatchNorm statistics still moving"),
    ]
    return fair_sweep(strategies, [data], seeds=seeds, lr_grid=lr_grid, lr_seeds=lr_seeds, executor=executor,
                      out=out, resume=resume, progress=progress)


def discriminative_vs_single(data: DataSpec, *, train: TrainSpec, lr_grid: Sequence[float],
                             groups: LRGroups = ULMFIT, seeds: Sequence[int] = (0, 1, 2),
                             lr_seeds: Sequence[int] = (0,), backbone: str = "mobilenet_v2",
                             executor: Executor | None = None, out=None, resume: bool = False,
                             progress: bool = False) -> Study:
    """Full fine-tuning with one LR (``one_lr``) vs discriminative LRs (``discriminative``), same budget.

    Both get their (head) LR from the same grid by the same rule; the
    discriminative one spreads it down the groups with ``groups``.
    """
    if not isinstance(groups, LRGroups):
        raise TypeError(f"groups must be an LRGroups (e.g. LRGroups(decay=2.6)), not {type(groups).__name__}")
    model = ModelSpec(backbone=backbone)
    strategies = [
        Strategy("one_lr", model, train, description="ImageNet init, every group at one LR"),
        Strategy("discriminative", dataclasses.replace(model), train, groups=groups,
                 description=f"ImageNet init, lower groups at smaller LRs ({groups})"),
    ]
    return fair_sweep(strategies, [data], seeds=seeds, lr_grid=lr_grid, lr_seeds=lr_seeds, executor=executor,
                      out=out, resume=resume, progress=progress)


def within_error(best_mean: float, best_std: float, other_mean: float, other_std: float) -> bool:
    """True when ``other`` is no further below ``best`` than their combined standard deviation."""
    return bool(best_mean - other_mean <= (best_std ** 2 + other_std ** 2) ** 0.5)


def freeze_verdicts(summary: pd.DataFrame, top: int) -> pd.DataFrame:
    """The course's freezing advice checked cell by cell against a freeze-depth grid.

    The advice (MISSION claim 8): with little data train only the last layer
    (k = ``top``, all but the head); with more data freeze the first few
    groups and train the rest (read generously: the best k in 1 .. top // 2).
    The smallest size of each data set is "little", every other size "more".
    A cell *agrees* when the advised choice is within the combined standard
    deviation of the best k.

    Args:
        summary: ``ftkit.lab.fair.summarise(study.runs, ["data", "n_per_class", "k"])`` (k = -1: scratch).
        top: the k that freezes all but the head.

    Returns:
        One row per (data, n_per_class): best_k, best_mean, advised ("head only"
        or "first few frozen"), advised_k, advised_mean, finetune_mean (k=0),
        head_only_mean (k=top), scratch_mean (NaN without scratch), agrees.
    """
    need = {"data", "n_per_class", "k", "mean", "std"}
    if not need <= set(summary.columns):
        raise KeyError(f"summary needs columns {sorted(need)}; it has {list(summary.columns)}")
    rows = []
    for data, per_data in summary.groupby("data", sort=False):
        little = per_data["n_per_class"].min()
        for n, cell in per_data.groupby("n_per_class", sort=False):
            body = cell[cell["k"] >= 0].set_index("k")
            best_k = int(body["mean"].idxmax())
            if n == little:
                advised, advised_k = "head only", top
            else:
                few = body[(body.index >= 1) & (body.index <= top // 2)]
                if few.empty:
                    raise ValueError(f"no k between 1 and {top // 2} in the grid for {data}, {n}/class: add one")
                advised, advised_k = "first few frozen", int(few["mean"].idxmax())
            if advised_k not in body.index:
                raise ValueError(f"the grid for {data}, {n}/class has no k={advised_k} (all but the head): add it")
            scratch = cell.loc[cell["k"] < 0, "mean"]
            rows.append({"data": data, "n_per_class": n, "best_k": best_k, "best_mean": body.loc[best_k, "mean"],
                         "advised": advised, "advised_k": advised_k, "advised_mean": body.loc[advised_k, "mean"],
                         "finetune_mean": body.loc[0, "mean"] if 0 in body.index else float("nan"),
                         "head_only_mean": body.loc[top, "mean"] if top in body.index else float("nan"),
                         "scratch_mean": float(scratch.iloc[0]) if len(scratch) else float("nan"),
                         "agrees": within_error(body.loc[best_k, "mean"], body.loc[best_k, "std"],
                                                body.loc[advised_k, "mean"], body.loc[advised_k, "std"])})
    return pd.DataFrame(rows)
