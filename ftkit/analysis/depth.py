"""Where to look inside a network, depth by depth: one layer per layer group.

Every analysis of "what does depth d compute" needs a layer to hook at each
depth. Here that layer is the last module (with weights) of each group of
:func:`ftkit.models.groups.layer_groups`, so the depths are the stages a
learner sees in the group table: stem, stages..., (head).

>>> [(d.group, d.layer) for d in depth_layers(mobilenet)][:3]     # doctest: +SKIP
[('stem', 'features.0'), ('features.1', 'features.1'), ('features.2-3', 'features.3')]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from torch import nn

from ftkit.models.groups import layer_groups

__all__ = ["DepthLayer", "depth_layers", "pick_depths"]


@dataclass(frozen=True)
class DepthLayer:
    """One depth: ``group`` (its name in ``layer_groups``), ``layer`` (the
    qualified name of the module whose output stands for the group) and
    ``depth`` (0 = stem)."""

    group: str
    layer: str
    depth: int


def depth_layers(model: nn.Module, *, include_head: bool = False) -> list[DepthLayer]:
    """One :class:`DepthLayer` per layer group, input to output.

    Args:
        model: any network ``layer_groups`` understands.
        include_head: keep the "head" group (its output is the logits).

    Raises:
        ValueError: the model has no group with modules to hook.
    """
    out = [DepthLayer(g.name, g.modules[-1], i) for i, g in enumerate(layer_groups(model))
           if g.modules and (include_head or g.name != "head")]
    if not out:
        raise ValueError(f"{type(model).__name__} has no layer group with a module to hook")
    return out


def pick_depths(layers: Sequence[DepthLayer], names: Sequence[str] | None = None, *,
                n: int = 3) -> list[DepthLayer]:
    """Chosen depths by group name, or ``n`` spread evenly from the first to the last.

    Raises:
        KeyError: a name that is not a group (the message lists the groups).
    """
    by_name = {d.group: d for d in layers}
    if names is not None:
        missing = [x for x in names if x not in by_name]
        if missing:
            raise KeyError(f"no layer group named {missing}; the groups are {list(by_name)}")
        return [by_name[x] for x in names]
    if n < 1:
        raise ValueError(f"n must be >= 1, not {n}")
    if n >= len(layers):
        return list(layers)
    step = (len(layers) - 1) / max(n - 1, 1)
    return [layers[round(i * step)] for i in range(n)]
