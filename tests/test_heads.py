"""Tests for ftkit.models.heads: find_head / replace_head over every torchvision classifier."""
from __future__ import annotations

import contextlib
from collections import OrderedDict

import pytest
import torch
import torchvision
from torch import nn
from torch.nn.modules import module as torch_module

from ftkit.core.torchutil import get_module
from ftkit.models import heads
from ftkit.models.heads import HeadNotFoundError, find_aux_heads, find_head, find_head_block, replace_head

TORCHVISION_MODELS = torchvision.models.list_models(module=torchvision.models)

# The answer for each family, from reading torchvision's source.
EXPECTED_HEAD = {
    "alexnet": "classifier.6", "vgg": "classifier.6", "convnext": "classifier.2",
    "densenet": "classifier", "efficientnet": "classifier.1", "mnasnet": "classifier.1",
    "mobilenet_v2": "classifier.1", "mobilenet_v3": "classifier.3", "maxvit": "classifier.5",
    "squeezenet": "classifier.1", "swin": "head", "vit": "heads.head", "googlenet": "fc",
    "inception": "fc", "regnet": "fc", "resnet": "fc", "resnext": "fc", "wide_resnet": "fc",
    "shufflenet": "fc",
}


def expected_head(name: str) -> str:
    family = max((f for f in EXPECTED_HEAD if name.startswith(f)), key=len)
    return EXPECTED_HEAD[family]


@contextlib.contextmanager
def meta_tensors():
    """Turn every parameter/buffer registered inside into a data-free meta tensor.

    For builders that read tensor values while building (RegNet calls .tolist()),
    which ``with torch.device("meta")`` cannot run.
    """
    def on_param(_module, _name, p):
        return None if p is None else nn.Parameter(p.to("meta"), requires_grad=p.requires_grad)

    def on_buffer(_module, _name, b):
        return None if b is None else b.to("meta")

    handles = [torch_module.register_module_parameter_registration_hook(on_param),
               torch_module.register_module_buffer_registration_hook(on_buffer)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def build_on_meta(name: str, **kwargs) -> nn.Module:
    """A torchvision model with no weight data: ViT-H's 632M parameters cost nothing."""
    try:
        with torch.device("meta"):
            return torchvision.models.get_model(name, **kwargs)
    except NotImplementedError:
        with meta_tensors():
            return torchvision.models.get_model(name, **kwargs)


def out_size(layer: nn.Module) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


def input_size(model: nn.Module) -> int:
    return getattr(model, "image_size", 224)  # ViT keeps its size; 224 suits the rest



@pytest.mark.filterwarnings("ignore:The default weight initialization")
@pytest.mark.parametrize("name", TORCHVISION_MODELS)
def test_replace_head_on_every_torchvision_classifier(name):
    model = build_on_meta(name)
    expected = expected_head(name)
    assert out_size(get_module(model, expected)) == 1000
    assert replace_head(model, 10) is model
    new_head = get_module(model, expected)
    assert out_size(new_head) == 10
    assert all(p.requires_grad and p.is_meta for p in new_head.parameters())
    if isinstance(getattr(model, "num_classes", None), int):
        assert model.num_classes == 10
    # One meta forward checks both the logits and that find_head now sees the new head.
    logits = []
    hook = model.register_forward_hook(lambda _m, _i, out: logits.append(out))
    try:
        assert find_head(model) == expected
    finally:
        hook.remove()
    size = input_size(model)
    assert logits and tuple(logits[0].shape) == (2, 10), f"forward on (2, 3, {size}, {size})"


@pytest.mark.filterwarnings("ignore:The default weight initialization")
@pytest.mark.parametrize("name, aux", [("inception_v3", ["AuxLogits.fc"]),
                                       ("googlenet", ["aux1.fc2", "aux2.fc2"])])
def test_aux_heads_are_replaced_and_run_in_training(name, aux):
    model = build_on_meta(name)
    assert find_aux_heads(model) == aux
    replace_head(model, 10)
    assert find_aux_heads(model) == aux
    assert all(out_size(get_module(model, n)) == 10 for n in aux)
    size = 299 if name == "inception_v3" else 224
    outputs = model.train()(torch.empty(2, 3, size, size, device="meta"))
    assert [tuple(t.shape) for t in outputs if t is not None] == [(2, 10)] * (1 + len(aux))


def test_real_weights_head_matches_a_hand_written_linear():
    torch.manual_seed(0)
    model = torchvision.models.resnet18()
    model.layer1.eval()  # a mixed train/eval state, as after freezing BatchNorm
    stats = model.bn1.running_mean.clone()
    assert find_head(model) == "fc"
    # The meta trace leaves modes, statistics and hooks exactly as they were.
    assert model.training and not model.layer1.training and model.layer2.training
    assert torch.equal(model.bn1.running_mean, stats) and model.bn1.num_batches_tracked == 0
    assert not any(m._forward_hooks for m in model.modules())
    replace_head(model.eval(), 10)
    x = torch.randn(2, 3, 32, 32)
    features = []
    model.avgpool.register_forward_hook(lambda _m, _i, out: features.append(out.flatten(1)))
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (2, 10)
    expected = features[0] @ model.fc.weight.T + model.fc.bias
    torch.testing.assert_close(logits, expected)
    # Init: small normal weights, zero bias (see replace_head's docstring).
    assert model.fc.bias.abs().sum().item() == 0
    assert 0.008 < model.fc.weight.std().item() < 0.012


def test_squeezenet_conv_head_keeps_relu_and_pool():
    model = torchvision.models.squeezenet1_1()
    replace_head(model, 7)
    head = model.classifier
    assert isinstance(head[1], nn.Conv2d) and head[1].out_channels == 7
    assert head[1].kernel_size == (1, 1)
    assert isinstance(head[2], nn.ReLU) and isinstance(head[3], nn.AdaptiveAvgPool2d)
    assert model.num_classes == 7
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 7)


