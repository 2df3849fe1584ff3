"""The course's three ways to transfer, side by side: accuracy and wall time vs data size.

(a) a frozen body with a new head trained as a network (``linear_probe``),
(b) feature vectors extracted once + a classical classifier (logistic
regression, linear SVM, small MLP; :mod:`ftkit.analysis.classical`),
(c) fine-tuning everything (``finetune``). The networks get their LRs by the
written rule (:func:`ftkit.lab.fair.fair_sweep`); the classical classifiers use
their library defaults. All train on the same images (``subset_seed``) and are
scored on the same test images.

>>> table = classical_vs_finetune("photo_crops", [10, 40], train=TrainSpec(epochs=3, device="cpu"),
...                               lr_grid=(1e-3, 1e-2))                               # doctest: +SKIP
"""
from __future__ import annotations

from concurrent.futures import Executor
from typing import Sequence

import pandas as pd

from ftkit.analysis.classical import DEFAULT_KINDS, feature_classifier_costs
from ftkit.lab.fair import Study, fair_sweep
from ftkit.lab.specs import DataSpec, ModelSpec, Strategy
from ftkit.training.spec import TrainSpec

__all__ = ["NETWORK_METHODS", "classical_vs_finetune", "cost_ratio"]

NETWORK_METHODS = ("linear_probe", "finetune")
FAMILY = {"linear_probe": "network, frozen body", "finetune": "network, fine-tuned"}


def _networks(names: Sequence[str], train: TrainSpec, backbone: str) -> list[Strategy]:
    models = {"linear_probe": ModelSpec(backbone=backbone, freeze="all_but_head"),
              "finetune": ModelSpec(backbone=backbone)}
    bad = [n for n in names if n not in models]
    if bad:
        raise ValueError(f"network methods must be from {NETWORK_METHODS}, got {bad}")
    return [Strategy(n, models[n], train) for n in names]


def classical_vs_finetune(data: str, sizes: Sequence[int], *, train: TrainSpec, lr_grid: Sequence[float],
                          kinds: Sequence[str] = DEFAULT_KINDS, networks: Sequence[str] = NETWORK_METHODS,
                          seeds: Sequence[int] = (0, 1, 2), lr_seeds: Sequence[int] = (0,),
                          backbone: str = "mobilenet_v2", image_size: int = 64, val_n_per_class: int | None = None,
                          subset_seed: int = 0, executor: Executor | None = None, out=None,
                          progress: bool = False) -> tuple[pd.DataFrame, Study]:
    """Feature vectors + classifiers vs networks trained on the images, per data size.

    The feature vectors are extracted on ``train.device`` (the CPU when it is "auto":
    the course's claim is about CPUs); the networks train where ``train`` says.

    Returns:
        ``(table, study)``: ``table`` has one row per (n_per_class, seed, method)
        with family ("feature vectors", "network, frozen body", "network,
        fine-tuned"), acc, time_s (feature vectors: extraction of the training
        images + the classifier's fit; networks: the training steps, their
        evaluations left out), lr (networks only), extract_s and
        cached_s (feature vectors only: the timed extraction, and the same
        extraction read from the cache); ``study`` is
        the networks' :class:`~ftkit.lab.fair.Study` (with the LR table).
    """
    feats = feature_classifier_costs(data, sizes, kinds=kinds, seeds=seeds, backbone=backbone,
                                     image_size=image_size, val_n_per_class=val_n_per_class,
                                     subset_seed=subset_seed, device=train.device if train.device != "auto" else "cpu")
    feats = feats.assign(family="feature vectors", time_s=feats["total_s"], lr=float("nan"))
    datas = [DataSpec(data, n_per_class=n, image_size=image_size, val_n_per_class=val_n_per_class,
                      subset_seed=subset_seed) for n in sizes]
    study = fair_sweep(_networks(networks, train, backbone), datas, seeds=seeds, lr_grid=lr_grid,
                       lr_seeds=lr_seeds, executor=executor, out=out, progress=progress)
    nets = study.runs.drop(columns="time_s").rename(columns={"strategy": "method", "final_acc": "acc",
                                                              "train_s": "time_s"})
    nets = nets.assign(family=[FAMILY[m] for m in nets["method"]])
    cols = ["data", "n_per_class", "seed", "family", "method", "acc", "time_s", "lr"]
    table = pd.concat([feats[cols + ["extract_s", "cached_s"]], nets[cols]], ignore_index=True)
    return table, study


def cost_ratio(table: pd.DataFrame, cheap: str = "logistic", dear: str = "finetune") -> pd.DataFrame:
    """Per size: mean time and accuracy of two methods, and how many times longer ``dear`` takes."""
    have = set(table["method"])
    if cheap not in have or dear not in have:
        raise ValueError(f"methods {cheap!r} and {dear!r} must both be in the table; it has {sorted(have)}")
    m = table.groupby(["n_per_class", "method"])[["time_s", "acc"]].mean().unstack("method")
    out = pd.DataFrame({f"{cheap}_s": m[("time_s", cheap)], f"{dear}_s": m[("time_s", dear)],
                        f"{cheap}_acc": m[("acc", cheap)], f"{dear}_acc": m[("acc", dear)]})
    out["times_longer"] = out[f"{dear}_s"] / out[f"{cheap}_s"]
    return out.reset_index()
