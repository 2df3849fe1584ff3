"""The transfer lab: three published findings about which layers to transfer, at laptop scale.

* :func:`yosinski` -- Yosinski et al. 2014, "How transferable are features in
  deep neural networks?": copy the first ``n`` conv groups of a network trained
  on task A (Fashion-MNIST classes 0-4) into a network for task B (classes
  5-9), re-initialise the rest, and train it on B with the copied groups
  frozen (AnB) or fine-tuned (AnB+); BnB copies from a network trained on B
  itself (the co-adaptation control); baseB trains on B from scratch.
* :func:`lp_ft` -- Kumar et al. 2022, "Fine-tuning can distort pretrained
  features": linear probe (LP), full fine-tuning (FT) and LP then FT (LP-FT)
  from network A to task B, scored on B's test images (in distribution, ID)
  and on corrupted copies of them (out of distribution, OOD).
* :func:`surgical` -- Lee et al. 2022, "Surgical fine-tuning": a source
  network meets a shifted target (input level: corrupted images; feature
  level: the same coarse classes made of other sub-classes; output level:
  permuted labels) and only one group learns; accuracy relative to tuning all.

Every run is a :class:`TransferRun` (a frozen, picklable description) that
:func:`run_transfer` turns into a result row, so sweeps go through any
``concurrent.futures.Executor``. Fairness, the same for every strategy:

* the same target images, the same batches (seeded by the run's seed), the
  same number of optimizer steps (LP-FT splits its budget: half probing, half
  fine-tuning), Adam with a cosine decay, scored on the same test images;
* the head learns at ``Setting.head_mult`` (10) times the LR, in every strategy;
* **the LR rule** (:func:`choose_lrs`): each strategy gets the value of
  ``Setting.lr_grid`` with the best validation accuracy -- images held out from
  the target's *training* images, first seed only; test images never choose.
  With a one-value grid (the fast settings) every strategy simply gets it;
* frozen groups are frozen completely: no gradients, BatchNorm in eval mode.
  Their activations are computed once and cached (exactly the same training,
  much less compute).

Seed ``s`` uses source network ``A{s % 2}`` (or B, C), the target images
chosen by ``s``, initialisation ``s`` and batch order ``s``.
"""
from __future__ import annotations

import time
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from ftkit.core.state import seeded
from ftkit.core.torchutil import release_freed_memory
from ftkit.data.shifts import (
    CORRUPTIONS,
    TensorTask,
    corrupt,
    shift_level,
)
from ftkit.lab.tensor_fit import accuracy, fit_tensors
from ftkit.lab.transfer_data import target_data
from ftkit.models.smallcnn import BLOCK_NAMES, SmallCNN, load_source_net

__all__ = [
    "FAST", "FULL", "GROUPS", "LabResult", "Setting", "TransferRun", "choose_lrs", "lp_ft",
    "lp_ft_runs", "run_transfer", "surgical", "surgical_runs", "surgical_table", "target_data", "yosinski",
    "yosinski_runs",
]

GROUPS = (*BLOCK_NAMES, "head")            # the network's layer groups, input to output


@dataclass(frozen=True)
class Setting:
    """How big a reproduction is. ``FAST`` runs in CI; ``FULL`` is for a learner."""

    n_per_class: int = 100          # target training images per class
    val_per_class: int = 30         # held out from the training images: only the LR rule sees them
    test_per_class: int = 300       # test images per class (official test split)
    steps: int = 100                # optimizer steps per run, every strategy
    batch_size: int = 64
    seeds: tuple[int, ...] = (0, 1)
    lr_grid: tuple[float, ...] = (3e-3,)
    head_mult: float = 10.0         # the head learns at head_mult x the LR, in every strategy
    severity: float = 0.5           # of the corruptions (ftkit.data.shifts)

    def __post_init__(self) -> None:
        for name in ("n_per_class", "val_per_class", "test_per_class", "steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Setting.{name} must be a positive int, got {value!r}")
        if not self.seeds or not self.lr_grid or any(lr <= 0 for lr in self.lr_grid):
            raise ValueError(f"Setting needs seeds and a grid of positive LRs, got "
                             f"seeds={self.seeds!r}, lr_grid={self.lr_grid!r}")


