"""ImageNet's per-channel normalisation, in one neutral place.

The pretrained backbones (``ftkit.models.zoo``) were trained on images
normalised with these statistics, and the data sets (``ftkit.data``) normalise
with them by default; both import them from here, so neither depends on the
other. ``ftkit.data`` re-exports them.
"""
from __future__ import annotations

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, on [0, 1] pixel values
IMAGENET_STD = (0.229, 0.224, 0.225)
