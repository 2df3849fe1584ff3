"""Tests for ftkit.training.checkpoints: round trip then identical training, atomic writes,
plain-data meta, mismatches rejected before anything is loaded."""
import os

import pytest
import torch
from tiny_task import FAST, Quadrants, assert_same_state, state, tiny

from ftkit.training.checkpoints import load_checkpoint, save_checkpoint
from ftkit.training.loop import fit


@pytest.fixture(scope="module")
def data():
    return Quadrants(192, seed=0), Quadrants(96, seed=1)


# ---------------------------------------------------------------- checkpoints

def test_checkpoint_round_trip_then_training_continues_identically(data, tmp_path):
    train, val = data
    model_a = tiny()
    opt_a = torch.optim.SGD(model_a.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    h = fit(model_a, train, val, max_steps=5, optimizer=opt_a, **FAST)
    path = save_checkpoint(tmp_path / "ck.pt", model_a, opt_a, history=h, note="after 5", lrs=[0.05])

    model_b = tiny(seed=99)  # different init: everything must come from the file
    opt_b = torch.optim.SGD(model_b.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-3)
    meta = load_checkpoint(path, model_b, opt_b)
    assert meta["note"] == "after 5" and meta["lrs"] == [0.05] and meta["history"].steps == h.steps
    assert_same_state(state(model_a), state(model_b))  # params and buffers (BN stats)
    sa, sb = opt_a.state_dict(), opt_b.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    for k in sa["state"]:
        assert torch.equal(sa["state"][k]["momentum_buffer"], sb["state"][k]["momentum_buffer"])

    # continue both: the reloaded pair follows the uninterrupted one exactly
    ha = fit(model_a, train, max_steps=5, optimizer=opt_a, seed=1, **FAST)
    hb = fit(model_b, train, max_steps=5, optimizer=opt_b, seed=1, **FAST)
    assert ha.steps == hb.steps
    assert_same_state(state(model_a), state(model_b))


def test_checkpoint_write_is_atomic(data, tmp_path, monkeypatch):
    model = tiny()
    path = tmp_path / "ck.pt"
    save_checkpoint(path, model, epoch=1)
    good = path.read_bytes()

    def broken_save(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, epoch=2)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "new.pt", model)
    assert path.read_bytes() == good
    assert sorted(os.listdir(tmp_path)) == ["ck.pt"]  # no temp files, no half-written new.pt


def test_checkpoint_rejects_bad_meta_and_mismatched_models(tmp_path):
    with pytest.raises(TypeError, match="plain data"):
        save_checkpoint(tmp_path / "x.pt", tiny(), thing=object())
    assert not (tmp_path / "x.pt").exists()
    path = save_checkpoint(tmp_path / "ck.pt", tiny(bn=False))
    model = tiny()
    before = state(model)
    with pytest.raises(ValueError, match="missing in checkpoint: features.1.running_mean"):
        load_checkpoint(path, model)
    assert_same_state(before, state(model))
    with pytest.raises(ValueError, match="no optimizer state"):
        load_checkpoint(path, tiny(bn=False), torch.optim.SGD(tiny(bn=False).parameters(), lr=1))


def _opt_state(opt):
    sd = opt.state_dict()
    return sd["param_groups"], {i: {k: v.clone() for k, v in s.items()} for i, s in sd["state"].items()}


def _assert_same_opt_state(a, b):
    assert a[0] == b[0] and a[1].keys() == b[1].keys()
    for i in a[1]:
        assert a[1][i].keys() == b[1][i].keys()
        assert all(torch.equal(a[1][i][k], b[1][i][k]) for k in a[1][i]), i


@pytest.mark.parametrize("old_file", [False, True])
def test_loading_another_optimizers_state_changes_nothing(data, tmp_path, old_file):
    """SGD state into an Adam: a clear error, model and optimizer untouched (not a bare KeyError
    'step' from Adam.__setstate__ after the weights were replaced). ``old_file``: a checkpoint
    without the optimizer's class name, where only the failed load itself can tell."""
    model_a = tiny()
    opt_a = torch.optim.SGD(model_a.parameters(), lr=0.05, momentum=0.9)
    fit(model_a, data[0], max_steps=3, optimizer=opt_a, **FAST)
    path = save_checkpoint(tmp_path / "sgd.pt", model_a, opt_a)
    if old_file:
        payload = torch.load(path, weights_only=True)
        del payload["optimizer_class"]
        torch.save(payload, path)

    model_b = tiny(seed=99)
    opt_b = torch.optim.Adam(model_b.parameters(), lr=1e-3)
    fit(model_b, data[0], max_steps=2, optimizer=opt_b, **FAST)  # Adam state to keep intact
    before, opt_before = state(model_b), _opt_state(opt_b)
    groups_before = opt_b.param_groups
    match = "does not fit this Adam" if old_file else "checkpoint's optimizer is a SGD.*given a Adam"
    with pytest.raises(ValueError, match=match):
        load_checkpoint(path, model_b, opt_b)
    assert_same_state(before, state(model_b))
    _assert_same_opt_state(opt_before, _opt_state(opt_b))
    assert opt_b.param_groups is groups_before
    fit(model_b, data[0], max_steps=1, optimizer=opt_b, **FAST)  # still a working Adam
