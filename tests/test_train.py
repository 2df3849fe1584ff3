"""Tests for ftkit.training.loop: fit/evaluate against hand-written torch, schedules
against closed forms, weight decay with ftkit param groups, NaN and Ctrl-C handling."""
import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny_task import FAST, Quadrants, TinyNet, assert_same_state, state, tiny
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.utils.data import DataLoader

from ftkit.core.runtime import resolve_runtime
from ftkit.training.callbacks import StopTraining
from ftkit.training.history import History
from ftkit.training.loop import evaluate, evaluate_loader, fit
from ftkit.training.optim import optimizer_to


@pytest.fixture(scope="module")
def data():
    return Quadrants(192, seed=0), Quadrants(96, seed=1)


# ---------------------------------------------------------------- learning, reference, determinism

def test_fit_learns_the_task(data):
    train, val = data
    model = tiny()
    before = evaluate(model, val, device="cpu")
    h = fit(model, train, val, epochs=3, lr=0.1, batch_size=32, **FAST)
    ep = h.epoch_frame()
    assert list(ep["epoch"]) == [1, 2, 3] and list(ep["step"]) == [6, 12, 18]
    assert ep["train_loss"].iloc[-1] < 0.5 * ep["train_loss"].iloc[0]
    assert before["acc"] < 0.45 and ep["val_acc"].iloc[-1] > 0.9
    after = evaluate(model, val, device="cpu")
    assert after["acc"] == pytest.approx(ep["val_acc"].iloc[-1]) and after["n"] == 96
    assert h.stopped_reason is None and not h.interrupted


