"""Learning-rate suggestion rules: pure functions of an LR-range-test curve.

Every rule takes ``(lrs, losses)`` -- the learning rates of a sweep, in
increasing order, and the (usually smoothed) loss recorded at each -- and
returns a :class:`Suggestion`. A curve without a usable region (flat, all NaN,
too few points, never decreasing) gives ``Suggestion(lr=None, reason=...)``,
never an exception.

``valley``, ``slide``, ``minimum`` and ``steep`` follow fastai's definitions
(``fastai.callback.schedule``, 2.8) so that people moving from fastai get the
same numbers on the same curve; ``gradient`` is torch-lr-finder's "steepest
gradient" rule taken against log10(LR) instead of the step index, so it means
the same thing for exponential and linear sweeps. Where fastai would return a
meaningless number on a curve that never improves (or crash on a short one),
these rules return a reason instead; the differences are listed in each
docstring.

>>> import numpy as np
>>> lrs = np.logspace(-5, 0, 50)
>>> losses = 2.0 - np.tanh(np.log10(lrs) + 3) + np.exp(3 * (np.log10(lrs) + 0.5))
>>> round(minimum(lrs, losses).lr, 6)
0.003728
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

import numpy as np

__all__ = [
    "Suggestion", "valley", "slide", "minimum", "steep", "gradient",
    "RULES", "rule_names", "suggest", "trim", "disagreement", "reliability_notes",
]

# Relative change below which a curve counts as flat (nothing was learned).
FLAT_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Suggestion:
    """One rule's answer.

    Attributes:
        rule: the rule's name ("valley", ...).
        lr: the suggested learning rate, or None when the curve has no usable region.
        point: (lr, loss) on the curve that the rule points at, for plotting
            (for ``minimum`` this is the minimum itself, ten times ``lr``).
        reason: why there is no suggestion (None when there is one).
    """

    rule: str
    lr: float | None
    point: tuple[float, float] | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.lr is not None


def _prepare(rule: str, lrs, losses, min_points: int):
    """Validate the call; cut the curve at its first non-finite loss (as fastai
    cuts at the first NaN). Returns (lrs, losses, None) or (None, None, Suggestion)."""
    lrs = np.asarray(lrs, dtype=np.float64).ravel()
    losses = np.asarray(losses, dtype=np.float64).ravel()
    if lrs.shape != losses.shape:
        raise ValueError(f"{rule}: lrs has {lrs.size} values but losses has {losses.size}; "
                         "pass one loss per learning rate")
    if lrs.size and (not np.all(np.isfinite(lrs)) or np.any(lrs <= 0)):
        raise ValueError(f"{rule}: learning rates must be finite and > 0 (log-LR rules)")
    if lrs.size > 1 and np.any(np.diff(lrs) <= 0):
        raise ValueError(f"{rule}: learning rates must increase strictly, as in a sweep")
    def no(reason: str):
        return None, None, Suggestion(rule, None, None, reason)

    if losses.size == 0:
        return no("empty curve: no points (a sweep shorter than skip_start + skip_end "
                  "leaves none)")
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        lrs, losses = lrs[: bad[0]], losses[: bad[0]]
    if losses.size == 0:
        return no("no finite loss values: the first loss is already NaN or inf")
    if losses.size < min_points:
        return no(f"only {losses.size} usable points; {rule} needs at least {min_points} "
                  "(raise num_iter or lower skip_start/skip_end)")
    if np.ptp(losses) <= FLAT_TOLERANCE * max(1.0, float(np.max(np.abs(losses)))):
        return no("flat curve: the loss did not change over the sweep "
                  "(are all layers frozen, or is the LR range too small?)")
    return lrs, losses, None


def valley(lrs, losses) -> Suggestion:
    """fastai's default rule: a point about half-way down the longest valley.

    The valley is the longest strictly decreasing subsequence of the losses (not
    necessarily contiguous; the first one found wins ties). With ``end`` its last
    index, ``n`` its number of points and ``start = end - n`` (fastai's
    convention, one before its first point), the suggestion is
    ``lrs[start + int(n / 3) + int(n / 6)]``.

    Differs from fastai only where fastai returns nonsense: a longest decreasing
    run of fewer than 3 points (no valley) gives a reason instead of a number.
    """
    lrs, losses, no = _prepare("valley", lrs, losses, min_points=3)
    if no:
        return no
    run = np.ones(losses.size, dtype=np.int64)  # run[i]: longest decreasing run ending at i
    for i in range(1, losses.size):
        higher = losses[:i] > losses[i]
        if higher.any():
            run[i] = run[:i][higher].max() + 1
    end = int(np.argmax(run))  # first index reaching the longest run
    length = int(run[end])
    if length < 3:
        return Suggestion("valley", None, None,
                          f"no valley: the longest decreasing run has {length} point(s)")
    start = end - length
    third = (end - start) / 3
    idx = start + int(third) + int(third / 2)
    return Suggestion("valley", float(lrs[idx]), (float(lrs[idx]), float(losses[idx])))


def slide(lrs, losses, lr_diff: int = 15, thresh: float = 0.005,
          adjust_value: float = 1.0) -> Suggestion:
    """fastai's interval-slide rule.

    Slopes are ``np.gradient(losses)`` per step. A window of ``lr_diff`` steps
    starts at the right end of the curve and slides left while the slopes at its
    two ends differ by more than ``thresh`` (an absolute loss change per step);
    the answer is the LR at the window's left end one step before it stopped
    (the initial left end if it stops at once), times ``adjust_value``.

    Differs from fastai on curves it cannot handle: fewer than ``lr_diff + 1``
    points (fastai raises IndexError) or a window that never settles (fastai
    returns the first LR) give a reason.
    """
    lrs, losses, no = _prepare("slide", lrs, losses, min_points=lr_diff + 1)
    if no:
        return no
    slopes = np.gradient(losses)
    right = losses.size - 1
    left = right - lr_diff
    found = lrs[left]
    while left >= 0 and abs(slopes[right] - slopes[left]) > thresh:
        found = lrs[left]
        right, left = right - 1, left - 1
    if left < 0:
        return Suggestion("slide", None, None,
                          f"slopes {lr_diff} steps apart never came within {thresh}: "
                          "the curve has no flat stretch")
    lr = float(found) * adjust_value
    loss = float(np.interp(np.log10(lr), np.log10(lrs), losses))
    return Suggestion("slide", lr, (lr, loss))


def minimum(lrs, losses) -> Suggestion:
    """fastai's rule: one tenth of the LR at the lowest loss (first one on ties).

    Differs from fastai only when the lowest loss is the very first point (the
    loss never went down): a reason instead of ``lrs[0] / 10``.
    """
    lrs, losses, no = _prepare("minimum", lrs, losses, min_points=2)
    if no:
        return no
    idx = int(np.argmin(losses))
    if idx == 0:
        return Suggestion("minimum", None, None,
                          "the loss never went below its first value")
    return Suggestion("minimum", float(lrs[idx]) / 10, (float(lrs[idx]), float(losses[idx])))


def steep(lrs, losses) -> Suggestion:
    """fastai's rule: the LR where the loss falls fastest against ln(LR).

    Slopes are forward differences ``diff(losses) / diff(log(lrs))``; the answer
    is the LR at the left end of the steepest segment. A curve whose loss never
    decreases gives a reason (fastai would return the least-rising segment).
    """
    lrs, losses, no = _prepare("steep", lrs, losses, min_points=2)
    if no:
        return no
    slopes = np.diff(losses) / np.diff(np.log(lrs))
    idx = int(np.argmin(slopes))
    if slopes[idx] >= 0:
        return Suggestion("steep", None, None, "the loss never decreases")
    return Suggestion("steep", float(lrs[idx]), (float(lrs[idx]), float(losses[idx])))


def gradient(lrs, losses) -> Suggestion:
    """Steepest slope on log-LR with central differences.

    ``argmin(np.gradient(losses, log10(lrs)))``. On an exponential sweep this is
    the same point as torch-lr-finder's suggestion (``np.gradient`` per step);
    unlike that one it means the same thing on a linear sweep.
    """
    lrs, losses, no = _prepare("gradient", lrs, losses, min_points=3)
    if no:
        return no
    slopes = np.gradient(losses, np.log10(lrs))
    idx = int(np.argmin(slopes))
    if slopes[idx] >= 0:
        return Suggestion("gradient", None, None, "the loss never decreases")
    return Suggestion("gradient", float(lrs[idx]), (float(lrs[idx]), float(losses[idx])))


RULES: dict[str, Callable[..., Suggestion]] = {
    "valley": valley, "slide": slide, "minimum": minimum, "steep": steep, "gradient": gradient,
}


def rule_names(rules: Iterable[str] | None = None) -> list[str]:
    """Check rule names (None: all of :data:`RULES`, in order).

    Raises:
        KeyError: for an unknown rule name, listing the known ones.
    """
    names = list(RULES) if rules is None else list(rules)
    unknown = [n for n in names if n not in RULES]
    if unknown:
        raise KeyError(f"unknown LR rule(s) {unknown}; choose from {sorted(RULES)}")
    return names


def suggest(lrs, losses, rules: Iterable[str] | None = None) -> dict[str, Suggestion]:
    """Apply several rules (all of :data:`RULES` by default) to one curve."""
    return {name: RULES[name](lrs, losses) for name in rule_names(rules)}


def trim(lrs, losses, skip_start: int, skip_end: int) -> tuple[np.ndarray, np.ndarray]:
    """Drop the first ``skip_start`` and last ``skip_end`` points, as fastai does
    (``[num_it // 10 : -5]``) before applying its rules: the start is mostly noise
    and the end holds the divergence that stopped the sweep."""
    if skip_start < 0 or skip_end < 0:
        raise ValueError("skip_start and skip_end must be >= 0")
    lrs, losses = np.asarray(lrs, dtype=np.float64), np.asarray(losses, dtype=np.float64)
    stop = max(len(lrs) - skip_end, 0)
    return lrs[skip_start:stop], losses[skip_start:stop]


def disagreement(suggestions: Mapping[str, Suggestion] | Iterable[Suggestion],
                 max_decades: float = 1.0) -> str | None:
    """Say how far apart suggestions are when they span more than ``max_decades``.

    Returns:
        None when the suggestions (those that exist) lie within ``max_decades``
        of each other, else a sentence naming the lowest and highest.
    """
    items = suggestions.values() if isinstance(suggestions, Mapping) else suggestions
    found = [(s.lr, s.rule) for s in items if s.ok]
    if len(found) < 2:
        return None
    (lo, lo_name), (hi, hi_name) = min(found), max(found)
    decades = math.log10(hi / lo)
    if decades <= max_decades:
        return None
    return (f"suggestions span {decades:.1f} decades "
            f"({lo_name} {lo:.1e} .. {hi_name} {hi:.1e})")


def reliability_notes(suggestions: Mapping[str, Suggestion],
                      per_seed: Iterable[Mapping[str, Suggestion]] = (),
                      max_decades: float = 1.0) -> list[str]:
    """Reasons not to trust one number from a range test (empty list: none found).

    Flags rules that disagree with each other by more than ``max_decades`` on
    the consensus curve, and any rule whose answer moves by more than
    ``max_decades`` between repeats with different batch orders.
    """
    notes = []
    across_rules = disagreement(suggestions, max_decades)
    if across_rules:
        notes.append(f"rules disagree: {across_rules}")
    per_seed = list(per_seed)
    for name in suggestions:
        values = [s[name].lr for s in per_seed if name in s and s[name].ok]
        if len(values) >= 2 and math.log10(max(values) / min(values)) > max_decades:
            notes.append(f"{name} moves {math.log10(max(values) / min(values)):.1f} decades "
                         f"across {len(per_seed)} seeds ({min(values):.1e} .. {max(values):.1e})")
    if not any(s.ok for s in suggestions.values()):
        notes.append("no rule found a usable region of the curve")
    return notes
