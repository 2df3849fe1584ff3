"""ftkit.core.state: one module for what ftkit saves and puts back (snapshots, modes, RNGs, groups)."""
import random

import numpy as np
import pytest
import torch
from torch import nn

from ftkit.core.state import (
    StateSnapshot,
    StepRollback,
    preserved_modes,
    restore_group_settings,
    save_group_settings,
    seeded,
)


def test_seeded_forks_and_seeds_torch_numpy_and_python():
    def draw():
        return torch.rand(1).item(), np.random.rand(), random.random()

    before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    with seeded(7):
        a = draw()
    with seeded(7):
        b = draw()
    assert a == b
    assert torch.equal(before[0], torch.get_rng_state())
    assert np.array_equal(before[1], np.random.get_state()[1]) and before[2] == random.getstate()
    with seeded(7):
        torch.manual_seed(7)
        assert torch.rand(1).item() == a[0]  # the CPU stream is torch.manual_seed's


def test_preserved_modes_restores_every_flag_even_on_error():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    model[1].eval()  # a pinned submodule inside a model in train mode
    with pytest.raises(RuntimeError), preserved_modes(model):
        model.eval()
        raise RuntimeError("boom")
    assert model.training and model[0].training and not model[1].training


def test_step_rollback_and_snapshot_select_the_same_tensors():
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    model[0].weight.requires_grad_(False)  # frozen, outside the optimizer: not copied by either
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    snap, roll = StateSnapshot(model, opt), StepRollback(model, opt)
    assert [id(p) for p in roll.params] == [id(p) for n, p in model.named_parameters() if n in snap.params]
    roll.save_buffers()
    model(torch.randn(4, 3))  # BN running stats move
    model[1].running_var.fill_(float("nan"))
    assert not roll.buffers_finite()
    roll.restore(params=False)
    assert roll.buffers_finite() and torch.equal(model[1].running_var, snap.buffers["1.running_var"])


def test_group_settings_round_trip_drops_added_keys_and_keeps_tensor_objects():
    p = nn.Parameter(torch.zeros(2))
    opt = torch.optim.Adam([p], lr=torch.tensor(0.01), capturable=True)
    lr_obj = opt.param_groups[0]["lr"]
    saved = save_group_settings(opt)
    opt.param_groups[0]["initial_lr"] = 5.0
    opt.param_groups[0]["lr"].fill_(3.0)
    restore_group_settings(opt, saved)
    assert "initial_lr" not in opt.param_groups[0]
    assert opt.param_groups[0]["lr"] is lr_obj and lr_obj.item() == pytest.approx(0.01)


@pytest.mark.parametrize("values, expected", [
    ([1.0, 2.0], True),
    ([3e38, 3e38, 3e38], True),                    # finite, but the float32 sum overflows: exact check
    ([1.0, float("nan")], False),
    ([float("inf"), -float("inf")], False),          # the sum is NaN, not a cancelling zero
    ([float("-inf")], False),
])
def test_all_finite_is_exact_on_nan_inf_and_overflowing_sums(values, expected):
    from ftkit.core.state import all_finite

    tensors = [torch.tensor(values), torch.zeros(0), torch.arange(3)]  # empty and integer tensors: ignored
    assert all_finite(tensors) is expected


def test_all_finite_sums_half_precision_in_float32():
    from ftkit.core.state import all_finite

    assert all_finite([torch.full((4,), 6e4, dtype=torch.float16)])  # the fp16 sum would overflow
    assert not all_finite([torch.tensor([1.0, float("nan")], dtype=torch.bfloat16)])
