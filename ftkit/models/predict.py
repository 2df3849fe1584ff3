"""Predictions with a pretrained backbone: preprocess images as it was trained, top-k classes.

>>> bb = load_backbone("mobilenet_v2")                       # doctest: +SKIP
>>> classify(bb, skimage.data.coffee(), top_k=1)             # doctest: +SKIP
[[('espresso', 0.99...)]]
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import functional as TF

from ftkit.core.state import preserved_modes
from ftkit.models.zoo import Backbone

__all__ = ["classify", "preprocess"]


def _to_pil(image: np.ndarray | Image.Image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise TypeError(
            f"expected a uint8 image, got dtype {array.dtype}; convert it first, "
            "e.g. skimage.util.img_as_ubyte(image)")
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4)):
        return Image.fromarray(array.squeeze()).convert("RGB")
    raise ValueError(f"expected an HxW or HxWx3 image, got shape {array.shape}")


def preprocess(backbone: Backbone, image: np.ndarray | Image.Image,
               size: int | None = None) -> torch.Tensor:
    """Resize the shorter side, centre-crop and normalise one image for ``backbone``.

    Args:
        backbone: supplies input_size, resize_size, mean and std.
        image: HxWx3 uint8 array (HxW grey and RGBA are converted) or a PIL image.
        size: crop size; defaults to ``backbone.input_size`` (the resize scales along).

    Returns:
        Float tensor of shape (1, 3, size, size).
    """
    crop = size or backbone.input_size
    resize = round(backbone.resize_size * crop / backbone.input_size)
    pil = TF.center_crop(TF.resize(_to_pil(image), resize), crop)
    x = TF.pil_to_tensor(pil).float() / 255.0  # (3, S, S) in [0, 1]
    return TF.normalize(x, list(backbone.mean), list(backbone.std)).unsqueeze(0)


def classify(backbone: Backbone, images: np.ndarray | Image.Image | Sequence,
             top_k: int = 5) -> list[list[tuple[str, float]]]:
    """Top-k (category, probability) pairs per image.

    Args:
        backbone: a loaded backbone; every module's train/eval mode is restored afterwards.
        images: one image (HxWx3 array or PIL) or a sequence / NxHxWx3 array of them.
        top_k: how many categories to return per image.

    Returns:
        One list per image of ``top_k`` (category, probability) pairs, most likely first.
    """
    if isinstance(images, Image.Image) or (isinstance(images, np.ndarray) and images.ndim < 4):
        images = [images]
    if len(images) == 0:
        return []
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    model = backbone.model
    device = next(model.parameters()).device
    x = torch.cat([preprocess(backbone, im) for im in images]).to(device)  # (N, 3, S, S)
    with preserved_modes(model), torch.no_grad():  # per module: model.train(flag) would flip a pinned one
        model.eval()
        probs = model(x).softmax(dim=1).cpu()  # (N, C)
    names = backbone.categories if len(backbone.categories) == probs.shape[1] else None
    values, indices = probs.topk(min(top_k, probs.shape[1]), dim=1)
    return [
        [(names[i] if names else str(i), float(p)) for p, i in zip(row_p.tolist(), row_i.tolist())]
        for row_p, row_i in zip(values, indices)
    ]
