"""Weight transfer: copy pretrained tensors into another model, with a per-tensor report.

The lesson behind this module: pretrained weights can only be reused where the
layers to initialise match the source layers in *name*, *type* and *settings*
(shape). ``transfer_weights`` copies what matches and makes every decision
visible as a per-tensor report (to find and resize the classifier itself, see
``ftkit.models.heads``).

>>> import torchvision                                                  # doctest: +SKIP
>>> source = torchvision.models.resnet18()                             # doctest: +SKIP
>>> target = torchvision.models.resnet18(num_classes=10)               # doctest: +SKIP
>>> transfer_weights(source, target).counts()["shape mismatch"]        # doctest: +SKIP
2
"""
from __future__ import annotations

import html
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Iterator

import torch
from torch import nn

__all__ = ["STATUSES", "TransferError", "TransferRow", "TransferReport", "transfer_weights"]

STATUSES = ("copied", "shape mismatch", "type mismatch", "missing in source", "only in source")


class TransferError(ValueError):
    """``strict=True`` found mismatches; ``.report`` holds the full TransferReport."""

    def __init__(self, message: str, report: "TransferReport"):
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class TransferRow:
    """What happened to one parameter or buffer."""

    name: str                      # qualified tensor name, e.g. "layer1.0.conv1.weight"
    kind: str                      # "parameter" | "buffer"
    status: str                    # one of STATUSES
    source_shape: tuple[int, ...] | None
    target_shape: tuple[int, ...] | None
    source_type: str | None        # owning module type in the source, e.g. "Conv2d"
    target_type: str | None
    reason: str