def test_hidden_layer_dropout_device_dtype_and_trainability():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 512, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(512, 1000)).double().eval()
    model.requires_grad_(False)
    replace_head(model, 10, hidden=256, dropout=0.25)
    head = model[3]
    assert [n for n, _ in head.named_children()] == ["hidden", "act", "drop", "out"]
    assert head.drop.p == 0.25 and not head.training  # old head's eval mode kept
    assert find_head(model) == "3.out"
    assert all(p.requires_grad and p.dtype == torch.float64 for p in head.parameters())
    assert not any(p.requires_grad for p in model[0].parameters())
    # Kaiming normal for ReLU: std = sqrt(2 / fan_in) = 0.0625.
    assert head.hidden.weight.std().item() == pytest.approx((2 / 512) ** 0.5, rel=0.03)
    assert model(torch.randn(2, 3, 8, 8, dtype=torch.float64)).shape == (2, 10)


def test_efficientnet_lite_head():
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    assert find_head(model) == "_fc"
    replace_head(model, 10)
    assert model._fc.out_features == 10
    assert model._global_params.num_classes == 10
    assert model.eval()(torch.randn(2, 3, 64, 64)).shape == (2, 10)


class TimmStyle(nn.Module):
    """timm's classifier API; the head is registered *before* the body."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.num_classes, self.num_features = num_classes, 8
        self.head = nn.Linear(8, num_classes)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.resets = 0

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        self.resets += 1
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes)  # float32, CPU, like timm

    def forward(self, x):
        return self.head(self.body(x))


def test_timm_style_model_uses_its_own_reset_classifier():
    model = TimmStyle().double()
    assert find_head(model) == "head"
    replace_head(model, 10)
    assert model.resets == 1 and model.num_classes == 10
    assert model.head.out_features == 10 and model.head.weight.dtype == torch.float64
    replace_head(model, 5, hidden=4)
    assert model.resets == 2 and find_head(model) == "head"
    assert model(torch.randn(2, 3, 8, 8, dtype=torch.float64)).shape == (2, 5)


def test_timm_style_hidden_head_is_built_before_reset_classifier(monkeypatch):
    model = TimmStyle()
    head = model.head

    def broken_init(layer):
        raise RuntimeError("out of memory")  # any failure while building the new head

    monkeypatch.setattr(heads, "_hidden_init", broken_init)
    with pytest.raises(RuntimeError, match="out of memory"):
        replace_head(model, 5, hidden=4)
    assert model.resets == 0 and model.head is head and model.num_classes == 1000


def test_timm_style_identity_classifier_gets_a_hidden_head():
    model = TimmStyle()
    model.head = nn.Identity()  # as timm builds a model with num_classes=0
    replace_head(model, 5, hidden=4)
    assert model.resets == 1 and model.head.hidden.in_features == model.num_features
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 5)


def test_a_replaced_head_block_is_found_and_replaced_whole():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3)
    assert find_head_block(model) == find_head(model) == "fc"
    replace_head(model, 10, hidden=7, dropout=0.1)
    assert (find_head(model), find_head_block(model)) == ("fc.out", "fc")
    replace_head(model, 5, hidden=3)  # not nested inside the old block
    assert [n for n, _ in model.fc.named_children()] == ["hidden", "act", "out"]
    assert model.fc.hidden.in_features == 512 and model.fc.out.out_features == 5
    replace_head(model, 4)
    assert isinstance(model.fc, nn.Linear) and (model.fc.in_features, model.fc.out_features) == (512, 4)
    mobilenet = replace_head(build_on_meta("mobilenet_v2"), 10, dropout=0.2)
    assert find_head_block(mobilenet) == "classifier.1"
    user_block = nn.Sequential(nn.Flatten(), nn.Sequential(OrderedDict(out=nn.Linear(12, 2))))
    assert find_head_block(user_block) == "1"  # a block is recognised by the names replace_head gives


class DeclaredOutOfOrder(nn.Module):
    """Registration order (head, conv, proj) differs from forward order (conv, proj, head)."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(16, 5)
        self.conv = nn.Conv2d(1, 8, 3)
        self.proj = nn.Linear(8 * 26 * 26, 16)  # needs 28x28 inputs

    def forward(self, x):
        return self.head(torch.relu(self.proj(torch.relu(self.conv(x)).flatten(1))))


