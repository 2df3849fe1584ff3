"""What an LR range test measured, and what the rules make of it.

``ftkit.lr.finder.lr_find`` records one :class:`SweepRecord` per seed while it
trains; :func:`assemble_result` turns those records into an
:class:`LRFindResult`: the median curve over seeds, each rule's suggestion on it
and on every seed's own curve, and the reasons not to trust them when rules or
seeds disagree. Nothing here touches a model: it is NumPy and pandas over the
recorded numbers.

>>> result.summary()        # one row per rule             # doctest: +SKIP
>>> result.to_frame()       # one row per (seed, step)     # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ftkit.lr.rules import Suggestion, reliability_notes, suggest, trim

__all__ = ["LRFindResult", "LRFindSettings", "SweepRecord", "assemble_result"]


@dataclass(frozen=True)
class LRFindSettings:
    """How a range test was run: the arguments of ``lr_find`` and what it derived from them.

    Attributes:
        start_lr, end_lr, num_iter, step_mode: the sweep (``ftkit.lr.finder.sweep_lrs``).
        beta: smoothing of the recorded loss.
        diverge_factor: the sweep stopped when the smoothed loss exceeded this
            multiple of its best (None: only a non-finite loss stopped it).
        group: the ``group`` argument (None: all groups swept, ratios kept).
        seeds, seed: repeats and the first seed.
        mode: "train" (training-batch loss) or "val" (validation loss after each step).
        batch_size, device, amp: where and how it trained (amp: bf16 autocast was on).
        skip_start, skip_end: points cut before the rules.
        reference_group: the group whose LR is the x axis.
        group_names: every param group, in the optimizer's order.
        swept_ratios: group -> its LR / the reference group's LR (None: held at its own LR).
        base_lrs: group -> its LR before the test.
    """

    start_lr: float
    end_lr: float
    num_iter: int
    step_mode: str
    beta: float
    diverge_factor: float | None
    group: str | int | None
    seeds: int
    seed: int
    mode: str
    batch_size: int
    device: str
    skip_start: int
    skip_end: int
    reference_group: str
    group_names: tuple[str, ...]
    swept_ratios: dict[str, float | None]
    base_lrs: dict[str, float]
    amp: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (JSON-able)."""
        d = asdict(self)
        d["group_names"] = list(self.group_names)
        return d


@dataclass
class LRFindResult:
    """What a range test measured and what the rules make of it.

    Attributes:
        lrs: (T,) swept LR at each step (of the swept group; with ratios kept,
            of the group with the largest LR, ``settings.reference_group``).
        group_lrs: group name -> (T,) LR actually applied to that group.
        losses: (S, T) loss per seed that the rules use (training loss, or
            validation loss with ``val_data``); NaN after a run stopped.
        smoothed: (S, T) bias-corrected EMA of ``losses``.
        train_losses: (S, T) training-batch loss per seed.
        curve_lrs, curve_losses: the curve given to the rules: the median of the
            smoothed curves over seeds, on the steps all runs reached, trimmed by
            ``skip_start`` / ``skip_end``.
        suggestions: rule name -> Suggestion on that curve.
        seed_suggestions: the same, per seed.
        endings: per seed, "finished" | "diverged" | "interrupted" | "failed" (an error;
            the partial result rides on the exception as ``err.result``).
        reliable: True when every rule found a suggestion, they agree within a
            decade (with each other and across seeds) and the test ran to its
            end; otherwise ``notes`` says why not.
        notes: human-readable reasons.
        settings: how the test was run (:class:`LRFindSettings`).
        snapshot_bytes: bytes of the CPU copy held during the test.
    """

    lrs: np.ndarray
    group_lrs: dict[str, np.ndarray]
    losses: np.ndarray
    smoothed: np.ndarray
    train_losses: np.ndarray
    curve_lrs: np.ndarray
    curve_losses: np.ndarray
    suggestions: dict[str, Suggestion]
    seed_suggestions: list[dict[str, Suggestion]]
    endings: list[str]
    reliable: bool
    settings: LRFindSettings
    notes: list[str] = field(default_factory=list)
    snapshot_bytes: int = 0

    @property
    def interrupted(self) -> bool:
        return "interrupted" in self.endings

    @property
    def suggestion(self) -> float | None:
        """The ``valley`` suggestion (fastai's default), or None."""
        s = self.suggestions.get("valley")
        return s.lr if s is not None else None

    def lrs_for(self, lr: float) -> dict[str, float]:
        """Per-group LRs that correspond to ``lr`` on this test's x axis."""
        swept, base = self.settings.swept_ratios, self.settings.base_lrs
        return {n: lr * swept[n] if swept[n] is not None else base[n] for n in base}

    def summary(self) -> pd.DataFrame:
        """One row per rule: suggested LR, per-group LRs, spread over seeds, reason."""
        rows = []
        for name, s in self.suggestions.items():
            seeds = [d[name].lr for d in self.seed_suggestions if d[name].ok]
            row = {"rule": name, "lr": s.lr, "reason": s.reason,
                   "seed_min": min(seeds, default=None), "seed_max": max(seeds, default=None)}
            if s.ok and len(self.group_lrs) > 1:
                row.update({f"lr/{g}": v for g, v in self.lrs_for(s.lr).items()})
            rows.append(row)
        return pd.DataFrame(rows).set_index("rule")

    def to_frame(self) -> pd.DataFrame:
        """Long table: one row per (seed, step) that ran."""
        frames = []
        for s in range(self.losses.shape[0]):
            n = int(np.sum(~np.isnan(self.train_losses[s])))
            frame = pd.DataFrame({"seed": s, "step": np.arange(n), "lr": self.lrs[:n],
                                  "loss": self.losses[s, :n], "smoothed": self.smoothed[s, :n],
                                  "train_loss": self.train_losses[s, :n]})
            for g, v in self.group_lrs.items():
                frame[f"lr/{g}"] = v[:n]
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    def __repr__(self) -> str:
        found = ", ".join(f"{k}={s.lr:.2e}" for k, s in self.suggestions.items() if s.ok)
        return (f"LRFindResult({found or 'no suggestion'}; steps={self.lrs.size}, "
                f"seeds={len(self.endings)}, endings={self.endings}, reliable={self.reliable})")


