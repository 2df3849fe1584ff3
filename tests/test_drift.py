import math

import pytest
import torch
from torch import nn

from ftkit.analysis.drift import weight_drift, weights_copy


def test_drift_is_the_relative_l2_distance_and_skips_excluded_modules():
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2))
    start = weights_copy(model)
    assert weight_drift(model, start) == 0.0
    with torch.no_grad():
        model[0].weight.add_(1.0)      # 6 entries moved by 1
        model[1].weight.mul_(100.0)    # the "head": excluded below
    body = ["0.weight", "0.bias"]
    expected = math.sqrt(6.0 / sum(float(start[n].pow(2).sum()) for n in body))
    assert weight_drift(model, start, exclude=["1"]) == pytest.approx(expected, rel=1e-6)  # float32 adds
    assert start["0.weight"].data_ptr() != model[0].weight.data_ptr()  # a copy, not a view


def test_bad_references_say_what_is_wrong():
    model = nn.Linear(2, 2)
    with pytest.raises(KeyError, match="not parameters"):
        weight_drift(model, {"other.weight": torch.ones(2)})
    with pytest.raises(ValueError, match="nothing to compare"):
        weight_drift(model, weights_copy(model), exclude=["weight", "bias"])