def test_fit_equals_a_hand_written_loop(data):
    """Same data order, same SGD updates as the plain PyTorch loop, bit for bit."""
    train, _ = data
    model = tiny()
    ref = copy.deepcopy(model)
    h = fit(model, train, epochs=2, lr=0.05, batch_size=32, seed=3, **FAST)

    opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    loader = DataLoader(train, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(3))
    losses = []
    for _ in range(2):
        for x, y in loader:
            loss = F.cross_entropy(ref(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert h.step_frame()["loss"].tolist() == losses
    assert_same_state(state(model), state(ref))


def test_same_seed_same_history_bit_for_bit(data):
    train, val = data
    runs = []
    for _ in range(2):
        model = tiny(dropout=0.3)  # dropout draws random numbers: fit seeds them
        h = fit(model, train, val, epochs=2, lr=0.05, seed=7, eval_every=4, **FAST)
        runs.append((h, state(model)))
    (h1, s1), (h2, s2) = runs
    assert h1.steps == h2.steps
    strip = lambda rows, key: [{k: v for k, v in r.items() if k != key} for r in rows]  # noqa: E731
    assert strip(h1.evals, "elapsed_s") == strip(h2.evals, "elapsed_s")
    assert strip(h1.epochs, "time_s") == strip(h2.epochs, "time_s")
    assert_same_state(s1, s2)
    h3 = fit(tiny(dropout=0.3), train, epochs=1, lr=0.05, seed=8, **FAST)
    assert h3.step_frame()["loss"].tolist() != h1.step_frame()["loss"].tolist()[:6]


def test_fit_leaves_the_global_rng_alone(data):
    torch.manual_seed(123)
    expected = torch.rand(3)
    model = tiny(dropout=0.5)
    torch.manual_seed(123)
    fit(model, data[0], epochs=1, lr=0.01, seed=0, **FAST)
    assert torch.equal(torch.rand(3), expected)


def test_strategies_with_the_same_seed_see_the_same_batches(data):
    train, _ = data
    seen = {}
    for name, opt, frozen in [("sgd", "sgd", False), ("adam_head_only", "adam", True)]:
        model = tiny()
        if frozen:
            model.features.requires_grad_(False)
        batches = []  # a fingerprint of each training batch, in order
        model.register_forward_pre_hook(
            lambda m, args, batches=batches: batches.append(args[0].sum().item()) if m.training else None)
        fit(model, train, epochs=2, optimizer=opt, lr=1e-2, seed=5, **FAST)
        seen[name] = batches
    assert len(seen["sgd"]) == 12 and seen["sgd"] == seen["adam_head_only"]


# ---------------------------------------------------------------- optimizer, groups, schedules

def test_only_trainable_parameters_are_optimised(data):
    model = tiny()
    model.features.requires_grad_(False)
    body = {k: v.detach().clone() for k, v in model.features.named_parameters()}
    head = model.fc.weight.detach().clone()
    fit(model, data[0], epochs=1, lr=0.1, weight_decay=0.1, **FAST)
    assert_same_state(body, dict(model.features.named_parameters()))
    assert not torch.equal(head, model.fc.weight)


def test_nothing_trainable_is_a_clear_error_and_changes_nothing(data):
    model = tiny()
    model.requires_grad_(False)
    before = state(model)
    with pytest.raises(ValueError, match="nothing to train"):
        fit(model, data[0], **FAST)
    assert_same_state(before, state(model))


@pytest.mark.parametrize("kwargs, match", [
    (dict(optimizer="lbfgs"), "sgd"), (dict(schedule="linear"), "cosine"), (dict(epochs=0), "epochs"),
    (dict(amp="yes"), "amp"), (dict(eval_every=0), "eval_every")])
def test_bad_arguments_name_the_choices(data, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit(tiny(), data[0], **FAST, **kwargs)


def test_optimizer_for_another_model_is_rejected(data):
    other = tiny()
    with pytest.raises(ValueError, match="not in this model"):
        fit(tiny(), data[0], optimizer=torch.optim.SGD(other.parameters(), lr=0.1), **FAST)


def _onecycle(t, T, peak, pct=0.3, div=25.0, final_div=1e4):
    """Closed form of torch's OneCycleLR (cos annealing, two phases)."""
    start, low = peak / div, peak / div / final_div
    e1, e2 = pct * T - 1, T - 1
    anneal = lambda a, b, p: b + (a - b) / 2 * (math.cos(math.pi * p) + 1)  # noqa: E731
    return anneal(start, peak, t / e1) if t <= e1 else anneal(peak, low, (t - e1) / (e2 - e1))


CLOSED_FORMS = {
    "constant": lambda t, T, lr: lr,
    "step": lambda t, T, lr: lr * 0.1 ** (t // math.ceil(T / 3)),
    "cosine": lambda t, T, lr: lr * (1 + math.cos(math.pi * t / T)) / 2,
    "onecycle": lambda t, T, lr: _onecycle(t, T, lr),
}


@pytest.mark.parametrize("schedule", list(CLOSED_FORMS))
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_schedules_match_closed_forms_and_keep_group_ratios(data, schedule, optimizer):
    model = tiny()
    groups = [{"params": model.features.parameters(), "lr": 0.01, "name": "body"},
              {"params": model.fc.parameters(), "lr": 0.1, "name": "head"}]
    T = 10  # 10 steps over 4-batch epochs: the schedule spans epochs, not one epoch
    h = fit(model, data[0], lr=123.0, param_groups=groups, optimizer=optimizer, schedule=schedule,
            max_steps=T, batch_size=48, **FAST)
    steps = h.step_frame()
    assert list(steps.columns) == ["step", "epoch", "loss", "lr/body", "lr/head"]
    assert steps["step"].tolist() == list(range(1, T + 1))
    assert steps["epoch"].tolist() == [1] * 4 + [2] * 4 + [3] * 2
    for name, base in [("body", 0.01), ("head", 0.1)]:
        expected = [CLOSED_FORMS[schedule](t, T, base) for t in range(T)]
        np.testing.assert_allclose(steps[f"lr/{name}"], expected, rtol=1e-9, atol=0)
    np.testing.assert_allclose(steps["lr/head"] / steps["lr/body"], 10.0, rtol=1e-12)
    if schedule != "constant":
        assert steps["lr/head"].iloc[-1] < 0.5 * steps["lr/head"].max()


def test_with_ftkit_groups_and_freeze(data):
    """Discriminative LRs from ftkit.lr.groups survive a cosine schedule; frozen BN stays frozen."""
    import ftkit.lr.groups as groups_mod
    import ftkit.models.freeze as freeze_mod

    model = tiny()
    groups = groups_mod.param_groups(model, 0.1, decay=2.6)
    h = fit(model, data[0], param_groups=groups, schedule="cosine", max_steps=6, **FAST)
    steps = h.step_frame()
    np.testing.assert_allclose(steps["lr/head"] / steps["lr/features"], 2.6, rtol=1e-12)

    model = tiny()
    freeze_mod.freeze(model, all_but_head=True)
    body = state(model.features)
    fit(model, data[0], epochs=1, lr=0.1, **FAST)
    assert_same_state(body, state(model.features))  # weights and running stats


HAND_WRITTEN = {"sgd": lambda groups, wd: torch.optim.SGD(groups, lr=0.05, momentum=0.9, weight_decay=wd),
                "adamw": lambda groups, wd: torch.optim.AdamW(groups, lr=0.05, weight_decay=wd)}


@pytest.mark.parametrize("optimizer", list(HAND_WRITTEN))
def test_fit_weight_decay_reaches_ftkit_param_groups(data, optimizer):
    """param_groups(model, lr) leaves weight_decay to the optimizer, so fit's 1e-2 applies to every
    group: the optimizer fit builds says so, and the weights match a hand-written loop bit for bit."""
    import ftkit.lr.groups as lr_groups

    train, _ = data
    model = tiny()
    ref = copy.deepcopy(model)
    seen = []  # weight_decay of each group, as the optimizer fit built has it, at every step
    hook = register_optimizer_step_pre_hook(
        lambda opt, args, kwargs: seen.append([g["weight_decay"] for g in opt.param_groups]))
    try:
        fit(model, train, param_groups=lr_groups.param_groups(model, 0.05), weight_decay=1e-2,
            optimizer=optimizer, max_steps=4, seed=3, **FAST)
    finally:
        hook.remove()
    assert seen == [[1e-2, 1e-2]] * 4  # groups "features" and "head"

    opt = HAND_WRITTEN[optimizer](lr_groups.param_groups(ref, 0.05), 1e-2)
    loader = DataLoader(train, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(3))
    for _, (x, y) in zip(range(4), loader):
        loss = F.cross_entropy(ref(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert_same_state(state(model), state(ref))


def test_max_steps_runs_exactly_that_many_steps(data):
    h = fit(tiny(), data[0], data[1], epochs=1, max_steps=9, batch_size=64, lr=0.01, **FAST)
    assert len(h.steps) == 9
    assert h.epoch_frame()[["epoch", "step"]].values.tolist() == [[1, 3], [2, 6], [3, 9]]
    assert h.config["total_steps"] == 9


def test_eval_every_and_epoch_end_evaluations(data):
    train, val = data
    h = fit(tiny(), train, val, epochs=2, eval_every=4, lr=0.05, **FAST)  # 6 steps per epoch
    ev = h.eval_frame()
    assert ev["step"].tolist() == [4, 6, 8, 12]  # step 12 is both: evaluated once
    assert ev["epoch"].tolist() == [1, 1, 2, 2]
    assert (ev["elapsed_s"].diff().dropna() >= 0).all()
    assert h.epoch_frame()["val_acc"].tolist() == ev.loc[ev["step"].isin([6, 12]), "val_acc"].tolist()
    assert json.loads(json.dumps(h.to_dict())) == h.to_dict()
    assert History.from_dict(h.to_dict()).steps == h.steps


def test_frames_have_their_columns_when_empty():
    h = History()
    assert list(h.eval_frame().columns) == ["step", "epoch", "val_loss", "val_acc", "elapsed_s"]
    assert list(h.epoch_frame().columns) == ["epoch", "step", "train_loss", "train_acc", "val_loss",
                                            "val_acc", "time_s"]
    assert list(h.step_frame().columns) == ["step", "epoch", "loss"]


# ---------------------------------------------------------------- modes

def test_modes_are_restored_and_pinned_eval_modules_stay_in_eval(data):
    model = tiny()
    bn = model.features[1]
    bn.eval()  # "frozen" BatchNorm inside a model in train mode
    stats = {k: v.clone() for k, v in bn.named_buffers()}
    seen = []
    bn.register_forward_hook(lambda m, i, o: seen.append(m.training))
    fit(model, data[0], data[1], epochs=1, lr=0.05, **FAST)
    assert seen and not any(seen)
    assert_same_state(stats, dict(bn.named_buffers()))  # running stats did not move
    assert model.training and not bn.training

    model.eval()
    fit(model, data[0], epochs=1, lr=0.05, **FAST)
    assert not any(m.training for m in model.modules())


def test_evaluate_matches_hand_written_and_restores_mode(data):
    model = tiny()
    model.train()
    res = evaluate(model, data[1], batch_size=40, device="cpu")
    model.eval()
    with torch.no_grad():
        logits = model(data[1].x)
    y = torch.as_tensor(data[1].targets)
    model.train()
    assert res["n"] == 96
    assert res["loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)
    assert res["acc"] == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert all(m.training for m in model.modules())


def test_evaluate_default_batch_on_cpu_gives_the_same_numbers(data):
    from ftkit.training.loop import EVAL_BATCH_CPU

    model = tiny()
    default, whole = evaluate(model, data[1], device="cpu"), evaluate(model, data[1], batch_size=96, device="cpu")
    assert EVAL_BATCH_CPU < len(data[1])  # more than one batch, so the averaging over batches is exercised
    assert default["n"] == whole["n"] == 96 and default["acc"] == whole["acc"]
    assert default["loss"] == pytest.approx(whole["loss"], rel=1e-6)


# ---------------------------------------------------------------- NaN, Ctrl-C, callbacks

class Recorder:
    """Keeps a copy of the model's state after every completed step."""

    def __init__(self, model, stop_at=None, exc=KeyboardInterrupt):
        self.model, self.stop_at, self.exc, self.states = model, stop_at, exc, {}

    def on_step(self, history, row):
        self.states[row["step"]] = state(self.model)
        if row["step"] == self.stop_at:
            raise self.exc("stop here")


def test_huge_lr_stops_with_warning_at_last_good_weights(data):
    model = tiny(bn=False)
    rec = Recorder(model)
    with pytest.warns(RuntimeWarning, match="fit\\(\\) stopped"):
        h = fit(model, data[0], data[1], epochs=3, lr=1e20, callbacks=[rec], **FAST)
    assert any(w in h.stopped_reason for w in ("loss became", "non-finite", "exploded", "validation loss"))
    assert not h.interrupted
    n = len(h.steps)
    assert 1 <= n < 18
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert_same_state(rec.states[n], state(model))
    assert h.epochs[-1]["step"] == n and h.evals[-1]["step"] == n  # partial epoch closed and evaluated


class InfGrad(torch.autograd.Function):
    """Identity forward; from the k-th backward on, the gradient is inf (the loss stays finite)."""

    calls = 0

    @staticmethod
    def forward(ctx, x, k):
        ctx.k = k
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        InfGrad.calls += 1
        return (grad * math.inf if InfGrad.calls >= ctx.k else grad), None


class InfGradNet(TinyNet):
    def forward(self, x):
        return self.fc(InfGrad.apply(self.features(x).flatten(1), 3))


def test_step_that_makes_weights_infinite_is_rolled_back(data):
    torch.manual_seed(0)
    model = InfGradNet()
    rec = Recorder(model)
    InfGrad.calls = 0
    with pytest.warns(RuntimeWarning, match="non-finite in step 3"):
        h = fit(model, data[0], epochs=1, lr=0.05, callbacks=[rec], **FAST)
    assert len(h.steps) == 2 and "non-finite" in h.stopped_reason
    assert_same_state(rec.states[2], state(model))


def test_an_error_inside_a_step_leaves_the_last_completed_weights(data):
    model = tiny()
    rec = Recorder(model)

    class Boom:
        def on_step(self, history, row):
            if row["step"] == 2:
                for g in opt.param_groups:
                    g["lr"] = 1e39  # overflows float32 inside SGD's update: torch raises mid-step

    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with pytest.raises(RuntimeError, match="overflow"):
        fit(model, data[0], epochs=1, optimizer=opt, callbacks=[rec, Boom()], **FAST)
    assert_same_state(rec.states[2], state(model))


def test_bf16_autocast_path_runs_on_cpu(data):
    h = fit(tiny(), data[0], data[1], epochs=2, lr=0.1, amp=True, **FAST)
    assert h.config["amp"] is True and h.stopped_reason is None
    assert h.epochs[-1]["train_loss"] < h.epochs[0]["train_loss"]


class Poison(nn.Module):
    """Turns the input into inf on the k-th training forward pass (before BatchNorm sees it)."""

    def __init__(self, k):
        super().__init__()
        self.k, self.calls = k, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls == self.k:
                return x * math.inf
        return x


def test_injected_inf_restores_params_and_batchnorm_stats(data):
    model = tiny()
    model.features.insert(0, Poison(k=5))
    rec = Recorder(model)
    with pytest.warns(RuntimeWarning, match="step 5"):
        h = fit(model, data[0], epochs=2, lr=0.05, callbacks=[rec], **FAST)
    assert len(h.steps) == 4 and "loss became" in h.stopped_reason
    assert_same_state(rec.states[4], state(model))  # incl. running_mean/var polluted by the bad forward


def test_keyboard_interrupt_returns_history_at_step_n(data):
    model = tiny()
    model.train()
    rec = Recorder(model, stop_at=3)
    h = fit(model, data[0], data[1], epochs=2, lr=0.05, callbacks=[rec], **FAST)
    assert h.interrupted and "KeyboardInterrupt" in h.stopped_reason
    assert len(h.steps) == 3 and h.steps[-1]["step"] == 3
    assert_same_state(rec.states[3], state(model))
    assert all(m.training for m in model.modules())


def test_stop_training_from_a_callback_closes_the_epoch(data):
    model = tiny()
    h = fit(model, data[0], data[1], epochs=2, lr=0.05, callbacks=[Recorder(model, stop_at=2, exc=StopTraining)],
            **FAST)
    assert not h.interrupted and "callback" in h.stopped_reason
    assert len(h.steps) == 2 and h.epochs[-1]["step"] == 2 and h.evals[-1]["step"] == 2


# ---------------------------------------------------------------- reusing an optimizer, config, RNGs


@pytest.mark.parametrize("schedule", ["cosine", "onecycle", "step"])
def test_a_reused_optimizer_starts_the_next_fit_from_its_lrs(data, schedule):
    """Gradual unfreezing reuses one optimizer: after fit(schedule="cosine") its lr was 0.0, and the
    next fit never moved a weight. fit hands the groups back as they came (lr, momentum, keys)."""
    model = tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    settings = copy.deepcopy([{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups])
    h1 = fit(model, data[0], optimizer=opt, schedule=schedule, max_steps=6, **FAST)
    assert [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups] == settings
    before = state(model)
    h2 = fit(model, data[0], optimizer=opt, schedule=schedule, max_steps=6, seed=1, **FAST)
    assert h2.step_frame()["lr/group0"].tolist() == h1.step_frame()["lr/group0"].tolist()
    assert not torch.equal(before["fc.weight"], model.fc.weight)


def test_a_group_at_lr_zero_is_a_warning(data):
    model = tiny()
    opt = torch.optim.SGD([{"params": model.features.parameters(), "lr": 0.0, "name": "body"},
                           {"params": model.fc.parameters(), "name": "head"}], lr=0.05)
    with pytest.warns(RuntimeWarning, match=r"\['body'\] have lr 0"):
        fit(model, data[0], optimizer=opt, max_steps=1, **FAST)


def test_config_records_each_groups_lr(data):
    model = tiny()
    groups = [{"params": model.features.parameters(), "lr": 0.01, "name": "body"},
              {"params": model.fc.parameters(), "lr": 0.1, "name": "head"}]
    h = fit(model, data[0], lr=123.0, param_groups=groups, schedule="onecycle", max_steps=2, **FAST)
    assert h.config["lr"] is None and h.config["group_lrs"] == {"body": 0.01, "head": 0.1}
    partly = [{"params": model.features.parameters(), "lr": 0.01}, {"params": model.fc.parameters()}]
    h = fit(model, data[0], lr=0.05, param_groups=partly, max_steps=1, **FAST)
    assert h.config["lr"] == 0.05 and h.config["group_lrs"] == {"group0": 0.01, "group1": 0.05}
    h = fit(model, data[0], lr=0.05, max_steps=1, **FAST)
    assert h.config["lr"] == 0.05 and h.config["group_lrs"] == {"all": 0.05}
    h = fit(model, data[0], optimizer=torch.optim.SGD(model.parameters(), lr=0.2), max_steps=1, **FAST)
    assert h.config["lr"] is None and h.config["group_lrs"] == {"group0": 0.2}
    assert json.loads(json.dumps(h.to_dict()))["config"]["group_lrs"] == {"group0": 0.2}


def spy_cuda_seeding(monkeypatch) -> list:
    """Records every seeding of a CUDA generator from now on (torch.manual_seed seeds them all,
    lazily when CUDA is not initialised: the caller's CUDA RNG changes, unforked)."""
    calls = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: calls.append(("all", seed)))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: calls.append(("one", seed)))
    return calls


def test_a_cpu_fit_leaves_the_cuda_rngs_alone(data, monkeypatch):
    models = [tiny(dropout=0.5), tiny(dropout=0.5)]
    calls = spy_cuda_seeding(monkeypatch)
    h1, h2 = (fit(m, data[0], max_steps=3, seed=4, **FAST) for m in models)
    assert calls == []
    assert h1.steps == h2.steps  # dropout still seeded


def test_optimizer_to_moves_step_counters_only_when_capturable():
    model = nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    meta = torch.device("meta")
    optimizer_to(opt, meta)  # plain Adam keeps its scalar step on the CPU
    assert all(s["exp_avg"].device == meta and s["step"].device.type == "cpu" for s in opt.state.values())
    opt.param_groups[0]["capturable"] = True  # capturable/fused: step must sit beside the params
    optimizer_to(opt, meta)
    assert all(s["step"].device == meta for s in opt.state.values())


def test_evaluate_loader_with_and_without_a_criterion(data):
    model, val = tiny(), data[1]
    model.train()
    model.features[1].eval()  # a pinned module: its mode comes back too
    rt = resolve_runtime("cpu")
    loader = DataLoader(val, batch_size=40)  # 40 + 40 + 16: a short last batch
    default = evaluate_loader(model, loader, rt)
    reference = evaluate(model, val, device="cpu")  # other batches: same numbers up to rounding
    assert default["acc"] == reference["acc"] and default["n"] == reference["n"] == 96
    assert default["loss"] == pytest.approx(reference["loss"], rel=1e-6)
    mse = lambda out, y: ((out - F.one_hot(y, 4).float()) ** 2).mean()  # noqa: E731
    res = evaluate_loader(model, loader, rt, criterion=mse)
    with torch.no_grad():
        model.eval()
        x, y = next(iter(DataLoader(val, batch_size=len(val))))
        expected = mse(model(x), y).item()
    model.train()
    model.features[1].eval()
    assert res["acc"] is None and res["n"] == 96 and res["loss"] == pytest.approx(expected, rel=1e-6)
    assert model.training and not model.features[1].training and model.fc.training
    with pytest.raises(ValueError, match="no samples"):
        evaluate_loader(model, [], rt)


# ---------------------------------------------------------------- TrainSpec and warm-up

def test_fit_with_a_spec_equals_the_old_keywords(data):
    from ftkit.training.spec import TrainSpec

    kw = dict(optimizer="adam", lr=3e-3, schedule="cosine", batch_size=48, max_steps=6, precise_bn=False)
    a, b, c = tiny(), tiny(), tiny()
    h_kw = fit(a, data[0], data[1], seed=2, **kw, **FAST)
    h_spec = fit(b, data[0], data[1], TrainSpec(**kw), seed=2, **FAST)
    h_over = fit(c, data[0], data[1], TrainSpec(**{**kw, "lr": 1.0}), seed=2, lr=3e-3, **FAST)
    assert h_kw.steps == h_spec.steps == h_over.steps
    assert [r["val_loss"] for r in h_kw.evals] == [r["val_loss"] for r in h_spec.evals]
    assert_same_state(state(a), state(b))
    assert fit(tiny(), data[0], optimizer="SGD", max_steps=1, **FAST).config["optimizer"] == "sgd"
    with pytest.raises(TypeError, match="TrainSpec's fields"):
        fit(tiny(), data[0], learning_rate=0.1, **FAST)
    assert len(fit(tiny(), data[0], None, 2, batch_size=96, **FAST).epochs) == 2  # old positional epochs


@pytest.mark.parametrize("schedule", ["constant", "cosine", "step", "onecycle"])
def test_warmup_is_linear_then_the_schedule_over_the_rest(data, schedule):
    model = tiny()
    groups = [{"params": model.features.parameters(), "lr": 0.01, "name": "body"},
              {"params": model.fc.parameters(), "lr": 0.1, "name": "head"}]
    T, frac = 12, 0.25  # W = 3 warm-up steps, then the schedule over 9
    h = fit(model, data[0], param_groups=groups, optimizer="sgd", schedule=schedule, warmup_frac=frac,
            max_steps=T, batch_size=48, **FAST)
    steps = h.step_frame()
    W = 3
    for name, base in [("body", 0.01), ("head", 0.1)]:
        expected = [base * (t + 1) / W for t in range(W)]
        expected += [CLOSED_FORMS[schedule](t, T - W, base) for t in range(T - W)]
        np.testing.assert_allclose(steps[f"lr/{name}"], expected, rtol=1e-9, atol=0)
    np.testing.assert_allclose(steps["lr/head"] / steps["lr/body"], 10.0, rtol=1e-12)
    assert h.config["warmup_frac"] == frac
    assert all(g["lr"] in (0.01, 0.1) for g in groups)  # dicts untouched; the optimizer's groups are fit's
