"""Data set catalogue that works offline, plus the user's own image folders.

Every data set comes back as an :class:`ImageDataset`: items are
``(image, label)`` with ``image`` a float tensor ``(3, S, S)`` normalised with
ImageNet's mean/std (grey images are repeated over 3 channels, every image is
resized bilinearly with antialiasing to ``S = image_size``). Images stay as
``uint8`` at their native size and are resized when an item is read, so the
60,000 Fashion-MNIST images take 47 MB, not 60,000 resized float tensors.

Catalogue (``list_datasets()`` shows it as a table):

* ``"fashion_mnist"`` -- Fashion-MNIST, 60,000 train / 10,000 test (the
  official split), 10 clothing classes, 28x28 grey.
* ``"animals"`` -- animal silhouettes from ``animal-mnist==0.4``, 10 classes
  x 1,000, 28x28 grey; 800 train / 200 test per class, chosen by a fixed
  permutation of each class (seed 0).
* ``"digits"`` -- scikit-learn's 8x8 digits, 1,797 images; 20 % of each class
  (rounded) goes to test by a fixed permutation (seed 0): 1,438 / 359.
* ``"photo_crops"`` -- 12 classes, class = which bundled photo a crop comes
  from; 150 train / 50 test crops per class. Each photo is cut into a 3x3 grid,
  2 cells (fixed per photo) are test cells, and every crop lies wholly inside
  one cell, so no test pixel is ever seen in training.
* any folder ``root/class_name/image.png`` -- uses ``root/train`` and
  ``root/test`` (or ``root/val``) when present, otherwise 20 % of each class
  (at least one image when a class has two or more) by a fixed permutation.
  Every file is checked when the folder is loaded (``check=``), so a truncated
  or empty image is named then, with the fix, not in the middle of training.
  Images with more than 8 bits per channel are scaled, not clipped: 16-bit
  ones keep their top 8 bits (32768 -> 128), float ones must lie in [0, 1]
  (see :mod:`ftkit.data.images`).

>>> train = load_dataset("animals", n_per_class=20)       # doctest: +SKIP
>>> image, label = train[0]; image.shape, train.classes[label]
(torch.Size([3, 64, 64]), 'bear')
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ftkit.core.imagenet import IMAGENET_MEAN, IMAGENET_STD
from ftkit.data.image_folder import FolderSplit, load_folder
from ftkit.data.images import IMAGE_CHECKS, BadImageError
from ftkit.data.sources import (
    ANIMAL_CLASSES,
    ANIMAL_INSTALL,
    FASHION_CLASSES,
    FASHION_INSTALL,
    PHOTO_CLASSES,
    PHOTO_CROPS_PER_CLASS,
    PHOTO_GRID,
    PHOTO_TEST_CELLS,
    SPLIT_SEED,
    DataUnavailableError,
    animal_files,
    check_split,
    data_dir,
    fashion_dir,
    hash_parts,
    load_animals,
    load_digits,
    load_fashion,
    load_photo_crops,
    photo_crop_boxes,
)

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "BadImageError", "DataUnavailableError", "DatasetInfo",
    "ImageDataset",
    "data_dir", "list_datasets", "load_dataset", "photo_crop_boxes", "pixels_to_input",
]

_TRANSFORM_VERSION = 2    # bump when __getitem__ changes, so fingerprint-keyed caches refresh
                          # (2: 16-bit and float files scaled, no longer clipped)


@dataclass(frozen=True)
class DatasetInfo:
    """What a data set is, where it comes from and how it is split."""

    name: str
    description: str
    similarity: str              # how close the images are to ImageNet's photos
    num_classes: int
    train_size: int
    test_size: int
    split_rule: str
    source: str
    install: str
    classes: tuple[str, ...] = field(default=())

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": self.train_size, "test": self.test_size}


# ---------------------------------------------------------------- the dataset

def pixels_to_input(pixels: torch.Tensor, image_size: int, mean, std) -> torch.Tensor:
    """``uint8`` pixels ``(N, C, H, W)``, ``C`` 1 or 3 -> the network's input ``(N, 3, S, S)``, float.

    The one transform every image of the kit goes through (:class:`ImageDataset`
    applies it to a batch of one, :mod:`ftkit.data.shifts` to whole tensors):
    divide by 255, resize bilinearly with antialiasing to ``S = image_size`` when
    not already ``S x S``, repeat grey over 3 channels, subtract ``mean`` and
    divide by ``std`` (3 values each, a sequence or a tensor).
    """
    x = pixels.float().div_(255.0)
    s = image_size
    if x.shape[2:] != (s, s):
        x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
    x = x.expand(-1, 3, s, s)                                          # grey -> 3 channels
    mean = torch.as_tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - mean) / std


class ImageDataset(Dataset):
    """Labelled images as normalised float tensors ``(3, S, S)``.

    Built by :func:`load_dataset`. Attributes: ``classes`` (names),
    ``targets`` (int64 labels of the selected items), ``indices`` (the items'
    positions in the underlying source), ``info``, ``split``, ``image_size``,
    ``mean``, ``std``.
    """

    def __init__(self, source, labels: np.ndarray, indices: np.ndarray, classes: list[str],
                 info: DatasetInfo, *, split: str, image_size: int,
                 mean: tuple[float, float, float], std: tuple[float, float, float]):
        self._source = source
        self.indices = np.asarray(indices, dtype=np.int64)
        self.targets = np.asarray(labels, dtype=np.int64)[self.indices]
        self.classes = list(classes)
        self.info = info
        self.split = split
        self.image_size = image_size
        self.mean = mean
        self.std = std
        self._mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self._std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = torch.tensor(self._source.image(int(self.indices[i])))    # uint8, native size
        x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)             # (C, H, W), C in {1, 3}
        return pixels_to_input(x[None], self.image_size, self._mean_t, self._std_t)[0], int(self.targets[i])

    def path_of(self, i: int) -> str | None:
        """The file item ``i`` is read from (None for data sets held in memory)."""
        paths = getattr(self._source, "paths", None)
        return None if paths is None else str(paths[int(self.indices[i])])

    def raw_image(self, i: int) -> np.ndarray:
        """Item ``i`` as a ``uint8`` array ``(H, W, 3)`` at native size (for display)."""
        img = np.asarray(self._source.image(int(self.indices[i])))
        return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img

    def fingerprint(self) -> str:
        """Stable hash of the selected images and labels and the transform settings.

        Same data and settings give the same string in any process, so it can
        key a cache of extracted features.
        """
        if self._fingerprint is None:
            settings = repr((_TRANSFORM_VERSION, self.image_size, self.mean, self.std))
            self._fingerprint = hash_parts(
                self._source.digest(self.indices).encode(), self.targets.tobytes(),
                self.indices.tobytes(), settings.encode())
        return self._fingerprint

    def __repr__(self) -> str:
        return (f"ImageDataset({self.info.name!r}, split={self.split!r}, n={len(self)}, "
                f"classes={len(self.classes)}, image_size={self.image_size})")


# ---------------------------------------------------------------- subsets

def _subsample(labels: np.ndarray, indices: np.ndarray, n_per_class: int, seed: int,
               classes: list[str], where: str) -> np.ndarray:
    """``n_per_class`` items of every class present, chosen by ``seed``."""
    if isinstance(n_per_class, bool) or not isinstance(n_per_class, (int, np.integer)) \
            or n_per_class < 1:
        raise ValueError(f"n_per_class must be a positive int or None, got {n_per_class!r}")
    if len(indices) == 0:
        raise ValueError(f"{where} has no images to choose n_per_class={n_per_class} from; "
                         "add images, or load the other split")
    present = np.unique(labels[indices])
    counts = {int(c): int(np.sum(labels[indices] == c)) for c in present}
    smallest = min(counts, key=counts.get)
    if n_per_class > counts[smallest]:
        raise ValueError(
            f"n_per_class={n_per_class} is more than {where} has: class "
            f"{classes[smallest]!r} has only {counts[smallest]} images; the maximum is "
            f"{counts[smallest]} (or n_per_class=None for all {len(indices)} images)")
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(indices[labels[indices] == c], n_per_class, replace=False)
              for c in present]
    return np.sort(np.concatenate(chosen))


# ---------------------------------------------------------------- the catalogue

@dataclass(frozen=True)
class _Entry:
    info: DatasetInfo
    load: Callable[[str], tuple]
    available: Callable[[], bool]


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


_CATALOGUE: dict[str, _Entry] = {
    "fashion_mnist": _Entry(DatasetInfo(
        name="fashion_mnist",
        description="Zalando's Fashion-MNIST: 28x28 grey product photos of 10 kinds of clothing.",
        similarity="low-medium: ImageNet has jerseys, sandals and bags, but as colour photos "
                   "in scenes, not tiny centred grey thumbnails",
        num_classes=10, train_size=60000, test_size=10000,
        split_rule="the official split: 60,000 train / 10,000 test",
        source="Debian dataset-fashion-mnist (/usr/share/datasets/fashion-mnist), or "
               "torchvision's download into ~/.cache/ftkit/data",
        install=FASHION_INSTALL, classes=tuple(FASHION_CLASSES)),
        load_fashion, lambda: fashion_dir() is not None),
    "animals": _Entry(DatasetInfo(
        name="animals",
        description="Animal silhouettes: 28x28 grey, white shape on black, 10 animals x 1,000.",
        similarity="medium: the same animals are ImageNet classes, but here only their "
                   "outline is left, with no colour or texture",
        num_classes=10, train_size=8000, test_size=2000,
        split_rule="800 train / 200 test per class, by a fixed permutation of each class "
                   f"(seed {SPLIT_SEED})",
        source="PyPI animal-mnist==0.4 (data files read directly)",
        install=ANIMAL_INSTALL, classes=tuple(ANIMAL_CLASSES)),
        load_animals, lambda: animal_files() is not None),
    "digits": _Entry(DatasetInfo(
        name="digits",
        description="scikit-learn's handwritten digits: 1,797 tiny 8x8 grey images, 0-9.",
        similarity="low: 8x8 pen strokes have none of the textures or objects of ImageNet",
        num_classes=10, train_size=1438, test_size=359,
        split_rule=f"stratified: round(20 %) of each class to test by a fixed permutation "
                   f"(seed {SPLIT_SEED})",
        source="scikit-learn load_digits()", install="pip install scikit-learn",
        classes=tuple(str(d) for d in range(10))),
        load_digits, lambda: _has_module("sklearn")),
    "photo_crops": _Entry(DatasetInfo(
        name="photo_crops",
        description="Random square crops of 12 photos bundled with scikit-image and "
                    "scikit-learn; the class is the photo a crop comes from.",
        similarity="high: colour and grey natural photos (a cat, a temple, coffee, a "
                   "rocket...), the kind of image ImageNet is made of",
        num_classes=len(PHOTO_CLASSES),
        train_size=PHOTO_CROPS_PER_CLASS["train"] * len(PHOTO_CLASSES),
        test_size=PHOTO_CROPS_PER_CLASS["test"] * len(PHOTO_CLASSES),
        split_rule=f"each photo cut into a {PHOTO_GRID}x{PHOTO_GRID} grid; {PHOTO_TEST_CELLS} "
                   "cells per photo (fixed) hold the test crops, the rest the train crops; "
                   "every crop lies inside one cell (side 50-100 % of the cell), so train "
                   "and test never share pixels; 150 train / 50 test crops per photo",
        source="skimage.data and sklearn.datasets.load_sample_images (no download)",
        install="pip install scikit-image scikit-learn", classes=tuple(PHOTO_CLASSES)),
        load_photo_crops, lambda: _has_module("skimage") and _has_module("sklearn")),
}


def list_datasets() -> pd.DataFrame:
    """The catalogue as a table: name, classes, train, test, available_offline,
    similarity, install, description."""
    rows = [dict(name=name, classes=e.info.num_classes, train=e.info.train_size,
                 test=e.info.test_size, available_offline=bool(e.available()),
                 similarity=e.info.similarity, install=e.info.install,
                 description=e.info.description)
            for name, e in _CATALOGUE.items()]
    return pd.DataFrame(rows)


def _check_stats(label: str, values: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(v) for v in values)
    if len(values) != 3 or (label == "std" and min(values) <= 0):
        raise ValueError(f"{label} must be 3 numbers (one per RGB channel)"
                         + (", all > 0" if label == "std" else "") + f", got {values}")
    return values  # type: ignore[return-value]


def _folder_info(root: Path, folder: FolderSplit) -> DatasetInfo:
    return DatasetInfo(
        name=root.name, description=f"your images in {root}", similarity="unknown",
        num_classes=len(folder.classes), train_size=folder.sizes["train"],
        test_size=folder.sizes["test"], split_rule=folder.split_rule, source=str(root),
        install="", classes=tuple(folder.classes))


def load_dataset(name_or_path: str | os.PathLike, split: str = "train",
                 n_per_class: int | None = None, seed: int = 0, image_size: int = 64,
                 mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, *, check: str = "header",
                 bad_images: str = "error") -> ImageDataset:
    """Load a catalogue data set or an image folder as an :class:`ImageDataset`.

    Args:
        name_or_path: a catalogue name (see :func:`list_datasets`) or a folder
            laid out as ``root/<class>/<image>`` (optionally under ``train/``
            and ``test/`` or ``val/``); a ``pathlib.Path`` is always a folder.
            Images of any size are squashed to ``S x S`` (no cropping).
        split: ``"train"`` or ``"test"`` (``"val"`` is read as ``"test"``).
        n_per_class: keep this many images of every class, chosen by ``seed``
            (the same seed always keeps the same images); None keeps all.
        seed: seed of the subsample; the train/test split itself never changes.
        image_size: side ``S`` of the square ``(3, S, S)`` images.
        mean, std: per-channel normalisation; ImageNet's when None.
        check: image folders only: how every file is checked when the folder
            loads: ``"header"`` (default, cheap: the header opens and a JPEG,
            PNG or GIF is complete), ``"decode"`` (decode every image, slower),
            ``"none"``. A progress bar shows for large folders.
        bad_images: image folders only: ``"error"`` (default) raises naming
            every bad file; ``"skip"`` leaves them out with a warning.

    Raises:
        ValueError: unknown name (lists the known ones), bad split or settings,
            ``n_per_class`` above what the smallest class has (says the maximum),
            a folder with one class or a class too small to split.
        BadImageError: (a ValueError) image files that cannot be read, each named.
        FileNotFoundError: a path that does not exist.
        DataUnavailableError: the source is not installed; the message and
            ``.install`` give the command that installs it.
    """
    split = "test" if split == "val" else split
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) \
            or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    if check not in IMAGE_CHECKS or bad_images not in ("error", "skip"):
        raise ValueError(f"check must be one of {IMAGE_CHECKS} and bad_images 'error' or 'skip', "
                         f"got check={check!r}, bad_images={bad_images!r}")
    mean_t = _check_stats("mean", IMAGENET_MEAN if mean is None else mean)
    std_t = _check_stats("std", IMAGENET_STD if std is None else std)
    name = os.fspath(name_or_path)
    if name in _CATALOGUE and not isinstance(name_or_path, os.PathLike):
        check_split(split, ("train", "test"), name)
        entry = _CATALOGUE[name]
        source, labels, indices = entry.load(split)
        classes, info = list(entry.info.classes), entry.info
    else:
        root = Path(name).expanduser()
        known = ", ".join(repr(k) for k in _CATALOGUE)
        if not root.exists():
            if isinstance(name_or_path, os.PathLike) or os.sep in name or "/" in name:
                raise FileNotFoundError(f"image folder {str(root)!r} does not exist "
                                        f"(catalogue names: {known})")
            raise ValueError(f"unknown data set {name!r}; known names: {known}, "
                             "or the path of an image folder")
        if not root.is_dir():
            raise ValueError(f"{root} is a file; give a folder laid out as root/<class>/<image>")
        check_split(split, ("train", "test"), name)
        folder = load_folder(root, split, check=check, bad_images=bad_images)
        source, labels, indices = folder.source, folder.labels, folder.indices
        classes, info = folder.classes, _folder_info(root, folder)
    if n_per_class is not None:
        indices = _subsample(labels, indices, n_per_class, seed, classes,
                             where=f"split {split!r} of {info.name!r}")
    return ImageDataset(source, labels, indices, classes, info, split=split,
                        image_size=int(image_size), mean=mean_t, std=std_t)
