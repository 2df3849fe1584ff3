"""Raw image sources: each data set read as ``uint8`` images and labels, with its fixed split.

Each ``load_*`` returns ``(source, labels, indices)`` (the user's own folders are read by
:mod:`ftkit.data.image_folder` on the same sources):
``source.image(i)`` is a ``uint8`` image ``(H, W)`` or ``(H, W, 3)`` at native size, ``labels``
(int64) cover the whole source and ``indices`` pick the split's images. The splits never depend
on the user's seed. :mod:`ftkit.data.catalogue` builds the catalogue and its ``ImageDataset`` on these.
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
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ftkit.data.images import read_image

log = logging.getLogger(__name__)

SPLIT_SEED = 0            # fixed train/test splits; never the user's subsampling seed
TEST_FRACTION = 0.2
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
ANIMAL_MNIST_PACKAGE = "animal_mnist"
PHOTO_GRID = 3            # photo_crops: each photo is cut into PHOTO_GRID x PHOTO_GRID cells
PHOTO_TEST_CELLS = 2      # ... of which this many (per photo) hold the test crops
PHOTO_CROPS_PER_CLASS = {"train": 150, "test": 50}

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



# ---------------------------------------------------------------- image sources
# A source maps an index to a uint8 image (H, W) or (H, W, 3) at native size.

def hash_parts(*parts: bytes) -> str:
    """128-bit BLAKE2b hex digest of ``parts``, each prefixed by its length (no ambiguity)."""
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
        return hash_parts(np.ascontiguousarray(self.images[idx]).tobytes())


class _FileSource:
    def __init__(self, paths: Sequence[Path]):
        self.paths = list(paths)

    def image(self, i: int) -> np.ndarray:
        return read_image(self.paths[i])   # BadImageError names the file

    def digest(self, idx: np.ndarray) -> str:
        return hash_parts(*(self.paths[i].read_bytes() for i in idx))


class _CropSource:
    def __init__(self, photos: tuple[np.ndarray, ...], boxes: np.ndarray):
        self.photos = photos
        self.boxes = boxes                                    # (N, 4): photo, y, x, size

    def image(self, i: int) -> np.ndarray:
        p, y, x, s = self.boxes[i]
        return self.photos[p][y:y + s, x:x + s]

    def digest(self, idx: np.ndarray) -> str:
        return hash_parts(*(np.ascontiguousarray(p).tobytes() for p in self.photos),
                          self.boxes[idx].astype(np.int64).tobytes())


# ---------------------------------------------------------------- fixed splits

def stratified_split(labels: np.ndarray, test_fraction: float = TEST_FRACTION,
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


def check_split(split: str, allowed: Sequence[str], name: str) -> None:
    """Raise ``ValueError`` listing the allowed splits when ``split`` is not one of them."""
    if split not in allowed:
        raise ValueError(f"split must be one of {list(allowed)} for {name!r}, got {split!r}")


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
FASHION_INSTALL = "sudo apt-get install dataset-fashion-mnist"


def fashion_dir() -> Path | None:
    """The folder holding all four Fashion-MNIST IDX files, or None when none does."""
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
            f"failed ({type(e).__name__}: {reason}). Install it with:\n    {FASHION_INSTALL}\n"
            "or run this once while online: torchvision then downloads it into "
            f"{target} (set FTKIT_DATA_DIR to change where).", FASHION_INSTALL) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def load_fashion(split: str) -> tuple[_ArraySource, np.ndarray, np.ndarray]:
    """Fashion-MNIST's official split; downloads through torchvision when not installed."""
    folder = fashion_dir() or _download_fashion()
    images_file, labels_file = _FASHION_FILES[split]
    images, labels = _read_idx(str(folder / images_file)), _read_idx(str(folder / labels_file))
    return _ArraySource(images), labels.astype(np.int64), np.arange(len(labels))


ANIMAL_INSTALL = "pip install --no-deps animal-mnist==0.4"


def animal_files() -> tuple[Path, Path] | None:
    """The installed animal-mnist images and labels files, or None when not installed."""
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
                         f"reinstall with: {ANIMAL_INSTALL}")
    return _read_only(images), _read_only(labels)


def load_animals(split: str) -> tuple[_ArraySource, np.ndarray, np.ndarray]:
    """Animal silhouettes, split by :func:`stratified_split` (800 / 200 per class)."""
    files = animal_files()
    if files is None:
        raise DataUnavailableError(
            f"the animal silhouettes come from the PyPI package animal-mnist, which is not "
            f"installed. Install it without its tensorflow dependency:\n    {ANIMAL_INSTALL}",
            ANIMAL_INSTALL)
    images, labels = _read_animals(str(files[0]), str(files[1]))
    return _ArraySource(images), labels, stratified_split(labels)[split]


@functools.lru_cache(maxsize=1)
def _read_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.floor(d.images * (255.0 / 16.0) + 0.5).astype(np.uint8)   # 0..16 -> 0..255
    return _read_only(images), _read_only(d.target.astype(np.int64))


def load_digits(split: str) -> tuple[_ArraySource, np.ndarray, np.ndarray]:
    """scikit-learn's digits scaled to 0..255, split by :func:`stratified_split`."""
    images, labels = _read_digits()
    return _ArraySource(images), labels, stratified_split(labels)[split]


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


def forget_loaded_sources() -> None:
    """Drop the raw arrays this process keeps of every catalogue source it has read.

    Each source is read once and kept (Fashion-MNIST's 70,000 images hold ~55 MB);
    a long job that moves from one data set to the next calls this when it is
    done with one, so a kernel does not carry them all. The next load reads the
    files again (0.01-1.1 s a data set here, photo_crops the slowest).
    """
    for cached in (_read_idx, _read_animals, _read_digits, _read_photos):
        cached.cache_clear()


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
    check_split(split, ("train", "test"), "photo_crops")
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


def load_photo_crops(split: str) -> tuple[_CropSource, np.ndarray, np.ndarray]:
    """Crops of the bundled photos at :func:`photo_crop_boxes`; label = photo."""
    boxes = photo_crop_boxes(split)
    source = _CropSource(_read_photos(), boxes[["photo", "y", "x", "size"]].to_numpy())
    return source, boxes["photo"].to_numpy(np.int64), np.arange(len(boxes))
