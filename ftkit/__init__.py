"""ftkit: fine-tuning and transfer learning you can see, on real weights and data, offline.

The compute API is importable from here; plots (``ftkit.plots``) and widgets
(``ftkit.widgets``) live in their own modules so that the library works
without a display or a kernel. ``freeze``/``unfreeze`` are imported from
``ftkit.freeze`` (a top-level ``ftkit.freeze`` function would hide the module).
"""
from ftkit.bn_stats import recompute_bn_stats
from ftkit.checkpoints import load_checkpoint, save_checkpoint
from ftkit.crossval import cross_validate
from ftkit.data import list_datasets, load_dataset
from ftkit.experiments import STRATEGIES, Strategy, race
from ftkit.features import extract_features, fit_feature_classifier
from ftkit.freeze import audit, trainable_summary
from ftkit.groups import layer_groups
from ftkit.heads import find_head, replace_head
from ftkit.lr_finder import lr_find
from ftkit.lr_groups import param_groups
from ftkit.predict import classify
from ftkit.surgery import transfer_weights
from ftkit.train import evaluate, fit
from ftkit.zoo import list_backbones, load_backbone

__version__ = "0.1.0"

__all__ = [
    "STRATEGIES", "Strategy", "audit", "classify", "cross_validate", "evaluate", "extract_features",
    "find_head", "fit", "fit_feature_classifier", "layer_groups", "list_backbones", "list_datasets",
    "load_backbone", "load_checkpoint", "load_dataset", "lr_find", "param_groups", "race",
    "recompute_bn_stats", "replace_head", "save_checkpoint", "trainable_summary", "transfer_weights",
]
