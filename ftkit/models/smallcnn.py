"""A small CNN family and the source networks the kit ships for the transfer lab.

Yosinski et al. (2014) need two networks trained on disjoint halves of one data
set; Lee et al. (2022) need a network trained on a source distribution. Large
ImageNet networks are too slow to retrain on a laptop, so the kit ships small
CNNs trained on Fashion-MNIST (28x28, three channels normalised with ImageNet's
mean/std, exactly as ``load_dataset("fashion_mnist", image_size=28)`` gives them):

* ``A0``, ``A1`` -- classes 0-4 (T-shirt/top, Trouser, Pullover, Dress, Coat), seeds 0, 1;
* ``B0``, ``B1`` -- classes 5-9 (Sandal, Shirt, Sneaker, Bag, Ankle boot), seeds 0, 1;
* ``C0``, ``C1`` -- three coarse classes (top, shoes, other) seen through their
  *source* sub-classes only (``ftkit.data.shifts.SUBPOPULATIONS``), seeds 0, 1.

The architecture is four conv groups and a head, named so that
``ftkit.models.groups.layer_groups`` cuts it as stem, block1, block2, block3, head::

    stem   conv3x3(3->8)  BN ReLU             (B, 8, 28, 28)
    block1 conv3x3(8->16, stride 2) BN ReLU   (B, 16, 14, 14)
    block2 conv3x3(16->32, stride 2) BN ReLU  (B, 32, 7, 7)
    block3 conv3x3(32->32, stride 2) BN ReLU  (B, 32, 4, 4)
    pool   global average                     (B, 32)
    head   linear(32 -> classes)

(16k parameters: the lab trains hundreds of these on two shared CPU cores.)

Weights live in ``ftkit/models/weights`` with ``manifest.json`` (task, classes,
seed, measured test accuracy, the command that made them, sha256). They are
loaded with ``weights_only=True`` after their hash is checked.
``scripts/train_source_nets.py`` regenerates them.

>>> bb = load_source_net("A0")                   # doctest: +SKIP
>>> [g.name for g in layer_groups(bb.model)]     # doctest: +SKIP
['stem', 'block1', 'block2', 'block3', 'head']
"""
from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from ftkit.core.imagenet import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "BLOCK_NAMES", "SOURCE_NET_NAME", "WEIGHTS_DIR", "SmallCNN", "load_source_net",
    "read_manifest", "source_net_names",
]

SOURCE_NET_NAME = "fmnist_cnn"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST = "manifest.json"
BLOCK_NAMES = ("stem", "block1", "block2", "block3")   # the transferable groups, input to output
DEFAULT_WIDTHS = (8, 16, 32, 32)
_STRIDES = (1, 2, 2, 2)


def _conv_bn_relu(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """Four conv groups with BatchNorm (stem, block1..block3), global pooling, a linear head.

    Args:
        num_classes: outputs of the head.
        widths: channels of the four conv groups.
        in_channels: 3 for the kit's data sets (grey images are repeated).
    """

    def __init__(self, num_classes: int = 5, widths: tuple[int, int, int, int] = DEFAULT_WIDTHS,
                 in_channels: int = 3) -> None:
        super().__init__()
        if len(widths) != len(BLOCK_NAMES) or any(int(w) < 1 for w in widths):
            raise ValueError(f"widths must be {len(BLOCK_NAMES)} positive ints, got {widths!r}")
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes!r}")
        self.widths = tuple(int(w) for w in widths)
        c_in = in_channels
        for name, c_out, stride in zip(BLOCK_NAMES, self.widths, _STRIDES):
            self.add_module(name, _conv_bn_relu(c_in, c_out, stride))
            c_in = c_out
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c_in, int(num_classes))

    def prefix(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """The activations after the first ``k`` conv groups (``k = 0``: the input itself)."""
        for name in BLOCK_NAMES[:k]:
            x = getattr(self, name)(x)
        return x

    def forward_from(self, k: int, h: torch.Tensor) -> torch.Tensor:
        """Logits from ``h = self.prefix(k, x)``: ``forward_from(k, prefix(k, x)) == forward(x)``."""
        for name in BLOCK_NAMES[k:]:
            h = getattr(self, name)(h)
        return self.head(self.pool(h).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # (B, 3, H, W) -> (B, classes)
        return self.forward_from(0, x)


# ---------------------------------------------------------------- shipped weights

def read_manifest(weights_dir: Path | None = None) -> dict:
    """The manifest of the shipped source networks: ``{"nets": {name: entry}, ...}``."""
    path = Path(weights_dir or WEIGHTS_DIR) / MANIFEST
    if not path.is_file():
        from ftkit.models.zoo import WeightsError
        raise WeightsError(f"{path} is missing. Regenerate the source networks with: "
                           "python scripts/train_source_nets.py")
    return json.loads(path.read_text())


def source_net_names(weights_dir: Path | None = None) -> list[str]:
    """Names of the shipped source networks ("A0", "A1", "B0", ...)."""
    return sorted(read_manifest(weights_dir)["nets"])


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_source_net(weights: str = "A0", *, weights_dir: Path | None = None):
    """A shipped source network as a :class:`ftkit.models.zoo.Backbone`, in eval mode.

    Args:
        weights: a name from :func:`source_net_names` ("A0", "B1", "C0", ...).
        weights_dir: where the files and ``manifest.json`` are (the package's own by default).

    Raises:
        ValueError: unknown name (lists the shipped ones).
        WeightsError: the file is missing or its sha256 does not match the manifest.
    """
    from ftkit.models.zoo import Backbone, WeightsError

    folder = Path(weights_dir or WEIGHTS_DIR)
    nets = read_manifest(folder)["nets"]
    if weights not in nets:
        close = difflib.get_close_matches(str(weights), list(nets), n=3, cutoff=0.3)
        raise ValueError(f"Unknown source network {weights!r} for {SOURCE_NET_NAME!r}. "
                         f"Shipped: {', '.join(sorted(nets))}"
                         + (f" (close: {', '.join(close)})" if close else ""))
    entry = nets[weights]
    path = folder / entry["file"]
    regenerate = "Regenerate it with: python scripts/train_source_nets.py"
    if not path.is_file():
        raise WeightsError(f"{path} is missing. {regenerate}")
    if file_sha256(path) != entry["sha256"]:
        raise WeightsError(f"The sha256 hash of {path} does not match manifest.json "
                           f"({entry['sha256'][:8]}...): the file is corrupted or was "
                           f"replaced without updating the manifest. {regenerate}")
    model = SmallCNN(len(entry["classes"]), tuple(entry["widths"]))
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return Backbone(model.eval(), f"{SOURCE_NET_NAME}:{weights}", True, int(entry["image_size"]),
                    IMAGENET_MEAN, IMAGENET_STD, list(entry["classes"]),
                    f"ftkit source network {weights}: {path}", resize_size=int(entry["image_size"]))
