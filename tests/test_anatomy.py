"""ftkit.models.anatomy: the layer table follows real shapes; parameters are counted once."""
import pandas as pd
import pytest
import torch
from torch import nn

from ftkit.models.anatomy import group_params, layer_table, shape_text


class Tiny(nn.Module):
    """Pool and flatten in forward(), as MobileNetV2 does: no module to hook."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1))
        self.classifier = nn.Sequential(nn.Dropout(0.1), nn.Linear(6, 5))

    def forward(self, x):
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.classifier(x)


def test_layer_table_shapes_match_a_real_forward_pass():
    model = Tiny().train()
    t = layer_table(model, image_size=16)
    assert list(t["layer"]) == ["input", "features.0", "features.1", "features.2", "(in forward)",
                                "classifier.0", "classifier.1", "softmax"]
    assert list(t["output"]) == ["3 x 16 x 16", "4 x 8 x 8", "4 x 8 x 8", "6 x 8 x 8", "6", "6", "5", "5"]
    assert t.set_index("layer").loc["(in forward)", "kind"] == "global average pool + flatten"
    assert "halves" in t.set_index("layer").loc["features.0", "role"]
    assert t.set_index("layer").loc["classifier.1", "role"] == "fully connected: scores the classes"
    assert t["params"].sum() == sum(p.numel() for p in model.parameters())
    assert model.training, "modes restored"
    with torch.no_grad():  # the reference: the model's own output shape
        assert t.iloc[-2]["values"] == model.eval()(torch.zeros(1, 3, 16, 16)).shape[1]


def test_group_params_cover_every_parameter_once():
    model = Tiny()
    g = group_params(model)
    assert g["params"].sum() == sum(p.numel() for p in model.parameters())
    assert abs(g["share"].sum() - 1) < 1e-12
    model.features[0].weight.requires_grad_(False)
    assert group_params(model)["trainable"].sum() == g["params"].sum() - model.features[0].weight.numel()


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="image_size"):
        layer_table(Tiny(), image_size=2)
    assert shape_text((1, 3, 4, 5)) == "3 x 4 x 5"
    assert isinstance(group_params(Tiny()), pd.DataFrame)
