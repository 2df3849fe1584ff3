"""Find and replace a network's classifier head.

Almost every fine-tuning run makes one change to a pretrained network: a new
output layer sized for the new classes. ``find_head`` names the layer that
produces the class scores (found by running the model once on data-free meta
tensors, never by guessing "the last parameter"), ``find_head_block`` names the
whole head (that layer, or the hidden-layer block ``replace_head`` built
around it), ``find_aux_heads`` names auxiliary classifiers, and
``replace_head`` swaps them in place. The finding lives in
:mod:`ftkit.models.head_find` and is re-exported here.

>>> import torchvision                                      # doctest: +SKIP
>>> model = torchvision.models.resnet18()                   # doctest: +SKIP
>>> find_head(model)                                        # doctest: +SKIP
'fc'
>>> replace_head(model, 10).fc                              # doctest: +SKIP
Linear(in_features=512, out_features=10, bias=True)
"""
from __future__ import annotations

import numbers
from collections import OrderedDict

from torch import nn

from ftkit.core.torchutil import get_module, set_module
from ftkit.models.head_find import (
    _HEAD_TYPES,
    AmbiguousHeadError,
    HeadNotFoundError,
    _block_of,
    _out_size,
    _timm_head,
    find_aux_heads,
    find_head,
    find_head_block,
)

__all__ = ["AmbiguousHeadError", "HeadNotFoundError", "find_head", "find_head_block", "find_aux_heads", "replace_head"]

# Finding the head lives in head_find (re-exported here); this module replaces it. A block
# built with hidden=/dropout= has the children head_find._BLOCK_PARTS names, "out" last.


def _check_sizes(num_classes: object, hidden: object, dropout: object) -> tuple[int, int | None]:
    """``(num_classes, hidden)`` as Python ints (NumPy integers are fine); raises for bad values."""
    def is_count(v: object) -> bool:
        return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1
    if not is_count(num_classes):
        raise ValueError(f"num_classes must be a positive int (e.g. 10), got {num_classes!r}")
    if num_classes == 1:
        raise ValueError(
            "num_classes=1 gives one score per image, and cross-entropy (what fit uses) over one "
            "score is always 0, so the head would never learn. For two classes (yes/no) use "
            "num_classes=2.")
    if hidden is not None and not is_count(hidden):
        raise ValueError(f"hidden must be None or a positive int (e.g. 256), got {hidden!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
    return int(num_classes), None if hidden is None else int(hidden)


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
                 dropout: float = 0.0, head: str | None = None) -> nn.Module:
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
        num_classes: outputs of the new head (e.g. 10; at least 2, NumPy integers are fine).
        hidden: if given, ``Linear(in, hidden) -> ReLU -> [Dropout] -> Linear(hidden, C)``;
            the final layer is then called ``<head>.out``.
        dropout: dropout probability before the final layer (0 = none).
        head: the name of the head to replace, when :func:`find_head` cannot
            decide (it lists the candidates); None finds it.

    Returns:
        The same model object.

    Raises:
        ValueError: bad ``num_classes`` (1 included: see the message)/``hidden``/
            ``dropout`` (model untouched), or HeadNotFoundError when there is no
            head to replace (AmbiguousHeadError when several could be: name one with ``head=``).

    >>> replace_head(torchvision.models.resnet18(), 10).fc      # doctest: +SKIP
    Linear(in_features=512, out_features=10, bias=True)
    """
    num_classes, hidden = _check_sizes(num_classes, hidden, dropout)
    # Build everything first, then change the model: a failure leaves it as it was.
    if head is None and callable(getattr(model, "reset_classifier", None)) and callable(
            getattr(model, "get_classifier", None)):
        block = None if hidden is None and dropout == 0 else \
            _new_head(_timm_template(model), num_classes, hidden, dropout)
        head_name = _reset_timm_head(model, num_classes)
        if block is not None:
            set_module(model, head_name, block)
        return model
    final = find_head(model, head=head)
    head_name = _block_of(model, final)  # a block from an earlier replace_head is replaced whole
    aux_names = find_aux_heads(model, _out_size(get_module(model, final)))
    new = {head_name: _new_head(_first_layer(get_module(model, head_name)), num_classes, hidden, dropout)}
    new.update({n: _new_head(get_module(model, n), num_classes, None, 0.0) for n in aux_names})
    for name, module in new.items():
        set_module(model, name, module)
    _set_num_classes(model, head_name, num_classes)
    return model
