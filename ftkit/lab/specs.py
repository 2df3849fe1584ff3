"""What one experiment run is, as plain, hashable, picklable values.

* :class:`ModelSpec` — how the model starts: backbone and source weights,
  which layer groups keep them and which are re-initialised, what is frozen
  (and how its BatchNorm behaves), the new head.
* :class:`Strategy` — a named ModelSpec plus a :class:`~ftkit.training.spec.TrainSpec`
  (how it trains), an optional discriminative-LR policy and an optional
  head-only first phase (LP-FT).
* :class:`DataSpec` — which data, by catalogue name (or folder path) and arguments.
* :class:`RunSpec` — strategy x data x seed: the unit a sweep maps
  ``ftkit.lab.runs.run_one`` over; ``key`` names it in a run folder.
* :class:`RunRecord` — what one run measured (JSON-able).

>>> ft = Strategy("finetune", ModelSpec(), TrainSpec(lr=3e-4, epochs=4))
>>> spec = RunSpec(ft, DataSpec("animals", n_per_class=30), seed=0)
>>> len(spec.key)
16
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from torch.utils.data import Subset

from ftkit.training.spec import TrainSpec

__all__ = ["LRGroups", "ModelSpec", "Strategy", "DataSpec", "RunSpec", "RunRecord", "LabelledSubset",
           "holdout_split", "kfold_indices", "spec_key"]


@dataclass(frozen=True)
class LRGroups:
    """A discriminative-LR policy over layer groups (``ftkit.lr.groups.param_groups``).

    The head gets ``TrainSpec.lr``; lower groups get less. Give one of:
    ``head_mult`` (every body group at ``lr / head_mult``), ``lr_range``
    (geometric from ``lr_range[0]`` at the stem to ``lr_range[1]`` at the head),
    or ``decay`` (each lower group at ``1/decay`` of the one above; ULMFiT: 2.6).
    """

    head_mult: float | None = None
    lr_range: tuple[float, float] | None = None
    decay: float | None = None

    def __post_init__(self) -> None:
        given = [n for n in ("head_mult", "lr_range", "decay") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(f"LRGroups needs exactly one of head_mult, lr_range, decay; got {given or 'none'}")


@dataclass(frozen=True)
class ModelSpec:
    """How the model starts.

    Attributes:
        backbone: a name known to ``ftkit.models.zoo.load_backbone``.
        weights: "pretrained" (the backbone's source weights) or None (random init).
        copy_groups: None keeps every group's source weights; k keeps the first
            k layer groups and re-initialises the rest (Yosinski's AnB).
        freeze: None, "all_but_head" (a linear probe), or k (freeze the first k groups).
        train_groups: only these group indices train, everything else is
            frozen (surgical fine-tuning); exclusive with ``freeze``.
        bn: BatchNorm in frozen groups: "frozen" (eval mode, statistics kept)
            or "train" (weights frozen, statistics keep moving).
        head_hidden: width of a hidden layer in the new head (None: linear head).
    """

    backbone: str = "mobilenet_v2"
    weights: str | None = "pretrained"
    copy_groups: int | None = None
    freeze: int | str | None = None
    train_groups: tuple[int, ...] | None = None
    bn: str = "frozen"
    head_hidden: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.weights not in ("pretrained", None):
            problems.append(f"weights must be 'pretrained' or None (random init), not {self.weights!r}")
        if not (self.freeze is None or self.freeze == "all_but_head"
                or (isinstance(self.freeze, int) and not isinstance(self.freeze, bool) and self.freeze >= 0)):
            problems.append(f"freeze must be None, 'all_but_head' or an int k >= 0, not {self.freeze!r}")
        if self.copy_groups is not None and (not isinstance(self.copy_groups, int) or self.copy_groups < 0):
            problems.append(f"copy_groups must be None or an int k >= 0, not {self.copy_groups!r}")
        if self.train_groups is not None:
            if self.freeze is not None:
                problems.append("give either freeze or train_groups, not both")
            if not isinstance(self.train_groups, tuple) or not self.train_groups:
                problems.append(f"train_groups must be a non-empty tuple of group indices, not {self.train_groups!r}")
        if self.bn not in ("frozen", "train"):
            problems.append(f"bn must be 'frozen' or 'train', not {self.bn!r}")
        if problems:
            raise ValueError("bad ModelSpec: " + "; ".join(problems))

    @property
    def pretrained(self) -> bool:
        return self.weights is not None


@dataclass(frozen=True)
class Strategy:
    """A named way to get a classifier: how the model starts and how it trains.

    Attributes:
        name: label used in tables and plots (unique within a comparison).
        model: how the model starts.
        train: how it trains (optimizer, LR, schedule, budget...).
        groups: optional discriminative LRs (the head gets ``train.lr``).
        probe: optional first phase that trains only the head with this spec
            before ``train`` runs on whatever ``model`` leaves trainable
            (linear probe then fine-tune, LP-FT).
        description: one sentence for learners.
    """

    name: str
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    groups: LRGroups | None = None
    probe: TrainSpec | None = None
    description: str = ""

    @property
    def lr(self) -> float:
        return self.train.lr

    def with_lr(self, lr: float) -> "Strategy":
        """The same strategy at another LR (the probe phase, if any, keeps its own)."""
        return dataclasses.replace(self, train=self.train.replace(lr=float(lr)))

    def with_train(self, **changes: Any) -> "Strategy":
        """The same strategy with ``TrainSpec`` fields changed (e.g. ``epochs=8``)."""
        return dataclasses.replace(self, train=self.train.replace(**changes))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class DataSpec:
    """Which data a run trains and is evaluated on.

    Attributes:
        name: a catalogue name (``ftkit.data.list_datasets()``) or an image-folder path.
        n_per_class: training images per class (None: all).
        image_size: side of the square images.
        subset_seed: which images the subsample keeps (same seed, same images).
        val_split: the split evaluated on ("test").
        val_n_per_class: validation images per class (None: all).
        holdout_frac: when > 0, validate on this fraction of the *training*
            images instead (stratified, chosen by ``subset_seed``) and train on
            the rest: the split for choosing settings without looking at the
            test images. ``val_split`` is then unused.
        fold: ``(k, i)``: k-fold cross-validation on the *training* images —
            validate on fold ``i`` of a stratified k-fold split (chosen by
            ``subset_seed``, see :func:`kfold_indices`), train on the other
            folds. ``val_split`` is then unused; exclusive with ``holdout_frac``.
    """

    name: str
    n_per_class: int | None = None
    image_size: int = 64
    subset_seed: int = 0
    val_split: str = "test"
    val_n_per_class: int | None = None
    holdout_frac: float = 0.0
    fold: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.holdout_frac < 1.0:
            raise ValueError(f"holdout_frac must be in [0, 1), not {self.holdout_frac!r}")
        if self.fold is not None:
            ok = (isinstance(self.fold, tuple) and len(self.fold) == 2
                  and all(isinstance(v, int) and not isinstance(v, bool) for v in self.fold)
                  and self.fold[0] >= 2 and 0 <= self.fold[1] < self.fold[0])
            if not ok:
                raise ValueError(f"fold must be (k, i) with k >= 2 and 0 <= i < k, not {self.fold!r}")
            if self.holdout_frac:
                raise ValueError("give either holdout_frac or fold, not both")

    def load(self, mean=None, std=None):
        """``(train, val)`` datasets, normalised with ``mean``/``std`` (ImageNet's when None)."""
        from ftkit.data.catalogue import load_dataset

        kw = dict(image_size=self.image_size, mean=mean, std=std)
        train = load_dataset(self.name, "train", n_per_class=self.n_per_class, seed=self.subset_seed, **kw)
        if self.holdout_frac:
            return holdout_split(train, self.holdout_frac, seed=self.subset_seed)
        if self.fold is not None:
            k, i = self.fold
            tr, va = kfold_indices(train, k, seed=self.subset_seed)[i]
            return LabelledSubset(train, tr.tolist()), LabelledSubset(train, va.tolist())
        val = load_dataset(self.name, self.val_split, n_per_class=self.val_n_per_class, seed=self.subset_seed, **kw)
        return train, val


class LabelledSubset(Subset):
    """A ``Subset`` that keeps ``classes`` and ``targets`` (what the lab reads from a data set)."""

    def __init__(self, data, indices: Sequence[int]) -> None:
        super().__init__(data, list(indices))
        self.classes = list(data.classes)
        self.targets = np.asarray(data.targets)[self.indices]


def holdout_split(data, frac: float, *, seed: int = 0) -> tuple[LabelledSubset, LabelledSubset]:
    """``(rest, held_out)``: ``frac`` of every class held out, chosen by ``seed``.

    Raises:
        ValueError: when a class has too few images to keep at least one on each side.
    """
    targets = np.asarray(data.targets)
    rng = np.random.default_rng(seed)
    rest, held = [], []
    for c in np.unique(targets):
        idx = rng.permutation(np.flatnonzero(targets == c))
        n_held = int(round(frac * len(idx)))
        if n_held < 1 or n_held >= len(idx):
            raise ValueError(f"class {data.classes[c]!r} has {len(idx)} images: too few to hold out "
                             f"{frac:.0%} and keep some for training; use more images per class or another frac")
        held += idx[:n_held].tolist()
        rest += idx[n_held:].tolist()
    return LabelledSubset(data, sorted(rest)), LabelledSubset(data, sorted(held))


def kfold_indices(data, k: int = 5, *, seed: int = 0,
                  stratified: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train indices, val indices) per fold; stratified by ``data.targets`` when present."""
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(data)
    if not isinstance(k, int) or not 2 <= k <= n:
        raise ValueError(f"k must be an int between 2 and len(data)={n}, not {k!r}")
    targets = getattr(data, "targets", None)
    if stratified and targets is not None:
        y = np.asarray(targets)
        folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(n), y)
    else:
        folds = KFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(n))
    return [(np.asarray(tr), np.asarray(va)) for tr, va in folds]


def spec_key(value: Any) -> str:
    """A 16-hex-digit hash of a spec's canonical JSON: the same spec, the same key."""
    blob = json.dumps(_plain(value), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__type__": type(value).__name__, **{f.name: _plain(getattr(value, f.name))
                                                     for f in dataclasses.fields(value)}}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class RunSpec:
    """One run: a strategy on a data set with a seed.

    The seed fixes the new head's (and a scratch model's) initialisation, the
    batch order and any dropout; the same seed gives every strategy the same
    head init and the same batches.
    """

    strategy: Strategy
    data: DataSpec
    seed: int = 0

    @property
    def key(self) -> str:
        return spec_key(self)

    @property
    def labels(self) -> dict[str, Any]:
        return {"strategy": self.strategy.name, "data": self.data.name, "n_per_class": self.data.n_per_class,
                "seed": self.seed}


@dataclass
class RunRecord:
    """What one run measured; JSON-able through :meth:`to_dict` / :meth:`from_dict`.

    Attributes:
        key: the RunSpec's key.
        labels: strategy, data, n_per_class, seed.
        lr: the strategy's LR.
        start_acc, start_loss: validation accuracy/loss before training (step 0).
        final_acc, final_loss: at the last evaluation.
        max_train_loss: the worst training batch's loss.
        body_drift: relative distance the weights outside the head moved.
        steps: optimizer steps made (the probe phase included).
        time_s: wall time of training (evaluation included).
        stopped_reason: None, or why training stopped early.
        curve: one dict per evaluation (step, epoch, val_acc, val_loss, elapsed_s).
        step_losses: one dict per optimizer step (step, epoch, loss).
        extra: anything else a run measured (e.g. out-of-distribution accuracy).
        spec: the RunSpec as a dict (for the record).
    """

    key: str
    labels: dict[str, Any]
    lr: float
    start_acc: float
    start_loss: float
    final_acc: float
    final_loss: float
    max_train_loss: float
    body_drift: float
    steps: int
    time_s: float
    stopped_reason: str | None
    curve: list[dict[str, Any]]
    step_losses: list[dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunRecord":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def row(self) -> dict[str, Any]:
        """A flat table row: the labels and the scalar measurements."""
        scalars = {k: v for k, v in self.to_dict().items()
                   if k not in ("labels", "curve", "step_losses", "extra", "spec")}
        flat_extra = {k: v for k, v in self.extra.items() if isinstance(v, (int, float, str, bool)) or v is None}
        return {**self.labels, **scalars, **flat_extra}
