"""What loading lesson 07's four data sets leaves resident: anonymous memory after each one's first load.

    OMP_NUM_THREADS=1 python notes/h13_memory/sources.py

A kernel keeps each source's images (lru_cache in ftkit.data.sources) and the libraries it imported for it
(photo_crops: scikit-image and scikit-learn's sample images) for as long as it runs.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _mem import anon  # noqa: E402

from ftkit.data import load_dataset  # noqa: E402

before = anon()
print(f"start: {before} MB anonymous")
for name in ("photo_crops", "animals", "fashion_mnist", "digits"):
    for split in ("train", "test"):
        load_dataset(name, split, n_per_class=5)
    now = anon()
    print(f"{name:14} +{now - before:4d} MB (now {now} MB)")
    before = now
