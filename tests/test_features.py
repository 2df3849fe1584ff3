"""Tests for ftkit.analysis.features: extracted vectors against hand-computed ones, the
cache (hits cost no forward pass, weight changes invalidate, stale or corrupt entries are
recomputed, bounds in bytes), classifiers."""
import os
import time
import warnings

import numpy as np
import pytest
import torch
import torchvision
from tiny_task import Quadrants
from torch import nn
from torch.utils.data import Subset

from ftkit.analysis.features import (
    FeatureCache,
    Features,
    TorchProbe,
    clear_feature_cache,
    configure_feature_cache,
    data_fingerprint,
    default_feature_cache,
    extract_features,
    feature_cache_info,
    fit_feature_classifier,
    set_default_feature_cache,
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
    """Counts real forward passes of a model (find_head's data-free meta trace is not one).

    It wraps ``forward`` on the instance rather than adding a hook: extract_features refuses to
    cache a model with forward hooks, since a hook can change the features."""

    def __init__(self, model):
        self.n = 0
        inner = model.forward

        def counted(x):
            if not x.is_meta:
                self.n += 1
            return inner(x)
        model.forward = counted


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch):
    monkeypatch.delenv("FTKIT_FEATURE_CACHE", raising=False)
    set_default_feature_cache(None)  # the next use makes a fresh one from the (cleaned) environment
    yield
    set_default_feature_cache(None)


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
    a = extract_features(model, data, "features", batch_size=60, device="cpu")
    with torch.no_grad():
        model.features[0].weight.mul_(2.0)
    b = extract_features(model, data, "features", batch_size=60, device="cpu")
    assert counter.n == 2 and b.key != a.key and not np.allclose(a.X, b.X)
    with torch.no_grad():
        model.features[1].running_var.add_(1.0)  # a buffer counts as weights too
    c = extract_features(model, data, "features", batch_size=60, device="cpu")
    assert counter.n == 3 and c.key != b.key
    d = extract_features(model, data, "features.0", batch_size=60, device="cpu")
    e = extract_features(model, Quadrants(60, seed=1), "features", batch_size=60, device="cpu")
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
    extract_features(model, data, "features", batch_size=60, device="cpu")
    extract_features(model, Quadrants(60, seed=0), "features", batch_size=60, device="cpu")
    assert counter.n == 1


def test_memory_lru_is_bounded_in_bytes(data):
    one = 60 * 8 * 4 + 60 * 8  # X (60, 8) float32 + y (60,) int64, for every layer below
    configure_feature_cache(memory_bytes=2 * one)
    model = tiny()
    counter = ForwardCounter(model)
    for layer in ["features.0", "features.1", "features.2"]:
        extract_features(model, data, layer, batch_size=60, device="cpu")
    info = feature_cache_info()
    assert info["items"] == 2 and info["memory_used"] == 2 * one and info["evicted_memory"] == 1
    extract_features(model, data, "features.2", batch_size=60, device="cpu")  # newest: kept
    assert counter.n == 3
    extract_features(model, data, "features.0", batch_size=60, device="cpu")  # oldest: dropped
    assert counter.n == 4
    configure_feature_cache(memory_bytes=one - 1)  # smaller than one entry: nothing is kept
    assert feature_cache_info()["items"] == 0


def test_disk_cache_is_written_atomically_and_reused(data, tmp_path):
    model = tiny()
    counter = ForwardCounter(model)
    a = extract_features(model, data, "features", batch_size=60, device="cpu", cache=tmp_path)
    assert os.listdir(tmp_path) == [f"{a.key}.npz"]
    clear_feature_cache()  # a new session: memory is empty, the file remains
    b = extract_features(model, data, "features", batch_size=60, device="cpu", cache=tmp_path)
    assert counter.n == 1 and feature_cache_info()["disk_hits"] == 1
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y) and (b.layer, b.hook) == ("features", "output")


def test_cache_false_always_recomputes(data):
    model = tiny()
    counter = ForwardCounter(model)
    extract_features(model, data, "features", batch_size=60, device="cpu", cache=False)
    extract_features(model, data, "features", batch_size=60, device="cpu", cache=False)
    assert counter.n == 2 and feature_cache_info()["items"] == 0


# ---------------------------------------------------------------- the cache object (issue 8 item 6)

def test_a_cache_object_can_be_passed_in_and_the_default_reads_the_environment_late(data, tmp_path,
                                                                                      monkeypatch):
    own = FeatureCache(memory_bytes=10**6)
    model = tiny()
    counter = ForwardCounter(model)
    a = extract_features(model, data, "features", batch_size=60, device="cpu", cache=own)
    b = extract_features(model, data, "features", batch_size=60, device="cpu", cache=own)
    assert counter.n == 1 and own.info()["hits"] == 1 and np.array_equal(a.X, b.X)
    assert feature_cache_info()["hits"] == feature_cache_info()["misses"] == 0  # the default one was not used
    # the environment is read when the default instance is first made, not at import
    set_default_feature_cache(None)
    monkeypatch.setenv("FTKIT_FEATURE_CACHE", str(tmp_path / "env-cache"))
    monkeypatch.setenv("FTKIT_FEATURE_CACHE_BYTES", "12345")
    assert default_feature_cache().cache_dir == tmp_path / "env-cache"
    assert default_feature_cache().disk_bytes == 12345
    with pytest.raises(ValueError, match="memory_bytes"):
        FeatureCache(memory_bytes=-1)
    with pytest.raises(TypeError, match="FeatureCache"):
        extract_features(model, data, "features", device="cpu", cache=3)


def _one_file(folder):
    files = list(folder.glob("*.npz"))
    assert len(files) == 1
    return files[0]


