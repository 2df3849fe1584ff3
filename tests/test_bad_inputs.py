"""Bad inputs and faults (issue 8), outside the training loop: one table.

Each row of ``CASES`` is an input (built in ``tmp_path`` by ``arrange``), the
call that must fail (``act``), the error or warning type it must raise, words
its message must contain, and the check that nothing changed: the model's
tensors, ``requires_grad`` and train/eval flags, hooks, the optimizer's state
and every file under ``tmp_path`` (bytes and names) are the same after the
call as before it. The CLI has its own small table (exit code 2, one line).
Behaviour that must now *work* (16-bit images, NumPy ints, state dicts as a
source...) is tested after the tables.
"""
from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from tiny_task import TinyNet, tiny
from torch import nn

from ftkit import cli
from ftkit.data.catalogue import load_dataset
from ftkit.data.images import BadImageError
from ftkit.lab.specs import DataSpec
from ftkit.models import zoo
from ftkit.models.freeze import freeze, unfreeze
from ftkit.models.heads import AmbiguousHeadError, HeadNotFoundError, find_head, replace_head
from ftkit.models.surgery import transfer_weights
from ftkit.models.zoo import WeightsError, load_backbone
from ftkit.training.checkpoints import CheckpointError, load_checkpoint, save_checkpoint

SQUEEZE_FILE = "squeezenet1_1-b8a52dc0.pth"   # torchvision's name: sha256 prefix b8a52dc0


# ---------------------------------------------------------------- what "nothing changed" means

def _model_state(model: nn.Module) -> dict:
    return {
        "tensors": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "training": {n: m.training for n, m in model.named_modules()},
        "hooks": {n: len(m._forward_pre_hooks) + len(m._forward_hooks) for n, m in model.named_modules()},
        "modules": [(n, type(m).__name__) for n, m in model.named_modules()],
    }


