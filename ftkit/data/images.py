"""Image files read as ``uint8`` arrays, and a folder's files checked before any training.

Pillow's ``convert("RGB")`` clips images with more than 8 bits per channel (a
16-bit grey PNG at 50 %, 32768, becomes 255, white) and truncates floats (0.5
becomes 0). :func:`read_image` scales them instead:

* 16-bit integer images (Pillow modes ``I;16*``, and ``I`` when every value
  lies in 0..65535, as 16-bit PNGs and TIFFs read) keep their top 8 bits,
  ``v >> 8`` (32768 -> 128, 65535 -> 255), as Pillow itself does for 16-bit
  colour PNGs and scikit-image's ``img_as_ubyte`` for ``uint16``;
* float images (mode ``F``) must hold values in [0, 1]; they become
  ``round(255 v)`` (0.5 -> 128);
* 32-bit integers beyond 0..65535, floats outside [0, 1] or not finite, and
  negative values are refused with a :class:`BadImageError` naming the file:
  no scale would be right for every such file.

Every other mode (1-bit, 8-bit grey, palette, RGBA, CMYK...) goes through
Pillow's ``convert("RGB")`` (alpha is dropped). A file that cannot be read
raises :class:`BadImageError` with its path, also from a data loader.

:func:`find_bad_images` checks many files: by default cheaply (the header
opens, and a JPEG, PNG or GIF ends with its end marker, else it is decoded to
be sure), or by decoding every image; results are remembered per file size
and modification time, and a progress bar shows for large folders.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

__all__ = ["BadImageError", "IMAGE_CHECKS", "find_bad_images", "read_image", "to_uint8"]

IMAGE_CHECKS = ("header", "decode", "none")
PROGRESS_MIN_FILES = 500         # show a progress bar when checking at least this many files
# The bytes a complete file of these formats ends with (PNG: the IEND chunk with its CRC).
_TRAILERS = {"JPEG": b"\xff\xd9", "PNG": b"\x00\x00\x00\x00IEND\xaeB`\x82", "GIF": b"\x3b"}


class BadImageError(ValueError):
    """Image files that cannot be read as images.

    Attributes:
        path: the (first) bad file.
        paths: every bad file found.
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None,
                 paths: Sequence[str | os.PathLike] = ()):
        super().__init__(message)
        self.paths = [Path(p) for p in paths] or ([Path(path)] if path is not None else [])
        self.path = self.paths[0] if self.paths else None

    def __reduce__(self):  # keep the paths when sent between processes (sweeps, data loaders)
        return type(self), (str(self), None, [str(p) for p in self.paths])


# ---------------------------------------------------------------- one file

def _scale_16bit(a: np.ndarray, what: str) -> np.ndarray:
    if a.size and (a.min() < 0 or a.max() > 65535):
        raise ValueError(f"{what} pixels from {a.min()} to {a.max()} fit neither 8 nor 16 bits; "
                         "save the image with 8 or 16 bits per channel")
    return (a.astype(np.uint32) >> 8).astype(np.uint8)


def to_uint8(im) -> np.ndarray:
    """A PIL image as ``uint8``: ``(H, W)`` for 16-bit and float grey, else ``(H, W, 3)``.

    Raises:
        ValueError: integer values beyond 16 bits, or floats outside [0, 1] (see the module doc).
    """
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        return _scale_16bit(np.asarray(im).astype(np.int64), f"{mode} (integer)")
    if mode == "F":
        a = np.asarray(im, dtype=np.float64)
        if a.size and not (np.isfinite(a).all() and a.min() >= 0.0 and a.max() <= 1.0):
            raise ValueError(f"float pixels from {np.nanmin(a):g} to {np.nanmax(a):g} "
                             "(ftkit reads float images as 0..1): rescale the image to 0..1 "
                             "or save it with 8 or 16 bits")
        return np.floor(a * 255.0 + 0.5).astype(np.uint8)
    return np.asarray(im.convert("RGB"))


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def read_image(path: str | os.PathLike) -> np.ndarray:
    """The image in ``path`` as ``uint8`` (see :func:`to_uint8`).

    Raises:
        BadImageError: the file is missing, empty, truncated or no image Pillow
            can read; the message names the file and what to do.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            return to_uint8(im)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise BadImageError(
            f"cannot read image {path} ({_reason(err)}); remove or replace the file "
            "(load_dataset(..., bad_images='skip') leaves such files out)", path) from err


# ---------------------------------------------------------------- many files

def _ends_complete(path: str, fmt: str | None) -> bool:
    trailer = _TRAILERS.get(fmt or "")
    if trailer is None:
        return True
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - len(trailer)))
        return f.read() == trailer


@functools.lru_cache(maxsize=200_000)
def _problem(path: str, size: int, mtime_ns: int, decode: bool) -> str | None:
    """What is wrong with one file, or None; keyed by size and mtime so edits are seen."""
    from PIL import Image

    if size == 0:
        return "empty file (0 bytes)"
    try:
        with Image.open(path) as im:
            fmt = im.format
        if not decode and _ends_complete(path, fmt):
            return None
        read_image(path)
        return None
    except BadImageError as err:
        return _reason(err.__cause__) if err.__cause__ else str(err)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        return f"Pillow cannot open it as an image ({_reason(err)})"


def find_bad_images(paths: Iterable[str | os.PathLike], check: str = "header",
                    progress: bool | None = None) -> list[tuple[Path, str]]:
    """The files among ``paths`` that cannot be read as images, each with the reason.

    Args:
        paths: image files.
        check: ``"header"`` (default: the header opens; JPEG/PNG/GIF files that
            lack their end marker are decoded to be sure, which finds truncated
            copies), ``"decode"`` (decode every image: finds damage inside a
            file too, at the cost of reading every pixel) or ``"none"``.
        progress: a progress bar; None shows one from ``PROGRESS_MIN_FILES`` files.

    Returns:
        ``[(path, reason), ...]`` in the order given; empty when all are fine.
    """
    if check not in IMAGE_CHECKS:
        raise ValueError(f"check must be one of {IMAGE_CHECKS}, got {check!r}")
    paths = [Path(p) for p in paths]
    if check == "none":
        return []
    from tqdm.auto import tqdm

    show = len(paths) >= PROGRESS_MIN_FILES if progress is None else progress
    bad = []
    for path in tqdm(paths, desc=f"checking images ({check})", unit="img", disable=not show,
                     leave=False):
        try:
            stat = path.stat()
        except OSError as err:
            bad.append((path, _reason(err)))
            continue
        problem = _problem(str(path), stat.st_size, stat.st_mtime_ns, check == "decode")
        if problem is not None:
            bad.append((path, problem))
    return bad
