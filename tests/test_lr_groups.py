"""Discriminative LRs match closed forms and survive schedulers."""
import math

import pytest
import torch
import torchvision
from torch import nn

from ftkit.lr.groups import discriminative_lrs, group_lrs, param_groups
from ftkit.models.freeze import freeze
from ftkit.models.groups import layer_groups


def meta_model(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):  # no memory, no init cost
        return torchvision.models.get_model(name, **kwargs)


RESNET_GROUPS = 6


def test_head_mult_closed_form():
    groups = param_groups(meta_model("resnet18"), 1e-3, head_mult=10)
    assert [g["name"] for g in groups] == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    assert [g["lr"] for g in groups] == pytest.approx([1e-3] * 5 + [1e-2], rel=1e-12)
    assert all(g["initial_lr"] == g["lr"] and "weight_decay" not in g for g in groups)


def test_lr_range_is_geometric_from_lo_to_hi():
    lo, hi = 1e-5, 1e-3
    lrs = group_lrs(param_groups(meta_model("resnet18"), None, lr_range=(lo, hi)))
    expected = [lo * (hi / lo) ** (i / (RESNET_GROUPS - 1)) for i in range(RESNET_GROUPS)]
    assert lrs == pytest.approx(expected, rel=1e-12)
    assert lrs[0] == pytest.approx(lo) and lrs[-1] == pytest.approx(hi)
    ratios = [b / a for a, b in zip(lrs, lrs[1:])]
    assert ratios == pytest.approx([100 ** 0.2] * 5, rel=1e-12)


def test_decay_divides_each_lower_group():
    lrs = group_lrs(param_groups(meta_model("resnet18"), 1e-2, decay=2.6))
    assert lrs == pytest.approx([1e-2 / 2.6 ** (5 - i) for i in range(RESNET_GROUPS)], rel=1e-12)
    assert discriminative_lrs(3, 1e-3, decay=10.0) == pytest.approx([1e-5, 1e-4, 1e-3])


def test_groups_hold_exactly_the_layer_group_parameters():
    model = meta_model("resnet18")
    groups = param_groups(model, 1e-3, weight_decay=0.05)
    for pg, lg in zip(groups, layer_groups(model)):
        assert [id(p) for p in pg["params"]] == [id(p) for p in lg.parameters(model)]
        assert pg["weight_decay"] == 0.05


def test_frozen_groups_are_omitted_without_shifting_the_others():
    model = torchvision.models.resnet18(num_classes=4)
    freeze(model, k=2)
    groups = param_groups(model, 1e-2, decay=2.6)
    assert [g["name"] for g in groups] == ["layer2", "layer3", "layer4", "head"]
    assert group_lrs(groups) == pytest.approx([1e-2 / 2.6 ** (3 - i) for i in range(4)], rel=1e-12)
    everything = param_groups(model, 1e-2, decay=2.6, trainable_only=False)
    assert len(everything) == RESNET_GROUPS


def test_no_decay_split_puts_1d_tensors_at_zero_decay():
    model = meta_model("resnet18")
    groups = param_groups(model, 1e-3, weight_decay=0.1, no_decay_bn_bias=True)
    assert [g["name"] for g in groups][:2] == ["stem", "stem/no_decay"]
    for g in groups:
        decayed = not g["name"].endswith("/no_decay")
        assert all((p.dim() > 1) == decayed for p in g["params"])
        assert g["weight_decay"] == (0.1 if decayed else 0.0)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_without_weight_decay_the_optimizers_own_applies():
    """No weight_decay given: no key in the dicts, so AdamW's 0.01 (or fit's) is used;
    the no_decay groups still get 0.0 explicitly."""
    model = meta_model("resnet18")
    groups = param_groups(model, 1e-3, no_decay_bn_bias=True)
    assert [("weight_decay" in g) for g in groups] == [g["name"].endswith("/no_decay") for g in groups]
    opt = torch.optim.AdamW(groups)
    assert [g["weight_decay"] for g in opt.param_groups] == [
        0.0 if g["name"].endswith("/no_decay") else 0.01 for g in opt.param_groups]


def test_bad_lr_options_raise():
    model = meta_model("resnet18")
    with pytest.raises(ValueError, match="one of"):
        param_groups(model, 1e-3, head_mult=10, decay=2.6)
    with pytest.raises(ValueError, match="lr_range"):
        param_groups(model, 1e-2, lr_range=(1e-5, 1e-3))
    with pytest.raises(ValueError, match="positive"):
        param_groups(model, None)
    with pytest.raises(ValueError, match="no head"):
        param_groups(nn.Sequential(nn.Conv2d(3, 3, 1)), 1e-3, head_mult=10)


def _optimizer(model: nn.Module, **kw) -> torch.optim.Optimizer:
    return torch.optim.SGD(param_groups(model, 1e-2, **kw), momentum=0.9)


def _step(opt, sched, n):
    for _ in range(n):
        opt.step()  # no gradients: a no-op that keeps the scheduler's order check happy
        sched.step()


def test_schedulers_keep_per_group_ratios():
    model = torchvision.models.resnet18(num_classes=4)
    start = group_lrs(param_groups(model, 1e-2, decay=2.6))

    opt = _optimizer(model, decay=2.6)
    _step(opt, torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.1), 5)
    assert group_lrs(opt) == pytest.approx([lr * 0.01 for lr in start], rel=1e-9)

    opt = _optimizer(model, decay=2.6)
    _step(opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10), 3)
    factor = (1 + math.cos(math.pi * 3 / 10)) / 2
    assert group_lrs(opt) == pytest.approx([lr * factor for lr in start], rel=1e-9)

    opt = _optimizer(model, decay=2.6)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=group_lrs(opt), total_steps=10)
    for _ in range(9):
        now = group_lrs(opt)
        assert [lr / now[-1] for lr in now] == pytest.approx([lr / start[-1] for lr in start], rel=1e-9)
        _step(opt, sched, 1)


def test_scalar_max_lr_in_one_cycle_flattens_the_groups():
    """The trap group_lrs avoids: OneCycleLR(max_lr=scalar) overwrites every group's LR."""
    opt = _optimizer(meta_model("resnet18"), head_mult=10)
    torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=10)
    assert len(set(group_lrs(opt))) == 1