FAST = Setting()
FULL = Setting(n_per_class=300, val_per_class=60, test_per_class=500, steps=300,
               seeds=(0, 1, 2), lr_grid=(1e-3, 3e-3, 1e-2))


@dataclass(frozen=True)
class TransferRun:
    """One training run of the lab, fully described (picklable; :func:`run_transfer` runs it).

    Attributes:
        strategy: its name in tables ("AnB", "LP-FT", "block2", ...).
        target: "B" (task B), or a shift name of ``ftkit.data.shifts.SHIFTS``
            (surgical: the shifted version of the source's own task).
        source: "A", "B", "C" (shipped networks, seed ``s`` uses ``A{s % 2}``) or None.
        copy: how many conv groups (``BLOCK_NAMES``, input first) come from the source.
        keep_head: also copy the source's head (same label space: surgical).
        train: the groups that learn; None: all of them; () : none (just evaluate).
        probe_steps: LP-FT: first train only the head for this many of the steps.
        n: the x-axis value of the reproduction (Yosinski's n; else ``copy``).
        split: "test" scores on test images; "val" on held-out training images (the LR rule).
        ood: corruptions of the test images to score as well (LP-FT).
    """

    strategy: str
    target: str
    source: str | None
    copy: int
    setting: Setting = FAST
    lr: float = 3e-3
    seed: int = 0
    keep_head: bool = False
    train: tuple[str, ...] | None = None
    probe_steps: int = 0
    n: int | None = None
    split: str = "test"
    ood: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not 0 <= self.copy <= len(BLOCK_NAMES) or (self.copy and self.source is None):
            raise ValueError(f"copy must be 0..{len(BLOCK_NAMES)} (0 without a source), got "
                             f"copy={self.copy!r}, source={self.source!r}")
        if self.train is not None and set(self.train) - set(GROUPS):
            raise ValueError(f"train names groups of {GROUPS}, got {self.train!r}")
        if self.split not in ("test", "val"):
            raise ValueError(f"split must be 'test' or 'val', got {self.split!r}")
        if not 0 <= self.probe_steps < self.setting.steps:
            raise ValueError(f"probe_steps must be in [0, steps={self.setting.steps}), "
                             f"got {self.probe_steps}")
        if self.target != "B":
            shift_level(self.target)             # raises on an unknown name

    @property
    def key(self) -> tuple:
        """What makes it a strategy (everything but seed, LR and split)."""
        return (self.strategy, self.target, self.n if self.n is not None else self.copy)


# ---------------------------------------------------------------- one run

def _build(run: TransferRun, num_classes: int) -> SmallCNN:
    with seeded(run.seed):
        model = SmallCNN(num_classes)
    if run.source is not None:
        src = load_source_net(f"{run.source}{run.seed % 2}").model
        names = [*BLOCK_NAMES[:run.copy], *(["head"] if run.keep_head else [])]
        if run.keep_head and src.head.out_features != num_classes:
            raise ValueError(f"keep_head: source {run.source} has {src.head.out_features} classes, "
                             f"target {run.target!r} has {num_classes}")
        for name in names:
            getattr(model, name).load_state_dict(getattr(src, name).state_dict())
    return model.eval()


def _frozen_prefix(train: Sequence[str] | None) -> int:
    """How many leading conv groups do not learn (their activations can be cached)."""
    if train is None:
        return 0
    k = 0
    while k < len(BLOCK_NAMES) and BLOCK_NAMES[k] not in train:
        k += 1
    return k


