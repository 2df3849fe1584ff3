"""Find and replace a network's classifier head.

Almost every fine-tuning run makes one change to a pretrained network: a new
output layer sized for the new classes. ``find_head`` names the layer that
produces the class scores (found by running the model once on data-free meta
tensors, never by guessing "the last parameter"), ``find_head_block`` names the
whole head (that layer, or the hidden-layer block ``replace_head`` built
around it), ``find_aux_heads`` names auxiliary classifiers, and
``replace_head`` swaps them in place.

>>> import torchvision                                      # doctest: +SKIP
>>> model = torchvision.models.resnet18()                   # doctest: +SKIP
>>> find_head(model)                                        # doctest: +SKIP
'fc'
>>> replace_head(model, 10).fc                              # doctest: +SKIP
Linear(in_features=512, out_features=10, bias=True)
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
from torch import nn

from ftkit.core.state import preserved_modes
from ftkit.core.torchutil import get_module, set_module

__all__ = ["HeadNotFoundError", "find_head", "find_head_block", "find_aux_heads", "replace_head"]

# Layers that can produce logits: Linear, and ConvNd for conv heads (SqueezeNet).
_HEAD_TYPES = (nn.Linear, nn.modules.conv._ConvNd)
# The children _new_head gives a head block (hidden=/dropout=); "out" is always there, and last.
_BLOCK_PARTS = {"hidden", "act", "drop", "out"}
# Square input sizes tried, after any size the model states, when tracing the forward.
_TRIAL_SIZES = (224, 299, 256, 128, 64, 32, 28)


class HeadNotFoundError(ValueError):
    """The model has no layer that recognisably produces its class scores."""


# --------------------------------------------------------------------------- find


def _out_size(layer: nn.Module) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


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


def find_head(model: nn.Module, *, input_shape: Sequence[int] | None = None) -> str:
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

    Returns:
        e.g. ``"fc"`` (ResNet), ``"classifier.6"`` (VGG), ``"classifier.1"``
        (SqueezeNet, a 1x1 conv), ``"heads.head"`` (ViT).

    Raises:
        HeadNotFoundError: (a ValueError) listing the candidate layers.

    >>> find_head(torchvision.models.vgg11())            # doctest: +SKIP
    'classifier.6'
    """
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
    head = matches[-1]
    after = [n for n in order[len(order) - order[::-1].index(head):]
             if n != head and not head.startswith(n + ".")]
    if after:
        raise HeadNotFoundError(
            f"{type(model).__name__}: the last layer with {num_classes} outputs, {head!r}, is "
            f"followed by layers with weights ({', '.join(after[:4])}), so it is part of the "
            "backbone, not a classifier head (was the head replaced by nn.Identity?). "
            f"Candidate layers: {_describe(model, list(dict.fromkeys(reversed(layers)))[:8])}."
        )
    return head


def _is_block(module: nn.Module) -> bool:
    """A head block as ``replace_head`` builds it: Sequential(hidden?, act?, drop?, out)."""
    names = [n for n, _ in module.named_children()]
    return isinstance(module, nn.Sequential) and names[-1:] == ["out"] and set(names) <= _BLOCK_PARTS


def find_head_block(model: nn.Module, *, input_shape: Sequence[int] | None = None) -> str:
    """Qualified name of the whole classifier head, the module ``replace_head`` swaps.

    :func:`find_head`'s answer, except after ``replace_head(..., hidden=)`` or
    ``dropout=``: there ``find_head`` names the final layer (``"fc.out"``), and
    this the new block around it (``"fc"``), whose input is the body's features.
    """
    return _block_of(model, find_head(model, input_shape=input_shape))


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


# --------------------------------------------------------------------------- replace


