"""LR range test: exact restore in every ending, group ratios, data cycling, CPU
snapshot, a hand-written reference loop; plus the plot and the widget."""
import copy
import random
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ftkit.core.state import StateSnapshot
from ftkit.lr.finder import lr_find, smooth_losses, sweep_lrs
from ftkit.lr.result import LRFindResult

# ---- tiny model, data, optimizers with history ------------------------------------------


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(3, 4, 3, padding=1), bn=nn.BatchNorm2d(4), relu=nn.ReLU(),
        pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(), fc=nn.Linear(4, 3)))


def images(n=48, seed=1) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 3, 6, 6, generator=g)  # (N, C, H, W)
    return TensorDataset(X, torch.randint(0, 3, (n,), generator=g))


def groups(model, body_lr=1e-3, head_lr=1e-2):
    body = [*model.conv.parameters(), *model.bn.parameters()]
    return [{"params": [p for p in body if p.requires_grad], "lr": body_lr, "initial_lr": body_lr,
             "name": "body"},
            {"params": list(model.fc.parameters()), "lr": head_lr, "initial_lr": head_lr,
             "name": "head"}]


def optimizer_with_history(model, kind, data, steps=3):
    if kind == "sgd":
        opt = torch.optim.SGD(groups(model), momentum=0.9, nesterov=True, weight_decay=1e-4)
    else:
        opt = torch.optim.Adam(groups(model), betas=(0.8, 0.95), weight_decay=1e-4)
    loader = DataLoader(data, batch_size=8)
    for (x, y), _ in zip(loader, range(steps)):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    x, y = data[:8]
    nn.functional.cross_entropy(model(x), y).backward()  # leave stale grads, as users do
    return opt


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().cpu().reshape(-1).view(torch.uint8)


