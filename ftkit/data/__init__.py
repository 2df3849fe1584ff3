"""Layer 1: the offline data catalogue (``catalogue``), the raw sources behind it (``sources``)
and image files read and checked (``images``).

>>> from ftkit.data import load_dataset      # doctest: +SKIP
>>> train = load_dataset("animals", "train", n_per_class=30, image_size=64)
"""
from ftkit.data.catalogue import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BadImageError,
    DatasetInfo,
    DataUnavailableError,
    ImageDataset,
    data_dir,
    list_datasets,
    load_dataset,
    photo_crop_boxes,
    pixels_to_input,
)

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "BadImageError", "DataUnavailableError", "DatasetInfo", "ImageDataset",
    "data_dir", "list_datasets", "load_dataset", "photo_crop_boxes", "pixels_to_input",
]
