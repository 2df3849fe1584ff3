"""Hostile but realistic inputs to the training loop (issue 8, loop items), table-driven.

Each row: what is passed, the error (or the stop) expected, words the message must
contain, and a check that nothing changed (or that the model holds its last good
state). Every row fails on the code before the change (the closing note lists the
behaviour before and after).
"""
import math
import warnings

import pytest
import torch
from tiny_task import FAST, Quadrants, TinyNet, assert_same_state, state, tiny
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ftkit.lr.finder import lr_find
from ftkit.models.bn_stats import recompute_bn_stats
from ftkit.training.loop import BatchError, fit


class Relabel(Dataset):
    """``base`` with its labels passed through ``f`` (or its images through ``g``)."""

    def __init__(self, base, f=lambda y: y, g=lambda x: x):
        self.base, self.f, self.g = base, f, g

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        return self.g(x), self.f(y)


class BrokenAt(Dataset):
    """Reading item ``bad`` fails as a truncated image would; the data set can name its files."""

    def __init__(self, base, bad):
        self.base, self.bad, self.error = base, bad, OSError("image file is truncated")

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        if i == self.bad:
            raise self.error
        return self.base[i]

    def path_of(self, i):
        return f"/data/cats/{i:04d}.jpg"


@pytest.fixture(scope="module")
def quad():
    return Quadrants(64, seed=0)


def _modes(model):
    return {n: m.training for n, m in model.named_modules()}


# ---- the first batch is checked before the first step: an ftkit error naming the fix ----

FIRST_BATCH = [
    ("labels out of range for the head", lambda q: Relabel(q, lambda y: y + 4), ["labels", "4 outputs",
                                                                                 "replace_head"]),
    ("negative labels", lambda q: Relabel(q, lambda y: -1), ["labels", "from -1", "replace_head"]),
    ("float labels", lambda q: Relabel(q, lambda y: float(y)), ["torch.float", "int"]),
    ("one-channel images into a 3-channel model", lambda q: Relabel(q, g=lambda x: x[:1]),
     ["1 channel", "expects 3", "Grayscale"]),
]


@pytest.mark.parametrize("case, make, words", FIRST_BATCH, ids=[c[0] for c in FIRST_BATCH])
@pytest.mark.parametrize("entry", ["fit", "lr_find"])
def test_a_bad_first_batch_is_refused_before_anything_changes(quad, case, make, words, entry):
    model = tiny()
    model.features[1].eval()  # a pinned BN: modes must come back exactly
    before, modes = state(model), _modes(model)
    with pytest.raises(BatchError) as info:
        if entry == "fit":
            fit(model, make(quad), batch_size=16, **FAST)
        else:
            lr_find(model, make(quad), num_iter=5, batch_size=16, device="cpu")
    for w in words:
        assert w in str(info.value), (w, str(info.value))
    assert_same_state(before, state(model))
    assert _modes(model) == modes


def test_an_empty_loader_is_refused_with_the_reason(quad):
    model = tiny()
    before = state(model)
    with pytest.raises(ValueError, match="empty"):
        fit(model, Relabel(TensorDataset(torch.empty(0, 3, 16, 16), torch.empty(0, dtype=torch.long))), **FAST)
    with pytest.raises(ValueError, match="no batches"):
        lr_find(model, DataLoader(quad, batch_size=128, drop_last=True), num_iter=5, device="cpu")
    assert_same_state(before, state(model))


# ---- errors inside fit / lr_find carry the partial result and name the file ----

def test_a_data_error_in_fit_carries_the_history_and_the_file(quad):
    model = tiny()
    data = BrokenAt(quad, bad=40)
    with pytest.raises(OSError, match="truncated") as info:
        fit(model, data, epochs=3, batch_size=16, **FAST)
    err = info.value
    assert err.path == "/data/cats/0040.jpg" and err.item == 40
    assert any("0040.jpg" in n and "remove" in n for n in err.__notes__)
    assert len(err.history.steps) >= 1  # the steps before the bad file are kept
    assert all(math.isfinite(r["loss"]) for r in err.history.steps)


def test_a_data_error_in_lr_find_carries_the_partial_result(quad):
    model = tiny()
    before = state(model)
    with pytest.raises(OSError) as info:
        lr_find(model, BrokenAt(quad, bad=40), num_iter=30, batch_size=16, device="cpu")
    result = info.value.result
    assert result.endings == ["failed"] and 1 <= result.lrs.size < 30
    assert any("error" in n for n in result.notes)
    assert info.value.path == "/data/cats/0040.jpg"
    assert_same_state(before, state(model))  # restored as after any lr_find


