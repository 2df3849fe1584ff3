"""Distribution shifts generated from the data, at the three levels of Lee et al. (2022).

* **input level** -- the same images, corrupted: ``"noise"`` (Gaussian pixel
  noise), ``"blur"`` (Gaussian blur), ``"invert"`` (1 - pixel), ``"rotate"``
  (rotation about the centre). ``severity`` in (0, 1] scales each one:
  noise sigma = 0.5 * severity (pixels in [0, 1]), blur sigma = 2 px * severity,
  rotation = 90 degrees * severity; inversion is all or nothing (a partial
  blend would fade every image to grey) and ignores it.
* **feature level** -- a subpopulation shift: coarse classes made of different
  fine classes in the source and the target domain (``SUBPOPULATIONS``, after
  BREEDS), e.g. "top" is T-shirt + Pullover in the source, Coat + Shirt in the target.
* **output level** -- the same images with their labels permuted (a derangement:
  no class keeps its label).

Everything works on in-memory tensors, :class:`TensorTask`, because the lab's
small networks train in seconds on them and a corruption is then one tensor op.
Images are kept normalised as :func:`ftkit.data.load_dataset` gives them
(ImageNet mean/std); corruptions undo the normalisation, act on pixels in
[0, 1], clamp, and normalise again.

>>> task = fashion_task("A", "test", n_per_class=10)          # doctest: +SKIP
>>> noisy = apply_shift(task, "noise", seed=0)                 # doctest: +SKIP
>>> noisy.X.shape == task.X.shape, noisy.description           # doctest: +SKIP
(True, 'Fashion-MNIST A (classes 0-4), test, noise (severity 1.0)')
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ftkit.core.imagenet import IMAGENET_MEAN, IMAGENET_STD
from ftkit.data.catalogue import load_dataset, pixels_to_input
from ftkit.data.sources import FASHION_CLASSES

__all__ = [
    "CORRUPTIONS", "SHIFTS", "SHIFT_LEVELS", "SUBPOPULATIONS", "TASKS", "TensorTask",
    "apply_shift", "corrupt", "fashion_task", "label_permutation", "shift_level",
    "subpopulation_task",
]

TASKS = {"A": (0, 1, 2, 3, 4), "B": (5, 6, 7, 8, 9)}   # Yosinski's two disjoint halves
# coarse class -> (source sub-classes, target sub-classes), Fashion-MNIST class indices
SUBPOPULATIONS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "top": ((0, 2), (4, 6)),        # T-shirt/top + Pullover  ->  Coat + Shirt
    "shoes": ((5, 7), (9,)),        # Sandal + Sneaker        ->  Ankle boot
    "other": ((1, 8), (3,)),        # Trouser + Bag           ->  Dress
}
CORRUPTIONS = ("noise", "blur", "invert", "rotate")
SHIFT_LEVELS = {**{c: "input" for c in CORRUPTIONS},
                "subpopulation": "feature", "label_permutation": "output"}
SHIFTS = tuple(SHIFT_LEVELS)
IMAGE_SIZE = 28
# blur and rotation work on this many images at a time: on a whole 2,500-image test set at once the
# grouped convolution needed 357 MB more (python notes/h13_memory/corruptions.py), on 256 a tenth of it
_CHUNK = 256


@dataclass(frozen=True, eq=False)
class TensorTask:
    """Images ``X`` (N, 3, S, S), normalised, and labels ``y`` (N,) in 0..len(classes)-1."""

    X: torch.Tensor
    y: torch.Tensor
    classes: tuple[str, ...]
    description: str

    def __post_init__(self) -> None:
        if self.X.ndim != 4 or self.y.ndim != 1 or len(self.X) != len(self.y):
            raise ValueError(f"X must be (N, C, H, W) and y (N,), got {tuple(self.X.shape)} "
                             f"and {tuple(self.y.shape)}")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


# ---------------------------------------------------------------- loading

@functools.lru_cache(maxsize=8)
def _fashion(split: str, n_per_class: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The chosen images as ``uint8`` pixels (N, 28, 28) and their labels; :func:`_select` normalises.

    Pixels, not the normalised 3-channel floats: 12x less memory for what the cache keeps
    (a full-settings transfer lab holds several pools, 34 MB each as floats, 2.8 MB as pixels).
    """
    data = load_dataset("fashion_mnist", split, n_per_class=n_per_class, seed=seed,
                        image_size=IMAGE_SIZE)
    pixels = np.stack([data.raw_image(i)[..., 0] for i in range(len(data))])
    if pixels.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"Fashion-MNIST images must be {IMAGE_SIZE}x{IMAGE_SIZE}, got {pixels.shape[1:]}")
    return torch.from_numpy(pixels), torch.as_tensor(data.targets)


def _normalise(pixels: torch.Tensor) -> torch.Tensor:
    """``uint8`` grey pixels (N, H, W) -> normalised (N, 3, H, W), exactly as ``load_dataset`` gives them."""
    return pixels_to_input(pixels[:, None], IMAGE_SIZE, IMAGENET_MEAN, IMAGENET_STD)


def _select(split: str, fine_classes: Sequence[int], n_per_class: int | None, seed: int,
            ) -> tuple[torch.Tensor, torch.Tensor]:
    pixels, y = _fashion(split, n_per_class, seed)
    keep = torch.isin(y, torch.tensor(list(fine_classes)))
    return _normalise(pixels[keep]), y[keep]


