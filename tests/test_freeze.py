"""Freezing by depth and by name, the BatchNorm policy through model.train(), and the audit."""
import copy
import io

import pytest
import torch
import torchvision
from torch import nn

from ftkit.analysis.diagnostics import audit
from ftkit.core.torchutil import get_module
from ftkit.lr.groups import param_groups
from ftkit.models.freeze import freeze, trainable_summary, unfreeze
from ftkit.models.heads import find_head, replace_head
from ftkit.training.optim import group_names

BODY_GROUPS = ["stem", "layer1", "layer2", "layer3", "layer4"]


def resnet(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return torchvision.models.resnet18(num_classes=5)


def batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 5, (4,), generator=g)


def train_step(model: nn.Module, opt: torch.optim.Optimizer) -> None:
    model.train()  # the call on the parent that used to undo .eval() on frozen BN
    x, y = batch()
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def body_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every body tensor: weights, BN affine params, running stats, batch counters."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith("fc.")}


def changed(before: dict, model: nn.Module) -> list[str]:
    now = model.state_dict()
    return [k for k, v in before.items() if not torch.equal(v, now[k])]


def sgd_over_everything(model: nn.Module) -> torch.optim.Optimizer:
    # Frozen tensors included on purpose, with momentum and weight decay.
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    """The reference count, by hand: scalars in every (or every trainable) parameter."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def flags(model: nn.Module) -> dict:
    return {n: p.requires_grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("build", [
    lambda: resnet(),
    lambda: torchvision.models.mobilenet_v2(num_classes=5),
], ids=["resnet18", "mobilenet_v2"])
def test_all_but_head_leaves_only_the_head_trainable(build):
    model = freeze(build(), all_but_head=True)
    head = get_module(model, find_head(model))
    assert count_params(model, trainable_only=True) == count_params(head) > 0


def test_all_but_head_keeps_a_new_hidden_layer_trainable():
    from tiny_task import tiny

    model = freeze(replace_head(tiny(), 4, hidden=7), all_but_head=True)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == [
        "fc.hidden.weight", "fc.hidden.bias", "fc.out.weight", "fc.out.bias"]


def test_plain_requires_grad_false_does_not_freeze_batchnorm():
    """The pitfall (PyTorch #66073): stats move although every body weight is frozen."""
    model = resnet()
    for name, p in model.named_parameters():
        p.requires_grad_(not name.startswith(("conv", "bn", "layer")))
    before = body_state(model)
    train_step(model, sgd_over_everything(model))
    moved = changed(before, model)
    assert "bn1.running_mean" in moved and "layer4.1.bn2.num_batches_tracked" in moved
    assert not any(k.endswith(("weight", "bias")) for k in moved)


def test_frozen_bn_keeps_stats_and_affine_through_train_and_a_step():
    model = freeze(freeze(resnet(), k=1), all_but_head=True)
    assert len(model.bn1._forward_pre_hooks) == 1  # freezing twice does not stack hooks
    before, fc_before = body_state(model), model.fc.weight.detach().clone()
    train_step(model, sgd_over_everything(model))
    assert changed(before, model) == []
    assert not torch.equal(model.fc.weight, fc_before)
    assert model.training and not model.bn1.training  # pinned back to eval at forward time


def test_bn_train_updates_stats_and_affine_but_not_convs():
    model = freeze(resnet(), all_but_head=True, bn="train")
    before = body_state(model)
    train_step(model, sgd_over_everything(model))
    moved = set(changed(before, model))
    assert {"bn1.running_mean", "bn1.running_var", "bn1.weight", "bn1.bias"} <= moved
    assert not any("conv" in k or "downsample.0" in k for k in moved)
    assert count_params(model, trainable_only=True) == count_params(model.fc) + sum(
        p.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())


def test_policy_survives_deepcopy_and_pickle():
    model = freeze(resnet(), all_but_head=True)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    for clone in (copy.deepcopy(model), torch.load(buffer, weights_only=False)):
        before = body_state(clone)
        train_step(clone, sgd_over_everything(clone))
        assert changed(before, clone) == []
        assert set(trainable_summary(clone)["bn_mode"][:5]) == {"frozen"}


def test_policy_survives_state_dict_round_trip_and_adds_no_keys():
    model = freeze(resnet(), all_but_head=True)
    fresh = resnet(seed=3)
    assert list(model.state_dict()) == list(fresh.state_dict())
    fresh.load_state_dict(model.state_dict(), strict=True)  # loads into a plain model
    model.load_state_dict(resnet(seed=4).state_dict(), strict=True)  # e.g. a checkpoint restore
    before = body_state(model)
    train_step(model, sgd_over_everything(model))
    assert changed(before, model) == []


def test_unfreeze_restores_training_everywhere():
    model = unfreeze(freeze(resnet(), all_but_head=True))
    assert all(flags(model).values())
    assert set(trainable_summary(model)["bn_mode"]) == {"train", "-"}
    assert set(trainable_summary(model.eval())["bn_mode"]) == {"eval", "-"}
    before = body_state(model)
    train_step(model, sgd_over_everything(model))
    moved = changed(before, model)
    assert "bn1.running_mean" in moved and "conv1.weight" in moved


def test_freeze_first_k_groups_and_unfreeze_last_k():
    model = freeze(resnet(), k=2)
    summary = trainable_summary(model).set_index("group")
    assert list(summary["trainable"] == 0) == [True, True, False, False, False, False]
    assert list(summary["bn_mode"]) == ["frozen", "frozen", "train", "train", "train", "-"]
    assert summary["params"].sum() == count_params(model)
    assert (summary["trainable"] + summary["frozen"] == summary["params"]).all()

    model = unfreeze(freeze(resnet(), k=6), k=2)
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"layer4", "fc"}