@dataclass
class TransferReport:
    """One row per tensor of source and target; render it in a notebook or print it."""

    rows: list[TransferRow] = field(default_factory=list)

    @property
    def copied(self) -> list[str]:
        """Names of the tensors that were copied."""
        return [r.name for r in self.rows if r.status == "copied"]

    @property
    def mismatches(self) -> list[TransferRow]:
        """Rows that were not copied."""
        return [r for r in self.rows if r.status != "copied"]

    def counts(self) -> dict[str, int]:
        """Number of tensors per status (every status, zeros included)."""
        return {s: sum(r.status == s for r in self.rows) for s in STATUSES}

    def to_frame(self):
        """The rows as a pandas DataFrame."""
        import pandas as pd

        columns = list(TransferRow.__dataclass_fields__)
        return pd.DataFrame([asdict(r) for r in self.rows], columns=columns)

    def summary(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in self.counts().items() if n)
        return f"{len(self.rows)} tensors: {counts or 'none'}"

    def _cells(self) -> Iterator[list[str]]:
        for r in self.rows:
            yield [r.name, r.kind, r.status, _where(r.source_type, r.source_shape),
                   _where(r.target_type, r.target_shape), r.reason]

    def __str__(self) -> str:
        header = ["name", "kind", "status", "source", "target", "reason"]
        table = [header, *self._cells()]
        widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1]
                 for row in table]
        lines.insert(1, "-" * (sum(widths) + 2 * len(widths) + len("reason")))
        return "\n".join(lines + ["", self.summary()])

    def _repr_html_(self) -> str:
        colours = {"copied": "#e6f4ea", "missing in source": "#fff8e1", "only in source": "#f3f3f3"}
        head = "".join(f"<th>{h}</th>" for h in
                       ["name", "kind", "status", "source", "target", "reason"])
        body = "".join(
            f'<tr style="background:{colours.get(cells[2], "#fde7e9")}">'
            + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"
            for cells in self._cells())
        return (f"<p><b>Weight transfer</b>: {html.escape(self.summary())}</p>"
                f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def _where(module_type: str | None, shape: tuple[int, ...] | None) -> str:
    return "-" if module_type is None else f"{module_type} {tuple(shape)}"


def _tensors(model: nn.Module) -> dict[str, tuple[str, nn.Module, torch.Tensor]]:
    """Every parameter and persistent buffer: name -> (kind, owning module, tensor)."""
    found: dict[str, tuple[str, nn.Module, torch.Tensor]] = {}
    for prefix, module in model.named_modules():
        dot = prefix + "." if prefix else ""
        for name, p in module.named_parameters(recurse=False):
            found[dot + name] = ("parameter", module, p)
        skip = getattr(module, "_non_persistent_buffers_set", set())  # derived, not weights
        for name, b in module.named_buffers(recurse=False):
            if name not in skip:
                found[dot + name] = ("buffer", module, b)
    return found


def _state_dict_tensors(state: Mapping) -> dict[str, tuple[str, None, torch.Tensor]]:
    """A state dict's entries as ``_tensors`` gives them, with no owning module to compare."""
    odd = [(k, type(v).__name__) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if odd:
        shown = ", ".join(f"{k!r} holds a {t}" for k, t in odd[:3])
        raise TypeError(
            f"source is a mapping but not a state dict of tensors ({shown}). Pass the state dict "
            "itself, e.g. checkpoint['model'] or checkpoint['state_dict'], or the model.")
    return {str(k): ("tensor", None, v) for k, v in state.items()}


def _compare(name: str, src: tuple | None, tgt: tuple | None) -> TransferRow:
    kind = (tgt or src)[0]
    s_type = (type(src[1]).__name__ if src[1] is not None else "state dict") if src else None
    t_type = type(tgt[1]).__name__ if tgt else None
    s_shape = tuple(src[2].shape) if src else None
    t_shape = tuple(tgt[2].shape) if tgt else None

    def row(status: str, reason: str) -> TransferRow:
        return TransferRow(name, kind, status, s_shape, t_shape, s_type, t_type, reason)

    if src is None:
        return row("missing in source", "no such tensor in the source: keeps its own init")
    if tgt is None:
        return row("only in source", "no such tensor in the target: not used")
    if src[1] is not None and (type(src[1]) is not type(tgt[1]) or src[0] != tgt[0]):
        what = (f"{s_type} in source, {t_type} in target" if s_type != t_type or src[0] == tgt[0]
                else f"a {src[0]} in source, a {tgt[0]} in target")
        return row("type mismatch", f"different layer: {what}")
    if s_shape != t_shape:
        return row("shape mismatch", f"{s_type} sized differently: {s_shape} in source, "
                                     f"{t_shape} in target")
    notes = []
    if src[1] is not None and src[1].extra_repr() != tgt[1].extra_repr():
        notes.append(f"settings differ: ({src[1].extra_repr()}) vs ({tgt[1].extra_repr()})")
    if src[2].dtype != tgt[2].dtype:
        notes.append(f"cast {src[2].dtype} -> {tgt[2].dtype}")
    return row("copied", "; ".join(["same name, type and shape", *notes]))


def _nothing_copied_hint(src: dict, tgt: dict) -> str:
    """Why no name matched: most often a prefix such as DataParallel's ``module.``."""
    for t in tgt:
        for s in src:
            if s != t and s.endswith("." + t):
                prefix = s[: -len(t)]
                return (f"The source's names carry a prefix ({s!r} for {t!r}): strip it and pass "
                        f"the state dict, {{k.removeprefix({prefix!r}): v for k, v in "
                        "source.state_dict().items()}.")
            if s != t and t.endswith("." + s):
                prefix = t[: -len(s)]
                return (f"The target's names carry a prefix ({t!r} for {s!r}): transfer into "
                        f"the submodule {prefix[:-1]!r} instead.")
    return ("The two share no tensor of the same name, type and shape: check that the source "
            "is the architecture you meant (report.to_frame() lists every tensor).")


def transfer_weights(source: nn.Module | Mapping[str, torch.Tensor], target: nn.Module,
                     strict: bool = False) -> TransferReport:
    """Copy every tensor whose name, owning layer type and shape match.

    Weights are copied into the target's existing tensors (under ``no_grad``),
    so its devices, dtypes and ``requires_grad`` flags stay as they were. BatchNorm
    running statistics and ``num_batches_tracked`` are buffers and copied like
    weights; non-persistent buffers (derived constants) are left alone.

    Args:
        source: model to copy from (e.g. pretrained), or its state dict (a
            mapping of names to tensors: then only names and shapes are compared,
            as there are no layers to compare).
        target: model to copy into (e.g. the same architecture with a new head).
        strict: if True, any row that is not "copied" raises before anything is copied.

    Returns:
        TransferReport with one row per tensor of either model (target order first).

    Raises:
        TransferError: (a ValueError) in strict mode, listing every mismatch;
            the target is then untouched.
        ValueError: the source holds data-free meta tensors that would be copied.
        TypeError: the source is neither a model nor a mapping of names to tensors.

    Warns:
        UserWarning: nothing was copied (it says the likely reason, e.g. a
            ``module.`` prefix on every name).

    >>> report = transfer_weights(resnet18_imagenet, resnet18_10_classes)   # doctest: +SKIP
    >>> report.counts()["shape mismatch"]                                    # doctest: +SKIP
    2
    """
    if isinstance(source, nn.Module):
        src = _tensors(source)
    elif isinstance(source, Mapping):
        src = _state_dict_tensors(source)
    else:
        raise TypeError(f"source must be an nn.Module or a state dict (a mapping of names to "
                        f"tensors), got {type(source).__name__}")
    tgt = _tensors(target)
    names = list(tgt) + [n for n in src if n not in tgt]
    report = TransferReport([_compare(n, src.get(n), tgt.get(n)) for n in names])
    if strict and report.mismatches:
        listing = "\n".join(f"  {r.name}: {r.status} ({r.reason})" for r in report.mismatches)
        raise TransferError(
            f"{len(report.mismatches)} of {len(report.rows)} tensors do not match; nothing "
            f"was copied:\n{listing}\nUse strict=False to copy only the matching ones.", report)
    pairs = [(src[n][2], tgt[n][2]) for n in report.copied]
    empty = [n for n, (s, t) in zip(report.copied, pairs) if s.is_meta and not t.is_meta]
    if empty:
        raise ValueError(f"The source has no data (meta tensors), e.g. {empty[:3]}; "
                         "load its weights before transferring them.")
    with torch.no_grad():
        for s, t in pairs:
            t.copy_(s)
    if tgt and not pairs:
        warnings.warn(f"transfer_weights copied nothing: 0 of {len(tgt)} target tensors found a "
                      f"match in the source. {_nothing_copied_hint(src, tgt)}", stacklevel=2)
    return report
