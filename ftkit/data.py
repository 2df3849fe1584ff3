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

>>> train = load_dataset("animals", n_per_class=20)       # doctest: +SKIP
>>> image, label = train[0]; image.shape, train.classes[label]
(torch.Size([3, 64, 64]), 'bear')
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import logging
import os
import pickle
import shutil
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPLIT_SEED = 0            # fixed train/test splits; never the user's subsampling seed
TEST_FRACTION = 0.2
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
ANIMAL_MNIST_PACKAGE = "animal_mnist"
PHOTO_GRID = 3            # photo_crops: each photo is cut into PHOTO_GRID x PHOTO_GRID cells
PHOTO_TEST_CELLS = 2      # ... of which this many (per photo) hold the test crops
PHOTO_CROPS_PER_CLASS = {"train": 150, "test": 50}
_TRANSFORM_VERSION = 1    # bump when __getitem__ changes, so fingerprint-keyed caches refresh

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
# Label order checked by viewing the images: the package sorts classes alphabetically.
ANIMAL_CLASSES = ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse",
                  "sheep", "zebra"]
# (class name, loader); all ship inside the scikit-image / scikit-learn wheels.
_PHOTO_SOURCES: tuple[tuple[str, str], ...] = (
    ("astronaut", "skimage.astronaut"), ("brick", "skimage.brick"),
    ("camera", "skimage.camera"), ("chelsea", "skimage.chelsea"),
    ("china", "sklearn.china.jpg"), ("coffee", "skimage.coffee"),
    ("flower", "sklearn.flower.jpg"), ("grass", "skimage.grass"),
    ("gravel", "skimage.gravel"), ("moon", "skimage.moon"),
    ("motorcycle", "skimage.stereo_motorcycle"), ("rocket", "skimage.rocket"),
)
PHOTO_CLASSES = [name for name, _ in _PHOTO_SOURCES]


class DataUnavailableError(RuntimeError):
    """A data set's source is not installed (and could not be downloaded).

    Attributes:
        install: the command that installs the missing source.
    """

    def __init__(self, message: str, install: str = ""):
        super().__init__(message)
        self.install = install


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


# ---------------------------------------------------------------- image sources
# A source maps an index to a uint8 image (H, W) or (H, W, 3) at native size.

def _blake(*parts: bytes) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


class _ArraySource:
    def __init__(self, images: np.ndarray):
        self.images = images                                  # (N, H, W[, 3]) uint8

    def image(self, i: int) -> np.ndarray:
        return self.images[i]

    def digest(self, idx: np.ndarray) -> str:
        return _blake(np.ascontiguousarray(self.images[idx]).tobytes())


class _FileSource:
    def __init__(self, paths: Sequence[Path]):
        self.paths = list(paths)

    def image(self, i: int) -> np.ndarray:
        from PIL import Image

        with Image.open(self.paths[i]) as im:
            return np.asarray(im.convert("RGB"))

    def digest(self, idx: np.ndarray) -> str:
        return _blake(*(self.paths[i].read_bytes() for i in idx))


class _CropSource:
    def __init__(self, photos: tuple[np.ndarray, ...], boxes: np.ndarray):
        self.photos = photos
        self.boxes = boxes                                    # (N, 4): photo, y, x, size

    def image(self, i: int) -> np.ndarray:
        p, y, x, s = self.boxes[i]
        return self.photos[p][y:y + s, x:x + s]

    def digest(self, idx: np.ndarray) -> str:
        return _blake(*(np.ascontiguousarray(p).tobytes() for p in self.photos),
                      self.boxes[idx].astype(np.int64).tobytes())


