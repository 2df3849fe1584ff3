"""Tests for ftkit.models.surgery: transfer_weights reports checked tensor by tensor against the source."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from ftkit.models.surgery import STATUSES, TransferError, transfer_weights


def resnet18(seed: int, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return torchvision.models.resnet18(**kwargs)


def test_transfer_between_identical_models_copies_everything():
    source, target = resnet18(0), resnet18(1)
    source.bn1.num_batches_tracked.fill_(7)
    report = transfer_weights(source, target)
    state = source.state_dict()
    assert report.counts() == {"copied": len(state), "shape mismatch": 0, "type mismatch": 0,
                               "missing in source": 0, "only in source": 0}
    assert report.copied == list(state)
    assert all(torch.equal(v, target.state_dict()[k]) for k, v in state.items())
    assert target.bn1.num_batches_tracked.item() == 7


def test_transfer_to_new_class_count_skips_only_the_head():
    source, target = resnet18(0), resnet18(1, num_classes=10)
    fc_before = target.fc.weight.clone()
    report = transfer_weights(source, target)
    rows = {r.name: r for r in report.rows}
    assert [n for n, r in rows.items() if r.status != "copied"] == ["fc.weight", "fc.bias"]
    assert rows["fc.weight"].status == "shape mismatch"
    assert (rows["fc.weight"].source_shape, rows["fc.weight"].target_shape) == ((1000, 512), (10, 512))
    assert torch.equal(target.fc.weight, fc_before)
    assert torch.equal(target.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    assert report.counts()["copied"] == len(source.state_dict()) - 2


def test_transfer_to_deeper_model_reports_missing_blocks():
    source, target = resnet18(0), torchvision.models.resnet34()
    report = transfer_weights(source, target)
    missing = [r.name for r in report.rows if r.status == "missing in source"]
    assert len(missing) == len(target.state_dict()) - len(source.state_dict())
    assert "layer1.2.conv1.weight" in missing and "layer4.2.bn2.num_batches_tracked" in missing
    assert report.copied == list(source.state_dict())
    back = transfer_weights(target, resnet18(1))
    assert back.counts()["only in source"] == len(missing)


class Small(nn.Module):
    def __init__(self, conv_head: bool, extra: str):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Conv2d(8, 4, 1) if conv_head else nn.Linear(8, 4)
        self.wide = nn.Linear(8, 6 if conv_head else 9)
        setattr(self, extra, nn.Linear(2, 2))


def test_every_status_counted_and_strict_lists_all_without_copying():
    torch.manual_seed(0)
    source, target = Small(True, "only_here"), Small(False, "new_layer").double()
    target.conv.requires_grad_(False)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(TransferError) as err:
        transfer_weights(source, target, strict=True)
    message = str(err.value)
    for name in ["head.weight", "head.bias", "wide.weight", "wide.bias", "new_layer.weight",
                 "only_here.bias"]:
        assert name in message
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())

    report = transfer_weights(source, target)
    assert report.counts() == {"copied": 7, "shape mismatch": 2, "type mismatch": 2,
                               "missing in source": 2, "only in source": 2}
    assert err.value.report.counts() == report.counts()
    head_bias = next(r for r in report.rows if r.name == "head.bias")
    assert head_bias.status == "type mismatch"  # same shape (4,), but a Conv2d is not a Linear
    assert (head_bias.source_type, head_bias.target_type) == ("Conv2d", "Linear")
    # Copied into the existing tensors: dtype, device and requires_grad unchanged.
    assert target.conv.weight.dtype == torch.float64 and not target.conv.weight.requires_grad
    torch.testing.assert_close(target.conv.weight, source.conv.weight.double())
    assert target.bn.num_batches_tracked.dtype == torch.int64


def test_report_renders_as_text_html_and_frame():
    report = transfer_weights(Small(True, "a"), Small(False, "b"))
    text = str(report)
    assert text.splitlines()[0].split()[:3] == ["name", "kind", "status"]
    assert "bn.num_batches_tracked" in text and "BatchNorm2d ()" in text
    assert text.endswith("15 tensors: 7 copied, 2 shape mismatch, 2 type mismatch, "
                         "2 missing in source, 2 only in source")
    page = report._repr_html_()
    assert page.count("<tr") == 16 and "type mismatch" in page
    frame = report.to_frame()
    assert list(frame.columns) == ["name", "kind", "status", "source_shape", "target_shape",
                                   "source_type", "target_type", "reason"]
    assert len(frame) == 15 and set(frame.status) == set(STATUSES)


def test_meta_source_cannot_be_copied_into_real_target():
    with torch.device("meta"):
        source = nn.Linear(3, 2)
    target = nn.Linear(3, 2)
    before = target.weight.clone()
    with pytest.raises(ValueError, match="meta"):
        transfer_weights(source, target)
    assert torch.equal(target.weight, before)
