"""Where and how a model runs: device, bf16 autocast, channels_last, train/eval flags.

Shared by the training loop (``ftkit.training.loop``) and feature extraction
(``ftkit.analysis.features``), so both pick the same device and precision for the
same arguments and both hand the model back in the modes it came in.

>>> rt = resolve_runtime("auto")                      # doctest: +SKIP
>>> modes = save_modes(model); model.eval()           # doctest: +SKIP
>>> with rt.autocast(): logits = model(rt.inputs(x))  # doctest: +SKIP
>>> restore_modes(modes)                              # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn

from ftkit.core.torchutil import resolve_device

__all__ = ["Runtime", "resolve_runtime", "save_modes", "restore_modes", "rng_devices", "seeded",
           "split_batch", "to_device"]


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


def save_modes(model: nn.Module) -> dict[nn.Module, bool]:
    """Every module's ``training`` flag, for :func:`restore_modes`."""
    return {m: m.training for m in model.modules()}


def restore_modes(modes: dict[nn.Module, bool]) -> None:
    """Put back the flags :func:`save_modes` recorded, module by module."""
    for m, training in modes.items():
        m.training = training  # per module: m.train() would recurse and undo pins


def rng_devices(device: torch.device) -> list[int]:
    """The CUDA devices whose RNG ``torch.random.fork_rng`` must fork for ``device``."""
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run the block with torch's CPU RNG (and ``device``'s CUDA RNG) seeded by ``seed``.

    The caller's states come back afterwards. Unlike ``torch.manual_seed``,
    no other CUDA device is seeded, so a CPU run leaves every CUDA RNG alone.

    >>> with seeded(0, torch.device("cpu")):   # doctest: +SKIP
    ...     model = make_model()
    """
    devices = rng_devices(device)
    with torch.random.fork_rng(devices=devices):
        torch.default_generator.manual_seed(seed)
        for d in devices:
            with torch.cuda.device(d):
                torch.cuda.manual_seed(seed)
        yield


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
