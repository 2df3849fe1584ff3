"""``TrainSpec``: how a model is trained, as one typed, hashable value.

One dataclass carries every setting of a training run (optimizer, LR,
schedule, budget, batch size, regularisation, precise BN, evaluation points,
device and precision), so that ``fit``, ``lr_find``, ``race`` and
``cross_validate`` take the same object, a sweep can hash it, and a table can
print it. How the *model* starts (weights, freezing, head) is not here: see
``ftkit.lab.specs.ModelSpec``.

>>> spec = TrainSpec(optimizer="adam", lr=3e-4, epochs=4, batch_size=32)
>>> spec.replace(lr=1e-3).lr
0.001
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["TrainSpec", "OPTIMIZER_NAMES", "SCHEDULE_NAMES"]

OPTIMIZER_NAMES = ("sgd", "adam", "adamw")
SCHEDULE_NAMES = ("constant", "step", "cosine", "onecycle")


@dataclass(frozen=True)
class TrainSpec:
    """Every setting of one training run.

    Attributes:
        optimizer: "adam", "sgd" (with ``momentum``) or "adamw".
        lr: learning rate (of the head's group when a discriminative policy
            spreads LRs over groups; see ``ftkit.lab.specs.LRGroups``).
        schedule: per-step LR schedule over the whole run: "constant", "step"
            (x0.1 after each third), "cosine" or "onecycle".
        warmup_frac: fraction of the steps spent warming the LR up linearly
            from 0 before the schedule (0: none).
        epochs: passes over the training data (ignored when ``max_steps`` is set).
        max_steps: exact number of optimizer steps instead of whole epochs.
        batch_size: minibatch size (the last batch of an epoch may be smaller).
        weight_decay: L2 penalty (decoupled for "adamw").
        momentum: SGD momentum.
        precise_bn: recompute BatchNorm statistics before every evaluation
            (``ftkit.models.bn_stats.recompute_bn_stats``); no weight changes.
        eval_every: evaluate every N steps as well as at each epoch's end.
        device: "auto" (CUDA when present), "cpu", "cuda", "cuda:1"...
        amp: "auto" (bf16 autocast + channels_last on CUDA), True or False.
        num_workers: DataLoader worker processes.
    """

    optimizer: str = "adam"
    lr: float = 1e-3
    schedule: str = "constant"
    warmup_frac: float = 0.0
    epochs: int | None = 5
    max_steps: int | None = None
    batch_size: int = 32
    weight_decay: float = 0.0
    momentum: float = 0.9
    precise_bn: bool = True
    eval_every: int | None = None
    device: str = "auto"
    amp: bool | str = "auto"
    num_workers: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.optimizer not in OPTIMIZER_NAMES:
            problems.append(f"optimizer must be one of {OPTIMIZER_NAMES}, not {self.optimizer!r}")
        if self.schedule not in SCHEDULE_NAMES:
            problems.append(f"schedule must be one of {SCHEDULE_NAMES}, not {self.schedule!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            problems.append(f"lr must be a positive number, not {self.lr!r}")
        if not 0.0 <= self.warmup_frac < 1.0:
            problems.append(f"warmup_frac must be in [0, 1), not {self.warmup_frac!r}")
        if self.max_steps is None and not _positive_int(self.epochs):
            problems.append(f"epochs must be a positive int (or set max_steps), not {self.epochs!r}")
        for name in ("max_steps", "eval_every"):
            value = getattr(self, name)
            if value is not None and not _positive_int(value):
                problems.append(f"{name} must be None or a positive int, not {value!r}")
        if not _positive_int(self.batch_size):
            problems.append(f"batch_size must be a positive int, not {self.batch_size!r}")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0, not {self.weight_decay!r}")
        if problems:
            raise ValueError("bad TrainSpec: " + "; ".join(problems))

    def replace(self, **changes: Any) -> "TrainSpec":
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def fit_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``ftkit.training.loop.fit`` that this spec sets."""
        kw = dict(lr=self.lr, optimizer=self.optimizer, schedule=self.schedule, batch_size=self.batch_size,
                  weight_decay=self.weight_decay, momentum=self.momentum, precise_bn=self.precise_bn,
                  eval_every=self.eval_every, device=self.device, amp=self.amp, num_workers=self.num_workers)
        if self.max_steps is not None:
            kw["max_steps"] = self.max_steps
        else:
            kw["epochs"] = self.epochs
        if self.warmup_frac:
            kw["warmup_frac"] = self.warmup_frac
        return kw

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