def _files(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def snapshot(ns: SimpleNamespace) -> dict:
    snap = {"files": _files(ns.root)}
    if getattr(ns, "model", None) is not None:
        snap["model"] = _model_state(ns.model)
    if getattr(ns, "optimizer", None) is not None:
        snap["optimizer"] = repr(ns.optimizer.state_dict())
    return snap


def assert_same(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


# ---------------------------------------------------------------- inputs

class _Payload:
    """Unpickling this creates a folder: proof that a file ran code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _hub(tmp_path: Path, monkeypatch) -> Path:
    hub = tmp_path / "torch_home" / "hub"
    monkeypatch.setenv("TORCH_HOME", str(hub.parent))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(hub))
    (hub / "checkpoints").mkdir(parents=True)
    return hub / "checkpoints"


def hub_pickle_payload(tmp_path, monkeypatch):
    torch.save(_Payload(tmp_path / "code-ran"), _hub(tmp_path, monkeypatch) / SQUEEZE_FILE)
    return SimpleNamespace(root=tmp_path)


def hub_wrong_state_dict(tmp_path, monkeypatch):
    torch.manual_seed(0)
    torch.save(torchvision.models.squeezenet1_1().state_dict(), _hub(tmp_path, monkeypatch) / SQUEEZE_FILE)
    return SimpleNamespace(root=tmp_path)


def hub_empty(tmp_path, monkeypatch):
    _hub(tmp_path, monkeypatch)
    return SimpleNamespace(root=tmp_path)


def image_folder(tmp_path: Path, counts: dict[str, int], ext: str = ".png", size: int = 24) -> Path:
    """``tmp_path/imgs/<class>/<i><ext>``: small noise images, ``counts[class]`` of each."""
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    for c, n in counts.items():
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / c / f"{i}{ext}")
    return root


def truncated_jpeg(tmp_path, monkeypatch):
    root = image_folder(tmp_path, {"cat": 3, "dog": 3}, ".jpg", size=64)
    bad = root / "dog" / "1.jpg"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    return SimpleNamespace(root=tmp_path, folder=root)


def empty_and_garbage(tmp_path, monkeypatch):
    root = image_folder(tmp_path, {"cat": 3, "dog": 3})
    (root / "cat" / "empty.png").write_bytes(b"")
    (root / "dog" / "notes.jpg").write_text("not an image")
    return SimpleNamespace(root=tmp_path, folder=root)


def damaged_inside_png(tmp_path, monkeypatch):
    root = image_folder(tmp_path, {"cat": 3, "dog": 3})
    bad = root / "cat" / "2.png"
    data = bytearray(bad.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 8] = bytes(8)  # inside IDAT; the IEND trailer stays intact
    bad.write_bytes(bytes(data))
    return SimpleNamespace(root=tmp_path, folder=root)


def float_beyond_one(tmp_path, monkeypatch):
    root = image_folder(tmp_path, {"cat": 2, "dog": 2})
    Image.fromarray(np.full((8, 8), 2.5, np.float32)).save(root / "dog" / "hdr.tiff")
    return SimpleNamespace(root=tmp_path, folder=root)


def truncated_after_loading(tmp_path, monkeypatch):
    root = image_folder(tmp_path, {"cat": 3, "dog": 3}, ".jpg")
    ds = load_dataset(root, "train", image_size=16)
    bad = ds._source.paths[int(ds.indices[0])]
    bad.write_bytes(bad.read_bytes()[:200])
    return SimpleNamespace(root=tmp_path, folder=root, dataset=ds, bad=bad)


def one_class(tmp_path, monkeypatch):
    return SimpleNamespace(root=tmp_path, folder=image_folder(tmp_path, {"cat": 5}))


def class_of_one(tmp_path, monkeypatch):
    return SimpleNamespace(root=tmp_path, folder=image_folder(tmp_path, {"cat": 4, "dog": 1}))


def classes_of_one(tmp_path, monkeypatch):
    return SimpleNamespace(root=tmp_path, folder=image_folder(tmp_path, {"cat": 1, "dog": 1}))


class TwoHeads(nn.Module):
    """Two parallel classifiers of equal width whose scores are averaged (like DeiT's distilled head)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head_a = nn.Linear(8, 3)
        self.head_b = nn.Linear(8, 3)

    def forward(self, x):                          # (B, 3, H, W) -> (B, 3)
        features = self.body(x)
        return (self.head_a(features) + self.head_b(features)) / 2


def two_heads(tmp_path, monkeypatch):
    torch.manual_seed(0)
    return SimpleNamespace(root=tmp_path, model=TwoHeads())


def tiny_model(tmp_path, monkeypatch):
    return SimpleNamespace(root=tmp_path, model=tiny())


def transfer_pair(tmp_path, monkeypatch):
    """A source wrapped as DataParallel would name it ("module.") and a bare target."""
    torch.manual_seed(1)
    wrapped = nn.Module()
    wrapped.module = TinyNet()
    return SimpleNamespace(root=tmp_path, model=tiny(), source=wrapped)


def checkpoint_file(damage: Callable[[bytes], bytes]):
    def arrange(tmp_path, monkeypatch):
        model = tiny()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        model(torch.randn(2, 3, 16, 16)).sum().backward()
        optimizer.step()  # momentum state to keep
        path = save_checkpoint(tmp_path / "run.pt", tiny(seed=5), None)
        path.write_bytes(damage(path.read_bytes()))
        return SimpleNamespace(root=tmp_path, model=model, optimizer=optimizer, path=path)
    return arrange


@dataclass
class Case:
    id: str
    arrange: Callable[[Path, Any], SimpleNamespace]
    act: Callable[[SimpleNamespace], Any]
    expect: type                   # an exception type, or a Warning subclass
    words: tuple[str, ...]


CASES = [
    # -- zoo: a file in torch's hub cache runs no code and passes only with the right hash
    Case("zoo: pickle payload in the hub cache", hub_pickle_payload,
         lambda ns: load_backbone("squeezenet1_1", allow_download=False),
         WeightsError, (SQUEEZE_FILE, "sha256 prefix b8a52dc0", "Delete")),
    Case("zoo: valid but wrong state dict in the hub cache", hub_wrong_state_dict,
         lambda ns: load_backbone("squeezenet1_1", allow_download=False),
         WeightsError, ("does not match", "not the official squeezenet1_1")),
    Case("zoo: offline message promises a checked file", hub_empty,
         lambda ns: load_backbone("squeezenet1_1", allow_download=False),
         WeightsError, ("only if its sha256 starts with b8a52dc0", "only as tensors")),

    # -- data: bad image files are named when the folder loads, with the fix
    Case("data: truncated JPEG in a folder", truncated_jpeg,
         lambda ns: load_dataset(ns.folder, "train"),
         BadImageError, ("dog/1.jpg", "truncated", "Remove or replace", "bad_images='skip'")),
    Case("data: empty and garbage files in a folder", empty_and_garbage,
         lambda ns: load_dataset(ns.folder, "test"),
         BadImageError, ("cat/empty.png: empty file", "dog/notes.jpg: Pillow cannot open it", "2 of 8 files")),
    Case("data: damage inside a PNG with check='decode'", damaged_inside_png,
         lambda ns: load_dataset(ns.folder, check="decode"),
         BadImageError, ("cat/2.png", "bad_images='skip'")),
    Case("data: float image beyond 0..1", float_beyond_one,
         lambda ns: load_dataset(ns.folder, check="decode"),
         BadImageError, ("dog/hdr.tiff", "float pixels from 2.5 to 2.5", "0..1")),
    Case("data: a file truncated after loading names its path", truncated_after_loading,
         lambda ns: ns.dataset[0],
         BadImageError, ("cannot read image", "imgs/cat/", "remove or replace")),
    Case("data: a folder with one class", one_class,
         lambda ns: load_dataset(ns.folder),
         ValueError, ("only one class ('cat')", "at least two")),
    Case("data: a class too small for the split", class_of_one,
         lambda ns: load_dataset(ns.folder, "test"),
         ValueError, ("{'dog': 1}", "fewer than 2 images", "root/train/<class>/")),
    Case("data: n_per_class on classes of one image", classes_of_one,
         lambda ns: load_dataset(ns.folder, "test", n_per_class=1),
         ValueError, ("fewer than 2 images", "at least 2 per class")),

    # -- heads
    Case("heads: two heads of equal width", two_heads,
         lambda ns: replace_head(ns.model, 5),
         AmbiguousHeadError, ("head_a (Linear -> 3), head_b (Linear -> 3)", "head='head_b'")),
    Case("heads: find_head with two heads of equal width", two_heads,
         lambda ns: find_head(ns.model),
         AmbiguousHeadError, ("2 layers that could be its classifier head", "head=")),
    Case("heads: head= names no classifier layer", two_heads,
         lambda ns: replace_head(ns.model, 5, head="body"),
         HeadNotFoundError, ("head='body'", "head_a (Linear -> 3)")),
    Case("heads: num_classes=1", tiny_model,
         lambda ns: replace_head(ns.model, 1),
         ValueError, ("num_classes=1", "never learn", "num_classes=2")),

    # -- surgery and freezing
    Case("transfer: names that match nothing warn", transfer_pair,
         lambda ns: transfer_weights(ns.source, ns.model),
         UserWarning, ("copied nothing", "0 of 9", "removeprefix('module.')")),
    Case("transfer: a checkpoint dict is not a state dict", tiny_model,
         lambda ns: transfer_weights({"model": tiny().state_dict(), "epoch": 3}, ns.model),
         TypeError, ("'model' holds a", "checkpoint['model']")),
    Case("freeze: a pattern matching only parameter-less modules", tiny_model,
         lambda ns: freeze(ns.model, names=["features.2", "drop"]),
         UserWarning, ("matched only modules without parameters", "0 parameters changed")),
    Case("unfreeze: a pattern matching only parameter-less modules", tiny_model,
         lambda ns: unfreeze(ns.model, names="features.3"),
         UserWarning, ("unfreeze(names='features.3')", "0 parameters changed")),

    # -- checkpoints: one CheckpointError naming the file and the cause
    Case("checkpoint: empty file", checkpoint_file(lambda b: b""),
         lambda ns: load_checkpoint(ns.path, ns.model, ns.optimizer),
         CheckpointError, ("run.pt is empty (0 bytes)", "save it again")),
    Case("checkpoint: truncated file", checkpoint_file(lambda b: b[: len(b) // 2]),
         lambda ns: load_checkpoint(ns.path, ns.model, ns.optimizer),
         CheckpointError, ("run.pt cannot be loaded", "truncated or damaged")),
    Case("checkpoint: garbage file", checkpoint_file(lambda b: b"hello world" * 50),
         lambda ns: load_checkpoint(ns.path, ns.model, ns.optimizer),
         CheckpointError, ("run.pt cannot be loaded", "not a file written by torch.save")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_and_changes_nothing(case: Case, tmp_path, monkeypatch):
    ns = case.arrange(tmp_path, monkeypatch)
    before = snapshot(ns)
    if issubclass(case.expect, Warning):
        with pytest.warns(case.expect) as record:
            case.act(ns)
        message = " ".join(str(w.message) for w in record if issubclass(w.category, case.expect))
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(case.expect) as info:
                case.act(ns)
        message = str(info.value)
    for word in case.words:
        assert word in message, f"{word!r} not in: {message}"
    assert_same(before, snapshot(ns))


# ---------------------------------------------------------------- what must work

def test_hub_file_with_its_hash_loads_through_torchvision_builder(tmp_path, monkeypatch):
    torch.manual_seed(1)
    reference = torchvision.models.squeezenet1_1()
    buffer = io.BytesIO()
    torch.save(reference.state_dict(), buffer)
    folder = _hub(tmp_path, monkeypatch)
    path = folder / f"squeezenet1_1-{hashlib.sha256(buffer.getvalue()).hexdigest()[:8]}.pth"
    path.write_bytes(buffer.getvalue())
    monkeypatch.setattr(zoo, "_hub_file", lambda weights: path)
    bb = load_backbone("squeezenet1_1", allow_download=False)
    assert bb.pretrained and str(path) in bb.source
    for k, v in reference.state_dict().items():
        assert torch.equal(bb.model.state_dict()[k], v), k


def test_16_bit_and_float_images_are_scaled_not_clipped(tmp_path):
    root = image_folder(tmp_path, {"cat": 2, "dog": 2})
    Image.fromarray(np.full((4, 4), 32768, np.uint16)).save(root / "cat" / "grey16.png")
    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(root / "cat" / "white16.png")
    Image.fromarray(np.full((4, 4), 0.5, np.float32)).save(root / "dog" / "half.tiff")
    assert Image.open(root / "cat" / "grey16.png").mode == "I;16"
    ds = load_dataset(root, "train", image_size=4, mean=(0, 0, 0), std=(1, 1, 1))
    ds_test = load_dataset(root, "test", image_size=4, mean=(0, 0, 0), std=(1, 1, 1))
    found = {}
    for d in (ds, ds_test):
        for i in range(len(d)):
            name = d._source.paths[int(d.indices[i])].name
            found[name] = (d.raw_image(i), d[i][0])
    for name, level in [("grey16.png", 128), ("white16.png", 255), ("half.tiff", 128)]:
        raw, x = found[name]
        assert raw.shape == (4, 4, 3) and (raw == level).all(), (name, raw[0, 0])
        assert torch.allclose(x, torch.full_like(x, level / 255)), name


def test_bad_images_skip_leaves_them_out_with_a_warning(tmp_path):
    ns = truncated_jpeg(tmp_path, None)
    with pytest.warns(UserWarning, match=r"(?s)left out 1 of 6 files.*dog/1\.jpg: OSError: image file is truncated"):
        train = load_dataset(ns.folder, "train", bad_images="skip")
        test = load_dataset(ns.folder, "test", bad_images="skip")
    assert len(train) + len(test) == 5
    assert all(p.name != "1.jpg" or p.parent.name != "dog" for p in train._source.paths)
    train[0], test[0]  # every image left reads


def test_header_check_is_cheap_and_decode_check_is_thorough(tmp_path):
    ns = damaged_inside_png(tmp_path, None)
    load_dataset(ns.folder, "train")  # default: header and end marker only
    jpeg = image_folder(tmp_path / "extra", {"a": 2, "b": 2}, ".jpg")
    path = jpeg / "a" / "0.jpg"
    path.write_bytes(path.read_bytes() + b"camera maker's trailing data")
    load_dataset(jpeg, "train")  # no end marker at the very end, but it decodes: not bad


def test_large_folders_show_a_progress_bar(tmp_path, monkeypatch, capsys):
    from ftkit.data import images

    monkeypatch.setattr(images, "PROGRESS_MIN_FILES", 3)
    root = image_folder(tmp_path, {"a": 2, "b": 2}, ".bmp")
    load_dataset(root, "train")
    assert "checking images (header)" in capsys.readouterr().err


def test_head_argument_chooses_one_of_two_heads():
    torch.manual_seed(0)
    model = TwoHeads()
    kept = model.head_a
    assert find_head(model, head="head_a") == "head_a"
    replace_head(model, 5, head="head_b")
    assert model.head_a is kept and model.head_b.out_features == 5 and model.head_b.in_features == 8
    replace_head(model, 5, head="head_a")
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 5)
    with pytest.raises(AmbiguousHeadError) as info:  # still two heads, now of width 5
        find_head(model)
    assert info.value.candidates == ["head_a", "head_b"]


def test_layers_of_the_head_width_before_the_head_are_no_second_head():
    model = replace_head(tiny(), 4, hidden=4)  # hidden layer as wide as the classes
    assert find_head(model) == "fc.out"
    # SqueezeNet's last fire module ends in two parallel 64 -> 256 convs: not heads of 256 classes
    assert find_head(torchvision.models.squeezenet1_1(num_classes=256)) == "classifier.1"


def test_numpy_integers_are_accepted_as_sizes():
    model = replace_head(tiny(), np.int64(3), hidden=np.int32(6))
    assert model.fc.out.out_features == 3 and model.fc.hidden.out_features == 6
    assert type(model.fc.out.out_features) is int


def test_a_state_dict_is_accepted_as_the_source():
    source, target = tiny(seed=1), tiny(seed=2)
    report = transfer_weights(source.state_dict(), target)
    assert report.counts()["copied"] == len(source.state_dict())
    assert all(torch.equal(v, target.state_dict()[k]) for k, v in source.state_dict().items())
    assert {r.source_type for r in report.rows} == {"state dict"}
    wrong = {k: v[:1] if v.dim() else v for k, v in source.state_dict().items()}
    assert transfer_weights(wrong, tiny()).counts()["shape mismatch"] > 0


def test_checkpoint_is_fsynced_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(
        ("fsync", os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))) or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(
        ("replace", os.path.basename(a))) or real_replace(a, b))
    save_checkpoint(tmp_path / "run.pt", tiny())
    (fsync, tmp_name), (replace, moved), (_, folder) = events
    assert (fsync, replace) == ("fsync", "replace") and tmp_name == moved and tmp_name.startswith(".run.pt.")
    assert folder == tmp_path.name
    assert load_checkpoint(tmp_path / "run.pt", tiny(seed=3)) == {}


# ---------------------------------------------------------------- the CLI: one line, exit code 2

CLI_CASES = [
    ("seeds repeated", ["--seeds", "0", "0"], ("--seeds 0 0 repeats 0", "distinct seeds")),
    ("epochs zero", ["--epochs", "0"], ("--epochs must be at least 1",)),
    ("unknown backbone", ["--backbone", "resnet_nope"], ("Unknown backbone 'resnet_nope'", "resnet18")),
]


@pytest.mark.parametrize("argv,words", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_errors_print_one_line_with_exit_code_2(argv, words, tmp_path, capsys, monkeypatch):
    # refused before any work: loading the data would be a bug
    monkeypatch.setattr(DataSpec, "load", lambda *a, **k: pytest.fail("work started"))
    out = tmp_path / "runs"
    code = cli.main(["demo", *argv, "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("ftkit demo: error: ") and "--debug" in err
    for word in words:
        assert word in err, err
    assert not out.exists()


def test_cli_debug_shows_the_traceback(tmp_path):
    for argv in (["--debug", "demo"], ["demo", "--debug"]):
        with pytest.raises(ValueError, match="Unknown backbone"):
            cli.main([*argv, "--backbone", "resnet_nope", "--out", str(tmp_path / "runs")])
