"""The user's own image folder: ``root/<class>/<image>``, or ``root/train`` and ``root/test``.

:func:`load_folder` scans the classes, checks every image file once (all
splits, so a truncated or empty file is named when the folder loads, not in
the middle of training), refuses folders a classifier cannot learn from (one
class, classes too small to split) and returns one split as a
:class:`FolderSplit`. :mod:`ftkit.data.catalogue` wraps it in an ``ImageDataset``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ftkit.data.images import BadImageError, find_bad_images
from ftkit.data.sources import (
    IMAGE_EXTENSIONS,
    SPLIT_SEED,
    TEST_FRACTION,
    _FileSource,
    stratified_split,
)

__all__ = ["BAD_IMAGE_POLICIES", "FolderSplit", "load_folder"]


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


@dataclass(frozen=True)
class FolderSplit:
    """One split of an image folder, plus what describes the whole folder."""

    source: _FileSource
    labels: np.ndarray           # (N,) int64, for every image in source
    indices: np.ndarray          # the split's images
    classes: list[str]
    sizes: dict[str, int]        # {"train": ..., "test": ...}
    split_rule: str


BAD_IMAGE_POLICIES = ("error", "skip")


def _drop_bad_images(scans: dict[str, dict[str, list[Path]]], root: Path, check: str,
                     bad_images: str) -> None:
    """Check every image of every split; raise naming each bad file, or leave them out."""
    paths = [p for scan in scans.values() for images in scan.values() for p in images]
    bad = find_bad_images(paths, check)
    if not bad:
        return
    listing = "\n".join(f"  {p}: {reason}" for p, reason in bad)
    if bad_images == "error":
        raise BadImageError(
            f"{len(bad)} of {len(paths)} files in {root} cannot be read as images:\n{listing}\n"
            "Remove or replace them, or pass bad_images='skip' to leave them out.",
            paths=[p for p, _ in bad])
    warnings.warn(f"left out {len(bad)} of {len(paths)} files in {root} that cannot be read "
                  f"as images (bad_images='skip'):\n{listing}", stacklevel=4)
    skipped = {p for p, _ in bad}
    for scan in scans.values():
        for c in scan:
            scan[c] = [p for p in scan[c] if p not in skipped]


def _check_classes(scans: dict[str, dict[str, list[Path]]], root: Path, auto_split: bool) -> None:
    """At least two classes, none empty, and (automatic split) two images per class."""
    for scan in scans.values():
        empty = [c for c, images in scan.items() if not images]
        if empty:
            raise ValueError(f"class folders {empty} in {root} have no readable images left; "
                             "add images or remove the folders")
    classes = sorted(scans["train"])
    if len(classes) < 2:
        raise ValueError(
            f"{root} has only one class ({classes[0]!r}); a classifier needs at least two: "
            "add a folder of images per class, e.g. root/cats/ and root/dogs/")
    if auto_split:
        small = {c: len(images) for c, images in scans["train"].items() if len(images) < 2}
        if small:
            raise ValueError(
                f"classes {small} in {root} have fewer than 2 images; the automatic split needs "
                f"at least 2 per class (1 for test, 1 for train). Add images to these classes, "
                "or split the data yourself into root/train/<class>/ and root/test/<class>/")


def load_folder(root: Path, split: str, check: str = "header", bad_images: str = "error") -> FolderSplit:
    """Read ``root/<class>/<image>``, or ``root/train`` and ``root/test`` (or ``val``).

    Every image file of the folder (all splits) is checked first (``check``:
    see :func:`ftkit.data.images.find_bad_images`), so a truncated or empty
    file is named now, not in the middle of training.

    Raises:
        ValueError: no class folders, an empty class folder, only one class, a
            class with fewer than 2 images for the automatic split, or test
            classes that train lacks.
        BadImageError: (a ValueError) files that cannot be read, each named
            with its reason (``bad_images="skip"`` leaves them out with a warning).
    """
    if bad_images not in BAD_IMAGE_POLICIES:
        raise ValueError(f"bad_images must be one of {BAD_IMAGE_POLICIES}, got {bad_images!r}")
    dirs = _split_dirs(root)
    scans = {k: _scan_classes(d) for k, d in dirs.items()} if dirs else {"train": _scan_classes(root)}
    if dirs:
        extra = sorted(set(scans["test"]) - set(scans["train"]))
        if extra:
            raise ValueError(f"{dirs['test']} has classes that {dirs['train']} lacks: {extra}")
    _drop_bad_images(scans, root, check, bad_images)
    _check_classes(scans, root, auto_split=not dirs)
    classes = sorted(scans["train"])
    if dirs:
        chosen = scans[split]
        paths = [p for c in classes for p in chosen.get(c, [])]
        labels = np.array([i for i, c in enumerate(classes) for _ in chosen.get(c, [])], np.int64)
        indices = np.arange(len(paths))
        sizes = {k: sum(map(len, s.values())) for k, s in scans.items()}
        rule = f"the folder's own split: {dirs['train'].name}/ and {dirs['test'].name}/"
    else:
        scan = scans["train"]
        paths = [p for c in classes for p in scan[c]]
        labels = np.array([i for i, c in enumerate(classes) for _ in scan[c]], np.int64)
        parts = stratified_split(labels)
        indices = parts[split]
        sizes = {k: len(v) for k, v in parts.items()}
        rule = (f"stratified: {TEST_FRACTION:.0%} of each class (at least 1 when a class has "
                f">= 2 images) to test by a fixed permutation (seed {SPLIT_SEED})")
    return FolderSplit(_FileSource(paths), labels, indices, classes, sizes, rule)
