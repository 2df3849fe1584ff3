"""The BatchNorm pin: a norm layer that stays in eval mode whatever ``model.train()`` says.

"Frozen" means two things for a BatchNorm layer: its affine weights
(``requires_grad``) and its running statistics (updated in *train mode* by every
forward pass, gradients or not). ``model.train()`` on a parent switches every
child back to train mode, so a BN layer put in eval mode once keeps updating its
statistics (PyTorch #66073, Lightning #15062). A pinned layer has a forward
pre-hook that puts it back in eval mode before each call. The hook is a plain
module-level function in the module's hook table, so it survives
``copy.deepcopy``, pickling and ``load_state_dict`` and adds no state-dict keys.

Used by ``ftkit.models.freeze`` (which pins and unpins) and by
``ftkit.models.bn_stats`` (which leaves pinned layers alone); it knows nothing
of layer groups or heads.

>>> pin(model.bn1); is_bn_frozen(model.bn1)       # doctest: +SKIP
True
"""
from __future__ import annotations

from torch import nn

__all__ = ["BN_POLICIES", "check_bn", "is_bn_frozen", "keep_bn_eval", "pin", "unpin"]

BN_POLICIES = ("frozen", "train")


def keep_bn_eval(module: nn.Module, args: tuple) -> None:
    """Forward pre-hook: run this norm layer in eval mode, whatever ``.train()`` said."""
    module.training = False


# Pickles made before this module existed name the hook ftkit.models.freeze._keep_bn_eval,
# which freeze re-exports; new pickles name it here.


def is_bn_frozen(module: nn.Module) -> bool:
    """True when ``freeze(..., bn="frozen")`` (or :func:`pin`) pinned this norm layer in eval mode."""
    return any(hook is keep_bn_eval for hook in module._forward_pre_hooks.values())


def pin(module: nn.Module) -> None:
    """Pin ``module`` in eval mode and stop its affine weights from training."""
    if not is_bn_frozen(module):
        module.register_forward_pre_hook(keep_bn_eval)
    module.eval()
    module.requires_grad_(False)


def unpin(module: nn.Module, training: bool) -> None:
    """Remove the pin; the layer follows ``training`` and its weights train again."""
    # Handles do not survive deepcopy/pickle, so the hook is found by identity.
    for key in [k for k, h in module._forward_pre_hooks.items() if h is keep_bn_eval]:
        del module._forward_pre_hooks[key]
    module.train(training)
    module.requires_grad_(True)


def check_bn(bn: str) -> None:
    """Raise a ValueError naming the choices unless ``bn`` is a known policy."""
    if bn not in BN_POLICIES:
        raise ValueError(f"bn must be one of {BN_POLICIES}, got {bn!r}: 'frozen' keeps BatchNorm "
                         "statistics and weights fixed, 'train' lets them update.")
