"""Tests for probes by depth, CKA, movement per group, embeddings, gradient flow and deep toy nets."""
import numpy as np
import pandas as pd
import pytest
import torch
from feature_nets import stages
from tiny_task import Quadrants

from ftkit.analysis.cka import cka_by_group, linear_cka
from ftkit.analysis.drift import weights_copy
from ftkit.analysis.embeddings import embed_2d, embed_by_depth, knn_accuracy
from ftkit.analysis.features import clear_feature_cache, feature_cache_info
from ftkit.analysis.gradients import GradientRecorder, bottom_top_ratio, gradient_flow, gradient_norms
from ftkit.analysis.movement import drift_by_group, movement_by_group
from ftkit.analysis.probes import best_depth, probe_by_depth
from ftkit.models.deepnets import deep_net
from ftkit.training.loop import fit

# ---------------------------------------------------------------- CKA


def _hsic_cka(X, Y):
    """Reference: CKA from the HSIC definition with centring matrices (Kornblith et al. 2019, eq. 2-3)."""
    n = len(X)
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = X @ X.T, Y @ Y.T

    def hsic(a, b):
        return np.trace(a @ H @ b @ H) / (n - 1) ** 2

    return hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))


def test_linear_cka_matches_the_hsic_definition_and_its_invariances():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(40, 7)), rng.normal(size=(40, 5))
    Y2 = X @ rng.normal(size=(7, 9)) + 0.3 * rng.normal(size=(40, 9))
    for a, b in ((X, Y), (X, Y2)):
        assert linear_cka(a, b) == pytest.approx(_hsic_cka(a, b), rel=1e-9)
    Q, _ = np.linalg.qr(rng.normal(size=(7, 7)))
    assert linear_cka(X, 3.0 * X @ Q + 5.0) == pytest.approx(1.0)      # rotation, scale, shift
    assert linear_cka(X, Y) < 0.4
    with pytest.raises(ValueError, match="same"):
        linear_cka(X, Y[:10])
    with pytest.raises(ValueError, match="constant"):
        linear_cka(X, np.ones((40, 3)))


def test_cka_and_drift_by_group_are_one_and_zero_for_a_copy_and_see_a_changed_group():
    a, b = stages(0), stages(0)
    data = Quadrants(24, seed=1)
    t = movement_by_group(a, b, data)
    assert list(t.group) == ["stem", "s1", "s2"]
    assert np.allclose(t.cka, 1.0) and np.allclose(t.drift, 0.0)
    with torch.no_grad():
        b.s2[0].weight.add_(torch.randn_like(b.s2[0].weight))
    t = movement_by_group(a, b, data, spatial=True)
    assert t.drift[0] == 0 and t.drift[1] == 0 and t.drift[2] > 0.5
    assert t.cka[0] == pytest.approx(1.0) and t.cka[2] < 0.99
    # a head that changed shape: NaN drift, not an error
    ref = weights_copy(stages(0, classes=7))
    assert drift_by_group(b, ref, include_head=True).drift.isna().iloc[-1]
    with pytest.raises(ValueError, match="different layer groups"):
        cka_by_group(a, torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3)), data)


# ---------------------------------------------------------------- probes and embeddings

def test_probe_by_depth_one_row_per_group_through_the_feature_cache():
    clear_feature_cache()
    m = stages(0)
    train, val = Quadrants(64, seed=0), Quadrants(32, seed=1)
    t = probe_by_depth(m, train, val)
    assert list(t.columns) == ["group", "layer", "depth", "dim", "train_acc", "val_acc"]
    assert list(t.group) == ["stem", "s1", "s2"] and list(t.dim) == [8, 8, 16]
    assert t.val_acc.between(0, 1).all()
    misses = feature_cache_info()["misses"]
    again = probe_by_depth(m, train, val)
    assert feature_cache_info()["misses"] == misses                        # no new forward pass
    pd.testing.assert_frame_equal(t, again)
    b = best_depth(t)
    assert b["val_acc"] == t.val_acc.max() and b["first_acc"] == t.val_acc.iloc[0]
    assert list(probe_by_depth(m, train, val, groups=["s2"]).group) == ["s2"]


def test_knn_accuracy_and_embeddings():
    rng = np.random.default_rng(0)
    xy = np.concatenate([rng.normal(0, 0.1, (20, 2)), rng.normal(5, 0.1, (20, 2))])
    y = np.repeat([0, 1], 20)
    assert knn_accuracy(xy, y) == 1.0
    assert knn_accuracy(rng.normal(size=(40, 2)), rng.integers(0, 2, 40)) < 0.8
    assert embed_2d(rng.normal(size=(30, 6)), seed=0).shape == (30, 2)
    embs = embed_by_depth(stages(0), Quadrants(30, seed=0))
    assert [e.group for e in embs] == ["stem", "s2"] and embs[0].xy.shape == (30, 2)


# ---------------------------------------------------------------- gradients

def _batch(n=32):
    ds = Quadrants(n, seed=0)
    return ds.x, torch.as_tensor(ds.targets)


def test_gradient_norms_leave_the_model_as_it_was():
    m = deep_net((3, 16, 16), 4, depth=4, width=16, activation="relu", norm=True)
    x, y = _batch()
    m.eval()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    t = gradient_norms(m, x, y)
    assert list(t.layer) == ["stem.weight"] + [f"blocks.{i}.layer.weight" for i in range(4)] + ["head.weight"]
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())   # BN running stats too
    assert not m.training and all(p.grad is None for p in m.parameters())
    # against a hand-written backward
    m.train()
    torch.nn.functional.cross_entropy(m(x), y).backward()
    assert t.grad_norm.iloc[0] == pytest.approx(float(m.stem.weight.grad.norm()), rel=1e-5)


def test_sigmoid_gradients_vanish_and_residual_ones_do_not():
    x, y = _batch()
    ratio = {}
    for name, kw in {"sigmoid": dict(activation="sigmoid"),
                     "residual": dict(activation="relu", norm=True, residual=True)}.items():
        ratio[name] = bottom_top_ratio(gradient_norms(deep_net((3, 16, 16), 4, depth=12, width=32, **kw), x, y))
    assert ratio["sigmoid"] < 1e-4 * ratio["residual"], ratio


def test_gradient_flow_records_during_fit_with_the_same_budget():
    m = deep_net((3, 16, 16), 4, depth=3, width=16, activation="tanh")
    flow = gradient_flow(m, Quadrants(64, seed=0), steps=6, every=3, batch_size=16, lr=1e-2, device="cpu")
    assert sorted(flow.during.step.unique()) == [1, 3, 6]
    assert len(flow.init) == 5 and flow.history.config["total_steps"] == 6
    assert flow.ratio_by_step().index.tolist() == [1, 3, 6]
    rec = GradientRecorder(m, every=2)
    fit(m, Quadrants(32, seed=0), max_steps=4, batch_size=16, callbacks=[rec], progress=False, device="cpu")
    assert sorted(rec.frame().step.unique()) == [1, 2, 4] and (rec.frame().grad_norm > 0).all()


def test_deep_net_switches_and_errors():
    conv = deep_net((3, 8, 8), 5, depth=2, width=4, kind="conv", norm=True, residual=True)
    assert conv(torch.randn(2, 3, 8, 8)).shape == (2, 5)
    a, b = deep_net(seed=3), deep_net(seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with pytest.raises(ValueError, match="activation"):
        deep_net(activation="swish9")
    with pytest.raises(ValueError, match="kind"):
        deep_net(kind="rnn")
