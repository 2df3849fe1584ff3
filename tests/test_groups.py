"""Layer groups cover every parameter once and read as the architecture."""
import pytest
import torch
import torchvision
from torch import nn

from ftkit.core.torchutil import find_module, get_module
from ftkit.models.groups import LayerGroup, layer_groups
from ftkit.models.heads import find_head, replace_head


@pytest.fixture
def meta_regnet(monkeypatch):
    """RegNet computes its block widths with tensor ops that cannot run on the meta device."""
    from torchvision.models import regnet

    original = regnet.BlockParams.from_init_params.__func__

    def on_cpu(cls, *args, **kwargs):
        with torch.device("cpu"):
            return original(cls, *args, **kwargs)

    monkeypatch.setattr(regnet.BlockParams, "from_init_params", classmethod(on_cpu))


def meta_model(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):  # no memory, no init cost, even for ViT-H
        return torchvision.models.get_model(name, **kwargs)


def assert_partition(model: nn.Module, groups: list[LayerGroup]) -> None:
    ids = [id(p) for g in groups for p in g.parameters(model)]
    assert len(ids) == len(set(ids)), "a parameter is in two groups"
    assert set(ids) == {id(p) for p in model.parameters()}, "a parameter is in no group"
    assert len({g.name for g in groups}) == len(groups)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # googlenet/inception init notices
def test_every_parameter_in_exactly_one_group_for_every_torchvision_model(meta_regnet):
    names = torchvision.models.list_models(module=torchvision.models)
    assert len(names) >= 80
    for name in names:
        model = meta_model(name)
        groups = layer_groups(model)
        assert_partition(model, groups)
        assert groups[0].name == "stem", name
        assert groups[-1].name == "head", name
        assert 5 <= len(groups) <= 34, (name, len(groups))


@pytest.mark.parametrize("name, expected", [
    ("resnet18", ["stem", "layer1", "layer2", "layer3", "layer4", "head"]),
    ("mobilenet_v2", ["stem", "features.1", "features.2-3", "features.4-6", "features.7-10",
                      "features.11-13", "features.14-16", "features.17", "features.18", "head"]),
    ("vgg11", ["stem", "features.3", "features.6-8", "features.11-13", "features.16-18",
               "classifier.0", "classifier.3", "head"]),
    ("alexnet", ["stem", "features.3", "features.6", "features.8", "features.10",
                 "classifier.1", "classifier.4", "head"]),
    ("convnext_tiny", ["stem", "features.1", "features.2-3", "features.4-5", "features.6-7", "head"]),
    ("densenet121", ["stem", "features.denseblock1", "features.denseblock2", "features.denseblock3",
                     "features.denseblock4", "head"]),
    ("mobilenet_v3_small", ["stem", "features.1", "features.2-3", "features.4-6", "features.7-8",
                            "features.9-11", "features.12", "classifier.0", "head"]),
])
def test_group_names_per_family(name, expected):
    assert [g.name for g in layer_groups(meta_model(name))] == expected


def test_group_modules_read_as_the_architecture():
    groups = {g.name: g for g in layer_groups(meta_model("resnet18"))}
    assert groups["stem"].modules == ["conv1", "bn1"]  # relu/maxpool hold nothing
    assert groups["head"].modules == ["fc"]
    vit = {g.name: g for g in layer_groups(meta_model("vit_b_16"))}
    assert vit["stem"].modules == ["conv_proj"]
    assert vit["stem"].param_names == ["class_token", "encoder.pos_embedding"]
    assert vit["encoder.layers.encoder_layer_11"].modules == ["encoder.layers.encoder_layer_11", "encoder.ln"]
    dense = {g.name: g for g in layer_groups(meta_model("densenet121"))}
    assert dense["features.denseblock1"].modules == ["features.denseblock1", "features.transition1"]
    google = [g.name for g in layer_groups(meta_model("googlenet", aux_logits=True, init_weights=False))]
    assert google == ["stem", "inception3", "inception4", "inception5", "aux", "head"]


@pytest.mark.parametrize("name", ["resnet18", "vgg11", "squeezenet1_1", "mobilenet_v2", "alexnet"])
def test_head_group_is_what_find_head_finds(name):
    model = meta_model(name)
    assert layer_groups(model)[-1].modules == [find_head(model)]


def test_efficientnet_lite_groups():
    from efficientnet_lite_pytorch import EfficientNet

    with torch.device("meta"):
        model = EfficientNet.from_name("efficientnet-lite0")
    groups = layer_groups(model)
    assert_partition(model, groups)
    assert [g.name for g in groups] == [
        "stem", "_blocks.0", "_blocks.1-2", "_blocks.3-4", "_blocks.5-7", "_blocks.8-10",
        "_blocks.11-14", "_blocks.15", "_conv_head", "head"]
    assert groups[0].modules == ["_conv_stem", "_bn0"] and groups[-1].modules == ["_fc"]


def test_replaced_head_with_hidden_layer_is_one_head_group():
    model = meta_model("resnet18")
    replace_head(model, 7, hidden=32)
    groups = layer_groups(model)
    assert_partition(model, groups)
    assert groups[-1].modules == ["fc"]


def test_added_module_gets_its_own_group_before_the_head():
    model = meta_model("resnet18")
    with torch.device("meta"):
        model.extra = nn.Linear(4, 4)
    groups = layer_groups(model)
    assert_partition(model, groups)
    assert [g.name for g in groups][-3:] == ["layer4", "extra", "head"]


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.neck = nn.Linear(4, 8)
        self.norm = nn.LayerNorm(8)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        return self.out(self.norm(self.neck(self.pool(self.body(x * self.scale)).flatten(1))))


def test_generic_fallback_uses_top_level_children_and_find_head():
    model = _Net()
    groups = layer_groups(model)
    assert_partition(model, groups)
    assert [(g.name, g.modules, g.param_names) for g in groups] == [
        ("body", ["body"], ["scale"]), ("neck", ["neck", "norm"], []), ("head", ["out"], [])]
    seq = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 2))
    assert [(g.name, g.modules) for g in layer_groups(seq)] == [("1", ["1"]), ("head", ["3"])]


def test_generic_model_keeps_a_replaced_head_block_whole():
    model = replace_head(_Net(), 5, hidden=4, dropout=0.1)
    groups = layer_groups(model)
    assert_partition(model, groups)
    assert [(g.name, g.modules) for g in groups][-2:] == [("neck", ["neck", "norm"]), ("head", ["out"])]


def test_get_module_resolves_every_name_and_lists_candidates_for_a_typo():
    model = _Net()
    model.alias = model.out  # one module, two names: named_modules() lists only "out"
    assert get_module(model, "alias") is model.out and get_module(model, "body.1") is model.body[1]
    assert get_module(model, "") is model and find_module(model, "body.7") is None
    with pytest.raises(KeyError, match="no submodule 'nek'; candidates: body, pool, neck"):
        get_module(model, "nek")
    with pytest.raises(KeyError, match="candidates: body, body.0"):
        get_module(model, "body.7")
