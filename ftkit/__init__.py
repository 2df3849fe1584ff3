"""ftkit: fine-tuning and transfer learning you can see, on real weights and data, offline.

The compute API is importable from here; plots (``ftkit.viz.plots``) and widgets
(``ftkit.viz.widgets``) live in their own modules so that the library works
without a display or a kernel. ``freeze``/``unfreeze`` are imported from
``ftkit.models.freeze`` (a top-level ``ftkit.models.freeze`` function would hide the module).
"""
from ftkit.analysis.diagnostics import audit
from ftkit.analysis.features import extract_features, fit_feature_classifier
from ftkit.analysis.probes import probe_by_depth
from ftkit.core.torchutil import map_large_blocks_apart
from ftkit.data.catalogue import list_datasets, load_dataset
from ftkit.lab.advisor import advise
from ftkit.lab.crossval import cross_validate
from ftkit.lab.lr_rule import choose_lrs
from ftkit.lab.race import STRATEGIES, make_strategies, race
from ftkit.lab.runs import run_one
from ftkit.lab.similarity import measure_similarity
from ftkit.lab.specs import DataSpec, LRGroups, ModelSpec, RunSpec, Strategy
from ftkit.lab.sweep import sweep
from ftkit.lr.finder import lr_find
from ftkit.lr.groups import param_groups
from ftkit.models.bn_stats import recompute_bn_stats
from ftkit.models.freeze import trainable_summary
from ftkit.models.groups import layer_groups
from ftkit.models.heads import find_head, replace_head
from ftkit.models.predict import classify
from ftkit.models.surgery import transfer_weights
from ftkit.models.zoo import list_backbones, load_backbone
from ftkit.training.checkpoints import load_checkpoint, save_checkpoint
from ftkit.training.loop import evaluate, fit
from ftkit.training.spec import TrainSpec

__version__ = "0.1.0"

__all__ = [
    "DataSpec", "LRGroups", "ModelSpec", "RunSpec", "STRATEGIES", "Strategy", "TrainSpec", "advise", "audit",
    "choose_lrs", "classify", "cross_validate", "evaluate", "extract_features", "find_head", "fit",
    "fit_feature_classifier", "layer_groups", "list_backbones", "list_datasets", "load_backbone", "load_checkpoint",
    "load_dataset", "lr_find", "make_strategies", "measure_similarity", "param_groups", "probe_by_depth", "race",
    "recompute_bn_stats", "replace_head", "run_one", "save_checkpoint", "sweep", "trainable_summary",
    "transfer_weights",
]

map_large_blocks_apart()  # before any training: where memory is scarce (Binder), keeps the heap from creeping