# ---------------------------------------------------------------- the dataset

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
        x = x.float().div_(255.0)
        s = self.image_size
        if x.shape[1:] != (s, s):
            x = F.interpolate(x[None], size=(s, s), mode="bilinear",
                              align_corners=False, antialias=True)[0]
        x = x.expand(3, s, s)                                          # grey -> 3 channels
        return (x - self._mean_t) / self._std_t, int(self.targets[i])

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
            self._fingerprint = _blake(
                self._source.digest(self.indices).encode(), self.targets.tobytes(),
                self.indices.tobytes(), settings.encode())
        return self._fingerprint

    def __repr__(self) -> str:
        return (f"ImageDataset({self.info.name!r}, split={self.split!r}, n={len(self)}, "
                f"classes={len(self.classes)}, image_size={self.image_size})")


# ---------------------------------------------------------------- splits

def _stratified_split(labels: np.ndarray, test_fraction: float = TEST_FRACTION,
                      seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """Per class: a fixed permutation; the first round(fraction * n) go to test
    (at least one, and at least one left for train, when a class has >= 2)."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        n = len(members)
        n_test = 0 if n < 2 else min(max(1, int(np.floor(test_fraction * n + 0.5))), n - 1)
        parts["test"].append(members[:n_test])
        parts["train"].append(members[n_test:])
    return {k: np.sort(np.concatenate(v)).astype(np.int64) for k, v in parts.items()}


def _subsample(labels: np.ndarray, indices: np.ndarray, n_per_class: int, seed: int,
               classes: list[str], where: str) -> np.ndarray:
    """``n_per_class`` items of every class present, chosen by ``seed``."""
    if isinstance(n_per_class, bool) or not isinstance(n_per_class, (int, np.integer)) \
            or n_per_class < 1:
        raise ValueError(f"n_per_class must be a positive int or None, got {n_per_class!r}")
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


# ---------------------------------------------------------------- raw loaders

def data_dir() -> Path:
    """Where ftkit keeps downloaded data: ``$FTKIT_DATA_DIR`` or ``~/.cache/ftkit/data``."""
    return Path(os.environ.get("FTKIT_DATA_DIR") or Path.home() / ".cache" / "ftkit" / "data")


def _read_only(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)         # shared by every dataset of this process (lru_cache)
    return a


@functools.lru_cache(maxsize=4)
def _read_idx(path: str) -> np.ndarray:
    """A gzipped IDX file (the MNIST format): big-endian header, then uint8 data."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    _, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if dtype_code != 0x08:
        raise ValueError(f"{path}: expected uint8 IDX data, got type code {dtype_code:#x}")
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    return _read_only(np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape).copy())


_FASHION_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                  "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
_FASHION_INSTALL = "sudo apt-get install dataset-fashion-mnist"


def _fashion_dir() -> Path | None:
    for d in (FASHION_MNIST_SYSTEM_DIR, data_dir() / "fashion-mnist"):
        if all((d / f).is_file() for pair in _FASHION_FILES.values() for f in pair):
            return d
    return None


def _download_fashion() -> Path:
    """torchvision's download into a temp dir; moved into the cache only when complete."""
    target = data_dir() / "fashion-mnist"
    tmp = Path(tempfile.mkdtemp(prefix="ftkit-fashion-"))
    staging = None
    try:
        from torchvision.datasets import FashionMNIST

        for train in (True, False):
            FashionMNIST(str(tmp), train=train, download=True)
        raw = tmp / "FashionMNIST" / "raw"
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".fashion-mnist-", dir=target.parent))
        for pair in _FASHION_FILES.values():
            for name in pair:
                shutil.copyfile(raw / name, staging / name)
        os.replace(staging, target)
        log.info("downloaded Fashion-MNIST into %s", target)
        return target
    except Exception as e:
        reason = (str(e).strip().splitlines() or [""])[0]
        raise DataUnavailableError(
            f"Fashion-MNIST is not in {FASHION_MNIST_SYSTEM_DIR} nor {target}, and the download "
            f"failed ({type(e).__name__}: {reason}). Install it with:\n    {_FASHION_INSTALL}\n"
            "or run this once while online: torchvision then downloads it into "
            f"{target} (set FTKIT_DATA_DIR to change where).", _FASHION_INSTALL) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _load_fashion(split: str) -> tuple[_ArraySource, np.ndarray, np.ndarray]:
    folder = _fashion_dir() or _download_fashion()
    images_file, labels_file = _FASHION_FILES[split]
    images, labels = _read_idx(str(folder / images_file)), _read_idx(str(folder / labels_file))
    return _ArraySource(images), labels.astype(np.int64), np.arange(len(labels))


