"""Benchmark 2: a classifier on cached feature vectors vs the tutorial's frozen backbone.

Same data (``animals`` train/test subsets at 64 px), same embedded ImageNet
MobileNetV2, on the CPU:

* **features (cold)**: ``extract_features`` over train and test with the cache
  off (one forward pass per image), then ``fit_feature_classifier(...,
  "logistic")`` (StandardScaler + LogisticRegression) and its test accuracy;
* **features (cache hit)**: the same calls with the cache on, after a first
  call filled it (what a learner's second run of a notebook cell costs);
* **tutorial**: the torchvision tutorial's "fixed feature extractor": every
  body parameter frozen, a new linear head, ``model.train()``, Adam on the
  head for 10 epochs, the frozen body run over every image in every epoch,
  then the test accuracy.

Repeats interleave; the figures are the median speed-ups tutorial / features
(goal >= 10x) and the accuracies of both.

    python -m bench.bench_features
"""
from __future__ import annotations

import copy
import statistics
import sys

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from bench.common import interleave, machine, quick_mode, ratios, seconds
from ftkit.analysis.features import extract_features, fit_feature_classifier
from ftkit.core.state import seeded
from ftkit.data import load_dataset
from ftkit.models.heads import replace_head
from ftkit.models.zoo import load_backbone
from ftkit.training.loop import evaluate

GOAL = 10.0


def features_way(model: nn.Module, train, test, *, cache: bool) -> float:
    """Extract (cached or not), fit logistic regression, return the test accuracy."""
    tr = extract_features(model, train, cache=cache)
    te = extract_features(model, test, cache=cache)
    return float(fit_feature_classifier(tr, "logistic").score(*te.xy))


def tutorial_way(base: nn.Module, train, test, *, epochs: int, batch_size: int, lr: float, seed: int = 0) -> float:
    """The frozen backbone run every epoch, a linear head trained on top; test accuracy."""
    model = replace_head(copy.deepcopy(base), 10)
    head = model.classifier[-1]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in head.parameters():
        p.requires_grad_(True)
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    loader = DataLoader(train, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    model.train()  # as the tutorial does: BatchNorm statistics keep moving
    with seeded(seed):
        for _ in range(epochs):
            for x, y in loader:
                loss = nn.functional.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return float(evaluate(model, test, device="cpu")["acc"])


def run(*, n_per_class: int = 100, test_per_class: int = 50, image_size: int = 64, epochs: int = 10,
        batch_size: int = 32, lr: float = 1e-3, repeats: int = 3) -> dict:
    train = load_dataset("animals", "train", n_per_class=n_per_class, image_size=image_size)
    test = load_dataset("animals", "test", n_per_class=test_per_class, image_size=image_size)
    body = load_backbone("mobilenet_v2").model
    fns = {"features_cold": lambda: features_way(body, train, test, cache=False),
           "features_hit": lambda: features_way(body, train, test, cache=True),
           "tutorial": lambda: tutorial_way(body, train, test, epochs=epochs, batch_size=batch_size, lr=lr)}
    fns["features_hit"]()  # fills the cache (and warms up), untimed
    reps = interleave(fns, repeats)
    cold, hit = ratios(reps, "tutorial", "features_cold"), ratios(reps, "tutorial", "features_hit")
    acc = {k: float(np.median([rep["out"][k] for rep in reps])) for k in fns}
    return {
        "what": f"logistic regression on MobileNetV2 features vs the tutorial's frozen backbone + linear head "
                f"({epochs} epochs, Adam {lr}, batch {batch_size}); animals {n_per_class}/class train, "
                f"{test_per_class}/class test, {image_size} px, CPU",
        "settings": dict(n_per_class=n_per_class, test_per_class=test_per_class, image_size=image_size,
                         epochs=epochs, batch_size=batch_size, lr=lr, repeats=repeats),
        **{f"{k}_s": seconds(reps, k) for k in fns},
        "speedup_cold": [round(x, 3) for x in cold], "speedup_hit": [round(x, 3) for x in hit],
        "median_speedup_cold": round(statistics.median(cold), 3),
        "median_speedup_hit": round(statistics.median(hit), 3),
        "acc_features": round(acc["features_cold"], 4), "acc_features_hit": round(acc["features_hit"], 4),
        "acc_tutorial": round(acc["tutorial"], 4), "load_per_repeat": [rep["load"] for rep in reps],
        "goal": f">= {GOAL:g}x", "met": statistics.median(cold) >= GOAL,
    }


def main(argv: list[str] | None = None) -> int:
    quick = quick_mode() or "--quick" in (argv or sys.argv[1:])
    res = run(n_per_class=10, test_per_class=5, epochs=2, repeats=1) if quick else run()
    print(machine())
    print(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
