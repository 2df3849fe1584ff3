"""Tests for ftkit.analysis.features: extracted vectors against hand-computed ones, the
cache (hits cost no forward pass, weight changes invalidate), classifiers."""
import os

import numpy as np
import pytest
import torch
import torchvision
from tiny_task import Quadrants
from torch import nn
from torch.utils.data import Subset

from ftkit.analysis.features import (
    Features,
    TorchProbe,
    clear_feature_cache,
    configure_feature_cache,
    data_fingerprint,
    extract_features,
    feature_cache_info,
    fit_feature_classifier,
    weights_hash,
)
from ftkit.core.torchutil import get_module
from ftkit.models.heads import find_head, replace_head
from ftkit.training.loop import fit


class Fingerprinted(Quadrants):
    """Like ftkit's ImageDataset: a fingerprint() that keys the cache without a pass over the data."""

    calls = 0

    def fingerprint(self):
        Fingerprinted.calls += 1
        return f"quadrants-{len(self)}"


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(2))
        self.fc = nn.Linear(32, 4)

    def forward(self, x):                          # (B, 3, 16, 16) -> (B, 4)
        return self.fc(self.features(x).flatten(1))


def tiny(seed=0):
    torch.manual_seed(seed)
    return TinyNet()


class ForwardCounter:
    """Counts real forward passes of a module (find_head's data-free meta trace is not one)."""

    def __init__(self, module):
        self.n = 0
        module.register_forward_pre_hook(self)

    def __call__(self, module, args):
        if not args[0].is_meta:
            self.n += 1


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_feature_cache()
    configure_feature_cache(max_items=8, cache_dir=None)
    yield
    clear_feature_cache()


@pytest.fixture(scope="module")
def data():
    return Quadrants(60, seed=0)