@torch.no_grad()
def _cached(model: SmallCNN, task: TensorTask, k: int, chunk: int = 256) -> TensorTask:
    """The task's images after the ``k`` frozen groups, computed ``chunk`` images at a time: all at once,
    every intermediate of the first group (convolution, BatchNorm, ReLU) is a whole-task tensor, 90 MB
    each for 3,600 images of 8 x 28 x 28 floats (by size; lesson 09's peak is elsewhere, notes/h13_memory.md)."""
    if not k:
        return task
    model.eval()
    X = torch.cat([model.prefix(k, task.X[i:i + chunk]) for i in range(0, len(task), chunk)])
    return replace(task, X=X)


def _fit(model: SmallCNN, task: TensorTask, run: TransferRun, steps: int,
         train: tuple[str, ...] | None) -> list[float]:
    k = _frozen_prefix(train)
    return fit_tensors(model, _cached(model, task, k), lr=run.lr, steps=steps, seed=run.seed,
                       batch_size=run.setting.batch_size, train=train, start=k,
                       head_mult=run.setting.head_mult)


def run_transfer(run: TransferRun) -> dict:
    """Build, train and score one :class:`TransferRun`; returns one result row (a dict).

    Row: the run's description (strategy, target, source, n, seed, lr, steps,
    split) and ``acc`` (on ``split``), plus ``acc_<corruption>`` for each of
    ``run.ood``, ``final_loss`` and ``time_s``.
    """
    t0 = time.perf_counter()
    train, val, test = target_data(run.target, run.setting, run.seed)
    model = _build(run, train.num_classes)
    losses: list[float] = []
    if run.train != ():
        steps = run.setting.steps
        if run.probe_steps:
            losses += _fit(model, train, run, run.probe_steps, ("head",))
            steps -= run.probe_steps
        losses += _fit(model, train, run, steps, run.train)
    scored = val if run.split == "val" else test
    row = dict(strategy=run.strategy, target=run.target, source=run.source,
               n=run.n if run.n is not None else run.copy, seed=run.seed, lr=run.lr,
               steps=len(losses), split=run.split, acc=accuracy(model, scored))
    for c in run.ood if run.split == "test" else ():
        shifted = replace(test, X=corrupt(test.X, c, run.setting.severity, seed=2000))
        row[f"acc_{c}"] = accuracy(model, shifted)
    row["final_loss"] = float(np.mean(losses[-10:])) if losses else float("nan")
    row["time_s"] = time.perf_counter() - t0
    release_freed_memory()          # a sweep runs hundreds of these: keep the freed tensors from piling up
    return row


def _map(fn: Callable, items: Sequence, executor: Executor | None) -> list:
    """``fn`` over ``items`` in order, here or on ``executor`` (the contract of ``ftkit.lab.sweep``).

    ``sweep`` itself maps ``run_one`` over ``RunSpec``s, whose data are catalogue
    data sets; the lab's runs are task halves and shifted tensors, so they keep
    its executor contract (any process executor; several threads refused) here.
    """
    if isinstance(executor, ThreadPoolExecutor) and executor._max_workers > 1:
        raise ValueError("a ThreadPoolExecutor with several threads shares torch's random number "
                         "generator between runs: use a ProcessPoolExecutor or executor=None")
    return list(executor.map(fn, items)) if executor is not None else [fn(i) for i in items]


# ---------------------------------------------------------------- the LR rule