_ANIMAL_INSTALL = "pip install --no-deps animal-mnist==0.4"


def _animal_files() -> tuple[Path, Path] | None:
    # find_spec does not import the package (its loader imports tensorflow).
    try:
        spec = importlib.util.find_spec(ANIMAL_MNIST_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "data" / "Animal_MNIST"
    files = folder / "animal_data_version_3.gz", folder / "animal_label_version_3.gz"
    return files if all(f.is_file() for f in files) else None


@functools.lru_cache(maxsize=1)
def _read_animals(images_path: str, labels_path: str) -> tuple[np.ndarray, np.ndarray]:
    # Gzipped pickles of numpy arrays, from the installed package (trusted like its code).
    with gzip.open(images_path, "rb") as f:
        images = np.asarray(pickle.load(f), dtype=np.uint8)
    with gzip.open(labels_path, "rb") as f:
        labels = np.asarray(pickle.load(f), dtype=np.int64)
    if images.shape != (10000, 28, 28) or labels.shape != (10000,):
        raise ValueError(f"unexpected animal-mnist arrays {images.shape}, {labels.shape}; "
                         f"reinstall with: {_ANIMAL_INSTALL}")
    return _read_only(images), _read_only(labels)


def _load_animals(split: str) -> tuple[_ArraySource, np.ndarray, np.ndarray]:
    files = _animal_files()
    if files is None:
        raise DataUnavailableError(
            f"the animal silhouettes come from the PyPI package animal-mnist, which is not "
            f"installed. Install it without its tensorflow dependency:\n    {_ANIMAL_INSTALL}",
            _ANIMAL_INSTALL)
    images, labels = _read_animals(str(files[0]), str(files[1]))
    return _ArraySource(images), labels, _stratified_split(labels)[split]


@functools.lru_cache(maxsize=1)
def _read_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.floor(d.images * (255.0 / 16.0) + 0.5).astype(np.uint8)   # 0..16 -> 0..255
    return _read_only(images), _read_only(d.target.astype(np.int64))


def _load_digits(split: str) -> tuple[_ArraySource, np.ndarray, np.ndarray]:
    images, labels = _read_digits()
    return _ArraySource(images), labels, _stratified_split(labels)[split]


@functools.lru_cache(maxsize=1)
def _read_photos() -> tuple[np.ndarray, ...]:
    import skimage.data
    from sklearn.datasets import load_sample_image

    photos = []
    for _, loader in _PHOTO_SOURCES:
        lib, _, what = loader.partition(".")
        img = load_sample_image(what) if lib == "sklearn" else getattr(skimage.data, what)()
        img = img[0] if isinstance(img, tuple) else img        # stereo pair -> left image
        photos.append(_read_only(np.ascontiguousarray(img, dtype=np.uint8)))
    return tuple(photos)


def _grid_cells(height: int, width: int) -> list[tuple[int, int, int, int]]:
    ys = np.linspace(0, height, PHOTO_GRID + 1).astype(int)
    xs = np.linspace(0, width, PHOTO_GRID + 1).astype(int)
    return [(ys[r], ys[r + 1], xs[c], xs[c + 1])
            for r in range(PHOTO_GRID) for c in range(PHOTO_GRID)]


def photo_crop_boxes(split: str = "train") -> pd.DataFrame:
    """Where every ``photo_crops`` item comes from: photo, cell, y, x, size (pixels).

    Cells are half-open boxes of a 3x3 grid; test cells (2 per photo) never
    hold a train crop. Crop sides are 50-100 % of the cell's shorter side.
    """
    _check_split(split, ("train", "test"), "photo_crops")
    rows = []
    for p, photo in enumerate(_read_photos()):
        cells = _grid_cells(*photo.shape[:2])
        test_cells = np.random.default_rng([SPLIT_SEED, p]).choice(
            len(cells), PHOTO_TEST_CELLS, replace=False)
        test_cells = {int(c) for c in test_cells}
        own = sorted(test_cells if split == "test" else set(range(len(cells))) - test_cells)
        rng = np.random.default_rng([SPLIT_SEED, p, int(split == "test")])
        for _ in range(PHOTO_CROPS_PER_CLASS[split]):
            cell = int(rng.choice(own))
            y0, y1, x0, x1 = cells[cell]
            size = int(rng.integers(min(y1 - y0, x1 - x0) // 2, min(y1 - y0, x1 - x0) + 1))
            y = int(rng.integers(y0, y1 - size + 1))
            x = int(rng.integers(x0, x1 - size + 1))
            rows.append((p, cell, y, x, size))
    return pd.DataFrame(rows, columns=["photo", "cell", "y", "x", "size"])


def _load_photo_crops(split: str) -> tuple[_CropSource, np.ndarray, np.ndarray]:
    boxes = photo_crop_boxes(split)
    source = _CropSource(_read_photos(), boxes[["photo", "y", "x", "size"]].to_numpy())
    return source, boxes["photo"].to_numpy(np.int64), np.arange(len(boxes))


# ---------------------------------------------------------------- the user's own folder

def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def _class_dirs(root: Path) -> list[Path]:
    # Hidden folders (.ipynb_checkpoints, .git) are never classes.
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan_classes(root: Path) -> dict[str, list[Path]]:
    dirs = _class_dirs(root)
    if not dirs:
        loose = any(_is_image(p) for p in root.iterdir())
        raise ValueError(
            f"{root} has no class folders; expected root/<class name>/<image>.png"
            + (" (it holds images directly: move them into one folder per class)" if loose else ""))
    found = {}
    for d in dirs:
        images = sorted(p for p in d.rglob("*") if _is_image(p)
                        and not any(part.startswith(".") for part in p.relative_to(d).parts))
        if not images:
            raise ValueError(f"class folder {d} has no images ({', '.join(IMAGE_EXTENSIONS)}); "
                             "add some or remove the folder")
        found[d.name] = images
    return found


def _split_dirs(root: Path) -> dict[str, Path] | None:
    test = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
    return {"train": root / "train", "test": test} if (root / "train").is_dir() and test else None


def _load_folder(root: Path, split: str) -> tuple[_FileSource, np.ndarray, np.ndarray,
                                                  list[str], DatasetInfo]:
    dirs = _split_dirs(root)
    if dirs:
        scans = {k: _scan_classes(d) for k, d in dirs.items()}
        classes = sorted(scans["train"])
        extra = sorted(set(scans["test"]) - set(classes))
        if extra:
            raise ValueError(f"{dirs['test']} has classes that {dirs['train']} lacks: {extra}")
        chosen = scans[split]
        paths = [p for c in classes for p in chosen.get(c, [])]
        labels = np.array([i for i, c in enumerate(classes) for _ in chosen.get(c, [])], np.int64)
        indices = np.arange(len(paths))
        sizes = {k: sum(map(len, s.values())) for k, s in scans.items()}
        rule = f"the folder's own split: {dirs['train'].name}/ and {dirs['test'].name}/"
    else:
        scan = _scan_classes(root)
        classes = sorted(scan)
        paths = [p for c in classes for p in scan[c]]
        labels = np.array([i for i, c in enumerate(classes) for _ in scan[c]], np.int64)
        parts = _stratified_split(labels)
        indices = parts[split]
        sizes = {k: len(v) for k, v in parts.items()}
        rule = (f"stratified: {TEST_FRACTION:.0%} of each class (at least 1 when a class has "
                f">= 2 images) to test by a fixed permutation (seed {SPLIT_SEED})")
    info = DatasetInfo(
        name=root.name, description=f"your images in {root}", similarity="unknown",
        num_classes=len(classes), train_size=sizes["train"], test_size=sizes["test"],
        split_rule=rule, source=str(root), install="", classes=tuple(classes))
    return _FileSource(paths), labels, indices, classes, info


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
        install=_FASHION_INSTALL, classes=tuple(FASHION_CLASSES)),
        _load_fashion, lambda: _fashion_dir() is not None),
    "animals": _Entry(DatasetInfo(
        name="animals",
        description="Animal silhouettes: 28x28 grey, white shape on black, 10 animals x 1,000.",
        similarity="medium: the same animals are ImageNet classes, but here only their "
                   "outline is left, with no colour or texture",
        num_classes=10, train_size=8000, test_size=2000,
        split_rule="800 train / 200 test per class, by a fixed permutation of each class "
                   f"(seed {SPLIT_SEED})",
        source="PyPI animal-mnist==0.4 (data files read directly)",
        install=_ANIMAL_INSTALL, classes=tuple(ANIMAL_CLASSES)),
        _load_animals, lambda: _animal_files() is not None),
    "digits": _Entry(DatasetInfo(
        name="digits",
        description="scikit-learn's handwritten digits: 1,797 tiny 8x8 grey images, 0-9.",
        similarity="low: 8x8 pen strokes have none of the textures or objects of ImageNet",
        num_classes=10, train_size=1438, test_size=359,
        split_rule=f"stratified: round(20 %) of each class to test by a fixed permutation "
                   f"(seed {SPLIT_SEED})",
        source="scikit-learn load_digits()", install="pip install scikit-learn",
        classes=tuple(str(d) for d in range(10))),
        _load_digits, lambda: _has_module("sklearn")),
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
        _load_photo_crops, lambda: _has_module("skimage") and _has_module("sklearn")),
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


