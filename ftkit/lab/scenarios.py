"""The course's four scenarios, measured: data size x similarity x strategy.

The course's 2x2 table (little/much target data x similar/dissimilar to ImageNet):

=============  ==============================  ==================================
               similar to ImageNet             dissimilar
=============  ==============================  ==================================
little data    retrain the head only           freeze the first k layers, train the rest
much data      fine-tune everything            train from scratch
=============  ==============================  ==================================

:func:`run_scenarios` measures instead of assuming: for every data set and
data size of a :class:`ScenarioConfig` it trains every strategy under one rule
(same seeds, same images, same batches, same step budget, each strategy's LR
from ``ftkit.lab.lr_rule.choose_lrs``, scratch included) through
``ftkit.lab.sweep.sweep``, and computes "feature vectors + classifier" (the
course's transfer mode b: not a fine-tuning run) on the same images.
:class:`ScenarioResult` gives the table, the best strategy per cell with its
margin, and the course's prescription beside it, cell by cell.

>>> result = run_scenarios(ScenarioConfig(datasets=("photo_crops", "digits"), sizes=(5, 20)))  # doctest: +SKIP
>>> result.course_table()                                                                     # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from ftkit.analysis.features import extract_features, fit_feature_classifier
from ftkit.core.torchutil import release_freed_memory
from ftkit.data.catalogue import load_dataset
from ftkit.data.sources import forget_loaded_sources
from ftkit.lab.lr_rule import RULE, choose_lrs
from ftkit.lab.similarity import catalogue_level, measure_similarity
from ftkit.lab.specs import DataSpec, LRGroups, ModelSpec, RunSpec, Strategy
from ftkit.lab.sweep import sweep
from ftkit.models.zoo import load_backbone
from ftkit.training.spec import TrainSpec

__all__ = ["STRATEGY_NAMES", "TRAINED", "COURSE", "ScenarioConfig", "ScenarioResult", "scenario_strategies",
           "cell_steps", "available_sizes", "scored_per_class", "run_scenarios", "features_accuracy", "course_pick"]

TRAINED = ("scratch", "linear_probe", "freeze_k", "finetune", "discriminative")
STRATEGY_NAMES = ("scratch", "features", "linear_probe", "freeze_k", "finetune", "discriminative")

# The course's table: (small data?, similar?) -> the strategies that carry out its advice.
# "Retrain the head only" is done both by a linear probe and by a classifier on feature vectors.
COURSE: dict[tuple[bool, bool], tuple[str, ...]] = {
    (True, True): ("linear_probe", "features"),
    (True, False): ("freeze_k",),
    (False, True): ("finetune",),
    (False, False): ("scratch",),
}
COURSE_WORDS = {(True, True): "retrain the head only", (True, False): "freeze the first k layers, train the rest",
                (False, True): "fine-tune everything", (False, False): "train from scratch"}


def scenario_strategies(names: Sequence[str] = TRAINED, *, backbone: str = "mobilenet_v2", freeze_k: int = 4,
                        decay: float = 2.6, train: TrainSpec | None = None) -> list[Strategy]:
    """The trained strategies of the grid, sharing one ``TrainSpec`` (its LR is replaced by the LR rule).

    Args:
        names: a subset of :data:`TRAINED`.
        backbone: the backbone every pretrained strategy starts from (scratch: its architecture).
        freeze_k: groups frozen by "freeze_k".
        decay: "discriminative": each lower layer group trains at ``1/decay`` of the LR above (ULMFiT's 2.6).
        train: the shared budget (optimizer, batch size, steps...).
    """
    unknown = [n for n in names if n not in TRAINED]
    if unknown:
        raise ValueError(f"unknown trained strategy {unknown}; choose from {TRAINED} "
                         "('features' is not trained by gradient descent: it is computed beside the sweep)")
    train = train or TrainSpec(optimizer="adam", lr=1e-3)
    models = {"scratch": ModelSpec(backbone, weights=None), "linear_probe": ModelSpec(backbone, freeze="all_but_head"),
              "freeze_k": ModelSpec(backbone, freeze=freeze_k), "finetune": ModelSpec(backbone),
              "discriminative": ModelSpec(backbone)}
    words = {"scratch": "random init, train everything", "linear_probe": "ImageNet body frozen, train a new head",
             "freeze_k": f"ImageNet init, first {freeze_k} layer groups frozen, train the rest",
             "finetune": "ImageNet init, train everything at one LR",
             "discriminative": f"ImageNet init, train everything, each lower group at 1/{decay} of the LR above"}
    return [Strategy(n, models[n], train, groups=LRGroups(decay=decay) if n == "discriminative" else None,
                     description=words[n]) for n in names]


@dataclass(frozen=True)
class ScenarioConfig:
    """Everything a scenario grid holds fixed.

    Attributes:
        datasets: catalogue names (or image-folder paths).
        sizes: training images per class; a size a data set does not have is left out (and listed).
        strategies: a subset of :data:`STRATEGY_NAMES`.
        seeds: one run per seed; the seed also picks which images are kept (``subset_seed``).
        backbone, freeze_k, decay: see :func:`scenario_strategies`.
        image_size: side of the square images.
        val_per_class: test images per class every strategy is scored on (a data set whose smallest
            test class has fewer is scored on all of them, and ``skipped`` says so).
        batch_size: the shared batch size.
        epochs: the step budget of a cell is ``epochs`` passes over its training images,
            clipped to ``[min_steps, max_steps]``; every strategy of a cell gets exactly it.
        lr_grid: the LRs the rule tries for every strategy.
        lr_seeds: seeds the rule averages over.
        lr_size: the images per class the LRs are chosen on, once per data set (None: the
            largest size of the grid that data set has), holding out ``holdout_frac`` of them.
        small_max: a cell is "little data" when its size is at most this (the course's first row).
        similar_min: a data set is "similar" when its measured similarity is at least this.
        similarity_per_class: images per class for :func:`~ftkit.lab.similarity.measure_similarity`.
    """

    datasets: tuple[str, ...] = ("photo_crops", "animals", "fashion_mnist", "digits")
    sizes: tuple[int, ...] = (5, 20, 100, 500)
    strategies: tuple[str, ...] = STRATEGY_NAMES
    seeds: tuple[int, ...] = (0, 1, 2)
    backbone: str = "mobilenet_v2"
    freeze_k: int = 4
    decay: float = 2.6
    image_size: int = 64
    val_per_class: int = 50
    batch_size: int = 32
    epochs: int = 5
    min_steps: int = 30
    max_steps: int = 300
    lr_grid: tuple[float, ...] = (1e-4, 1e-3, 1e-2)
    lr_seeds: tuple[int, ...] = (0,)
    lr_size: int | None = None
    holdout_frac: float = 0.25
    small_max: int = 50
    similar_min: float = 0.1
    similarity_per_class: int = 20

    def __post_init__(self) -> None:
        problems = []
        bad = [s for s in self.strategies if s not in STRATEGY_NAMES]
        if bad:
            problems.append(f"unknown strategies {bad}; choose from {STRATEGY_NAMES}")
        if not self.datasets or not self.sizes or not self.strategies or not self.seeds:
            problems.append("datasets, sizes, strategies and seeds must each hold at least one value")
        if any(not isinstance(n, int) or n < 2 for n in self.sizes):
            problems.append(f"sizes must be ints >= 2 (images per class), not {self.sizes}")
        if not 1 <= self.min_steps <= self.max_steps:
            problems.append(f"need 1 <= min_steps <= max_steps, got {self.min_steps}, {self.max_steps}")
        if problems:
            raise ValueError("bad ScenarioConfig: " + "; ".join(problems))

    def replace(self, **changes) -> "ScenarioConfig":
        return dataclasses.replace(self, **changes)

    def train_spec(self, steps: int) -> TrainSpec:
        return TrainSpec(optimizer="adam", lr=1e-3, max_steps=steps, batch_size=self.batch_size)


def cell_steps(config: ScenarioConfig, n_per_class: int, num_classes: int) -> int:
    """The step budget every strategy of a cell gets (see :class:`ScenarioConfig`)."""
    per_epoch = math.ceil(n_per_class * num_classes / config.batch_size)
    return int(min(config.max_steps, max(config.min_steps, config.epochs * per_epoch)))


def available_sizes(dataset: str, sizes: Sequence[int]) -> tuple[list[int], int, int]:
    """``(sizes the data set has, images in its smallest class, number of classes)``."""
    train = load_dataset(dataset, "train")
    smallest = _smallest_class(train)
    return [n for n in sizes if n <= smallest], smallest, len(train.classes)


def _smallest_class(data) -> int:
    return int(np.bincount(np.asarray(data.targets), minlength=len(data.classes)).min())


def scored_per_class(dataset: str, val_per_class: int) -> int:
    """Test images per class a grid scores ``dataset`` on: ``val_per_class``, or all its smallest
    test class has when that is fewer (digits has 35 of class 2 in its fixed test split)."""
    return min(val_per_class, _smallest_class(load_dataset(dataset, "test")))


def features_accuracy(backbone: str, data: DataSpec, classifier: str = "logistic") -> dict:
    """Feature vectors + classifier on ``data``: accuracy and wall time (extraction included).

    The vectors are not kept in the process's feature cache: a grid uses each set once, a cached set
    would make a rerun's time a cache hit's, and a full grid's sets would fill the cache's 512 MiB
    (lesson 07's three seeds at 5-500 images per class: about 0.4 GB) on a 1 GB Binder kernel.
    """
    bb = load_backbone(backbone)
    t0 = time.perf_counter()
    train, val = data.load(mean=bb.mean, std=bb.std)
    clf = fit_feature_classifier(extract_features(bb.model, train, device="cpu", cache=False), classifier)
    acc = float(clf.score(*extract_features(bb.model, val, device="cpu", cache=False).xy))
    return {"acc": acc, "time_s": time.perf_counter() - t0}


def course_pick(small: bool, similar: bool) -> tuple[str, ...]:
    """The strategies that carry out the course's advice for one cell of its table."""
    return COURSE[(bool(small), bool(similar))]


@dataclass
class ScenarioResult:
    """What a scenario grid measured.

    Attributes:
        runs: one row per (dataset, n_per_class, strategy, seed): acc (test accuracy at the
            end), lr, steps, time_s.
        lrs: the chosen LR per data set and strategy.
        lr_tables: per data set, the LR rule's summary (strategy, lr, held-out mean/std, chosen).
        similarity: one row per data set: dataset, catalogue, pretrained_acc, pixel_acc, score.
        skipped: cells left out, and settings cut to what a data set has, with why.
        config: the :class:`ScenarioConfig` as a dict.
        rule: the LR rule in words.
        wall_s: wall time of the whole grid.
    """

    runs: pd.DataFrame
    lrs: dict[str, dict[str, float]]
    lr_tables: dict[str, pd.DataFrame]
    similarity: pd.DataFrame
    skipped: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    rule: str = RULE
    wall_s: float = 0.0

    def __post_init__(self) -> None:
        self.config = json.loads(json.dumps(self.config))  # plain lists, as it comes back from a JSON file

    # ------------------------------------------------------------ tables
    def summary(self) -> pd.DataFrame:
        """Per cell and strategy: acc_mean, acc_std, acc_sem (std / sqrt(seeds)), seeds, lr, time_s_mean."""
        g = self.runs.groupby(["dataset", "n_per_class", "strategy"], sort=False)
        out = g.agg(acc_mean=("acc", "mean"), acc_std=("acc", "std"), seeds=("acc", "count"),
                    lr=("lr", "first"), time_s_mean=("time_s", "mean")).reset_index()
        out["acc_std"] = out["acc_std"].fillna(0.0)
        out["acc_sem"] = out["acc_std"] / np.sqrt(out["seeds"])
        return out

    def best(self, tie_sigmas: float = 2.0) -> pd.DataFrame:
        """Per cell: the best strategy, its mean, the runner-up, the margin and the strategies tied with it.

        Two strategies are tied when their means differ by at most ``tie_sigmas`` standard
        errors of the difference (``sqrt(sem_a**2 + sem_b**2)``): the error bar used throughout.
        """
        rows = []
        for (ds, n), cell in self.summary().groupby(["dataset", "n_per_class"], sort=False):
            cell = cell.sort_values("acc_mean", ascending=False)
            top, second = cell.iloc[0], cell.iloc[1] if len(cell) > 1 else None

            def bar(r, top=top):
                return tie_sigmas * math.sqrt(top["acc_sem"] ** 2 + r["acc_sem"] ** 2)
            rows.append({"dataset": ds, "n_per_class": int(n), "best": top["strategy"], "best_acc": top["acc_mean"],
                         "best_sem": top["acc_sem"],
                         "runner_up": None if second is None else second["strategy"],
                         "margin": math.nan if second is None else top["acc_mean"] - second["acc_mean"],
                         "margin_bar": math.nan if second is None else bar(second),
                         "tied": [r["strategy"] for _, r in cell.iterrows()
                                  if top["acc_mean"] - r["acc_mean"] <= bar(r)]})
        return pd.DataFrame(rows)

    def score(self, dataset: str) -> float:
        row = self.similarity.loc[self.similarity["dataset"] == dataset, "score"]
        if row.empty:
            raise KeyError(f"no similarity measured for {dataset!r}; measured: {self.similarity['dataset'].tolist()}")
        return float(row.iloc[0])

    def course_table(self, tie_sigmas: float = 2.0) -> pd.DataFrame:
        """Per cell: the course's quadrant and prescription beside the measured best, and the verdict.

        A cell "agrees" when the best of the course's strategies for its quadrant is tied with
        (see :meth:`best`) the measured best; "disagrees" otherwise, with the gap in points.
        """
        small_max, similar_min = self.config["small_max"], self.config["similar_min"]
        summ = self.summary().set_index(["dataset", "n_per_class", "strategy"])
        rows = []
        for _, b in self.best(tie_sigmas).iterrows():
            small, similar = b["n_per_class"] <= small_max, self.score(b["dataset"]) >= similar_min
            picks = [p for p in course_pick(small, similar) if (b["dataset"], b["n_per_class"], p) in summ.index]
            if not picks:
                verdict, pick, pick_acc = "not measured", None, math.nan
            else:
                pick = max(picks, key=lambda p: summ.loc[(b["dataset"], b["n_per_class"], p), "acc_mean"])
                pick_acc = float(summ.loc[(b["dataset"], b["n_per_class"], pick), "acc_mean"])
                verdict = "agrees" if pick in b["tied"] else "disagrees"
            rows.append({"dataset": b["dataset"], "n_per_class": b["n_per_class"],
                         "quadrant": f"{'little' if small else 'much'} data, {'similar' if similar else 'dissimilar'}",
                         "course_says": COURSE_WORDS[(small, similar)], "course_pick": pick, "course_acc": pick_acc,
                         "best": b["best"], "best_acc": b["best_acc"], "gap": b["best_acc"] - pick_acc,
                         "verdict": verdict})
        return pd.DataFrame(rows)

    def pivot(self) -> pd.DataFrame:
        """The full table: rows (dataset, n_per_class), columns strategies, cells 'mean ± std'."""
        s = self.summary()
        s["cell"] = [f"{m:.3f} ± {d:.3f}" for m, d in zip(s["acc_mean"], s["acc_std"])]
        return s.pivot(index=["dataset", "n_per_class"], columns="strategy", values="cell")

    # ------------------------------------------------------------ JSON
    def to_json_dict(self) -> dict:
        return {"runs": json.loads(self.runs.to_json(orient="records")), "lrs": self.lrs,
                "lr_tables": {k: json.loads(v.to_json(orient="records")) for k, v in self.lr_tables.items()},
                "similarity": json.loads(self.similarity.to_json(orient="records")), "skipped": self.skipped,
                "config": self.config, "rule": self.rule, "wall_s": self.wall_s}

    @classmethod
    def from_json_dict(cls, d: dict) -> "ScenarioResult":
        return cls(runs=pd.DataFrame(d["runs"]), lrs=d["lrs"],
                   lr_tables={k: pd.DataFrame(v) for k, v in d["lr_tables"].items()},
                   similarity=pd.DataFrame(d["similarity"]), skipped=list(d["skipped"]), config=dict(d["config"]),
                   rule=d["rule"], wall_s=float(d["wall_s"]))

    def save(self, path) -> None:
        from ftkit.core.torchutil import atomic_path

        with atomic_path(path) as tmp, open(tmp, "w") as f:
            json.dump(self.to_json_dict(), f)

    @classmethod
    def load(cls, path) -> "ScenarioResult":
        with open(path) as f:
            return cls.from_json_dict(json.load(f))


def _sub(out, *parts: str):
    """A sub-folder of ``out`` for one sweep (None stays None); a path's separators are replaced."""
    if out is None:
        return None
    from pathlib import Path

    return Path(out).joinpath(*(p.replace("/", "_").replace("\\", "_") for p in parts))


def _grid_rows(config: ScenarioConfig, ds: str, sizes: list[int], num_classes: int, val_n: int,
               lrs: dict[str, float], trained: list[str], **sweep_kw) -> list[dict]:
    """One data set's trained runs: every size x strategy x seed, each strategy at its chosen LR."""
    specs = []
    for n in sizes:
        strategies = scenario_strategies(trained, backbone=config.backbone, freeze_k=config.freeze_k,
                                         decay=config.decay, train=config.train_spec(cell_steps(config, n,
                                                                                                 num_classes)))
        specs += [RunSpec(strat.with_lr(lrs[strat.name]),
                          DataSpec(ds, n_per_class=n, image_size=config.image_size, subset_seed=seed,
                                   val_n_per_class=val_n), seed)
                  for strat in strategies for seed in config.seeds]
    return [{"dataset": ds, "n_per_class": spec.data.n_per_class, "strategy": spec.strategy.name, "seed": spec.seed,
             "acc": rec.final_acc, "lr": rec.lr, "steps": rec.steps, "time_s": rec.time_s,
             "stopped_reason": rec.stopped_reason}
            for spec, rec in zip(specs, sweep(specs, **sweep_kw))]


def _features_rows(config: ScenarioConfig, ds: str, sizes: list[int], val_n: int) -> list[dict]:
    """One data set's "feature vectors + classifier" accuracies on the grid's images."""
    rows = []
    for n in sizes:
        for seed in config.seeds:
            data = DataSpec(ds, n_per_class=n, image_size=config.image_size, subset_seed=seed,
                            val_n_per_class=val_n)
            f = features_accuracy(config.backbone, data)
            rows.append({"dataset": ds, "n_per_class": n, "strategy": "features", "seed": seed, "acc": f["acc"],
                         "lr": math.nan, "steps": 0, "time_s": f["time_s"], "stopped_reason": None})
    return rows


def run_scenarios(config: ScenarioConfig = ScenarioConfig(), *, executor: Executor | None = None, out=None,
                  resume: bool = False, progress: bool = False) -> ScenarioResult:
    """Measure the grid of ``config``: similarity per data set, LRs by the rule, every run, feature classifiers.

    One data set at a time, all its work together; its raw images are then dropped from
    memory (:func:`ftkit.data.sources.forget_loaded_sources`), so a kernel does not keep
    every data set it has measured.

    Args:
        config: the grid and everything it holds fixed.
        executor, out, resume, progress: see :func:`ftkit.lab.sweep.sweep` (the LR choice
            and the grid both go through it: ``out/lr/<dataset>`` and ``out/grid/<dataset>``
            hold their records).
    """
    t0 = time.perf_counter()
    trained = [s for s in config.strategies if s in TRAINED]
    skipped, cells, rows = [], [], []
    lrs: dict[str, dict[str, float]] = {}
    lr_tables: dict[str, pd.DataFrame] = {}
    sim_rows = []
    for ds in config.datasets:
        sizes, smallest, num_classes = available_sizes(ds, config.sizes)
        skipped += [f"{ds} at {n} per class: its smallest class has {smallest} training images"
                    for n in config.sizes if n not in sizes]
        if not sizes:
            continue
        cells += [(ds, n) for n in sizes]
        val_n = scored_per_class(ds, config.val_per_class)      # test images per class it is scored on
        if val_n < config.val_per_class:
            skipped.append(f"{ds} scored on {val_n} test images per class, not {config.val_per_class}: "
                           f"its smallest test class has {val_n}")
        s = measure_similarity(config.backbone, ds, n_per_class=min(config.similarity_per_class, smallest),
                               val_per_class=val_n, image_size=config.image_size)
        sim_rows.append({"dataset": ds, "catalogue": catalogue_level(ds), "pretrained_acc": s.pretrained_acc,
                         "pixel_acc": s.pixel_acc, "score": s.score})
        if trained:
            lr_n = config.lr_size if config.lr_size is not None else max(sizes)
            lr_n = min(lr_n, smallest)
            base = scenario_strategies(trained, backbone=config.backbone, freeze_k=config.freeze_k,
                                       decay=config.decay, train=config.train_spec(cell_steps(config, lr_n,
                                                                                               num_classes)))
            choice = choose_lrs(base, DataSpec(ds, n_per_class=lr_n, image_size=config.image_size),
                                config.lr_grid, seeds=config.lr_seeds, holdout_frac=config.holdout_frac,
                                executor=executor, out=_sub(out, "lr", ds), resume=resume, progress=progress)
            lrs[ds], lr_tables[ds] = choice.lrs, choice.summary
            rows += _grid_rows(config, ds, sizes, num_classes, val_n, choice.lrs, trained, executor=executor,
                               out=_sub(out, "grid", ds), resume=resume, progress=progress)
        if "features" in config.strategies:
            rows += _features_rows(config, ds, sizes, val_n)
        forget_loaded_sources()
        release_freed_memory()
    if not cells:
        raise ValueError(f"no cell of the grid can be measured: {skipped}")
    return ScenarioResult(runs=pd.DataFrame(rows), lrs=lrs, lr_tables=lr_tables, similarity=pd.DataFrame(sim_rows),
                          skipped=skipped, config=dataclasses.asdict(config), wall_s=time.perf_counter() - t0)
