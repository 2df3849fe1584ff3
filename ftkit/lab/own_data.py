"""Your own image folder: an example folder, a check, a cross-validated comparison, a saved model.

Lesson 10's steps, as functions that return data:

* :func:`build_example_folder` writes a few classes of a catalogue data set as
  PNG files, ``root/<class>/<i>.png`` (the default folder of the lesson);
* :func:`check_folder` reads a folder as ``ftkit.data.load_dataset`` will and
  lists what is wrong with it (too few classes or images, imbalance);
* :func:`cross_validate_strategies` compares strategies by k-fold
  cross-validation (``ftkit.lab.crossval.cross_validate``; feature vectors +
  classifier on the same folds);
* :func:`train_and_save` trains one strategy on every training image, scores it
  on the folder's test split and writes the checkpoint with a JSON and a
  Markdown report.
"""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ftkit.analysis.features import extract_features, fit_feature_classifier
from ftkit.data.catalogue import load_dataset
from ftkit.lab.crossval import cross_validate
from ftkit.lab.runs import build_model
from ftkit.lab.specs import DataSpec, Strategy, kfold_indices
from ftkit.lr.groups import param_groups
from ftkit.models.zoo import load_backbone
from ftkit.training.loop import evaluate, fit

__all__ = ["build_example_folder", "FolderReport", "check_folder", "cross_validate_strategies", "train_and_save"]


def build_example_folder(root: str | os.PathLike, dataset: str = "photo_crops", *, classes: Sequence[str] | None = None,
                         n_classes: int = 4, n_per_class: int = 30, seed: int = 0) -> Path:
    """Write ``n_per_class`` training images of ``n_classes`` classes of ``dataset`` as PNGs under ``root``.

    The folder has no train/test subfolders: ``load_dataset`` splits it (stratified, fixed).
    ``root`` must not exist yet (nothing is overwritten); it appears complete or not at all.
    """
    from PIL import Image

    root = Path(root)
    if root.exists():
        raise FileExistsError(f"{root} already exists: give a new folder (nothing is overwritten)")
    data = load_dataset(dataset, "train", n_per_class=n_per_class, seed=seed)
    names = list(classes) if classes is not None else list(data.classes[:n_classes])
    unknown = [c for c in names if c not in data.classes]
    if unknown or len(names) < 2:
        raise ValueError(f"need at least two classes of {dataset!r}; unknown {unknown}; known {list(data.classes)}")
    tmp = root.with_name(f".{root.name}.partial")
    targets = np.asarray(data.targets)
    for c in names:
        (tmp / c).mkdir(parents=True, exist_ok=True)
        for j, i in enumerate(np.flatnonzero(targets == data.classes.index(c))):
            img = np.asarray(data.raw_image(int(i)))
            img = (img * 255).clip(0, 255).astype(np.uint8) if img.dtype != np.uint8 else img
            Image.fromarray(img.squeeze()).save(tmp / c / f"{j:04d}.png")
    tmp.rename(root)
    return root


@dataclass
class FolderReport:
    """What :func:`check_folder` found.

    Attributes:
        root: the folder.
        classes: class names (sub-folder names).
        train_counts, test_counts: images per class in each split.
        split_rule: how the folder was split into train and test.
        problems: what would make results unreliable (empty when none).
    """

    root: str
    classes: list[str]
    train_counts: dict[str, int]
    test_counts: dict[str, int]
    split_rule: str
    problems: list[str] = field(default_factory=list)

    @property
    def smallest(self) -> int:
        return min(self.train_counts.values())

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"train": self.train_counts, "test": self.test_counts})

    def to_dict(self) -> dict:
        return asdict(self)


def check_folder(root: str | os.PathLike, *, min_per_class: int = 5, max_imbalance: float = 3.0) -> FolderReport:
    """Read ``root`` as ``load_dataset`` will and list its problems.

    Raises:
        FileNotFoundError, ValueError: from ``load_dataset`` when the folder cannot be read at all
            (missing, a file, no class folders, an empty class).
    """
    path = Path(root)
    train, test = load_dataset(path, "train"), load_dataset(path, "test")
    count = lambda d: {c: int(n) for c, n in zip(d.classes, np.bincount(np.asarray(d.targets),  # noqa: E731
                                                                         minlength=len(d.classes)))}
    tr, te = count(train), count(test)
    problems = []
    if len(train.classes) < 2:
        problems.append(f"only {len(train.classes)} class: a classifier needs at least two sub-folders")
    few = {c: n for c, n in tr.items() if n < min_per_class}
    if few:
        problems.append(f"classes with fewer than {min_per_class} training images: {few} (add images)")
    if min(tr.values()) and max(tr.values()) / min(tr.values()) > max_imbalance:
        problems.append(f"imbalanced: the largest class has {max(tr.values()) / min(tr.values()):.1f}x the "
                        f"smallest's images (accuracy then favours the large classes)")
    no_test = [c for c, n in te.items() if n == 0]
    if no_test:
        problems.append(f"classes without test images: {no_test}")
    return FolderReport(str(path), list(train.classes), tr, te, train.info.split_rule, problems)


