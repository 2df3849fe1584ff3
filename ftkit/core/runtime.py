"""Where and how a model runs: device, bf16 autocast, channels_last, train/eval flags.

Shared by the training loop (``ftkit.training.loop``) and feature extraction
(``ftkit.analysis.features``), so both pick the same device and precision for the
same arguments and both hand the model back in the modes it came in
(:func:`ftkit.core.state.preserved_modes`; the mode and seeding helpers are
re-exported here from ``ftkit.core.state`` for old imports).

>>> rt = resolve_runtime("auto")                      # doctest: +SKIP
>>> with preserved_modes(model):                      # doctest: +SKIP
...     model.eval()
...     with rt.autocast(): logits = model(rt.inputs(x))
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from ftkit.core.state import preserved_modes, restore_modes, rng_devices, save_modes, seeded  # noqa: F401 (re-exported)
from ftkit.core.torchutil import resolve_device

__all__ = ["Runtime", "resolve_runtime", "split_batch", "to_device"]


@dataclass(frozen=True)
class Runtime:
    """Where and how to run: device, bf16 autocast, channels_last inputs."""

    device: torch.device
    amp: bool
    channels_last: bool

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on this device when ``amp`` is on, else a no-op context."""
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def inputs(self, x: Any) -> Any:
        """``x`` on this device, channels_last when that is on and ``x`` is ``(B, C, H, W)``.

        Tuples, lists and dicts of tensors (models with several inputs) move
        element by element.
        """
        if not isinstance(x, torch.Tensor):
            return to_device(x, self.device)
        x = x.to(self.device, non_blocking=True)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def resolve_runtime(device: str | torch.device = "auto", amp: bool | str = "auto") -> Runtime:
    """The :class:`Runtime` for ``device`` ("auto": CUDA when present) and ``amp``.

    Args:
        device: "auto" or anything ``torch.device`` accepts.
        amp: "auto" (bf16 autocast + channels_last on CUDA, fp32 on CPU), True, False.
    """
    dev = resolve_device(device)
    if amp == "auto":
        use = dev.type == "cuda"
    elif isinstance(amp, bool):
        use = amp
    else:
        raise ValueError(f"amp must be 'auto', True or False, not {amp!r}")
    # bf16 autocast alone can be slower than fp32 on GPU; with channels_last it is
    # ~1.7-2x faster (a hand-written loop on an H200: MobileNetV2 4390 vs 2523 img/s),
    # so the two go together.
    return Runtime(dev, use, use and dev.type == "cuda")


def to_device(obj: Any, device: torch.device) -> Any:
    """Tensors in ``obj`` (nested tuples, lists, dicts) moved to ``device``; anything else as is."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    return obj


def split_batch(batch: Any) -> tuple[Any, Any]:
    """``(inputs, targets)`` from a batch ``(x, y, ...)``; a clear TypeError for anything else."""
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise TypeError(f"each batch must be (inputs, targets), got {type(batch).__name__}")