def choose_lrs(templates: Sequence[TransferRun], setting: Setting, *,
               executor: Executor | None = None) -> tuple[dict[tuple, float], pd.DataFrame]:
    """The written LR rule: each strategy's best ``setting.lr_grid`` value by validation accuracy.

    Every strategy (``TransferRun.key``) is trained once per grid value with the
    first seed and scored on images held out from the training images; ties go
    to the smaller LR. Returns ``{key: lr}`` and the full table (one row per
    strategy and LR, ``chosen`` marked). A one-value grid chooses without training,
    and so do strategies in which nothing learns (``train=()``).
    """
    keys = list(dict.fromkeys(t.key for t in templates))
    grid = sorted(setting.lr_grid)
    if len(grid) == 1:
        table = pd.DataFrame([dict(strategy=k[0], target=k[1], n=k[2], lr=grid[0], val_acc=np.nan,
                                   chosen=True) for k in keys])
        return {k: grid[0] for k in keys}, table
    first = {}
    for t in templates:
        first.setdefault(t.key, t)
    still = [k for k in keys if first[k].train == ()]          # nothing learns: no LR to choose
    keys = [k for k in keys if k not in still]
    runs = [replace(first[k], lr=lr, seed=setting.seeds[0], split="val", ood=())
            for k in keys for lr in grid]
    rows = _map(run_transfer, runs, executor)
    table = pd.DataFrame([dict(strategy=r["strategy"], target=r["target"], n=r["n"], lr=r["lr"],
                               val_acc=r["acc"]) for r in rows]
                         + [dict(strategy=k[0], target=k[1], n=k[2], lr=grid[0], val_acc=np.nan)
                            for k in still])
    table["key"] = [k for k in keys for _ in grid] + still
    ranked = table.sort_values(["val_acc", "lr"], ascending=[False, True], kind="stable")
    best = {k: float(lr) for k, lr in ranked.groupby("key", sort=False)["lr"].first().items()}
    table["chosen"] = [best[k] == lr for k, lr in zip(table.key, table.lr)]
    return best, table.drop(columns="key")


# ---------------------------------------------------------------- result

@dataclass
class LabResult:
    """A reproduction's runs (one row per run), the LR table, and what it cost."""

    name: str
    runs: pd.DataFrame
    lrs: pd.DataFrame
    setting: Setting
    time_s: float

    def summary(self, value: str = "acc") -> pd.DataFrame:
        """Mean, standard deviation, standard error and count of ``value`` per strategy and n."""
        g = self.runs.groupby(["target", "strategy", "n"], sort=False)[value]
        out = g.agg(["mean", "std", "count"]).reset_index()
        out["sem"] = out["std"] / np.sqrt(out["count"])
        return out

    def to_dict(self) -> dict:
        return dict(name=self.name, setting=asdict(self.setting), time_s=self.time_s,
                    runs=self.runs.to_dict("records"), lrs=self.lrs.to_dict("records"))


def _execute(name: str, templates: list[TransferRun], setting: Setting,
             executor: Executor | None) -> LabResult:
    t0 = time.perf_counter()
    lrs, table = choose_lrs(templates, setting, executor=executor)
    runs = [replace(t, lr=lrs[t.key], seed=s) for t in templates for s in setting.seeds]
    rows = _map(run_transfer, runs, executor)
    return LabResult(name, pd.DataFrame(rows), table, setting, time.perf_counter() - t0)


# ---------------------------------------------------------------- 1. Yosinski et al. 2014

def yosinski_runs(setting: Setting = FAST, ns: Iterable[int] = (1, 2, 3, 4),
                  conditions: Sequence[str] = ("AnB", "BnB", "AnB+")) -> list[TransferRun]:
    """baseB (n = 0) and, for every n, each condition of ``("AnB", "BnB", "AnB+", "BnB+")``."""
    known = ("AnB", "BnB", "AnB+", "BnB+")
    if set(conditions) - set(known):
        raise ValueError(f"conditions must be among {known}, got {tuple(conditions)}")
    ns = tuple(ns)
    if not ns or any(not 1 <= n <= len(BLOCK_NAMES) for n in ns):
        raise ValueError(f"n must be in 1..{len(BLOCK_NAMES)} (conv groups copied), got {ns}")
    runs = [TransferRun("baseB", "B", None, 0, setting, n=0)]
    for n in ns:
        upper = (*BLOCK_NAMES[n:], "head")
        for c in conditions:
            runs.append(TransferRun(c, "B", c[0], n, setting, n=n,
                                    train=None if c.endswith("+") else upper))
    return runs