def _features_cv(backbone: str, data, k: int, seed: int) -> pd.DataFrame:
    bb = load_backbone(backbone)
    X, y = extract_features(bb.model, data, device="cpu").xy
    rows = []
    for fold, (tr, va) in enumerate(kfold_indices(data, k, seed=seed)):  # the folds DataSpec(fold=) uses
        t0 = time.perf_counter()
        clf = fit_feature_classifier((X[tr], y[tr]), "logistic")
        rows.append({"fold": fold, "n_train": len(tr), "n_val": len(va), "val_loss": float("nan"),
                     "val_acc": float(clf.score(X[va], y[va])), "time_s": time.perf_counter() - t0})
    return pd.DataFrame(rows)


def cross_validate_strategies(strategies: Sequence[Strategy | str], folder: str | os.PathLike, *,
                              backbone: str = "mobilenet_v2", k: int = 3, seed: int = 0, image_size: int = 64,
                              executor: Executor | None = None) -> pd.DataFrame:
    """k-fold cross-validation of each strategy on the folder's training images (the same folds for all).

    Args:
        strategies: ``Strategy`` objects (``ftkit.lab.crossval.cross_validate`` on run specs: each fold
            one ``RunSpec``, discriminative LRs included) or the string "features" (feature vectors +
            logistic regression on the same folds).
        folder: the image folder.
        k: folds; ``seed`` chooses them (and every run's initialisation and batches).
        executor: see :func:`ftkit.lab.sweep.sweep`.

    Returns:
        One row per (strategy, fold): strategy, fold, n_train, n_val, val_acc, time_s.
    """
    bb = load_backbone(backbone)
    data = load_dataset(Path(folder), "train", image_size=image_size, mean=bb.mean, std=bb.std)
    spec = DataSpec(os.fspath(Path(folder).resolve()), image_size=image_size, subset_seed=seed)
    frames = []
    for s in strategies:
        if s == "features":
            df, name = _features_cv(backbone, data, k, seed), "features"
        elif isinstance(s, Strategy):
            df, name = cross_validate(s, spec, k, seed=seed, executor=executor, progress=False).folds, s.name
        else:
            raise TypeError(f"strategies are Strategy objects or 'features', not {s!r}")
        frames.append(df.assign(strategy=name))
    return pd.concat(frames, ignore_index=True)[["strategy", "fold", "n_train", "n_val", "val_acc", "time_s"]]


def train_and_save(strategy: Strategy, folder: str | os.PathLike, out_dir: str | os.PathLike, *,
                   image_size: int = 64, seed: int = 0, report: dict | None = None) -> dict:
    """Train ``strategy`` on all of the folder's training images, test it, save model and report.

    Writes ``out_dir/model.pt`` (``ftkit.training.checkpoints.save_checkpoint``), ``report.json``
    and ``report.md``; ``out_dir`` must not exist yet, and appears complete or not at all.

    Returns:
        The report as a dict (strategy, test accuracy, classes, settings and ``report``'s entries).
    """
    from ftkit.training.checkpoints import save_checkpoint

    out = Path(out_dir)
    if out.exists():
        raise FileExistsError(f"{out} already exists: give a new folder (nothing is overwritten)")
    bb = load_backbone(strategy.model.backbone)
    kw = dict(image_size=image_size, mean=bb.mean, std=bb.std)
    train, test = load_dataset(Path(folder), "train", **kw), load_dataset(Path(folder), "test", **kw)
    model = build_model(strategy, len(train.classes), seed=seed)
    groups = None
    if strategy.groups is not None:
        g = strategy.groups
        groups = param_groups(model, **g.param_group_kwargs(strategy.train.lr))
    history = fit(model, train, None, strategy.train, seed=seed, progress=False, param_groups=groups)
    scores = evaluate(model, test)
    info = {"strategy": strategy.name, "description": strategy.description, "test_acc": float(scores["acc"]),
            "test_images": len(test), "train_images": len(train), "classes": list(train.classes),
            "backbone": strategy.model.backbone, "image_size": image_size, "mean": list(bb.mean), "std": list(bb.std),
            "train": strategy.train.to_dict(), **(report or {})}
    tmp = out.with_name(f".{out.name}.partial")
    tmp.mkdir(parents=True)
    save_checkpoint(tmp / "model.pt", model, history=history, strategy=strategy.name,
                    classes=list(train.classes), image_size=image_size)
    (tmp / "report.json").write_text(json.dumps(info, indent=2, default=str))
    (tmp / "report.md").write_text(_markdown(info))
    tmp.rename(out)
    return info


def _markdown(info: dict) -> str:
    lines = [f"# Fine-tuned model: {info['strategy']}", "",
             f"* {info['description']}", f"* backbone `{info['backbone']}`, {info['image_size']} px",
             f"* classes: {', '.join(info['classes'])}",
             f"* trained on {info['train_images']} images; test accuracy {info['test_acc']:.3f} "
             f"on {info['test_images']} held-out images", ""]
    for key in ("advice", "cross_validation"):
        if key in info:
            lines += [f"## {key.replace('_', ' ')}", "", str(info[key]), ""]
    return "\n".join(lines)
