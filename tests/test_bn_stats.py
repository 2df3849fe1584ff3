import copy

import torch
from tiny_task import FAST, Quadrants, TinyNet
from torch import nn

from ftkit.models.bn_stats import recompute_bn_stats, updating_bn_layers
from ftkit.models.freeze import freeze, is_bn_frozen
from ftkit.training.loop import fit


def test_recomputed_stats_are_the_exact_mean_over_the_data():
    torch.manual_seed(0)
    model, data = TinyNet(dropout=0.5), Quadrants(64)
    model.features[1].running_mean.fill_(5.0)  # stale statistics
    x = torch.stack([data[i][0] for i in range(len(data))])
    with torch.no_grad():
        conv = model.features[0](x)                      # (N, 8, 16, 16): what the BN layer sees
    assert recompute_bn_stats(model, data, batch_size=16) == 1
    bn = model.features[1]
    torch.testing.assert_close(bn.running_mean, conv.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    # torch's running_var averages the unbiased variance of each batch
    batches = conv.split(16)
    per_batch = torch.stack([b.transpose(0, 1).flatten(1).var(dim=1, unbiased=True) for b in batches])
    torch.testing.assert_close(bn.running_var, per_batch.mean(0), rtol=1e-5, atol=1e-6)
    assert bn.momentum == 0.1 and model.training  # settings and modes restored


def test_weights_modes_and_rng_untouched_and_frozen_bn_kept():
    model, data = TinyNet(dropout=0.5), Quadrants(32)
    freeze(model, names=["features.1"])
    before = copy.deepcopy(model.state_dict())
    assert updating_bn_layers(model) == []
    assert recompute_bn_stats(model, data) == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    other = TinyNet(dropout=0.5)
    weights = copy.deepcopy(other.state_dict())
    rng = torch.get_rng_state()
    assert recompute_bn_stats(other, torch.utils.data.DataLoader(data, batch_size=8, shuffle=True)) == 1
    assert torch.equal(rng, torch.get_rng_state())  # a shuffling loader's draws do not leak out
    assert all(torch.equal(weights[k], v) for k, v in other.state_dict().items() if "running" not in k
               and "batches" not in k)


def test_precise_bn_changes_evaluation_not_the_training_trajectory():
    train, val = Quadrants(96, seed=1), Quadrants(64, seed=2)
    runs = {}
    for precise in (False, True):
        torch.manual_seed(0)
        model = TinyNet(dropout=0.3)
        runs[precise] = (fit(model, train, val, epochs=2, lr=0.05, eval_every=2, precise_bn=precise, **FAST), model)
    plain, precise = runs[False][0], runs[True][0]
    assert [r["loss"] for r in plain.steps] == [r["loss"] for r in precise.steps]
    w_plain, w_precise = runs[False][1].state_dict(), runs[True][1].state_dict()
    assert all(torch.equal(w_plain[k], w_precise[k]) for k in w_plain if "running" not in k and "batches" not in k)
    assert precise.config["precise_bn"] is True
    assert [r["val_loss"] for r in plain.evals] != [r["val_loss"] for r in precise.evals]


def test_instance_norm_with_stats_is_pinned_by_freeze_but_not_recomputed():
    """Why bn_stats keeps its own, narrower BN test: InstanceNorm reads momentum=None as 0."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.InstanceNorm2d(4, track_running_stats=True),
                          nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 14 * 14, 4))
    model(torch.randn(8, 3, 16, 16))  # InstanceNorm's running stats move away from 0 / 1
    stats = model[1].running_mean.clone()
    assert updating_bn_layers(model) == ["2"]
    assert recompute_bn_stats(model, Quadrants(16)) == 1
    assert torch.equal(model[1].running_mean, stats) and stats.abs().sum() > 0
    freeze(model, names=["1"])
    assert is_bn_frozen(model[1])