def test_find_head_follows_forward_order_not_registration_order():
    model = DeclaredOutOfOrder()
    assert list(model.state_dict())[-1] == "proj.bias"  # the "last parameter" would be wrong
    assert find_head(model) == "head"  # found by trying sizes down to 28x28
    assert find_head(model, input_shape=(1, 1, 28, 28)) == "head"
    replace_head(model, 3)
    assert model(torch.randn(4, 1, 28, 28)).shape == (4, 3)


def test_model_without_head_lists_candidates():
    model = build_on_meta("resnet18")
    model.fc = nn.Identity()
    with pytest.raises(HeadNotFoundError, match=r"Candidate layers: layer4\.1\.conv2"):
        find_head(model)
    features_only = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    with pytest.raises(ValueError, match=r"not \(batch, num_classes\).*0 \(Conv2d -> 4\)"):
        replace_head(features_only, 10)


@pytest.mark.parametrize("kwargs", [dict(num_classes=0), dict(num_classes=-1),
                                    dict(num_classes=2.5), dict(num_classes=True),
                                    dict(num_classes=10, hidden=0),
                                    dict(num_classes=10, dropout=1.0)])
def test_invalid_arguments_leave_the_model_untouched(kwargs):
    model = TimmStyle()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    head = model.head
    with pytest.raises(ValueError):
        replace_head(model, **kwargs)
    assert model.head is head and model.resets == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
