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

import pytest
import torch
import torchvision
from torch import nn

from ftkit.models import zoo
from ftkit.models.zoo import WeightsError, load_backbone

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
