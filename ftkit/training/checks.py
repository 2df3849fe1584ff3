"""Checks of what the training loop is fed, and errors that name the item and the fix.

* :func:`check_inputs` / :func:`check_labels`: the first batch against the model
  (image channels, integer labels, labels within the head's range), before the
  first step, raising :class:`BatchError` with the fix;
* :class:`NamedItems`: an error while reading an item names it (and its file when
  the data set can say, :func:`item_path`).

Used by ``ftkit.training.engine.TrainLoop`` (so by ``fit`` and ``lr_find``).
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import Dataset

__all__ = ["BatchError", "NamedItems", "check_inputs", "check_labels", "item_path"]


class BatchError(ValueError):
    """The first batch does not fit the model (labels, channels); raised before any change."""


def item_path(dataset: Any, i: int) -> str | None:
    """The file behind item ``i`` of ``dataset`` when it can name one, else None.

    Knows ``Subset`` (and nests of it), datasets with a ``path_of(i)`` method
    (``ftkit.data``'s ImageDataset) and torchvision's ``ImageFolder`` (``samples``).
    """
    while isinstance(dataset, torch.utils.data.Subset):
        dataset, i = dataset.dataset, int(dataset.indices[i])
    try:
        if hasattr(dataset, "path_of"):
            path = dataset.path_of(i)
            return None if path is None else str(path)
        samples = getattr(dataset, "samples", None)
        if isinstance(samples, list) and samples and isinstance(samples[i], tuple):
            return str(samples[i][0])
    except Exception:  # noqa: BLE001 - naming the file is a courtesy; never hide the real error
        return None
    return None


class NamedItems(Dataset):
    """``dataset`` as it is, but an error while reading item ``i`` names the item and its file.

    The exception keeps its type; it gets ``.path`` (None when the dataset cannot
    name a file), ``.item`` and a note (shown in the traceback, also from
    DataLoader workers) saying what to do.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        try:
            return self.dataset[i]
        except Exception as err:
            path = item_path(self.dataset, i)
            with contextlib.suppress(AttributeError):
                err.path, err.item = path, i
            err.add_note(f"ftkit: this happened reading item {i} of the data"
                         + (f", file {path}: fix or remove that file" if path else
                            ": fix or drop that item") + ", then run again")
            raise


def _first_conv(model: nn.Module) -> tuple[str, nn.Module] | None:
    return next(((n, m) for n, m in model.named_modules()
                 if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d))), None)


def check_inputs(model: nn.Module, x: Any, y: Any, criterion: Callable | None) -> None:
    """Check a batch before the model sees it: image channels, and integer class labels.

    Raises:
        BatchError: naming what is wrong and the fix; nothing has changed yet.
    """
    if isinstance(x, torch.Tensor) and x.dim() == 4:
        conv = _first_conv(model)
        if conv is not None and x.shape[1] != conv[1].in_channels:
            name, layer = conv
            raise BatchError(
                f"the images have {x.shape[1]} channel(s) but the model's first convolution "
                f"({name}) expects {layer.in_channels}: convert the images (e.g. grey to RGB with "
                f"torchvision.transforms.Grayscale(num_output_channels={layer.in_channels}), or "
                "x.expand(-1, 3, -1, -1)), or replace that layer")
    if criterion is None and isinstance(y, torch.Tensor) and (y.is_floating_point() or y.is_complex()):
        raise BatchError(
            f"the labels are {y.dtype}, but cross-entropy needs class indices (int64, 0..C-1): "
            "return int labels from the data set (e.g. int(label)), or pass a criterion that takes "
            "these targets")


def check_labels(out: Any, y: Any, criterion: Callable | None) -> None:
    """Check class labels against the model's output width (cross-entropy only).

    Raises:
        BatchError: naming the label range, the width and the fix.
    """
    if criterion is not None or not isinstance(out, torch.Tensor) or out.dim() != 2:
        return
    if not isinstance(y, torch.Tensor) or y.numel() == 0:
        return
    lo, hi, width = int(y.min()), int(y.max()), out.shape[1]
    if lo < 0 or hi >= width:
        raise BatchError(
            f"labels in this batch go from {lo} to {hi}, but the model has {width} outputs (classes "
            f"0..{width - 1}): replace its head with one per class, e.g. "
            f"ftkit.models.heads.replace_head(model, num_classes={max(hi + 1, width)}), or fix the labels")
