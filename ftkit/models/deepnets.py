"""Deep toy networks for the vanishing-gradient lesson: plain vs BatchNorm vs residual.

One builder, four switches, so that a comparison changes one thing at a time:
``activation`` (sigmoid, tanh, relu), ``norm`` (BatchNorm after each layer),
``residual`` (``x + f(x)`` around each hidden layer, as in ResNet and
MobileNetV2's inverted residuals) and ``kind`` (fully connected or 3x3 conv).
Weights keep PyTorch's default initialisation, the one a learner gets.

>>> plain = deep_net(depth=20, activation="sigmoid")                      # doctest: +SKIP
>>> modern = deep_net(depth=20, activation="relu", norm=True, residual=True)  # doctest: +SKIP
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "DeepNet", "deep_net"]

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}


class _Block(nn.Module):
    """One hidden layer: ``act(norm(layer(x)))``, plus ``x`` when residual."""

    def __init__(self, width: int, activation: str, norm: bool, residual: bool, kind: str):
        super().__init__()
        conv = kind == "conv"
        self.layer = nn.Conv2d(width, width, 3, padding=1, bias=not norm) if conv else nn.Linear(width, width,
                                                                                                  bias=not norm)
        self.norm = (nn.BatchNorm2d(width) if conv else nn.BatchNorm1d(width)) if norm else nn.Identity()
        self.act = ACTIVATIONS[activation]()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.norm(self.layer(x)))
        return x + out if self.residual else out


class DeepNet(nn.Module):
    """``stem -> depth hidden blocks -> head`` for images ``(B, C, S, S)``.

    ``kind="mlp"`` flattens the image into the stem (a Linear); ``kind="conv"``
    uses a 3x3 conv stem and blocks and global average pooling before the head.
    """

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, *, depth: int = 20, width: int = 64,
                 activation: str = "sigmoid", norm: bool = False, residual: bool = False, kind: str = "mlp"):
        super().__init__()
        c, h, w = in_shape
        self.kind = kind
        self.stem = nn.Conv2d(c, width, 3, padding=1) if kind == "conv" else nn.Linear(c * h * w, width)
        self.blocks = nn.Sequential(*[_Block(width, activation, norm, residual, kind) for _ in range(depth)])
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x if self.kind == "conv" else x.flatten(1))
        x = self.blocks(x)
        return self.head(x.mean(dim=(2, 3)) if self.kind == "conv" else x)


def deep_net(in_shape: tuple[int, int, int] = (3, 16, 16), num_classes: int = 10, *, depth: int = 20,
             width: int = 64, activation: str = "sigmoid", norm: bool = False, residual: bool = False,
             kind: str = "mlp", seed: int = 0) -> DeepNet:
    """Build a :class:`DeepNet` with weights drawn under ``seed`` (the caller's RNG is left alone).

    Raises:
        ValueError: an unknown activation or kind, or a depth/width below 1.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {list(ACTIVATIONS)}, not {activation!r}")
    if kind not in ("mlp", "conv"):
        raise ValueError(f"kind must be 'mlp' or 'conv', not {kind!r}")
    if depth < 1 or width < 1:
        raise ValueError(f"depth and width must be >= 1, got depth={depth}, width={width}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DeepNet(tuple(in_shape), num_classes, depth=depth, width=width, activation=activation,
                       norm=norm, residual=residual, kind=kind)
