"""Find a network's classifier head by running it once on data-free meta tensors.

The finding half of :mod:`ftkit.models.heads` (which re-exports everything
public here): ``find_head`` names the layer that produces the class scores,
``find_head_block`` the whole head, ``find_aux_heads`` auxiliary classifiers.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ftkit.core.state import preserved_modes
from ftkit.core.torchutil import get_module

__all__ = ["AmbiguousHeadError", "HeadNotFoundError", "find_head", "find_head_block", "find_aux_heads"]

# Layers that can produce logits: Linear, and ConvNd for conv heads (SqueezeNet).
_HEAD_TYPES = (nn.Linear, nn.modules.conv._ConvNd)
# The children _new_head gives a head block (hidden=/dropout=); "out" is always there, and last.
_BLOCK_PARTS = {"hidden", "act", "drop", "out"}
# Square input sizes tried, after any size the model states, when tracing the forward.
_TRIAL_SIZES = (224, 299, 256, 128, 64, 32, 28)


class HeadNotFoundError(ValueError):
    """The model has no layer that recognisably produces its class scores."""


class AmbiguousHeadError(HeadNotFoundError):
    """Several layers could be the head (e.g. two parallel classifiers of equal width).

    Attributes:
        candidates: their qualified names, in forward order.
    """

    def __init__(self, message: str, candidates: Sequence[str]):
        super().__init__(message)
        self.candidates = list(candidates)


def _out_size(layer: nn.Module) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


def _in_size(layer: nn.Module) -> int:
    return layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels


def _describe(model: nn.Module, names: Sequence[str]) -> str:
    modules = dict(model.named_modules())
    parts = [f"{n} ({type(modules[n]).__name__} -> {_out_size(modules[n])})" for n in names]
    return ", ".join(parts) if parts else "none"


def _head_layers(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if n and isinstance(m, _HEAD_TYPES)]


def _timm_head(model: nn.Module) -> str | None:
    """Name of the module a timm-style ``get_classifier()`` returns, if any."""
    getter = getattr(model, "get_classifier", None)
    if not callable(getter):
        return None
    head = getter()
    for name, module in model.named_modules():
        if name and module is head:
            if isinstance(module, nn.Identity):
                raise HeadNotFoundError(
                    f"{type(model).__name__}.get_classifier() returns nn.Identity at {name!r} "
                    "(the model was built without classes); call replace_head(model, num_classes)."
                )
            return name
    return None


def _example_shapes(model: nn.Module, input_shape: Sequence[int] | None) -> list[tuple[int, ...]]:
    """Input shapes to try: the caller's, else guesses from the first conv / Linear layers."""
    if input_shape is not None:
        return [tuple(int(s) for s in input_shape)]
    sizes: list[int] = []
    stated = getattr(model, "image_size", None)  # torchvision ViT keeps it
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
    if isinstance(cfg, dict) and cfg.get("input_size"):
        stated = cfg["input_size"][-1]  # timm: (C, H, W)
    if isinstance(stated, int):
        sizes.append(stated)
    sizes += [s for s in _TRIAL_SIZES if s not in sizes]
    shapes: dict[str, list[tuple[int, ...]]] = {}
    for m in model.modules():  # the first conv gives image shapes, the first Linear a flat one
        if isinstance(m, nn.modules.conv._ConvNd) and "conv" not in shapes:
            shapes["conv"] = [(2, m.in_channels) + (s,) * (m.weight.dim() - 2) for s in sizes]
        elif isinstance(m, nn.Linear) and "linear" not in shapes:
            shapes["linear"] = [(2, m.in_features)]
    found = [shape for group in shapes.values() for shape in group]
    return found or [(2, 3, s, s) for s in sizes]


def _first_tensor(out: object) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]  # e.g. (logits, aux) outputs
    return None