def test_freeze_by_pattern_and_group_name():
    model = freeze(resnet(), names=["stem", "layer1.*", "layer2.0.conv1"])
    frozen = {n for n, ok in flags(model).items() if not ok}
    assert frozen == {n for n in flags(model)
                      if n.startswith(("conv1.", "bn1.", "layer1.", "layer2.0.conv1."))}
    model = freeze(resnet(), names="*bn*")
    assert all(not p.requires_grad for n, p in model.named_parameters() if ".bn" in n or n.startswith("bn"))
    assert model.conv1.weight.requires_grad
    # layer2..4 also hold downsample BNs ("layerN.0.downsample.1"), which "*bn*" does not match
    assert list(trainable_summary(model)["bn_mode"]) == ["frozen", "frozen", "mixed", "mixed", "mixed", "-"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(names=["layer9", "layer1"]), "layer9.*Closest names: .*layer1"),
    (dict(k=7), "from 0 to 6"),
    (dict(k=1, all_but_head=True), "one of"),
    (dict(all_but_head=True, bn="eval"), "bn must be one of"),
    (dict(), "Say what to freeze"),
])
def test_bad_requests_raise_and_leave_the_model_unchanged(kwargs, message):
    model = freeze(resnet(), k=1)
    flags_before, modes_before = flags(model), trainable_summary(model)
    with pytest.raises(ValueError, match=message):
        freeze(model, **kwargs)
    assert flags(model) == flags_before
    assert trainable_summary(model).equals(modes_before)


def test_unfreeze_bn_frozen_keeps_norm_layers_fixed():
    model = unfreeze(freeze(resnet(), all_but_head=True), bn="frozen")
    assert model.conv1.weight.requires_grad and not model.bn1.weight.requires_grad
    before = body_state(model)
    train_step(model, sgd_over_everything(model))
    assert not any("bn" in k for k in changed(before, model))


# --------------------------------------------------------------------------- audit


def test_clean_setup_audits_ok_with_the_lr_table():
    model = freeze(resnet(), all_but_head=True)
    report = audit(model, torch.optim.SGD(param_groups(model, 1e-3, head_mult=10), momentum=0.9))
    assert report.ok and report.findings == []
    assert report.lrs.to_dict("records") == [
        {"group": "head", "lr": 1e-2, "initial_lr": 1e-2, "weight_decay": 0.0,
         "tensors": 2, "frozen": 0, "values": 512 * 5 + 5}]
    assert "audit: OK" in str(report) and "<table" in report._repr_html_()


def test_audit_names_groups_as_the_rest_of_the_kit():
    model = resnet()
    opt = torch.optim.SGD([{"params": model.layer4.parameters()}, {"params": model.fc.parameters()},
                           {"params": model.conv1.parameters(), "name": "x"},
                           {"params": model.bn1.parameters(), "name": "x"}], lr=0.1)
    assert list(audit(model, opt).lrs["group"]) == group_names(opt) == ["group0", "group1", "x", "x_2"]


def test_audit_catches_a_head_replaced_after_the_optimizer_was_built():
    model = freeze(resnet(), all_but_head=True)
    opt = torch.optim.SGD(param_groups(model, 1e-3), momentum=0.9)
    replace_head(model, 3)
    report = audit(model, opt)
    assert not report.ok
    found = {f.kind: f for f in report.findings}
    assert found["missing_from_optimizer"].params == ("fc.weight", "fc.bias")
    assert found["not_in_model"].severity == "error" and len(found["not_in_model"].params) == 2
    assert list(report.to_frame()["kind"]) == ["missing_from_optimizer", "not_in_model"]


def test_audit_catches_frozen_bn_whose_stats_would_move():
    model = resnet()
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("fc."))
    report = audit(model, sgd_over_everything(model))
    found = {f.kind: f for f in report.findings}
    assert found["bn_stats_update"].severity == "warning" and len(found["bn_stats_update"].params) == 20
    assert found["frozen_in_optimizer"].severity == "info"
    assert not report.ok
    assert audit(freeze(model, all_but_head=True), sgd_over_everything(model)).ok  # info only


def test_frozen_params_move_only_when_they_hold_a_grad():
    """What the frozen_* findings claim: optimizers skip .grad None, not requires_grad False."""
    w, v = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(3))
    (w * 2 + v * 2).sum().backward()
    w.requires_grad_(False)
    v.requires_grad_(False)
    opt = torch.optim.AdamW([w, v], lr=0.1, weight_decay=0.5)
    w.grad = torch.zeros(3)  # e.g. zero_grad(set_to_none=False): a zero tensor, not None
    v.grad = None
    opt.step()
    assert not torch.equal(w, torch.ones(3))  # decoupled decay still moved it
    assert torch.equal(v, torch.ones(3))  # skipped entirely

    model = freeze(resnet(), all_but_head=True)
    opt = sgd_over_everything(model)
    train_step(model, opt)
    model.conv1.weight.grad = torch.zeros_like(model.conv1.weight)
    found = {f.kind: f for f in audit(model, opt).findings}
    assert found["frozen_with_grad"].params == ("conv1.weight",)


@pytest.mark.filterwarnings("ignore:The default weight initialization")
@pytest.mark.parametrize("name", torchvision.models.list_models(module=torchvision.models))
def test_swap_then_freeze_all_but_head_on_every_torchvision_classifier(name):
    from test_heads import build_on_meta  # data-free models: ViT-H costs nothing

    model = replace_head(build_on_meta(name), 10)
    freeze(model, all_but_head=True)
    head = model.get_submodule(find_head(model))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == sum(p.numel() for p in head.parameters()), name