def test_layer_output_is_global_average_pooled(data):
    model = tiny()
    f = extract_features(model, data, "features.0", batch_size=16, device="cpu")
    model.eval()
    with torch.no_grad():
        expected = model.features[0](data.x).mean(dim=(2, 3))   # (N, 8, 16, 16) -> (N, 8)
    assert isinstance(f, Features) and f.layer == "features.0" and f.hook == "output"
    assert f.X.dtype == np.float32 and f.X.shape == (60, 8)
    np.testing.assert_allclose(f.X, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert f.y.dtype == np.int64 and np.array_equal(f.y, data.targets)


def test_default_layer_is_the_input_of_the_head(data):
    model = tiny()
    f = extract_features(model, data, batch_size=25, device="cpu")
    model.eval()
    with torch.no_grad():
        expected = model.features(data.x).flatten(1)            # what enters fc: (N, 32)
    assert f.layer == "fc" and f.hook == "input" and f.X.shape == (60, 32)
    np.testing.assert_allclose(f.X, expected.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("build, block", [
    (tiny, "fc"),
    (lambda: torchvision.models.mobilenet_v2(num_classes=4, width_mult=0.25), "classifier.1"),
], ids=["generic", "mobilenet_v2"])
def test_default_layer_after_replace_head_with_hidden_is_the_body_features(data, build, block):
    torch.manual_seed(0)
    model = replace_head(build(), 4, hidden=7, dropout=0.2)   # random hidden layer: not a feature
    assert find_head(model) == f"{block}.out"
    f = extract_features(model, data, batch_size=30, device="cpu")
    body = []
    handle = get_module(model, block).register_forward_pre_hook(lambda m, args: body.append(args[0]))
    model.eval()
    with torch.no_grad():
        model(data.x)
    handle.remove()
    assert (f.layer, f.hook) == (block, "input") and f.X.shape == tuple(body[0].shape) != (60, 7)
    np.testing.assert_allclose(f.X, body[0].numpy(), rtol=1e-5, atol=1e-6)


def test_model_is_moved_to_device_on_cache_hits_too(data, tmp_path):
    model = tiny()
    extract_features(model, data, "features", device="cpu", cache=tmp_path)
    moves = []
    model.to = lambda *a, **kw: moves.append(a) or nn.Module.to(model, *a, **kw)  # a spy, same behaviour
    extract_features(model, data, "features", device="cpu", cache=tmp_path)  # memory hit
    clear_feature_cache(counters=False)
    extract_features(model, data, "features", device="cpu", cache=tmp_path)  # disk hit
    info = feature_cache_info()
    assert (info["hits"], info["disk_hits"], info["misses"]) == (1, 1, 1)
    assert moves == [(torch.device("cpu"),)] * 2


def test_extraction_restores_mode_and_requires_grad(data):
    model = tiny()
    model.train()
    model.features[1].eval()
    model.features[0].requires_grad_(False)
    modes = {n: m.training for n, m in model.named_modules()}
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    bn_stats = model.features[1].running_mean.clone()
    extract_features(model, data, "features", device="cpu")
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert {n: p.requires_grad for n, p in model.named_parameters()} == grads
    assert torch.equal(model.features[1].running_mean, bn_stats)  # ran in eval mode


def test_unknown_layer_lists_candidates(data):
    with pytest.raises(KeyError, match="candidates"):
        extract_features(tiny(), data, "features.9", device="cpu")


def test_second_identical_call_runs_no_forward_pass(data):
    model = tiny()
    counter = ForwardCounter(model)
    a = extract_features(model, data, "features", batch_size=16, device="cpu")
    assert counter.n == 4 and feature_cache_info()["forward_batches"] == 4
    a.X[:] = 0  # the caller's copy: must not reach the cache
    b = extract_features(model, data, "features", batch_size=16, device="cpu")
    assert counter.n == 4
    info = feature_cache_info()
    assert info["hits"] == 1 and info["misses"] == 1 and info["forward_batches"] == 4
    assert b.key == a.key and np.abs(b.X).sum() > 0


def test_changed_weights_layer_or_data_make_a_new_key(data):
    model = tiny()
    counter = ForwardCounter(model)
    a = extract_features(model, data, "features", device="cpu")
    with torch.no_grad():
        model.features[0].weight.mul_(2.0)
    b = extract_features(model, data, "features", device="cpu")
    assert counter.n == 2 and b.key != a.key and not np.allclose(a.X, b.X)
    with torch.no_grad():
        model.features[1].running_var.add_(1.0)  # a buffer counts as weights too
    c = extract_features(model, data, "features", device="cpu")
    assert counter.n == 3 and c.key != b.key
    d = extract_features(model, data, "features.0", device="cpu")
    e = extract_features(model, Quadrants(60, seed=1), "features", device="cpu")
    assert counter.n == 5 and len({a.key, b.key, c.key, d.key, e.key}) == 5


def test_fine_tuning_invalidates_the_cache(data):
    model = tiny()
    before = weights_hash(model)
    a = extract_features(model, data, "features", device="cpu")
    fit(model, data, epochs=1, lr=0.1, progress=False, device="cpu")
    assert weights_hash(model) != before
    assert extract_features(model, data, "features", device="cpu").key != a.key


def test_data_key_uses_fingerprint_or_content(data):
    Fingerprinted.calls = 0
    fp = Fingerprinted(60, seed=0)
    assert data_fingerprint(fp) == "fp:quadrants-60" and Fingerprinted.calls == 1
    assert data_fingerprint(Subset(fp, [0, 1])) != data_fingerprint(Subset(fp, [0, 2]))
    # plain datasets: same content -> same key, whatever the object
    assert data_fingerprint(Quadrants(60, seed=0)) == data_fingerprint(data)
    assert data_fingerprint(Quadrants(60, seed=0, shift=0.6)) != data_fingerprint(data)
    model = tiny()
    counter = ForwardCounter(model)
    extract_features(model, data, "features", device="cpu")
    extract_features(model, Quadrants(60, seed=0), "features", device="cpu")
    assert counter.n == 1


def test_lru_keeps_max_items(data):
    configure_feature_cache(max_items=2)
    model = tiny()
    counter = ForwardCounter(model)
    for layer in ["features.0", "features.1", "features"]:
        extract_features(model, data, layer, batch_size=60, device="cpu")
    assert feature_cache_info()["items"] == 2
    extract_features(model, data, "features", batch_size=60, device="cpu")  # newest: kept
    assert counter.n == 3
    extract_features(model, data, "features.0", batch_size=60, device="cpu")  # oldest: dropped
    assert counter.n == 4


def test_disk_cache_is_written_atomically_and_reused(data, tmp_path):
    model = tiny()
    counter = ForwardCounter(model)
    a = extract_features(model, data, "features", device="cpu", cache=tmp_path)
    assert os.listdir(tmp_path) == [f"{a.key}.npz"]
    clear_feature_cache()  # a new session: memory is empty, the file remains
    b = extract_features(model, data, "features", device="cpu", cache=tmp_path)
    assert counter.n == 1 and feature_cache_info()["disk_hits"] == 1
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y) and (b.layer, b.hook) == ("features", "output")


def test_cache_false_always_recomputes(data):
    model = tiny()
    counter = ForwardCounter(model)
    extract_features(model, data, "features", device="cpu", cache=False)
    extract_features(model, data, "features", device="cpu", cache=False)
    assert counter.n == 2 and feature_cache_info()["items"] == 0


# ---------------------------------------------------------------- classifiers

@pytest.fixture(scope="module")
def blobs():
    """Three separable Gaussian blobs in 20-D, labels 0, 2, 5 (not 0..C-1 on purpose)."""
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 3, size=(3, 20))
    labels = np.array([0, 2, 5])
    idx = rng.integers(0, 3, size=400)
    X = (centers[idx] + rng.normal(0, 1, size=(400, 20))).astype(np.float32) * 50 + 7  # unscaled on purpose
    return X[:300], labels[idx[:300]], X[300:], labels[idx[300:]]