def _trace(model: nn.Module, input_shape: Sequence[int] | None) -> tuple[list[str], int]:
    """Run the model once in eval mode on meta tensors, recording the order layers finish.

    Every parameter and buffer is swapped for a data-free meta tensor for the
    call only (``torch.func.functional_call``), so even ViT-H costs no memory or
    FLOPs and the model's own tensors, hooks and running stats are untouched.

    Returns:
        (names of the watched modules in the order they finished, output width).
    """
    watched = {n: m for n, m in model.named_modules()
               if n and (isinstance(m, _HEAD_TYPES) or any(True for _ in m.parameters(recurse=False)))}
    order: list[str] = []
    handles = [m.register_forward_hook(lambda _m, _i, _o, n=n: order.append(n))
               for n, m in watched.items()]
    tensors = [*model.named_parameters(remove_duplicate=False),
               *model.named_buffers(remove_duplicate=False)]
    meta = {n: torch.empty_like(t, device="meta") for n, t in tensors if not t.is_meta}
    dtype = next((t.dtype for _, t in tensors if t.is_floating_point()), None)
    errors: list[str] = []
    try:
        with preserved_modes(model):
            model.eval()  # no aux branches, no dropout, no running-stat updates
            for shape in _example_shapes(model, input_shape):
                order.clear()
                x = torch.empty(shape, device="meta", dtype=dtype)
                try:
                    with torch.no_grad():
                        # Already-meta models (e.g. built under torch.device("meta")) run as they are.
                        out = (torch.func.functional_call(model, meta, (x,), strict=False)
                               if meta else model(x))
                except Exception as err:  # noqa: BLE001 - wrong input size: try the next one
                    errors.append(f"{tuple(shape)}: {type(err).__name__}: {str(err).splitlines()[0][:120]}")
                    continue
                logits = _first_tensor(out)
                if logits is None or logits.dim() != 2 or logits.shape[0] != shape[0]:
                    got = tuple(logits.shape) if logits is not None else type(out).__name__
                    raise HeadNotFoundError(
                        f"{type(model).__name__} returns {got} for input {tuple(shape)}, "
                        "not (batch, num_classes) logits, so it has no classifier head. "
                        f"Candidate layers: {_describe(model, _head_layers(model)[-8:])}."
                    )
                return list(order), int(logits.shape[1])
    finally:
        for h in handles:
            h.remove()
    raise HeadNotFoundError(
        f"Could not run {type(model).__name__} on a test input to find its head "
        f"({'; '.join(errors[:3])}). Pass input_shape=(1, C, H, W). "
        f"Candidate layers: {_describe(model, _head_layers(model)[-8:])}."
    )


def _rivals(model: nn.Module, order: list[str], head: str, num_classes: int) -> list[str]:
    """Layers that could be the head as much as ``head`` does, ``head`` included (forward order).

    Walking back from ``head``: a layer of the same kind and shape (same input
    width, ``num_classes`` outputs) that ran just before it, with no other layer
    with weights in between, is a rival: two parallel classifiers on the same
    features whose scores are combined. When ``head`` takes ``num_classes``
    inputs, a layer before it may be a hidden layer of that width feeding it,
    so none is counted.
    """
    modules = dict(model.named_modules())
    width = _in_size(modules[head])
    if width == num_classes:
        return [head]
    found = [head]
    end = len(order) - order[::-1].index(head) - 1
    for name in reversed(order[:end]):
        if name in found:
            continue
        layer = modules[name]
        if type(layer) is not type(modules[head]) or _out_size(layer) != num_classes \
                or _in_size(layer) != width:
            break
        found.append(name)
    return found[::-1]


def _named_head(model: nn.Module, head: str) -> str:
    """The final layer of the head the caller named: a Linear/Conv, or a replace_head block's ``out``."""
    module = dict(model.named_modules()).get(head) if head else None
    if module is not None and _is_block(module):
        return f"{head}.out"
    if isinstance(module, _HEAD_TYPES):
        return head
    raise HeadNotFoundError(
        f"head={head!r} names no Linear/Conv layer (or replace_head block) of "
        f"{type(model).__name__}. Layers that could be: "
        f"{_describe(model, _head_layers(model)[-8:])}.")


