"""``advise``: what to do with a data set, from measurements rather than the course's table.

The advice is read off a measured scenario grid (:class:`ftkit.lab.scenarios.ScenarioResult`):

1. measure the data set's similarity to the backbone's pretraining
   (:func:`ftkit.lab.similarity.measure_similarity`) and count its images per class;
2. find the grid's nearest cell: the data set of the grid with the closest
   similarity (the data set itself when the grid has it), at the size closest on a
   log scale;
3. recommend that cell's measured best strategy, list the strategies tied with it
   (within the grid's error bar), say what it freezes and which LRs the LR rule
   found within 2 points of its best, and put the course's advice for the same
   quadrant beside it.

>>> advice = advise("photo_crops", grid=result)     # doctest: +SKIP
>>> print(advice.to_markdown())                     # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field

import numpy as np

from ftkit.lab.scenarios import COURSE_WORDS, ScenarioResult, available_sizes
from ftkit.lab.similarity import MEANING, SimilarityResult, measure_similarity

__all__ = ["Advice", "advise", "what_it_freezes", "lr_range"]


@dataclass
class Advice:
    """A recommendation with its reasons.

    Attributes:
        dataset: what the advice is for.
        strategy: the recommended strategy (a name of ``ftkit.lab.scenarios.STRATEGY_NAMES``).
        freeze: what that strategy freezes, in words.
        lr_range: ``(low, high)`` LRs within 2 points of the best held-out accuracy in the
            grid's LR table for that strategy; None for "features" (no LR).
        similarity: the measured similarity score.
        n_per_class: the data set's training images per class.
        cell: the grid cell the advice is read from (dataset, n_per_class).
        expected_acc: the strategy's mean test accuracy in that cell, and ``expected_sem`` its standard error.
        tied: strategies within the error bar of the best in that cell.
        ranking: every strategy of the cell, best first, with its mean accuracy.
        course_says: the course's advice for the same quadrant, and ``course_agrees`` whether the grid agrees.
        reasons: sentences that cite the numbers.
    """

    dataset: str
    strategy: str
    freeze: str
    lr_range: tuple[float, float] | None
    similarity: float
    n_per_class: int
    cell: tuple[str, int]
    expected_acc: float
    expected_sem: float
    tied: list[str]
    ranking: list[tuple[str, float]]
    course_says: str
    course_agrees: bool | None
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_markdown(self) -> str:
        lr = ("no learning rate (a logistic regression on the vectors)" if self.lr_range is None
              else f"Adam LR between {self.lr_range[0]:g} and {self.lr_range[1]:g}")
        lines = [f"**Advice for `{self.dataset}`: `{self.strategy}`** — freeze {self.freeze}; {lr}.", ""]
        lines += [f"* {r}" for r in self.reasons]
        return "\n".join(lines)


def what_it_freezes(strategy: str, freeze_k: int = 4) -> str:
    """What a strategy of the grid freezes, in words."""
    words = {"scratch": "nothing (random init, everything trains)",
             "features": "the whole body (features extracted once; only a classifier on them is trained)",
             "linear_probe": "everything but the new head",
             "freeze_k": f"the first {freeze_k} layer groups (the rest and the head train)",
             "finetune": "nothing (everything trains at one LR)",
             "discriminative": "nothing, but lower groups train at smaller LRs"}
    if strategy not in words:
        raise ValueError(f"unknown strategy {strategy!r}; known: {sorted(words)}")
    return words[strategy]


def lr_range(grid: ScenarioResult, dataset: str, strategy: str, within: float = 0.02) -> tuple[float, float] | None:
    """LRs of the grid's LR table for ``strategy`` on ``dataset`` within ``within`` of its best held-out accuracy."""
    table = grid.lr_tables.get(dataset)
    if strategy == "features" or table is None or table.empty:
        return None
    rows = table[table["strategy"] == strategy]
    if rows.empty:
        return None
    acc = np.nan_to_num(rows["holdout_acc_mean"].to_numpy(dtype=float), nan=-1.0)
    good = rows["lr"].to_numpy(dtype=float)[acc >= acc.max() - within]
    return float(good.min()), float(good.max())


