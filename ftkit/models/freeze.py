"""Freeze and unfreeze by depth or by name, with an explicit BatchNorm policy.

"Frozen" means two different things for a BatchNorm layer: its affine weights
(``requires_grad``) and its running statistics (updated in *train mode* by every
forward pass, gradients or not). ``model.train()`` on a parent switches every
child back to train mode, so a BN layer that was put in eval mode once keeps
updating its statistics (PyTorch #66073, Lightning #15062). Here the policy is
an argument:

* ``bn="frozen"`` (default for ``freeze``): the layer's affine parameters stop
  training *and* it runs in eval mode whatever ``model.train()`` says: a
  forward pre-hook puts it back in eval mode before each call. The hook is a
  plain module-level function in the module's hook table, so it survives
  ``copy.deepcopy``, pickling and ``load_state_dict``, adds no state-dict keys,
  and ``unfreeze(..., bn="train")`` removes it.
* ``bn="train"``: BN layers keep training, affine weights and statistics
  (fastai's ``train_bn=True``).

>>> freeze(model, all_but_head=True)                 # doctest: +SKIP
>>> trainable_summary(model)                         # doctest: +SKIP

The pin itself lives in ``ftkit.models.bn_policy`` (``ftkit.models.bn_stats``
reads it too); the setup audit is ``ftkit.analysis.diagnostics.audit``.
"""
from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Sequence

import pandas as pd
from torch import nn

from ftkit.core.torchutil import STAT_NORM, get_module
from ftkit.models.bn_policy import check_bn as _check_bn
from ftkit.models.bn_policy import is_bn_frozen
from ftkit.models.bn_policy import keep_bn_eval as _keep_bn_eval  # noqa: F401 (pickles made before the move)
from ftkit.models.bn_policy import pin as _pin
from ftkit.models.bn_policy import unpin as _unpin
from ftkit.models.groups import LayerGroup, layer_groups

__all__ = ["freeze", "unfreeze", "is_bn_frozen", "trainable_summary"]


# --------------------------------------------------------------------------- selection


@dataclass
class _Selection:
    params: list[nn.Parameter]
    norms: list[nn.Module]


def _match_names(model: nn.Module, groups: list[LayerGroup], patterns: Sequence[str]) -> tuple[list[str], list[str]]:
    """Module names and loose parameter names matched by fnmatch patterns (group names count too)."""
    module_names = [n for n, _ in model.named_modules() if n]
    param_names = [n for n, _ in model.named_parameters()]
    modules: list[str] = []
    loose: list[str] = []
    unmatched = []
    for pattern in patterns:
        hit_groups = [g for g in groups if fnmatchcase(g.name, pattern)]
        hit_modules = [n for n in module_names if fnmatchcase(n, pattern)]
        hit_params = [n for n in param_names if fnmatchcase(n, pattern)]
        if not (hit_groups or hit_modules or hit_params):
            unmatched.append(pattern)
        for g in hit_groups:
            modules += g.modules
            loose += g.param_names
        modules += hit_modules
        loose += hit_params
    if unmatched:
        vocabulary = [g.name for g in groups] + module_names
        close = sorted({c for p in unmatched for c in difflib.get_close_matches(p, vocabulary, n=6, cutoff=0.5)})
        raise ValueError(
            f"No group, module or parameter matches {', '.join(map(repr, unmatched))}. "
            f"Closest names: {', '.join(close) or 'none'}. Groups: {', '.join(g.name for g in groups)}. "
            "Patterns are fnmatch globs on qualified names, e.g. 'layer4', 'layer4.*', '*bn*'."
        )
    return modules, loose


def _select(model: nn.Module, *, k: int | None, names: str | Sequence[str] | None,
            all_but_head: bool, from_top: bool) -> _Selection:
    """What to act on; raises (touching nothing) when the request is malformed."""
    chosen = [s for s, given in (("k", k is not None), ("names", names is not None),
                                 ("all_but_head", bool(all_but_head))) if given]
    if len(chosen) > 1:
        raise ValueError(f"Give one of k, names, all_but_head (got {', '.join(chosen)}).")
    groups = layer_groups(model)
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= len(groups):
            raise ValueError(f"k must be an int from 0 to {len(groups)} (the number of groups: "
                             f"{', '.join(g.name for g in groups)}), got {k!r}.")
        picked = groups[len(groups) - k:] if from_top else groups[:k]
    elif all_but_head:
        if not groups or groups[-1].name != "head":
            raise ValueError(f"{type(model).__name__} has no classifier head group "
                             f"(groups: {', '.join(g.name for g in groups)}); use k= or names=.")
        picked = groups[:-1]
    elif names is not None:
        patterns = [names] if isinstance(names, str) else list(names)
        if not patterns:
            raise ValueError("names is empty; give at least one name or glob pattern.")
        module_names, loose = _match_names(model, groups, patterns)
        picked = [LayerGroup("selection", module_names, loose)]
    else:
        picked = groups  # only unfreeze gets here: everything
    params: dict[int, nn.Parameter] = {}
    norms: dict[int, nn.Module] = {}
    for group in picked:
        for p in group.parameters(model):
            params.setdefault(id(p), p)
        for m in _group_norms(model, group):
            norms.setdefault(id(m), m)
    return _Selection(list(params.values()), list(norms.values()))