def _check_split(split: str, allowed: Sequence[str], name: str) -> None:
    if split not in allowed:
        raise ValueError(f"split must be one of {list(allowed)} for {name!r}, got {split!r}")


def _check_stats(label: str, values: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(v) for v in values)
    if len(values) != 3 or (label == "std" and min(values) <= 0):
        raise ValueError(f"{label} must be 3 numbers (one per RGB channel)"
                         + (", all > 0" if label == "std" else "") + f", got {values}")
    return values  # type: ignore[return-value]


def load_dataset(name_or_path: str | os.PathLike, split: str = "train",
                 n_per_class: int | None = None, seed: int = 0, image_size: int = 64,
                 mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None) -> ImageDataset:
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

    Raises:
        ValueError: unknown name (lists the known ones), bad split or settings,
            or ``n_per_class`` above what the smallest class has (says the maximum).
        FileNotFoundError: a path that does not exist.
        DataUnavailableError: the source is not installed; the message and
            ``.install`` give the command that installs it.
    """
    split = "test" if split == "val" else split
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) \
            or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    mean_t = _check_stats("mean", IMAGENET_MEAN if mean is None else mean)
    std_t = _check_stats("std", IMAGENET_STD if std is None else std)
    name = os.fspath(name_or_path)
    if name in _CATALOGUE and not isinstance(name_or_path, os.PathLike):
        _check_split(split, ("train", "test"), name)
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
        _check_split(split, ("train", "test"), name)
        source, labels, indices, classes, info = _load_folder(root, split)
    if n_per_class is not None:
        indices = _subsample(labels, indices, n_per_class, seed, classes,
                             where=f"split {split!r} of {info.name!r}")
    return ImageDataset(source, labels, indices, classes, info, split=split,
                        image_size=int(image_size), mean=mean_t, std=std_t)