@dataclass
class SweepRecord:
    """What one sweep (one seed) recorded; ``lr_find`` fills it step by step so an
    interrupt keeps it. ``group_lrs`` has one row per step: the LR of each group."""

    group_lrs: list[list[float]] = field(default_factory=list)
    train: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    ending: str = "interrupted"


def assemble_result(runs: Sequence[SweepRecord], schedule: np.ndarray, names: list[str],
                    settings: LRFindSettings, rules: Sequence[str],
                    snapshot_bytes: int) -> LRFindResult:
    """Turn the sweeps' records into a result: pad them to one (seeds, steps) array,
    take the median smoothed curve over the seeds not interrupted (all of them if
    every one was), and apply
    ``rules`` to it and to each seed's own curve.

    Args:
        runs: one record per seed, in seed order (the last may be empty or partial).
        schedule: (T,) the swept LR at each step (``ftkit.lr.finder.sweep_lrs``).
        names: the param groups' names, in ``group_lrs`` column order.
        settings: ``LRFindResult.settings``; its ``skip_start`` / ``skip_end`` trim the curves.
        rules: rule names, already checked (``ftkit.lr.rules.rule_names``).
        snapshot_bytes: size of the CPU copy held during the test.
    """
    steps = max((len(r.losses) for r in runs), default=0)
    shape = (len(runs), steps)
    losses, smoothed, train = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    for s, r in enumerate(runs):
        n = len(r.losses)
        losses[s, :n], smoothed[s, :n], train[s, :n] = r.losses, r.smoothed, r.train[:n]
    longest = max(runs, key=lambda r: len(r.losses), default=SweepRecord())
    applied = np.asarray(longest.group_lrs[:steps], dtype=np.float64).reshape(steps, len(names))
    group_lrs = {n: applied[:, i] for i, n in enumerate(names)}
    lrs = schedule[:steps]

    done = [s for s, r in enumerate(runs) if r.ending not in ("interrupted", "failed")] or list(range(len(runs)))
    common = min((len(runs[s].losses) for s in done), default=0)
    consensus = np.median(smoothed[done, :common], axis=0) if common else np.empty(0)
    skip = (settings.skip_start, settings.skip_end)
    curve_lrs, curve_losses = trim(lrs[:common], consensus, *skip)
    suggestions = suggest(curve_lrs, curve_losses, rules)
    per_seed = [suggest(*trim(lrs[: len(r.smoothed)], r.smoothed, *skip), rules) for r in runs]

    notes = reliability_notes(suggestions, [per_seed[s] for s in done])
    if any(r.ending == "failed" for r in runs):
        notes.append(f"an error stopped the test after {sum(len(r.losses) for r in runs)} steps")
    if any(r.ending == "interrupted" for r in runs):
        notes.append(f"interrupted after {sum(len(r.losses) for r in runs)} steps; "
                     "suggestions use what was recorded")
    notes += [f"{k}: {s.reason}" for k, s in suggestions.items() if not s.ok]
    reliable = not notes
    return LRFindResult(lrs=lrs, group_lrs=group_lrs, losses=losses, smoothed=smoothed,
                        train_losses=train, curve_lrs=curve_lrs, curve_losses=curve_losses,
                        suggestions=suggestions, seed_suggestions=per_seed,
                        endings=[r.ending for r in runs], reliable=reliable, notes=notes,
                        settings=settings, snapshot_bytes=snapshot_bytes)