def fashion_task(task: str, split: str = "train", *, n_per_class: int | None = None,
                 seed: int = 0) -> TensorTask:
    """Fashion-MNIST task ``"A"`` (classes 0-4) or ``"B"`` (5-9), labels renumbered 0-4.

    Args:
        task: "A" or "B" (``TASKS``).
        split: "train" or "test" (the official split).
        n_per_class: images per class, chosen by ``seed``; None keeps all (6,000 / 1,000).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    fine = TASKS[task]
    X, y = _select(split, fine, n_per_class, seed)
    remap = torch.full((10,), -1, dtype=torch.long)
    remap[list(fine)] = torch.arange(len(fine))
    return TensorTask(X, remap[y], tuple(FASHION_CLASSES[c] for c in fine),
                      f"Fashion-MNIST {task} (classes {fine[0]}-{fine[-1]}), {split}")


def subpopulation_task(domain: str, split: str = "train", *, n_per_class: int | None = None,
                       seed: int = 0) -> TensorTask:
    """The coarse task of ``SUBPOPULATIONS`` seen through its ``"source"`` or ``"target"`` sub-classes.

    ``n_per_class`` counts images per *fine* class.
    """
    if domain not in ("source", "target"):
        raise ValueError(f"domain must be 'source' or 'target', got {domain!r}")
    side = 0 if domain == "source" else 1
    fine_to_coarse = {f: i for i, (src_tgt) in enumerate(SUBPOPULATIONS.values())
                      for f in src_tgt[side]}
    X, y = _select(split, sorted(fine_to_coarse), n_per_class, seed)
    remap = torch.full((10,), -1, dtype=torch.long)
    for f, c in fine_to_coarse.items():
        remap[f] = c
    parts = "; ".join(f"{name} = {' + '.join(FASHION_CLASSES[f] for f in st[side])}"
                      for name, st in SUBPOPULATIONS.items())
    return TensorTask(X, remap[y], tuple(SUBPOPULATIONS),
                      f"Fashion-MNIST coarse classes, {domain} sub-classes ({parts}), {split}")


# ---------------------------------------------------------------- input level

def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def _rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    a = math.radians(degrees)
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]],
                         dtype=x.dtype).expand(len(x), 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def corrupt(X: torch.Tensor, kind: str, severity: float = 1.0, *, seed: int = 0,
            mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
            ) -> torch.Tensor:
    """A corrupted copy of normalised images ``X`` (N, 3, H, W); ``X`` is not changed.

    Args:
        kind: one of ``CORRUPTIONS``.
        severity: in (0, 1]; the module docstring gives what it means per kind.
        seed: seeds the noise (the other corruptions are deterministic).
    """
    if kind not in CORRUPTIONS:
        raise ValueError(f"kind must be one of {CORRUPTIONS}, got {kind!r}")
    if not (isinstance(severity, (int, float)) and 0 < severity <= 1):
        raise ValueError(f"severity must be a number in (0, 1], got {severity!r}")
    m = torch.tensor(mean, dtype=X.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=X.dtype).view(1, -1, 1, 1)
    x = X * s + m                                              # pixels in [0, 1]; a copy, changed in place
    if kind == "noise":
        g = torch.Generator().manual_seed(seed)
        noise = torch.randn(x.shape[0], 1, *x.shape[2:], generator=g, dtype=x.dtype)
        x.add_(0.5 * severity * noise)                         # same noise on the 3 grey channels
    elif kind == "blur":
        x = torch.cat([_blur(part, 2.0 * severity) for part in x.split(_CHUNK)])
    elif kind == "invert":
        x.neg_().add_(1)
    else:
        x = torch.cat([_rotate(part, 90.0 * severity) for part in x.split(_CHUNK)])
    return x.clamp_(0, 1).sub_(m).div_(s)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W), edges replicated."""
    k = _gaussian_kernel(sigma)
    c, r = x.shape[1], len(k) // 2
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


# ---------------------------------------------------------------- output level

def label_permutation(num_classes: int, seed: int = 0) -> torch.Tensor:
    """A random derangement of ``0..num_classes-1`` (no label maps to itself), fixed by ``seed``."""
    if num_classes < 2:
        raise ValueError(f"a label permutation needs at least 2 classes, got {num_classes}")
    rng = np.random.default_rng(seed)
    while True:
        perm = rng.permutation(num_classes)
        if not np.any(perm == np.arange(num_classes)):
            return torch.as_tensor(perm, dtype=torch.long)


# ---------------------------------------------------------------- one entry point

def shift_level(shift: str) -> str:
    """``"input"``, ``"feature"`` or ``"output"`` for a shift name in ``SHIFTS``."""
    if shift not in SHIFT_LEVELS:
        raise ValueError(f"Unknown shift {shift!r}. Known: {', '.join(SHIFTS)}")
    return SHIFT_LEVELS[shift]


def apply_shift(task: TensorTask, shift: str, *, severity: float = 1.0, seed: int = 0,
                ) -> TensorTask:
    """``task`` under an input-level or output-level shift.

    The feature-level shift is a different set of images, not a transformation:
    build it with ``subpopulation_task("target", ...)``.

    Args:
        shift: a corruption (``CORRUPTIONS``) or ``"label_permutation"``.
        severity: for corruptions, in (0, 1].
        seed: noise seed, or the permutation's seed.
    """
    level = shift_level(shift)
    if level == "feature":
        raise ValueError("The subpopulation shift changes which images there are; build its "
                         "target with subpopulation_task('target', split) instead of apply_shift.")
    if level == "output":
        perm = label_permutation(task.num_classes, seed)
        return replace(task, y=perm[task.y],
                       description=f"{task.description}, labels permuted {perm.tolist()}")
    return replace(task, X=corrupt(task.X, shift, severity, seed=seed),
                   description=f"{task.description}, {shift} (severity {severity})")