def advise(dataset: str | os.PathLike, backbone: str = "mobilenet_v2", *, grid: ScenarioResult,
           n_per_class: int | None = None, similarity: SimilarityResult | None = None,
           tie_sigmas: float = 2.0) -> Advice:
    """Recommend a strategy for ``dataset`` from a measured scenario grid (see the module's docstring).

    Args:
        dataset: a catalogue name or an image-folder path.
        backbone: must be the grid's backbone (the grid measured that one).
        grid: a measured :class:`~ftkit.lab.scenarios.ScenarioResult` (``run_scenarios`` or ``ScenarioResult.load``).
        n_per_class: the images per class you will train on (default: the data set's smallest class).
        similarity: an already measured similarity (default: measured here, seconds on a CPU).
        tie_sigmas: the error bar, as in :meth:`ScenarioResult.best`.

    Raises:
        ValueError: a grid of another backbone, an empty grid, or bad sizes.
    """
    if grid.config.get("backbone") != backbone:
        raise ValueError(f"the grid was measured with {grid.config.get('backbone')!r}, not {backbone!r}: "
                         "advice must come from a grid of the same backbone "
                         "(run_scenarios(config.replace(backbone=...)))")
    if grid.runs.empty or grid.similarity.empty:
        raise ValueError("the grid holds no runs: measure one with ftkit.lab.scenarios.run_scenarios first")
    name = os.fspath(dataset)
    if n_per_class is None:
        n_per_class = available_sizes(name, [])[1]
    if not isinstance(n_per_class, int) or n_per_class < 1:
        raise ValueError(f"n_per_class must be a positive int, not {n_per_class!r}")
    if similarity is None:
        sim_n = min(int(grid.config.get("similarity_per_class", 20)), n_per_class)
        similarity = measure_similarity(backbone, name, n_per_class=sim_n,
                                        val_per_class=grid.config.get("val_per_class"),
                                        image_size=int(grid.config.get("image_size", 64)))
    score = similarity.score

    sims = grid.similarity.set_index("dataset")["score"]
    cell_ds = name if name in sims.index else str((sims - score).abs().idxmin())
    best = grid.best(tie_sigmas)
    rows = best[best["dataset"] == cell_ds]
    sizes = rows["n_per_class"].to_numpy()
    cell_n = int(sizes[np.argmin(np.abs(np.log(sizes) - math.log(n_per_class)))])
    b = rows[rows["n_per_class"] == cell_n].iloc[0]
    summ = grid.summary()
    cell = summ[(summ["dataset"] == cell_ds) & (summ["n_per_class"] == cell_n)].sort_values("acc_mean",
                                                                                          ascending=False)
    ranking = [(str(s), float(a)) for s, a in zip(cell["strategy"], cell["acc_mean"])]
    course = grid.course_table(tie_sigmas)
    c = course[(course["dataset"] == cell_ds) & (course["n_per_class"] == cell_n)].iloc[0]
    freeze_k = int(grid.config.get("freeze_k", 4))
    strategy = str(b["best"])
    lrs = lr_range(grid, cell_ds, strategy)

    reasons = [f"Similarity of `{name}` to the backbone's pretraining: {score:+.3f} "
               f"(pretrained features {similarity.pretrained_acc:.3f} vs raw pixels {similarity.pixel_acc:.3f}; "
               f"{MEANING})."]
    if cell_ds == name:
        reasons.append(f"The grid measured `{name}` itself; the nearest size it has is {cell_n} per class "
                       f"(you have {n_per_class}).")
    else:
        gap = abs(float(sims[cell_ds]) - score)
        reasons.append(f"The grid's data set with the nearest similarity is `{cell_ds}` ({float(sims[cell_ds]):+.3f}, "
                       f"{gap:.3f} away){' — far: treat the advice as a guess' if gap > 0.15 else ''}; "
                       f"its nearest size is {cell_n} per class (you have {n_per_class}).")
    runner = (f"; runner-up `{b['runner_up']}` {float(b['margin']):.3f} behind (error bar "
              f"{float(b['margin_bar']):.3f})" if b["runner_up"] is not None else "")
    reasons.append(f"In that cell `{strategy}` scored {float(b['best_acc']):.3f} ± {float(b['best_sem']):.3f} "
                   f"(mean ± s.e. over {int(cell['seeds'].iloc[0])} seeds){runner}.")
    others = [t for t in b["tied"] if t != strategy]
    if others:
        reasons.append(f"Tied with it within the error bar: {', '.join(f'`{t}`' for t in others)} — "
                       "pick the cheapest of them if compute matters.")
    if lrs is not None:
        reasons.append(f"The LR rule ({grid.rule}) found {lrs[0]:g}-{lrs[1]:g} within 2 points of the best "
                       f"held-out accuracy for `{strategy}` on `{cell_ds}`.")
    agrees = None if c["verdict"] == "not measured" else c["verdict"] == "agrees"
    reasons.append(f"The course's table says for {c['quadrant']}: {c['course_says']}; the grid "
                   + ("agrees." if agrees else f"disagrees: its best is {float(c['gap']):.3f} above the course's "
                      f"`{c['course_pick']}`." if agrees is False else "did not measure the course's strategy here."))
    return Advice(dataset=name, strategy=strategy, freeze=what_it_freezes(strategy, freeze_k), lr_range=lrs,
                  similarity=score, n_per_class=n_per_class, cell=(cell_ds, cell_n),
                  expected_acc=float(b["best_acc"]), expected_sem=float(b["best_sem"]), tied=list(b["tied"]),
                  ranking=ranking, course_says=COURSE_WORDS[_quadrant(c["quadrant"])], course_agrees=agrees,
                  reasons=reasons)


def _quadrant(words: str) -> tuple[bool, bool]:
    return words.startswith("little"), words.endswith(" similar")
