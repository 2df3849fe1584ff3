"""History: what one ``ftkit.training.loop.fit`` call recorded, as plain numbers.

Rows of plain numbers (JSON-able) with DataFrame views, so a run can be
plotted, compared with another, saved in a checkpoint and loaded back.

>>> history.epoch_frame()[["epoch", "train_loss", "val_acc"]]   # doctest: +SKIP
>>> History.from_dict(json.loads(json.dumps(history.to_dict())))  # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pandas as pd

__all__ = ["History"]


@dataclass
class History:
    """What one :func:`ftkit.training.loop.fit` call recorded (all plain numbers: JSON-able).

    Attributes:
        steps: one row per optimizer step: ``step`` (1, 2, ...), ``epoch``
            (1-based), ``loss`` (the batch loss) and ``lr/<group name>`` (the LR
            the step used, per param group).
        evals: one row per validation pass: ``step``, ``epoch``, ``val_loss``,
            ``val_acc``, ``elapsed_s`` (training seconds so far, evaluation
            time excluded, so curves of different strategies compare fairly).
        epochs: one row per (possibly partial) epoch: ``epoch``, ``step``,
            ``train_loss``, ``train_acc`` (over the epoch's batches, in train
            mode), ``val_loss``, ``val_acc`` (None without validation data),
            ``time_s`` (training seconds in the epoch, evaluation excluded).
        interrupted: True when Ctrl-C (KeyboardInterrupt) ended the run.
        stopped_reason: why the run ended early; None when it ran to the end.
        config: the settings of the run (optimizer, schedule, seed...):
            ``group_lrs`` maps each param group to the LR it started from;
            ``lr`` is fit's default LR, None when every group set its own
            (or the optimizer was an instance).
    """

    steps: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    epochs: list[dict] = field(default_factory=list)
    interrupted: bool = False
    stopped_reason: str | None = None
    config: dict = field(default_factory=dict)

    def step_frame(self) -> pd.DataFrame:
        """Per-step rows as a DataFrame (columns present even when empty)."""
        lr_cols = [f"lr/{g}" for g in self.config.get("groups", [])]
        return pd.DataFrame(self.steps, columns=["step", "epoch", "loss", *lr_cols])

    def eval_frame(self) -> pd.DataFrame:
        """Per-evaluation rows as a DataFrame."""
        return pd.DataFrame(self.evals, columns=["step", "epoch", "val_loss", "val_acc", "elapsed_s"])

    def epoch_frame(self) -> pd.DataFrame:
        """Per-epoch rows as a DataFrame."""
        cols = ["epoch", "step", "train_loss", "train_acc", "val_loss", "val_acc", "time_s"]
        return pd.DataFrame(self.epochs, columns=cols)

    def to_dict(self) -> dict:
        """A JSON-able copy (``json.dumps(history.to_dict())`` works)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        """Inverse of :meth:`to_dict`."""
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})

    def __repr__(self) -> str:
        last = f", last loss={self.steps[-1]['loss']:.4g}" if self.steps else ""
        val = f", val_acc={self.evals[-1]['val_acc']:.3f}" if self.evals else ""
        return (f"History(steps={len(self.steps)}, epochs={len(self.epochs)}{last}{val}, "
                f"interrupted={self.interrupted}, stopped_reason={self.stopped_reason!r})")