def capture(model, opt):
    """Everything that must survive lr_find, deep-copied by hand (independent of ftkit)."""
    return {
        "params": {n: p.detach().clone() for n, p in model.named_parameters()},
        "buffers": {n: b.detach().clone() for n, b in model.named_buffers()},
        "objects": {n: (id(p), p.data_ptr()) for n, p in model.named_parameters()},
        "buffer_ptrs": {n: b.data_ptr() for n, b in model.named_buffers()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grads": {n: p.grad for n, p in model.named_parameters()},
        "training": {n: m.training for n, m in model.named_modules()},
        "groups": [copy.deepcopy({k: v for k, v in g.items() if k != "params"})
                   for g in opt.param_groups],
        "state": copy.deepcopy(opt.state_dict()["state"]),
        "torch_rng": torch.get_rng_state().clone(),
        "np_rng": np.random.get_state(),
        "py_rng": random.getstate(),
    }


def assert_same_tensors(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert a[k].dtype == b[k].dtype and torch.equal(bits(a[k]), bits(b[k])), k
        else:
            assert a[k] == b[k], k


def assert_restored(before, model, opt, grads_cleared=True):
    after = capture(model, opt)
    assert_same_tensors(before["params"], after["params"])
    assert_same_tensors(before["buffers"], after["buffers"])
    assert before["objects"] == after["objects"]  # same Parameter objects, same storage
    assert before["buffer_ptrs"] == after["buffer_ptrs"]
    assert before["requires_grad"] == after["requires_grad"]
    assert before["training"] == after["training"]
    if grads_cleared:  # stale grads are dropped, as zero_grad() does
        assert all(p.grad is None for p in model.parameters())
    else:  # untouched
        assert all(p.grad is before["grads"][n] for n, p in model.named_parameters())
    assert before["groups"] == after["groups"]
    assert before["state"].keys() == after["state"].keys()
    for i in before["state"]:
        assert_same_tensors(before["state"][i], after["state"][i])
    assert torch.equal(before["torch_rng"], after["torch_rng"])
    np_a, np_b = before["np_rng"], after["np_rng"]
    assert np_a[0] == np_b[0] and np.array_equal(np_a[1], np_b[1]) and np_a[2:] == np_b[2:]
    assert before["py_rng"] == after["py_rng"]


class FailAt:
    """Cross-entropy that raises ``error`` at call number ``k`` (after checking the
    sweep really changed the model, so the restore test is not vacuous)."""

    def __init__(self, k, error, model, before):
        self.k, self.error, self.model, self.before, self.calls = k, error, model, before, 0
        self.changed = None

    def __call__(self, out, y):
        self.calls += 1
        if self.calls == self.k:
            w = self.model.fc.weight
            self.changed = not torch.equal(bits(w), bits(self.before["params"]["fc.weight"]))
            raise self.error
        return nn.functional.cross_entropy(out, y)


# ---- exact restore in all four endings ---------------------------------------------------


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("ending", ["finished", "diverged", "raised", "interrupted"])
def test_restore_is_bit_exact(kind, ending):
    model, data = tiny_cnn(), images()
    opt = optimizer_with_history(model, kind, data)
    np.random.seed(5), random.seed(5), torch.manual_seed(5)
    before = capture(model, opt)
    bn_moved = []  # BN running stats really change during the sweep, so restoring them matters
    model.bn.register_forward_hook(lambda m, *_: bn_moved.append(
        not torch.equal(m.running_var, before["buffers"]["bn.running_var"])))
    kwargs = dict(optimizer=opt, batch_size=8, num_iter=20, start_lr=1e-5)
    if ending == "finished":
        result = lr_find(model, data, end_lr=1e-2, **kwargs)
        assert result.endings == ["finished"] and result.lrs.size == 20
    elif ending == "diverged":
        result = lr_find(model, data, end_lr=1e6, **kwargs)
        assert result.endings == ["diverged"] and result.lrs.size < 20
    elif ending == "raised":
        crit = FailAt(6, RuntimeError("boom at step 6"), model, before)
        with pytest.raises(RuntimeError, match="boom at step 6"):
            lr_find(model, data, criterion=crit, end_lr=1.0, **kwargs)
        assert crit.changed
    else:
        crit = FailAt(6, KeyboardInterrupt(), model, before)
        result = lr_find(model, data, criterion=crit, end_lr=1.0, **kwargs)
        assert crit.changed and result.interrupted and result.endings == ["interrupted"]
        assert result.lrs.size == 5 and not result.reliable  # steps 1-5 recorded
        assert any("interrupted" in n for n in result.notes)
    if ending != "raised":
        assert isinstance(result, LRFindResult)
    assert_restored(before, model, opt)
    assert any(bn_moved)


def test_restore_with_frozen_layers_and_eval_modules():
    model, data = tiny_cnn(), images()
    model.conv.requires_grad_(False)
    model.bn.eval()  # a frozen-statistics BN inside a training model must stay in eval
    opt = optimizer_with_history(model, "adam", data)
    before = capture(model, opt)
    result = lr_find(model, data, optimizer=opt, batch_size=8, num_iter=15, end_lr=1.0)
    assert_restored(before, model, opt)
    assert not model.conv.weight.requires_grad and not model.bn.training and model.training
    trainable = sum(p.numel() * 4 for p in model.parameters() if p.requires_grad)
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    state = sum(v.numel() * v.element_size() for s in opt.state.values() for v in s.values())
    assert result.snapshot_bytes == trainable + buffers + state  # no copy of the frozen conv


def test_model_in_eval_mode_is_trained_in_train_mode_and_put_back():
    model, data = tiny_cnn(), images()
    model.eval()
    bn_seen = []
    model.bn.register_forward_pre_hook(lambda m, _: bn_seen.append(m.training))
    lr_find(model, data, optimizer="sgd", batch_size=8, num_iter=4)
    assert bn_seen == [True] * 4 and not any(m.training for m in model.modules())


def test_tensor_lr_is_restored_in_place():
    model, data = tiny_cnn(), images()
    lr = torch.tensor(0.01)
    opt = torch.optim.Adam(model.parameters(), lr=lr, foreach=False)
    result = lr_find(model, data, optimizer=opt, batch_size=8, num_iter=6, end_lr=1.0)
    assert opt.param_groups[0]["lr"] is lr and lr.item() == pytest.approx(0.01)
    assert result.group_lrs["group0"][-1] == pytest.approx(1.0)


def test_bad_arguments_fail_before_anything_changes():
    model, data = tiny_cnn(), images()
    opt = optimizer_with_history(model, "sgd", data)
    before = capture(model, opt)
    with pytest.raises(ValueError, match="start_lr < end_lr"):
        lr_find(model, data, optimizer=opt, start_lr=1.0, end_lr=1e-3)
    with pytest.raises(ValueError, match="'exp' or 'linear'"):
        lr_find(model, data, optimizer=opt, step_mode="cubic")
    with pytest.raises(ValueError, match="adamw"):  # fit's builder and error (ValueError)
        lr_find(model, data, optimizer="lion")
    with pytest.raises(KeyError, match=r"\['body', 'head'\]"):
        lr_find(model, data, optimizer=opt, group="backbone")
    with pytest.raises(KeyError, match="choose from"):
        lr_find(model, data, optimizer=opt, rules=["valey"])
    assert_restored(before, model, opt, grads_cleared=False)


# ---- parameter groups --------------------------------------------------------------------


class SpySGD(torch.optim.SGD):
    """Records the LR of every group at each step (what was really applied)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.applied = []

    def step(self, closure=None):
        self.applied.append({g["name"]: g["lr"] for g in self.param_groups})
        return super().step(closure)


def test_sweep_keeps_group_ratios():
    model, data = tiny_cnn(), images()
    opt = SpySGD(groups(model, body_lr=1e-3, head_lr=1e-2), momentum=0.9)
    result = lr_find(model, data, optimizer=opt, start_lr=1e-6, end_lr=1e-1, num_iter=10,
                     batch_size=8, diverge_factor=None)
    head = np.array([a["head"] for a in opt.applied])
    body = np.array([a["body"] for a in opt.applied])
    expected = 1e-6 * (1e-1 / 1e-6) ** (np.arange(10) / 9)  # closed form, ends included
    np.testing.assert_allclose(head, expected, rtol=1e-12)
    np.testing.assert_allclose(body / head, 0.1, rtol=1e-12)
    np.testing.assert_array_equal(result.group_lrs["head"], head)
    np.testing.assert_array_equal(result.group_lrs["body"], body)
    np.testing.assert_array_equal(result.lrs, head)
    assert result.settings.reference_group == "head"
    assert result.lrs_for(1e-3) == pytest.approx({"body": 1e-4, "head": 1e-3})
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 1e-2]


@pytest.mark.parametrize("group, swept, fixed, fixed_lr", [
    ("head", "head", "body", 1e-3), (0, "body", "head", 1e-2)])
def test_single_group_sweep_keeps_the_others_fixed(group, swept, fixed, fixed_lr):
    model, data = tiny_cnn(), images()
    opt = SpySGD(groups(model), momentum=0.9)
    result = lr_find(model, data, optimizer=opt, group=group, start_lr=1e-5, end_lr=1.0,
                     num_iter=8, batch_size=8, diverge_factor=None)
    assert [a[fixed] for a in opt.applied] == [fixed_lr] * 8
    np.testing.assert_allclose([a[swept] for a in opt.applied], sweep_lrs(1e-5, 1.0, 8), rtol=1e-12)
    assert result.lrs_for(0.5) == {swept: 0.5, fixed: fixed_lr}


def test_string_optimizer_over_param_groups_keeps_ratios():
    model, data = tiny_cnn(), images()
    user_groups = groups(model, 1e-4, 1e-2)
    result = lr_find(model, data, optimizer="adam", param_groups=user_groups, num_iter=6,
                     start_lr=1e-4, end_lr=1e-1, batch_size=8)
    np.testing.assert_allclose(result.group_lrs["body"] / result.group_lrs["head"], 0.01)
    assert set(user_groups[0]) == {"params", "lr", "initial_lr", "name"}  # user dicts untouched


# ---- data ----------------------------------------------------------------------------------


class CountingDataset(Dataset):
    def __init__(self, base):
        self.base, self.reads = base, 0

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        self.reads += 1
        return self.base[i]


@pytest.mark.parametrize("as_loader", [False, True])
def test_short_loader_is_cycled(as_loader):
    data = CountingDataset(images(16))
    source = DataLoader(data, batch_size=8, shuffle=True) if as_loader else data
    result = lr_find(tiny_cnn(), source, optimizer="sgd", batch_size=8, num_iter=7,
                     end_lr=1e-2, diverge_factor=None)
    assert result.endings == ["finished"] and result.lrs.size == 7
    assert data.reads == 7 * 8  # 2 batches per pass, 3.5 passes


def test_empty_data_raises_and_restores():
    model = tiny_cnn()
    opt = optimizer_with_history(model, "sgd", images())
    before = capture(model, opt)
    with pytest.raises(ValueError, match="no batches"):
        lr_find(model, images(0), optimizer=opt)
    with pytest.raises(ValueError, match="no batches"):
        lr_find(model, DataLoader(images(0), batch_size=8), optimizer=opt)
    assert_restored(before, model, opt)


def test_user_loader_generator_is_restored():
    gen = torch.Generator().manual_seed(3)
    loader = DataLoader(images(32), batch_size=8, shuffle=True, generator=gen)
    state = gen.get_state().clone()
    lr_find(tiny_cnn(), loader, optimizer="sgd", num_iter=5, seeds=2)
    assert torch.equal(gen.get_state(), state)


# ---- reference loop: schedule, losses, smoothing, early stop, validation mode ----------------


def reference_sweep(model, batches, lrs, val=None):
    """Hand-written range test: plain SGD, one batch per step, no smoothing."""
    model = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=lrs[0])
    losses, val_losses = [], []
    for i, lr in enumerate(lrs):
        opt.param_groups[0]["lr"] = lr
        x, y = batches[i % len(batches)]
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if val is not None:
            with torch.no_grad():
                val_losses.append(nn.functional.cross_entropy(model(val[0]), val[1]).item())
    return losses, val_losses


def linear_problem(n=12):
    g = torch.Generator().manual_seed(7)
    X = torch.randn(n, 4, generator=g)
    return TensorDataset(X, (X[:, 0] > 0).long())


@pytest.mark.parametrize("step_mode", ["exp", "linear"])
def test_matches_hand_written_loop(step_mode):
    torch.manual_seed(0)
    model, data = nn.Linear(4, 2), linear_problem()
    val = linear_problem(10)[:]
    loader = DataLoader(data, batch_size=4)  # 3 batches, cycled twice
    lrs = (1e-3 * (1.0 / 1e-3) ** (np.arange(6) / 5) if step_mode == "exp"
           else np.linspace(1e-3, 1.0, 6))
    ref_train, ref_val = reference_sweep(model, list(loader), lrs, val)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    result = lr_find(model, loader, optimizer=opt, start_lr=1e-3, end_lr=1.0, num_iter=6,
                     step_mode=step_mode, diverge_factor=None, val_data=TensorDataset(*val),
                     batch_size=4)
    np.testing.assert_allclose(result.lrs, lrs, rtol=1e-12)
    np.testing.assert_allclose(result.train_losses[0], ref_train, rtol=1e-6)
    np.testing.assert_allclose(result.losses[0], ref_val, rtol=1e-5)
    assert result.settings.mode == "val"
    # bias-corrected EMA in closed form: sum_k (1-b) b^(t-k) x_k / (1 - b^t)
    b, x = 0.98, np.asarray(ref_val)
    closed = [sum((1 - b) * b ** (t - k) * x[k - 1] for k in range(1, t + 1)) / (1 - b**t)
              for t in range(1, 7)]
    np.testing.assert_allclose(result.smoothed[0], closed, rtol=1e-5)
    np.testing.assert_allclose(smooth_losses(x, b), closed, rtol=1e-12)


def test_early_stop_when_smoothed_loss_exceeds_factor_times_best():
    result = lr_find(tiny_cnn(), images(), optimizer="sgd", start_lr=1e-3, end_lr=1e8,
                     num_iter=60, batch_size=8, beta=0.5)
    s = result.smoothed[0]
    assert result.endings == ["diverged"] and s.size < 60
    best = np.minimum.accumulate(s)
    assert (s[-1] > 4 * best[-2]) or not np.isfinite(s[-1])
    assert np.all(s[:-1] <= 4 * best[:-1])


def test_too_short_sweep_gives_reasons_not_a_crash():
    result = lr_find(tiny_cnn(), images(), optimizer="sgd", num_iter=3, batch_size=8)
    assert all(not s.ok and s.reason for s in result.suggestions.values())
    assert not result.reliable and result.suggestion is None
    assert "empty curve" in result.suggestions["valley"].reason


# ---- seeds ---------------------------------------------------------------------------------


def test_seeds_repeat_from_the_same_start_with_other_batch_orders():
    model, data = tiny_cnn(), images()
    opt = optimizer_with_history(model, "sgd", data)
    before = capture(model, opt)
    kwargs = dict(optimizer=opt, batch_size=8, num_iter=12, end_lr=1.0, diverge_factor=None)
    three = lr_find(model, data, seeds=3, seed=0, **kwargs)
    assert three.losses.shape == (3, 12) and len(three.seed_suggestions) == 3
    assert not np.array_equal(three.losses[0], three.losses[1])
    one = lr_find(model, data, seeds=1, seed=1, **kwargs)
    np.testing.assert_array_equal(one.losses[0], three.losses[1])  # repeat k == fresh run, seed k
    again = lr_find(model, data, seeds=3, seed=0, **kwargs)
    np.testing.assert_array_equal(again.losses, three.losses)
    np.testing.assert_array_equal(three.curve_losses, np.median(three.smoothed, axis=0)[1:-5])
    assert_restored(before, model, opt)
    frame = three.to_frame()
    assert len(frame) == 36 and {"lr/body", "lr/head", "smoothed"} <= set(frame.columns)


def test_unreliable_when_seeds_or_rules_disagree():
    result = lr_find(tiny_cnn(), images(), optimizer="adam", seeds=2, batch_size=8, num_iter=40)
    assert result.reliable == (result.notes == [])
    if not result.reliable:
        assert any("decades" in n for n in result.notes)
    table = result.summary()
    assert list(table.index) == ["valley", "slide", "minimum", "steep", "gradient"]


# ---- snapshot lives on the CPU ------------------------------------------------------------


def test_snapshot_is_one_cpu_copy():
    model, data = tiny_cnn(), images()
    opt = optimizer_with_history(model, "adam", data)
    snap = StateSnapshot(model, opt)
    assert all(t.device.type == "cpu" for t in snap.tensors())
    params = {id(p): p for p in model.parameters()}
    copied = list(snap.tensors())
    assert all(all(c.data_ptr() != p.data_ptr() for p in params.values()) for c in copied)
    expected = (sum(p.numel() * 4 for p in model.parameters())
                + sum(b.numel() * b.element_size() for b in model.buffers())
                + sum(v.numel() * v.element_size() for s in opt.state.values() for v in s.values()))
    assert snap.nbytes == expected
    result = lr_find(model, data, optimizer=opt, num_iter=5, batch_size=8)
    assert result.snapshot_bytes == expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_model_snapshot_on_cpu_and_restore_exact():
    model, data = tiny_cnn().cuda(), images()
    opt = torch.optim.Adam(groups(model))
    x, y = data[:8]
    nn.functional.cross_entropy(model(x.cuda()), y.cuda()).backward()
    opt.step()
    snap = StateSnapshot(model, opt)
    assert all(t.device.type == "cpu" for t in snap.tensors())
    opt.zero_grad(set_to_none=True)
    before = capture(model, opt)
    cuda_rng = torch.cuda.get_rng_state_all()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    result = lr_find(model, data, optimizer=opt, device="cuda", num_iter=10, batch_size=8)
    assert result.settings.device.startswith("cuda")
    assert_restored(before, model, opt)
    assert all(torch.equal(a, b) for a, b in zip(cuda_rng, torch.cuda.get_rng_state_all()))
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    assert torch.cuda.memory_allocated() == base
    assert torch.cuda.max_memory_allocated() - base < 50 * weights + 2**20  # activations only


# ---- plot and widget ----------------------------------------------------------------------


def test_plot_marks_every_rule_and_group_axis():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ftkit.viz.plots import plot_lr_find

    model, data = tiny_cnn(), images()
    result = lr_find(model, data, optimizer=SpySGD(groups(model), momentum=0.9), seeds=2,
                     num_iter=30, batch_size=8)
    ax = plot_lr_find(result)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    for name, s in result.suggestions.items():
        assert any(label.startswith(f"{name}: {s.lr:.2e}") for label in labels) == s.ok
        if s.ok:  # the marker sits at the LR the rule returns (minimum: a tenth of the loss minimum)
            (dot,) = [ln for ln in ax.get_lines() if ln.get_label().startswith(f"{name}: {s.lr:.2e}")]
            assert dot.get_xdata()[0] == s.lr
    assert "min-max over 2 seeds" in labels and ax.get_xscale() == "log"
    assert ax.child_axes, "secondary x axis for the body group"
    plt.close("all")


@pytest.mark.parametrize("case", ["too short", "linear, interrupted"])
def test_plot_handles_unusable_and_partial_results(case):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ftkit.viz.plots import plot_lr_find

    model, data = tiny_cnn(), images()
    if case == "too short":
        result = lr_find(model, data, optimizer="sgd", num_iter=3, batch_size=8)
    else:
        crit = FailAt(9, KeyboardInterrupt(), model, capture(model, optimizer_with_history(
            model, "sgd", data)))
        result = lr_find(model, data, optimizer="sgd", criterion=crit, num_iter=20,
                         step_mode="linear", start_lr=1e-3, end_lr=1.0, batch_size=8)
    fig, ax = plt.subplots()
    assert plot_lr_find(result, ax=ax) is ax
    assert ax.get_xscale() == ("log" if case == "too short" else "linear")
    assert "unreliable" in ax.get_title()
    plt.close(fig)


def test_widget_runs_without_a_kernel():
    from ftkit.viz.widgets import lr_finder_widget

    model, data = tiny_cnn(), images()
    opt = optimizer_with_history(model, "sgd", data)
    before = capture(model, opt)
    w = lr_finder_widget(model, data, optimizer=opt, num_iter=20, batch_size=8)
    assert [v for _, v in w.controls["group"].options][1:] == ["body", "head"]
    assert w.settings()["group"] is None and w.controls["group"].label == "all groups (keep ratios)"  # not blank
    w.controls["group"].value = "head"
    w.controls["seeds"].value = 2
    result = w.run()
    assert w.result is result and result.settings.group == "head" and result.losses.shape[0] == 2
    assert w.image.value[:8] == b"\x89PNG\r\n\x1a\n" and "valley" in w.table.value
    assert_restored(before, model, opt)
    w.controls["start_lr"].value, w.controls["end_lr"].value = 1e-1, 1e-3
    w._on_click(w.button)  # the button's callback shows errors instead of losing them
    assert "error" in w.status.value and "start_lr" in w.status.value


def test_widget_with_a_factory_builds_a_fresh_model_per_run():
    from ftkit.viz.widgets import lr_finder_widget

    built = []

    def factory():
        model = tiny_cnn()
        built.append(model)
        return model, torch.optim.SGD(groups(model), momentum=0.9)

    w = lr_finder_widget(factory, images(), num_iter=10, batch_size=8)
    w.run()
    w.run()
    assert len(built) == 2 and built[0] is not built[1]
    assert [v for _, v in w.controls["group"].options][1:] == ["body", "head"]
    assert w.settings()["group"] is None


def test_attached_scheduler_and_optimizer_flags_are_untouched():
    model, data = tiny_cnn(), images()
    opt = optimizer_with_history(model, "sgd", data)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)  # wraps opt.step
    flags = {k: v for k, v in vars(opt).items() if isinstance(v, (bool, int, float, str))}
    sched_state, before = copy.deepcopy(sched.state_dict()), capture(model, opt)
    lr_find(model, data, optimizer=opt, num_iter=6, batch_size=8)
    assert sched.state_dict() == sched_state and sched.get_last_lr() == [1e-3, 1e-2]
    assert not hasattr(opt, "_opt_called")  # set by the sweep's steps, then removed
    assert {k: v for k, v in vars(opt).items() if isinstance(v, (bool, int, float, str))} == flags
    assert_restored(before, model, opt)


def test_unshuffled_loader_with_seeds_says_so():
    loader = DataLoader(images(32), batch_size=8, shuffle=False)
    result = lr_find(tiny_cnn(), loader, optimizer="sgd", num_iter=5, seeds=2)
    assert any("not shuffled" in n for n in result.notes)


# ---- one implementation, shared with ftkit.training.loop / optim / runtime ------------------------


def test_param_groups_of_another_model_are_rejected_as_in_fit():
    """They trained nothing and still gave a confident suggestion; now fit's builder rejects them."""
    from ftkit.training.loop import fit

    a, b, data = tiny_cnn(), tiny_cnn(), images()
    before = capture(b, torch.optim.SGD(b.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="not in this model") as from_lr_find:
        lr_find(b, data, optimizer="adam", param_groups=groups(a), num_iter=5, batch_size=8)
    with pytest.raises(ValueError, match="not in this model") as from_fit:
        fit(b, data, optimizer="adam", param_groups=groups(a), max_steps=1, progress=False, device="cpu")
    assert str(from_lr_find.value) == str(from_fit.value)
    assert_same_tensors(before["params"], capture(b, torch.optim.SGD(b.parameters(), lr=0.1))["params"])


def test_lr_find_runs_on_fits_loop(monkeypatch):
    """One loop: every sweep step is a ``TrainLoop.train_step`` (fit's), seeded by the one
    helper (``ftkit.core.state.seeded``); validation loss and moving optimizer state are fit's."""
    import ftkit.core.state
    import ftkit.lr.finder as lr_finder
    import ftkit.training.engine
    import ftkit.training.loop
    import ftkit.training.optim

    calls = {"seed": [], "evaluate": 0, "steps": 0}

    def spy(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    real_seeded = ftkit.core.state.seeded
    monkeypatch.setattr(ftkit.training.engine, "seeded",
                        lambda seed, device: (calls["seed"].append((seed, str(device))), real_seeded(seed, device))[1])
    monkeypatch.setattr(lr_finder, "evaluate_loader", spy("evaluate", ftkit.training.engine.evaluate_loader))
    monkeypatch.setattr(ftkit.training.engine.TrainLoop, "train_step",
                        spy("steps", ftkit.training.engine.TrainLoop.train_step))
    assert lr_finder.TrainLoop is ftkit.training.loop.TrainLoop  # fit's loop
    assert lr_finder.optimizer_to is ftkit.training.optim.optimizer_to
    assert lr_finder.build_optimizer is ftkit.training.optim.build_optimizer

    val = images(10, seed=2)
    lr_find(tiny_cnn(), images(), optimizer="sgd", val_data=val, seeds=2, num_iter=4, batch_size=8,
            diverge_factor=None)
    assert calls["seed"] == [(0, "cpu"), (1, "cpu")]  # CPU sweep: CUDA RNGs untouched
    assert calls["steps"] == 2 * 4
    assert calls["evaluate"] == 2 * 4  # the validation loss after each step


def test_widget_group_names_are_unique_as_lr_find_names_them():
    from ftkit.viz.widgets import lr_finder_widget

    model, data = tiny_cnn(), images()
    twins = [{"params": [*model.conv.parameters(), *model.bn.parameters()], "lr": 1e-3, "name": "x"},
             {"params": list(model.fc.parameters()), "lr": 1e-2, "name": "x"}]
    w = lr_finder_widget(model, data, optimizer="sgd", param_groups=twins, num_iter=10, batch_size=8)
    assert [v for _, v in w.controls["group"].options][1:] == ["x", "x_2"]
    w.controls["group"].value = "x_2"
    result = w.run()
    assert result.settings.reference_group == "x_2" and result.settings.group_names == ("x", "x_2")


def test_lr_find_trains_with_fits_precision_and_guard():
    """On fit's loop, amp=True runs the sweep under bf16 autocast (as fit would train), and a
    NaN loss is caught by fit's guard before the step: the sweep ends "diverged" with the
    diverged step recorded as NaN, and the model comes back exactly."""
    model, data = tiny_cnn(), images()
    seen = []
    model.conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    lr_find(model, data, optimizer="sgd", num_iter=4, batch_size=8, amp=True, device="cpu")
    assert seen and set(seen) == {torch.bfloat16}

    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = capture(model, opt)

    calls = []

    def nan_at_3(out, y):
        calls.append(1)
        loss = nn.functional.cross_entropy(out, y)
        return loss * float("nan") if len(calls) == 3 else loss

    result = lr_find(model, data, optimizer=opt, criterion=nan_at_3, num_iter=10, batch_size=8,
                     diverge_factor=None, device="cpu")
    assert result.endings == ["diverged"] and result.lrs.size == 3
    assert np.isnan(result.train_losses[0, 2]) and np.isfinite(result.train_losses[0, :2]).all()
    assert_restored(before, model, opt)


def test_lr_find_takes_the_train_spec_it_is_for():
    """A TrainSpec gives the sweep its optimizer (momentum, weight decay), batch size, device and
    precision; explicit arguments win; the result says what ran."""
    from ftkit.training.spec import TrainSpec

    kw = dict(num_iter=6, diverge_factor=None, device="cpu")
    spec = TrainSpec(optimizer="sgd", momentum=0.5, batch_size=8, lr=123.0)
    by_spec = lr_find(tiny_cnn(), images(), spec=spec, **kw)
    model = tiny_cnn()
    by_args = lr_find(model, images(), optimizer=torch.optim.SGD(model.parameters(), lr=1e-7, momentum=0.5),
                      batch_size=8, **kw)
    np.testing.assert_array_equal(by_spec.train_losses, by_args.train_losses)
    assert by_spec.settings.batch_size == 8
    assert lr_find(tiny_cnn(), images(), spec=spec, batch_size=16, **kw).settings.batch_size == 16


def test_channels_last_sweep_gives_the_storage_back(monkeypatch):
    """With channels_last (CUDA + amp), the sweep trains the model in that format, as fit does,
    and hands back the very same storage. Forced on here so that the CPU checks it."""
    import ftkit.lr.finder as lr_finder
    from ftkit.core.runtime import Runtime

    monkeypatch.setattr(lr_finder, "resolve_runtime",
                        lambda dev, amp: Runtime(torch.device("cpu"), amp=False, channels_last=True))
    model, data = tiny_cnn(), images()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = capture(model, opt)
    formats = []
    model.conv.register_forward_pre_hook(
        lambda m, i: formats.append(m.weight.is_contiguous(memory_format=torch.channels_last)))
    lr_find(model, data, optimizer=opt, num_iter=4, batch_size=8, diverge_factor=None)
    assert formats and all(formats)
    assert model.conv.weight.is_contiguous()
    assert_restored(before, model, opt)
