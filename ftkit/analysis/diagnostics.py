"""Diagnostics of a training setup: ``audit`` checks that a model and its optimizer agree.

It finds trainable parameters the optimizer does not have (a head replaced
after the optimizer was built), tensors the optimizer updates that are no
longer in the model, frozen parameters in the optimizer, and BatchNorm layers
in a frozen part whose running statistics would still change in train mode.

>>> audit(model, optimizer).ok                       # doctest: +SKIP
True
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import nn

from ftkit.core.torchutil import STAT_NORM, get_module
from ftkit.models.bn_policy import is_bn_frozen
from ftkit.models.groups import layer_groups
from ftkit.training.optim import group_names

__all__ = ["audit", "AuditReport", "Finding"]

@dataclass(frozen=True)
class Finding:
    """One thing ``audit`` noticed. ``severity`` is "error", "warning" or "info"."""

    severity: str
    kind: str
    message: str
    params: tuple[str, ...] = ()


@dataclass
class AuditReport:
    """What ``audit`` found, plus the optimizer's per-group learning rates (``lrs``)."""

    findings: list[Finding] = field(default_factory=list)
    lrs: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def ok(self) -> bool:
        """True when there is nothing worse than "info"."""
        return not any(f.severity in ("error", "warning") for f in self.findings)

    def to_frame(self) -> pd.DataFrame:
        """Findings as rows: severity, kind, message, n_params, params."""
        rows = [{"severity": f.severity, "kind": f.kind, "message": f.message,
                 "n_params": len(f.params), "params": ", ".join(f.params)} for f in self.findings]
        return pd.DataFrame(rows, columns=["severity", "kind", "message", "n_params", "params"])

    def __str__(self) -> str:
        head = "audit: OK" if self.ok else f"audit: {sum(f.severity != 'info' for f in self.findings)} problem(s)"
        lines = [head]
        for f in self.findings:
            shown = ", ".join(f.params[:6]) + (f", ... ({len(f.params)} in all)" if len(f.params) > 6 else "")
            lines.append(f"[{f.severity}] {f.kind}: {f.message}" + (f"\n    {shown}" if shown else ""))
        lines += ["", "learning rates per optimizer group:", self.lrs.to_string(index=False)]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        status = "OK" if self.ok else "problems found"
        return (f"<p><b>audit: {html.escape(status)}</b></p>" + self.to_frame().to_html(index=False)
                + "<p>learning rates per optimizer group</p>" + self.lrs.to_html(index=False))


def _bn_with_moving_stats(model: nn.Module) -> list[str]:
    """Norm layers in a frozen part of the model whose running statistics would still update."""
    names = []
    for group in layer_groups(model):
        params = group.parameters(model)
        group_frozen = bool(params) and not any(p.requires_grad for p in params)
        for name in group.modules:
            for sub, m in get_module(model, name).named_modules(prefix=name):
                own = list(m.parameters())
                frozen = not any(p.requires_grad for p in own) if own else group_frozen
                if isinstance(m, STAT_NORM) and m.track_running_stats and frozen and not is_bn_frozen(m):
                    names.append(sub)
    return names


def audit(model: nn.Module, optimizer: torch.optim.Optimizer) -> AuditReport:
    """Check that the optimizer and the model agree about what trains.

    Finds: trainable parameters the optimizer does not have (a head replaced
    after the optimizer was built), tensors the optimizer updates that are no
    longer in the model, frozen parameters in the optimizer, and BatchNorm
    layers in a frozen part whose running statistics would still change in
    train mode. ``.lrs`` lists each optimizer group's learning rate, under
    the names the rest of the kit uses (:func:`ftkit.training.optim.group_names`:
    ``name`` or ``group<i>``, repeats made unique).

    Args:
        model: the network being trained.
        optimizer: the optimizer that will train it.

    Returns:
        An ``AuditReport``; ``.ok`` is False when something needs fixing.
    """
    names = {id(p): n for n, p in model.named_parameters()}
    in_model = {id(p) for n, p in model.named_parameters()}
    findings: list[Finding] = []
    rows = []
    seen: set[int] = set()
    stale, frozen, frozen_grad = [], [], []
    decays = set()
    for label, group in zip(group_names(optimizer), optimizer.param_groups):  # the kit's names: group0, head_2...
        n_frozen = 0
        for j, p in enumerate(group["params"]):
            seen.add(id(p))
            if id(p) not in in_model:
                stale.append(f"{label}[{j}] {tuple(p.shape)}")
            elif not p.requires_grad:
                n_frozen += 1
                (frozen_grad if p.grad is not None else frozen).append(names[id(p)])
                decays.add(group.get("weight_decay", 0.0))
        rows.append({"group": label, "lr": group["lr"], "initial_lr": group.get("initial_lr"),
                     "weight_decay": group.get("weight_decay"), "tensors": len(group["params"]),
                     "frozen": n_frozen, "values": sum(p.numel() for p in group["params"])})
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in seen]
    if missing:
        findings.append(Finding("error", "missing_from_optimizer",
                                f"{len(missing)} trainable parameters are not in the optimizer and will never "
                                "be updated (was the head replaced after the optimizer was built?). "
                                "Build the optimizer again after changing the model.", tuple(missing)))
    if stale:
        findings.append(Finding("error", "not_in_model",
                                f"{len(stale)} tensors in the optimizer are not parameters of this model "
                                "(an old head?); the optimizer spends its steps on them. Build the optimizer again.",
                                tuple(stale)))
    if frozen_grad:
        findings.append(Finding("warning", "frozen_with_grad",
                                f"{len(frozen_grad)} frozen parameters in the optimizer still hold a .grad, so "
                                "the optimizer will keep moving them (momentum, weight decay). Call "
                                "optimizer.zero_grad(set_to_none=True) after freezing.", tuple(frozen_grad)))
    if frozen:
        wd = max((d for d in decays if d), default=0.0)
        findings.append(Finding("info", "frozen_in_optimizer",
                                f"{len(frozen)} frozen parameters are in the optimizer. Their .grad is None, and "
                                "torch.optim's optimizers skip such parameters entirely, so they do not move"
                                + (f", weight decay ({wd:g}, decoupled or not) included" if wd else "")
                                + ". They will train at their group's LR once unfrozen.", tuple(frozen)))
    moving = _bn_with_moving_stats(model)
    if moving:
        findings.append(Finding("warning", "bn_stats_update",
                                f"{len(moving)} BatchNorm layers in a frozen part of the model will still "
                                "update their running statistics whenever model.train() is on. Use "
                                "freeze(model, ..., bn='frozen') to keep them fixed, or "
                                "unfreeze(..., bn='train') if they are meant to adapt.", tuple(moving)))
    lrs = pd.DataFrame(rows, columns=["group", "lr", "initial_lr", "weight_decay", "tensors", "frozen", "values"])
    return AuditReport(findings, lrs)