@pytest.mark.parametrize("kind", ["logistic", "svm", "linear", "mlp"])
def test_classifiers_separate_separable_features(blobs, kind):
    Xtr, ytr, Xte, yte = blobs
    kw = {"epochs": 100} if kind in ("linear", "mlp") else {}
    clf = fit_feature_classifier(Features(Xtr, ytr, "x", "k"), kind, **kw)
    assert clf.score(Xte, yte) > 0.97
    assert set(np.unique(clf.predict(Xte))) <= {0, 2, 5}


def test_svm_kernel_and_bad_kind(blobs):
    Xtr, ytr, Xte, yte = blobs
    assert fit_feature_classifier((Xtr, ytr), "svm", kernel="rbf").score(Xte, yte) > 0.97
    with pytest.raises(ValueError, match="logistic"):
        fit_feature_classifier((Xtr, ytr), "knn")
    with pytest.raises(ValueError, match="two classes"):
        fit_feature_classifier((Xtr, np.zeros(len(Xtr))), "logistic")


def test_torch_probe_is_deterministic_and_full_batch_matches_hand_written(blobs):
    Xtr, ytr, Xte, _ = blobs
    a = TorchProbe(epochs=20, lr=0.05).fit(Xtr, ytr)
    b = TorchProbe(epochs=20, lr=0.05).fit(Xtr, ytr)
    assert np.array_equal(a.decision_function(Xte), b.decision_function(Xte))
    # the same thing by hand: standardise, nn.Linear under seed 0, full-batch Adam
    mean, std = Xtr.mean(0), Xtr.std(0)
    x = torch.as_tensor((Xtr - mean) / std)
    y = torch.as_tensor(np.searchsorted([0, 2, 5], ytr))
    torch.manual_seed(0)
    net = nn.Linear(20, 3)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(20):
        torch.randperm(len(x))  # the probe draws an order each epoch, as minibatching would
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        expected = net(torch.as_tensor((Xte - mean) / std)).numpy()
    np.testing.assert_allclose(a.decision_function(Xte), expected, rtol=1e-4, atol=1e-5)


def test_probe_on_features_of_a_trained_network():
    train, val = Quadrants(192, seed=0), Quadrants(96, seed=1)
    model = tiny()
    fit(model, train, epochs=3, lr=0.1, progress=False, device="cpu")
    # the head's input keeps the 2x2 layout the task needs ("features" would be pooled to 1x1)
    ftr = extract_features(model, train, device="cpu")
    fva = extract_features(model, val, device="cpu")
    clf = fit_feature_classifier(ftr, "logistic")
    assert clf.score(*fva.xy) > 0.9