def test_wrong_shaped_file_under_the_right_key_is_recomputed_with_a_warning(data, tmp_path):
    model = tiny()
    a = extract_features(model, data, device="cpu", cache=FeatureCache(tmp_path))
    path = _one_file(tmp_path)
    np.savez(path, X=a.X[:3], y=a.y[:3], layer=a.layer, key=a.key, hook=a.hook)  # 3 rows for 60 items
    with pytest.warns(UserWarning, match="3 rows for a data set of 60"):
        b = extract_features(model, data, device="cpu", cache=FeatureCache(tmp_path))
    assert b.X.shape == (60, 32) and np.array_equal(a.X, b.X)
    np.savez(path, X=a.X[:, :5], y=a.y, layer=a.layer, key=a.key, hook=a.hook)  # the head takes 32 values
    with pytest.warns(UserWarning, match="5 values where the layer gives 32"):
        extract_features(model, data, device="cpu", cache=FeatureCache(tmp_path))
    np.savez(path, X=a.X.astype(np.float64), y=a.y, layer=a.layer, key=a.key, hook=a.hook)
    with pytest.warns(UserWarning, match="dtypes"):
        extract_features(model, data, device="cpu", cache=FeatureCache(tmp_path))
    np.savez(path, X=a.X, y=(a.y + 1) % 4, layer=a.layer, key=a.key, hook=a.hook)
    with pytest.warns(UserWarning, match="labels differ"):
        extract_features(model, data, device="cpu", cache=FeatureCache(tmp_path))
    fresh = FeatureCache(tmp_path)  # the recomputed file replaced the bad one: a clean hit now
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = extract_features(model, data, device="cpu", cache=fresh)
    assert fresh.info()["disk_hits"] == 1 and np.array_equal(a.X, c.X)


@pytest.mark.parametrize("garbage", [b"", b"not a zip file", b"PK\x03\x04truncated"], ids=["empty", "text", "zip"])
def test_corrupt_cache_file_is_recomputed_with_a_warning(data, tmp_path, garbage):
    model = tiny()
    a = extract_features(model, data, "features", device="cpu", cache=FeatureCache(tmp_path))
    path = _one_file(tmp_path)
    path.write_bytes(garbage)
    cache = FeatureCache(tmp_path)
    with pytest.warns(UserWarning, match="cannot be read"):
        b = extract_features(model, data, "features", device="cpu", cache=cache)
    assert np.array_equal(a.X, b.X) and cache.info()["rejected"] == 1 and cache.info()["misses"] == 1
    assert path.stat().st_size > 100  # rewritten


def test_a_model_with_forward_hooks_is_not_cached(data):
    model = tiny()
    plain = extract_features(model, data, "features", device="cpu")
    handle = model.features[0].register_forward_hook(lambda m, args, out: out * 2)  # changes the features
    with pytest.warns(UserWarning, match="forward hooks on features.0"):
        hooked = extract_features(model, data, "features", device="cpu")
    assert not np.allclose(plain.X, hooked.X)
    info = feature_cache_info()
    assert (info["hits"], info["misses"], info["items"]) == (0, 1, 1)  # the hooked call neither read nor stored
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        extract_features(model, data, "features", device="cpu", cache=False)  # cache=False: no warning
    handle.remove()
    assert np.array_equal(extract_features(model, data, "features", device="cpu").X, plain.X)
    assert feature_cache_info()["hits"] == 1


def _image_folder(root, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def test_images_replaced_on_disk_make_a_new_key(tmp_path):
    from PIL import Image

    from ftkit.data.catalogue import load_dataset

    folder = _image_folder(tmp_path / "imgs")
    images = load_dataset(folder, "train", image_size=16)
    model = tiny()
    a = extract_features(model, images, "features", device="cpu")
    b = extract_features(model, images, "features", device="cpu")
    assert b.key == a.key and feature_cache_info()["hits"] == 1
    time.sleep(0.01)
    victim = folder / "cat" / "0.png"
    Image.fromarray(np.full((20, 20, 3), 255, np.uint8)).save(victim)  # same name, new pixels
    c = extract_features(model, images, "features", device="cpu")  # same dataset object
    assert c.key != a.key and not np.allclose(a.X, c.X)
    sub = Subset(images, [0, 1])
    assert extract_features(model, sub, "features", device="cpu").X.shape == (2, 8)


def test_disk_cache_is_bounded_in_bytes_least_recently_used_first(data, tmp_path):
    model = tiny()
    cache = FeatureCache(tmp_path)
    a = extract_features(model, data, "features.0", device="cpu", cache=cache)
    size = _one_file(tmp_path).stat().st_size
    cache.disk_bytes = 2 * size
    b = extract_features(model, data, "features.1", device="cpu", cache=cache)
    cache.clear()
    os.utime(tmp_path / f"{b.key}.npz", ns=(1, 1))   # b: long unused
    extract_features(model, data, "features.0", device="cpu", cache=cache)  # a: a disk hit, marked as used
    c = extract_features(model, data, "features.2", device="cpu", cache=cache)  # a third file: b must go
    assert sorted(p.stem for p in tmp_path.glob("*.npz")) == sorted([a.key, c.key])
    assert cache.info()["evicted_files"] == 1


def test_a_cache_hit_does_not_trace_the_model_again(data, monkeypatch):
    import ftkit.analysis.features as features

    calls = []
    real = features.find_head_block
    monkeypatch.setattr(features, "find_head_block", lambda m: calls.append(1) or real(m))
    model = tiny()
    for _ in range(3):
        extract_features(model, data, device="cpu")
    assert len(calls) == 1 and feature_cache_info()["hits"] == 2
    replace_head(model, 4)  # a new module: traced again
    extract_features(model, data, device="cpu")
    assert len(calls) == 2


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