def _check_sizes(num_classes: object, hidden: object, dropout: object) -> None:
    def is_count(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1
    if not is_count(num_classes):
        raise ValueError(f"num_classes must be a positive int (e.g. 10), got {num_classes!r}")
    if hidden is not None and not is_count(hidden):
        raise ValueError(f"hidden must be None or a positive int (e.g. 256), got {hidden!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")


def _final_init(layer: nn.Module) -> nn.Module:
    # Small weights, zero bias: the new head starts near uniform predictions
    # (loss ~ ln C), so its first, random gradients sent into the pretrained
    # body are small; not exactly zero, so a hidden layer below still learns.
    nn.init.normal_(layer.weight, std=0.01)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def _hidden_init(layer: nn.Module) -> nn.Module:
    # Kaiming (He) init keeps the activation variance through the ReLU that follows.
    nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def _new_head(old: nn.Module, num_classes: int, hidden: int | None, dropout: float) -> nn.Module:
    """A fresh head shaped like ``old`` (Linear or ConvNd), on its device and dtype."""
    kw = dict(bias=old.bias is not None, device=old.weight.device, dtype=old.weight.dtype)
    if isinstance(old, nn.Linear):
        def make(n_in: int, n_out: int) -> nn.Module:
            return nn.Linear(n_in, n_out, **kw)
        n_in = old.in_features
    else:  # a conv head (SqueezeNet): same kernel settings, only the channel count changes
        conv = {3: nn.Conv1d, 4: nn.Conv2d, 5: nn.Conv3d}[old.weight.dim()]
        settings = dict(kernel_size=old.kernel_size, stride=old.stride, padding=old.padding,
                        dilation=old.dilation, padding_mode=old.padding_mode)

        def make(n_in: int, n_out: int) -> nn.Module:
            return conv(n_in, n_out, **settings, **kw)
        n_in = old.in_channels
    if hidden is None and dropout == 0:
        new: nn.Module = _final_init(make(n_in, num_classes))
    else:
        parts: list[tuple[str, nn.Module]] = []
        if hidden is not None:
            parts += [("hidden", _hidden_init(make(n_in, hidden))), ("act", nn.ReLU())]
        if dropout > 0:
            parts.append(("drop", nn.Dropout(dropout)))
        parts.append(("out", _final_init(make(hidden or n_in, num_classes))))
        new = nn.Sequential(OrderedDict(parts))
    return new.train(old.training)


def _set_num_classes(model: nn.Module, head_name: str, num_classes: int) -> None:
    """Keep ``num_classes`` bookkeeping (model and the head's parents) in step."""
    parts = head_name.split(".")
    owners = [model] + [get_module(model, ".".join(parts[:i])) for i in range(1, len(parts))]
    for owner in owners:
        value = getattr(owner, "num_classes", None)
        if isinstance(value, int) and not isinstance(value, bool) \
                and not isinstance(getattr(type(owner), "num_classes", None), property):
            owner.num_classes = num_classes
        params = getattr(owner, "_global_params", None)  # efficientnet_lite_pytorch
        if hasattr(params, "_replace") and hasattr(params, "num_classes"):
            owner._global_params = params._replace(num_classes=num_classes)


def _first_layer(head: nn.Module) -> nn.Module | None:
    """The layer a head's input enters (itself, or a block's ``hidden``/``out``)."""
    return next((m for m in head.modules() if isinstance(m, _HEAD_TYPES)), None)


def _timm_template(model: nn.Module) -> nn.Module:
    """A layer to size a new head from, read before ``reset_classifier`` changes anything."""
    layer = _first_layer(model.get_classifier())
    if layer is None:  # nn.Identity (built without classes): a stand-in as wide as timm's features
        ref = next(iter(model.parameters()))
        layer = nn.Linear(model.num_features, 1, device=ref.device, dtype=ref.dtype).train(model.training)
    return layer


def _reset_timm_head(model: nn.Module, num_classes: int) -> str:
    """Call the model's own ``reset_classifier``; keep device, dtype, trainability."""
    old = model.get_classifier()
    ref = next(iter(old.parameters()), None)
    ref = ref if ref is not None else next(iter(model.parameters()), None)
    model.reset_classifier(num_classes)
    new = model.get_classifier()
    if ref is not None:
        new.to(device=ref.device, dtype=ref.dtype)
    new.requires_grad_(True)
    name = _timm_head(model) or find_head(model)
    _set_num_classes(model, name, num_classes)
    return name


def replace_head(model: nn.Module, num_classes: int, *, hidden: int | None = None,
                 dropout: float = 0.0) -> nn.Module:
    """Swap the classifier for a new one with ``num_classes`` outputs (in place).

    The new head is trainable, on the old head's device and dtype, in the old
    head's train/eval mode. Its last layer starts with small random weights
    (std 0.01) and zero bias, so early predictions are near uniform and the
    random head's first gradients barely disturb the pretrained body; the
    optional hidden layer uses Kaiming init for its ReLU.

    * Linear heads get a Linear; SqueezeNet's 1x1 conv head gets a 1x1 conv
      (its ReLU and pooling stay).
    * Inception v3 / GoogLeNet auxiliary heads are resized too (plain layers).
    * Models with a timm-style ``reset_classifier(num_classes)`` have it called.
    * A head block from an earlier ``replace_head(hidden=...)`` is replaced whole.
    * ``num_classes`` attributes the model keeps are updated.

    Args:
        model: the network; it is changed and returned.
        num_classes: outputs of the new head (e.g. 10).
        hidden: if given, ``Linear(in, hidden) -> ReLU -> [Dropout] -> Linear(hidden, C)``;
            the final layer is then called ``<head>.out``.
        dropout: dropout probability before the final layer (0 = none).

    Returns:
        The same model object.

    Raises:
        ValueError: bad ``num_classes``/``hidden``/``dropout`` (model untouched),
            or HeadNotFoundError when there is no head to replace.

    >>> replace_head(torchvision.models.resnet18(), 10).fc      # doctest: +SKIP
    Linear(in_features=512, out_features=10, bias=True)
    """
    _check_sizes(num_classes, hidden, dropout)
    # Build everything first, then change the model: a failure leaves it as it was.
    if callable(getattr(model, "reset_classifier", None)) and callable(
            getattr(model, "get_classifier", None)):
        block = None if hidden is None and dropout == 0 else \
            _new_head(_timm_template(model), num_classes, hidden, dropout)
        head_name = _reset_timm_head(model, num_classes)
        if block is not None:
            set_module(model, head_name, block)
        return model
    final = find_head(model)
    head_name = _block_of(model, final)  # a block from an earlier replace_head is replaced whole
    aux_names = find_aux_heads(model, _out_size(get_module(model, final)))
    new = {head_name: _new_head(_first_layer(get_module(model, head_name)), num_classes, hidden, dropout)}
    new.update({n: _new_head(get_module(model, n), num_classes, None, 0.0) for n in aux_names})
    for name, module in new.items():
        set_module(model, name, module)
    _set_num_classes(model, head_name, num_classes)
    return model