def find_head(model: nn.Module, *, input_shape: Sequence[int] | None = None,
              head: str | None = None) -> str:
    """Qualified name of the layer that produces the class scores.

    How it decides (no "last parameter" guessing):

    1. A timm-style model that has ``get_classifier()``: the module it returns.
    2. Otherwise the model is run once, in eval mode, on a data-free meta input
       (cost: nothing, whatever its size). The output width is the number of
       classes C. The head is the *last layer in forward order* that is a
       Linear or Conv with C outputs, and after which no other layer with
       weights runs (so a backbone whose head was set to ``nn.Identity`` is
       not mistaken for a classifier). Forward order, not registration order,
       because modules may be defined in any order in ``__init__``.

    Args:
        model: any classification network (torchvision, timm-style, your own).
        input_shape: a shape the model accepts, e.g. ``(1, 1, 28, 28)``;
            by default sizes such as 224, 299, ..., 28 are tried.
        head: the head's name when you know it (e.g. one of two parallel
            classifiers): it is checked to be a Linear/Conv layer (or a
            ``replace_head`` block, whose ``out`` is returned) and nothing is traced.

    Returns:
        e.g. ``"fc"`` (ResNet), ``"classifier.6"`` (VGG), ``"classifier.1"``
        (SqueezeNet, a 1x1 conv), ``"heads.head"`` (ViT).

    Raises:
        HeadNotFoundError: (a ValueError) listing the candidate layers.
        AmbiguousHeadError: (a HeadNotFoundError) more than one layer fits,
            e.g. two parallel classifiers of equal width: it lists them and says
            how to choose (``head=``).

    >>> find_head(torchvision.models.vgg11())            # doctest: +SKIP
    'classifier.6'
    """
    if head is not None:
        return _named_head(model, head)
    timm_name = _timm_head(model)
    if timm_name is not None:
        return timm_name
    order, num_classes = _trace(model, input_shape)
    modules = dict(model.named_modules())
    layers = [n for n in order if isinstance(modules[n], _HEAD_TYPES)]
    matches = [n for n in layers if _out_size(modules[n]) == num_classes]
    if not matches:
        raise HeadNotFoundError(
            f"{type(model).__name__} outputs {num_classes} values per sample but no Linear/Conv "
            f"layer has {num_classes} outputs. Candidate layers (last run): "
            f"{_describe(model, list(dict.fromkeys(reversed(layers)))[:8])}."
        )
    last = matches[-1]
    after = [n for n in order[len(order) - order[::-1].index(last):]
             if n != last and not last.startswith(n + ".")]
    if after:
        raise HeadNotFoundError(
            f"{type(model).__name__}: the last layer with {num_classes} outputs, {last!r}, is "
            f"followed by layers with weights ({', '.join(after[:4])}), so it is part of the "
            "backbone, not a classifier head (was the head replaced by nn.Identity?). "
            f"Candidate layers: {_describe(model, list(dict.fromkeys(reversed(layers)))[:8])}."
        )
    rivals = _rivals(model, order, last, num_classes)
    if len(rivals) > 1:
        raise AmbiguousHeadError(
            f"{type(model).__name__} has {len(rivals)} layers that could be its classifier head, "
            f"each with {num_classes} outputs and no layer with weights after them: "
            f"{_describe(model, rivals)}. Say which one with head=, e.g. "
            f"replace_head(model, num_classes, head={rivals[-1]!r}) or "
            f"find_head(model, head={rivals[0]!r}); to replace all of them, call replace_head "
            "once per name.", rivals)
    return last


def _is_block(module: nn.Module) -> bool:
    """A head block as ``replace_head`` builds it: Sequential(hidden?, act?, drop?, out)."""
    names = [n for n, _ in module.named_children()]
    return isinstance(module, nn.Sequential) and names[-1:] == ["out"] and set(names) <= _BLOCK_PARTS


def find_head_block(model: nn.Module, *, input_shape: Sequence[int] | None = None,
                    head: str | None = None) -> str:
    """Qualified name of the whole classifier head, the module ``replace_head`` swaps.

    :func:`find_head`'s answer, except after ``replace_head(..., hidden=)`` or
    ``dropout=``: there ``find_head`` names the final layer (``"fc.out"``), and
    this the new block around it (``"fc"``), whose input is the body's features.
    """
    return _block_of(model, find_head(model, input_shape=input_shape, head=head))


def _block_of(model: nn.Module, head: str) -> str:
    parent, _, leaf = head.rpartition(".")
    return parent if parent and leaf == "out" and _is_block(get_module(model, parent)) else head


def find_aux_heads(model: nn.Module, num_classes: int | None = None) -> list[str]:
    """Auxiliary classifiers (Inception v3 ``AuxLogits.fc``, GoogLeNet ``aux1.fc2``...).

    They only run in training mode, so tracing cannot see them; they are the
    Linear/Conv layers with ``num_classes`` outputs inside a submodule whose
    name starts with "aux" (case-insensitive).
    """
    if num_classes is None:
        num_classes = _out_size(get_module(model, find_head(model)))
    return [n for n, m in model.named_modules()
            if isinstance(m, _HEAD_TYPES) and _out_size(m) == num_classes
            and any(part.lower().startswith("aux") for part in n.split(".")[:-1])]
