"""ftkit.models.smallcnn and the shipped source networks: load, verify, regenerate (small)."""
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from ftkit.data.shifts import fashion_task, subpopulation_task
from ftkit.lab.source_nets import SourceRecipe, train_all, train_source_net
from ftkit.lab.tensor_fit import accuracy
from ftkit.models.groups import layer_groups
from ftkit.models.smallcnn import (
    BLOCK_NAMES,
    WEIGHTS_DIR,
    SmallCNN,
    load_source_net,
    read_manifest,
    source_net_names,
)
from ftkit.models.zoo import WeightsError, load_backbone

ROOT = Path(__file__).resolve().parents[1]


def test_groups_are_stem_blocks_head():
    assert [g.name for g in layer_groups(SmallCNN())] == [*BLOCK_NAMES, "head"]


def test_prefix_then_forward_from_equals_forward():
    torch.manual_seed(0)
    model, x = SmallCNN(3).eval(), torch.randn(4, 3, 28, 28)
    for k in range(len(BLOCK_NAMES) + 1):
        assert torch.allclose(model.forward_from(k, model.prefix(k, x)), model(x), atol=1e-6)


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="widths"):
        SmallCNN(widths=(8, 16))
    with pytest.raises(ValueError, match="num_classes"):
        SmallCNN(0)


def test_six_source_networks_ship_with_their_manifest():
    manifest = read_manifest()
    assert source_net_names() == ["A0", "A1", "B0", "B1", "C0", "C1"]
    assert manifest["command"].startswith("python scripts/train_source_nets.py")
    for name, e in manifest["nets"].items():
        assert e["seed"] == int(name[1]) and e["task"] == name[0]
        assert (WEIGHTS_DIR / e["file"]).stat().st_size < 200_000
        assert e["test_acc"] > 0.8, (name, e["test_acc"])
    total = sum(f.stat().st_size for f in WEIGHTS_DIR.iterdir())
    assert total < 2_000_000


def test_load_backbone_registers_the_source_networks():
    bb = load_backbone("fmnist_cnn", weights="B1")
    assert bb.name == "fmnist_cnn:B1" and bb.categories[0] == "Sandal" and bb.input_size == 28
    assert not bb.model.training
    assert load_backbone("fmnist_cnn").name == "fmnist_cnn:A0"
    random = load_backbone("fmnist_cnn", pretrained=False)
    assert not random.pretrained and random.source == "random init"
    with pytest.raises(ValueError, match="only applies"):
        load_backbone("mobilenet_v2", weights="A0")
    with pytest.raises(ValueError, match="Shipped: A0, A1"):
        load_backbone("fmnist_cnn", weights="D0")


@pytest.mark.parametrize("name", ["A0", "B0", "C1"])
def test_shipped_weights_reach_their_measured_accuracy(name):
    """The manifest's accuracy is on the whole test split; 300 per class must agree within 3 points."""
    entry = read_manifest()["nets"][name]
    model = load_source_net(name).model
    test = (subpopulation_task("source", "test", n_per_class=300) if name[0] == "C"
            else fashion_task(name[0], "test", n_per_class=300))
    assert abs(accuracy(model, test) - entry["test_acc"]) < 0.03


def test_a_changed_file_is_refused_by_its_hash(tmp_path):
    shutil.copytree(WEIGHTS_DIR, tmp_path / "w")
    path = tmp_path / "w" / read_manifest()["nets"]["A0"]["file"]
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256"):
        load_source_net("A0", weights_dir=tmp_path / "w")
    (tmp_path / "w" / "manifest.json").unlink()
    with pytest.raises(WeightsError, match="train_source_nets.py"):
        load_source_net("A0", weights_dir=tmp_path / "w")


def test_regenerating_a_small_network_learns_and_is_repeatable(tmp_path):
    """The script's recipe at reduced size (100 images per class, 5 epochs): well above chance,
    bit-for-bit the same twice, and loadable through the manifest it writes."""
    small = SourceRecipe(n_per_class=100, epochs=5)
    manifest = train_all(tmp_path, "A", (0,), small, command="test")
    entry = manifest["nets"]["A0"]
    assert entry["train_images"] == 500 and entry["test_acc"] > 0.5, entry   # chance: 0.2
    again, _ = train_source_net("A", 0, small)
    loaded = load_source_net("A0", weights_dir=tmp_path).model
    for k, v in again.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    assert json.loads((tmp_path / "manifest.json").read_text())["nets"]["A0"]["sha256"] == entry["sha256"]


def test_package_data_includes_the_weights():
    if sys.version_info < (3, 11):
        pytest.importorskip("tomli")
        import tomli as tomllib
    else:
        import tomllib
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = cfg["tool"]["setuptools"]["package-data"]["ftkit.models"]
    assert "weights/*.pt" in patterns and "weights/manifest.json" in patterns
