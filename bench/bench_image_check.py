"""Benchmark: what checking an image folder at load time costs (``load_dataset(check=...)``).

Writes N noise images (half PNG, half JPEG, 128x128) into a temporary folder
of 4 classes, then times ``load_dataset(folder, "train", check=c)`` for
``c`` in none / header / decode with the check cache cleared before each, and
a second split loaded right after (the cache makes its check nearly free).
Prints seconds and images per second; on a shared machine report the load
average beside the figures.

    .venv/bin/python bench/bench_image_check.py --n 1000
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ftkit.data import images
from ftkit.data.catalogue import load_dataset


def make_folder(root: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"class{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}{'.jpg' if i % 2 else '.png'}")


def timed(root: Path, split: str, check: str) -> float:
    start = time.perf_counter()
    load_dataset(root, split, check=check)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="number of images")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ftkit-bench-check-") as tmp:
        root = Path(tmp) / "imgs"
        make_folder(root, args.n)
        print(f"{args.n} images (128x128, half PNG, half JPEG); load average {os.getloadavg()[0]:.1f}")
        for check in ("none", "header", "decode"):
            images._problem.cache_clear()
            first = timed(root, "train", check)
            second = timed(root, "test", check)
            print(f"check={check:<7} {first:6.2f} s ({args.n / first:7.0f} img/s), "
                  f"second split {second:5.2f} s")


if __name__ == "__main__":
    main()
