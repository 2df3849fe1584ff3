"""Training (and regenerating) the source networks that ``ftkit/models/weights`` ships.

``scripts/train_source_nets.py`` calls :func:`train_all` and writes the files and
the manifest; ``bench/bench_source_nets.py`` regenerates them into a temporary
folder and compares the accuracy with the manifest's. Loading them is
``ftkit.models.smallcnn.load_source_net`` (or ``load_backbone("fmnist_cnn", weights="A0")``).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ftkit.core.state import seeded
from ftkit.core.torchutil import atomic_path
from ftkit.data.shifts import TensorTask, fashion_task, subpopulation_task
from ftkit.lab.tensor_fit import accuracy, fit_tensors
from ftkit.models.smallcnn import DEFAULT_WIDTHS, MANIFEST, SmallCNN, file_sha256

__all__ = ["SourceRecipe", "SOURCE_TASKS", "source_data", "train_all", "train_source_net"]

# name prefix -> what the network learns
SOURCE_TASKS = {"A": "Fashion-MNIST classes 0-4", "B": "Fashion-MNIST classes 5-9",
                "C": "coarse classes (top, shoes, other) from their source sub-classes"}


@dataclass(frozen=True)
class SourceRecipe:
    """How every shipped source network is trained (one recipe, so they are comparable)."""

    n_per_class: int = 4000     # training images per Fashion-MNIST class
    epochs: int = 4
    lr: float = 3e-3            # Adam, cosine decay to 0
    batch_size: int = 128
    widths: tuple[int, int, int, int] = DEFAULT_WIDTHS


def source_data(prefix: str, split: str, n_per_class: int | None, seed: int = 0) -> TensorTask:
    """Training or test data of source task ``prefix`` ("A", "B" or "C")."""
    if prefix == "C":
        return subpopulation_task("source", split, n_per_class=n_per_class, seed=seed)
    return fashion_task(prefix, split, n_per_class=n_per_class, seed=seed)


def train_source_net(prefix: str, seed: int, recipe: SourceRecipe = SourceRecipe(),
                     ) -> tuple[SmallCNN, dict]:
    """Train one source network; returns it and its manifest entry (without file and hash).

    The test accuracy is measured on the whole official test split of the task.
    """
    if prefix not in SOURCE_TASKS:
        raise ValueError(f"prefix must be one of {sorted(SOURCE_TASKS)}, got {prefix!r}")
    train = source_data(prefix, "train", recipe.n_per_class)     # same images for every seed
    test = source_data(prefix, "test", None)
    with seeded(seed):                                          # the caller's RNG state comes back
        model = SmallCNN(train.num_classes, recipe.widths)
    steps = recipe.epochs * -(-len(train) // recipe.batch_size)
    t0 = time.perf_counter()
    losses = fit_tensors(model, train, lr=recipe.lr, steps=steps, seed=seed,
                         batch_size=recipe.batch_size)
    entry = dict(task=prefix, description=SOURCE_TASKS[prefix], classes=list(train.classes),
                 seed=seed, image_size=int(train.X.shape[-1]), widths=list(recipe.widths),
                 train_images=len(train), steps=steps, final_train_loss=round(losses[-1], 4),
                 test_images=len(test), test_acc=round(accuracy(model, test), 4),
                 train_time_s=round(time.perf_counter() - t0, 1))
    return model, entry


def train_all(out_dir: Path, prefixes: str = "ABC", seeds: tuple[int, ...] = (0, 1),
              recipe: SourceRecipe = SourceRecipe(), command: str = "") -> dict:
    """Train every ``prefix x seed`` network into ``out_dir`` and write ``manifest.json``.

    Each file is written atomically; the manifest is written last, so a crash
    leaves the previous manifest (and the files it names) consistent.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    nets: dict[str, dict] = {}
    for prefix in prefixes:
        for seed in seeds:
            model, entry = train_source_net(prefix, seed, recipe)
            name = f"{prefix}{seed}"
            path = out_dir / f"fmnist_cnn_{name}.pt"
            with atomic_path(path) as tmp:
                torch.save(model.state_dict(), tmp)
                tmp.chmod(0o644)     # package data: readable by everyone (mkstemp makes 0600)
            nets[name] = dict(entry, file=path.name, sha256=file_sha256(path))
    manifest = dict(network="fmnist_cnn (ftkit.models.smallcnn.SmallCNN)",
                    recipe=asdict(recipe), command=command, torch=torch.__version__, nets=nets)
    with atomic_path(out_dir / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")
        tmp.chmod(0o644)
    return manifest