def _group_norms(model: nn.Module, group: LayerGroup) -> list[nn.Module]:
    """The norm layers with running statistics inside the group's modules, each once."""
    found: dict[int, nn.Module] = {}
    for name in group.modules:
        for m in get_module(model, name).modules():
            if isinstance(m, STAT_NORM):
                found.setdefault(id(m), m)
    return list(found.values())


# --------------------------------------------------------------------------- freeze / unfreeze


def _warn_if_empty(selection: _Selection, names: str | Sequence[str] | None, verb: str) -> None:
    """Patterns that matched only modules without weights (ReLU, pooling, dropout) do nothing."""
    if names is not None and not selection.params and not selection.norms:
        warnings.warn(
            f"{verb}(names={names!r}) matched only modules without parameters (activations, "
            f"pooling, dropout...): 0 parameters changed. Name layers with weights or groups "
            "(layer_groups(model) lists them), e.g. 'layer4' or 'features.*'.", stacklevel=3)


def freeze(model: nn.Module, k: int | None = None, *, names: str | Sequence[str] | None = None,
           all_but_head: bool = False, bn: str = "frozen") -> nn.Module:
    """Stop training part of a model: the first ``k`` groups, named modules, or all but the head.

    Args:
        model: the network (changed in place and returned).
        k: freeze the first ``k`` groups of ``layer_groups(model)`` (input side).
        names: fnmatch patterns on group names ("stem"), module names
            ("layer4.*", "*bn*") or parameter names; an unmatched pattern is
            an error that lists the closest names.
        all_but_head: freeze every group except the head (feature extraction).
        bn: BatchNorm layers in the selection (also ones an earlier call
            froze: the latest call decides). ``"frozen"`` (default): their
            weights stop training and they stay in eval mode through
            ``model.train()``, so their running statistics keep the pretrained
            values. That is the default because statistics re-estimated from a
            small target set are noisy, and because they move the features the
            frozen layers were meant to keep fixed, under a head trained on
            them. ``"train"``: they keep training, weights and statistics
            (fastai's ``train_bn=True``).

    Returns:
        The same model.

    Raises:
        ValueError: for a malformed request; the model is then unchanged.

    >>> freeze(torchvision.models.resnet18(), k=2)     # doctest: +SKIP
    """
    _check_bn(bn)
    if k is None and names is None and not all_but_head:
        raise ValueError("Say what to freeze: k=<first k groups>, names=[patterns] or all_but_head=True.")
    selection = _select(model, k=k, names=names, all_but_head=all_but_head, from_top=False)
    _warn_if_empty(selection, names, "freeze")
    for p in selection.params:
        p.requires_grad_(False)
    for norm in selection.norms:
        if bn == "frozen":
            _pin(norm)
        else:
            _unpin(norm, model.training)
    return model


def unfreeze(model: nn.Module, k: int | None = None, *, names: str | Sequence[str] | None = None,
             bn: str = "train") -> nn.Module:
    """Train part of a model again: everything, the *last* ``k`` groups, or named modules.

    ``unfreeze(model, k=1)`` then ``k=2``... is gradual unfreezing from the top
    (ULMFiT). Remember to give the optimizer the newly trainable parameters
    (``audit`` tells you when you forgot).

    Args:
        model: the network (changed in place and returned).
        k: unfreeze the last ``k`` groups (head side); None with no names: all.
        names: fnmatch patterns, as in ``freeze``.
        bn: ``"train"`` (default): BatchNorm layers train again and follow
            ``model.train()``/``model.eval()``. ``"frozen"``: they stay fixed
            (weights and statistics), the rest of the selection trains.

    Returns:
        The same model.

    Raises:
        ValueError: for a malformed request; the model is then unchanged.
    """
    _check_bn(bn)
    selection = _select(model, k=k, names=names, all_but_head=False, from_top=True)
    _warn_if_empty(selection, names, "unfreeze")
    for p in selection.params:
        p.requires_grad_(True)
    for norm in selection.norms:
        if bn == "train":
            _unpin(norm, model.training)
        else:
            _pin(norm)
    return model


# --------------------------------------------------------------------------- summary


def _bn_mode(norms: Sequence[nn.Module]) -> str:
    modes = {"frozen" if is_bn_frozen(m) else "train" if m.training else "eval" for m in norms}
    return "-" if not modes else modes.pop() if len(modes) == 1 else "mixed"


def trainable_summary(model: nn.Module) -> pd.DataFrame:
    """One row per layer group: what trains and what the BatchNorm layers do.

    Columns: ``group``, ``params`` (values), ``trainable``, ``frozen``,
    ``bn_layers``, ``bn_mode``: "frozen" (pinned in eval mode by ``freeze``),
    "train" / "eval" (following the model's mode), "mixed", or "-" (none).
    """
    rows = []
    for group in layer_groups(model):
        params = group.parameters(model)
        norms = _group_norms(model, group)
        total = sum(p.numel() for p in params)
        trainable = sum(p.numel() for p in params if p.requires_grad)
        rows.append({"group": group.name, "params": total, "trainable": trainable,
                     "frozen": total - trainable, "bn_layers": len(norms), "bn_mode": _bn_mode(norms)})
    return pd.DataFrame(rows, columns=["group", "params", "trainable", "frozen", "bn_layers", "bn_mode"])