def test_an_error_from_the_model_carries_the_history(quad):
    model = tiny()
    calls = []

    def fail_on_third(module, inputs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("CUDA out of memory (simulated)")

    model.fc.register_forward_pre_hook(fail_on_third)
    with pytest.raises(RuntimeError, match="out of memory") as info:
        fit(model, quad, epochs=2, batch_size=16, **FAST)
    assert [r["step"] for r in info.value.history.steps] == [1, 2]


# ---- the divergence guard watches BatchNorm statistics and evaluation losses ----

def _poison_running_var_at(model, step):
    calls = []

    def hook(module, inputs, output):
        calls.append(1)
        if module.training and len(calls) == step:
            module.running_var.fill_(float("inf"))  # finite loss (train mode uses batch statistics)

    model.features[1].register_forward_hook(hook)


def test_non_finite_batchnorm_statistics_stop_and_roll_back(quad):
    model, reference = tiny(), tiny()
    h_ref = fit(reference, quad, max_steps=2, batch_size=16, **FAST)
    _poison_running_var_at(model, 3)
    with pytest.warns(RuntimeWarning, match="BatchNorm running statistics"):
        h = fit(model, quad, max_steps=6, batch_size=16, **FAST)
    assert "BatchNorm" in h.stopped_reason and len(h.steps) == 2
    assert h.steps == h_ref.steps
    assert_same_state(state(reference), state(model))  # exactly the state after step 2, buffers included


def test_a_non_finite_validation_loss_stops_the_run(quad):
    val = Relabel(Quadrants(16, seed=1), g=lambda x: x * float("inf"))  # eval mode: NaN logits
    model = tiny()
    with pytest.warns(RuntimeWarning, match="validation loss"):
        h = fit(model, quad, val, epochs=3, batch_size=16, eval_every=2, **FAST)
    assert "validation loss became nan" in h.stopped_reason and h.steps[-1]["step"] == 2
    assert "after step 1" in h.stopped_reason  # the step before the bad evaluation is undone
    assert all(torch.isfinite(t).all() for t in state(model).values() if t.is_floating_point())


def test_mobilenet_at_lr_100_stops_with_a_reason_and_a_warning():
    from ftkit.models.heads import replace_head
    from ftkit.models.zoo import load_backbone

    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(32, 3, 32, 32, generator=g), torch.randint(0, 4, (32,), generator=g)
    model = load_backbone("mobilenet_v2").model
    replace_head(model, 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        h = fit(model, TensorDataset(X, y), TensorDataset(X[:8], y[:8]), epochs=3, lr=100.0, batch_size=8,
                **FAST)
    assert h.stopped_reason is not None and "exploded" in h.stopped_reason
    assert any("fit() stopped" in str(w.message) for w in caught)
    assert len(h.steps) < 12
    assert all(torch.isfinite(b).all() for b in model.buffers() if b.is_floating_point())
    assert all(math.isfinite(r["val_loss"]) for r in h.evals)


def test_the_explosion_stop_is_documented_and_can_be_turned_off(quad):
    """A loss above MAX_LOSS_FACTOR x max(first loss, ln C) stops the run; None turns it off."""
    from ftkit.training.loop import MAX_LOSS_FACTOR

    assert MAX_LOSS_FACTOR == 10.0 and "max_loss_factor" in fit.__doc__

    class Spiky(nn.Module):  # the loss jumps 1000x at step 3, finitely
        def __init__(self):
            super().__init__()
            self.net, self.calls = TinyNet(bn=False), 0

        def forward(self, x):
            self.calls += 1
            out = self.net(x)
            return out * 1000.0 if self.calls == 3 else out

    torch.manual_seed(0)
    on, off = Spiky(), Spiky()
    off.load_state_dict(on.state_dict())
    with pytest.warns(RuntimeWarning, match="exploded"):
        h_on = fit(on, quad, max_steps=4, batch_size=16, lr=1e-3, **FAST)
    assert len(h_on.steps) == 2 and "max_loss_factor=None" in h_on.stopped_reason
    h_off = fit(off, quad, max_steps=4, batch_size=16, lr=1e-3, max_loss_factor=None, **FAST)
    assert len(h_off.steps) == 4 and h_off.stopped_reason is None


# ---- precise BN interrupted puts the statistics back ----

class StopAt(Dataset):
    def __init__(self, base, k, error):
        self.base, self.k, self.error = base, k, error

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        if i == self.k:
            raise self.error
        return self.base[i]


@pytest.mark.parametrize("error", [KeyboardInterrupt(), OSError("image file is truncated")],
                         ids=["ctrl-c", "data error"])
def test_interrupted_precise_bn_restores_the_statistics(quad, error):
    model = tiny()
    fit(model, quad, max_steps=3, batch_size=16, **FAST)  # statistics worth keeping
    before = state(model)
    with pytest.raises(type(error)):
        recompute_bn_stats(model, StopAt(quad, 40, error), batch_size=16)  # dies in the 3rd batch
    assert_same_state(before, state(model))
    assert model.features[1].momentum == 0.1