def yosinski(setting: Setting = FAST, *, ns: Iterable[int] = (1, 2, 3, 4),
             conditions: Sequence[str] = ("AnB", "BnB", "AnB+"),
             executor: Executor | None = None) -> LabResult:
    """Yosinski et al.'s transfer curves: test accuracy on task B per condition and n."""
    return _execute("yosinski", yosinski_runs(setting, ns, conditions), setting, executor)


# ---------------------------------------------------------------- 2. LP-FT (Kumar et al. 2022)

def lp_ft_runs(setting: Setting = FAST, ood: Sequence[str] = CORRUPTIONS,
               source: str = "A") -> list[TransferRun]:
    """LP (head only), FT (all, new head) and LP-FT (half the steps head only, then all) -> task B.

    ``source="A"``: features learnt on the other half of the classes (weak for B);
    ``"B"``: features learnt on 40x more images of B itself (good for B, as
    Kumar et al.'s pretrained features are for their targets); the head is new either way.
    """
    if source not in ("A", "B"):
        raise ValueError(f"source must be 'A' or 'B', got {source!r}")
    ood = tuple(ood)
    common = dict(target="B", source=source, copy=len(BLOCK_NAMES), setting=setting, ood=ood)
    return [TransferRun("LP", train=("head",), **common),
            TransferRun("FT", **common),
            TransferRun("LP-FT", probe_steps=setting.steps // 2, **common)]


def lp_ft(setting: Setting = FAST, *, ood: Sequence[str] = CORRUPTIONS, source: str = "A",
          executor: Executor | None = None) -> LabResult:
    """LP, FT and LP-FT scored in distribution (``acc``) and under each corruption (``acc_<c>``).

    ``runs`` gains ``acc_ood``: the mean over the corruptions.
    """
    result = _execute("lp_ft", lp_ft_runs(setting, ood, source), setting, executor)
    result.runs["acc_ood"] = result.runs[[f"acc_{c}" for c in ood]].mean(axis=1)
    return result


# ---------------------------------------------------------------- 3. surgical fine-tuning (Lee et al. 2022)

def surgical_runs(setting: Setting = FAST,
                  shifts: Sequence[str] = ("noise", "subpopulation", "label_permutation"),
                  ) -> list[TransferRun]:
    """Per shift: no tuning, tuning all groups, and tuning each group alone (source head kept)."""
    runs = []
    for shift in shifts:
        source = "C" if shift_level(shift) == "feature" else "A"
        common = dict(target=shift, source=source, copy=len(BLOCK_NAMES), setting=setting,
                      keep_head=True)
        runs.append(TransferRun("none", train=(), n=-1, **common))
        runs.append(TransferRun("all", n=len(GROUPS), **common))
        runs += [TransferRun(g, train=(g,), n=i, **common) for i, g in enumerate(GROUPS)]
    return runs


def surgical(setting: Setting = FAST, *,
             shifts: Sequence[str] = ("noise", "subpopulation", "label_permutation"),
             executor: Executor | None = None) -> LabResult:
    """Surgical fine-tuning: accuracy per shift and tuned group (``n`` = group index;
    -1 = no tuning, ``len(GROUPS)`` = all). See :func:`surgical_table`."""
    return _execute("surgical", surgical_runs(setting, shifts), setting, executor)


def surgical_table(result: LabResult, relative: bool = True) -> pd.DataFrame:
    """Shift x group mean test accuracy, minus tuning all groups when ``relative``.

    Rows: shifts (with their level), columns: "none", the groups input to output, "all".
    """
    mean = result.runs.groupby(["target", "strategy"], sort=False)["acc"].mean().unstack()
    cols = [c for c in ("none", *GROUPS, "all") if c in mean.columns]
    mean = mean[cols]
    if relative:
        mean = mean.sub(mean["all"], axis=0)
    mean.index = [f"{t} ({shift_level(t)})" for t in mean.index]
    return mean
