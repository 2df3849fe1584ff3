"""ftkit.lab.transfer_lab / tensor_fit / transfer_findings and their plots, at toy sizes."""
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from ftkit.data.shifts import TensorTask, fashion_task, label_permutation  # noqa: E402
from ftkit.lab.tensor_fit import accuracy, fit_tensors  # noqa: E402
from ftkit.lab.transfer_findings import (  # noqa: E402
    lp_ft_findings,
    surgical_findings,
    yosinski_findings,
)
from ftkit.lab.transfer_lab import (  # noqa: E402
    GROUPS,
    LabResult,
    Setting,
    TransferRun,
    _map,
    choose_lrs,
    lp_ft_runs,
    run_transfer,
    surgical_runs,
    surgical_table,
    target_data,
    yosinski_runs,
)
from ftkit.models.smallcnn import SmallCNN, load_source_net  # noqa: E402
from ftkit.viz.transfer_plots import plot_lp_ft, plot_surgical, plot_yosinski  # noqa: E402
from ftkit.viz.transfer_widgets import surgical_widget  # noqa: E402

TINY = Setting(n_per_class=8, val_per_class=4, test_per_class=10, steps=4, batch_size=8, seeds=(0,))


def _task(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorTask(torch.randn(n, 3, 28, 28, generator=g), torch.arange(n) % 5,
                      tuple("abcde"), "noise")


# ---------------------------------------------------------------- the training loop

def test_cached_prefix_trains_exactly_like_the_full_model():
    """Reference: training on cached activations after 2 frozen groups == training the whole
    network with those groups frozen."""
    task = _task()
    torch.manual_seed(0)
    a = SmallCNN(5)
    b = SmallCNN(5)
    b.load_state_dict(a.state_dict())
    train = ("block2", "block3", "head")
    fit_tensors(a, task, lr=1e-2, steps=5, seed=3, batch_size=16, train=train)
    with torch.no_grad():
        cached = replace(task, X=b.eval().prefix(2, task.X))
    fit_tensors(b, cached, lr=1e-2, steps=5, seed=3, batch_size=16, train=train, start=2)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(pa.float(), pb.float(), atol=1e-5), name


def test_frozen_groups_keep_weights_and_batchnorm_statistics():
    task, model = _task(), SmallCNN(5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fit_tensors(model, task, lr=1e-2, steps=3, seed=0, batch_size=16, train=("block2",))
    after = model.state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"block2"}, changed          # running_mean/var of the others too
    assert all(p.requires_grad for p in model.parameters())   # restored afterwards


def test_fit_refuses_bad_settings():
    model, task = SmallCNN(5), _task()
    with pytest.raises(ValueError, match="lr > 0"):
        fit_tensors(model, task, lr=0, steps=1, seed=0)
    with pytest.raises(ValueError, match="train must name"):
        fit_tensors(model, task, lr=1e-3, steps=1, seed=0, train=("layer4",))
    with pytest.raises(ValueError, match="must be frozen"):
        fit_tensors(model, task, lr=1e-3, steps=1, seed=0, train=("stem",), start=1)


def test_head_mult_multiplies_only_the_heads_step():
    task = _task()
    torch.manual_seed(0)
    a, b = SmallCNN(5), SmallCNN(5)
    b.load_state_dict(a.state_dict())
    w0 = a.head.weight.detach().clone()
    fit_tensors(a, task, lr=1e-3, steps=1, seed=0, batch_size=8, train=("head",), head_mult=1.0)
    fit_tensors(b, task, lr=1e-3, steps=1, seed=0, batch_size=8, train=("head",), head_mult=10.0)
    # Adam's first step moves each weight by ~lr: 10x the LR is ~10x the step
    ratio = (b.head.weight.detach() - w0).abs().mean() / (a.head.weight.detach() - w0).abs().mean()
    assert 9.0 < float(ratio) < 11.0


# ---------------------------------------------------------------- runs and data

def test_runs_are_validated():
    with pytest.raises(ValueError, match="copy must be"):
        TransferRun("x", "B", None, 2)
    with pytest.raises(ValueError, match="train names groups"):
        TransferRun("x", "B", "A", 2, train=("fc",))
    with pytest.raises(ValueError, match="Unknown shift"):
        TransferRun("x", "fog", "A", 4)
    with pytest.raises(ValueError, match="probe_steps"):
        TransferRun("x", "B", "A", 4, TINY, probe_steps=TINY.steps)
    with pytest.raises(ValueError, match="positive int"):
        Setting(steps=0)


def test_target_data_splits_and_permutes_consistently():
    train, val, test = target_data("B", TINY, seed=0)
    assert torch.bincount(train.y).tolist() == [8] * 5 and torch.bincount(val.y).tolist() == [4] * 5
    assert len(test) == 50
    # the held-out images are not training images
    flat = lambda t: {tuple(x[0].flatten().tolist()) for x in t.X}  # noqa: E731
    assert not flat(train) & flat(val)
    # output-level: train and test share one permutation of task A's labels
    _, _, ptest = target_data("label_permutation", TINY, seed=1)
    clean = fashion_task("A", "test", n_per_class=10, seed=0)
    assert torch.equal(ptest.y, label_permutation(5, 0)[clean.y])


def test_run_transfer_is_repeatable_and_copies_the_source():
    run = TransferRun("AnB", "B", "A", 4, TINY, train=("head",), n=4)
    a, b = run_transfer(run), run_transfer(run)
    assert a["acc"] == b["acc"] and a["steps"] == TINY.steps == b["steps"]
    untouched = run_transfer(TransferRun("none", "noise", "A", 4, TINY, keep_head=True, train=()))
    assert untouched["steps"] == 0 and 0 <= untouched["acc"] <= 1
    # copied groups are the source's
    from ftkit.lab.transfer_lab import _build
    model = _build(run, 5)
    src = load_source_net("A0").model
    assert torch.equal(model.block3[0].weight, src.block3[0].weight)
    assert not torch.equal(model.head.weight, src.head.weight)


def test_strategy_lists_share_one_budget():
    ys = yosinski_runs(TINY, ns=(1, 4), conditions=("AnB", "BnB", "AnB+", "BnB+"))
    assert [r.strategy for r in ys] == ["baseB", *["AnB", "BnB", "AnB+", "BnB+"] * 2]
    assert {r.source for r in ys} == {None, "A", "B"}
    lp = {r.strategy: r for r in lp_ft_runs(TINY)}
    assert lp["LP"].train == ("head",) and lp["FT"].train is None and lp["LP-FT"].probe_steps == TINY.steps // 2
    surg = surgical_runs(TINY, shifts=("noise", "subpopulation"))
    assert {r.source for r in surg if r.target == "subpopulation"} == {"C"}
    assert [r.strategy for r in surg[:7]] == ["none", "all", *GROUPS] and len(surg) == 14
    with pytest.raises(ValueError, match="n must be"):
        yosinski_runs(TINY, ns=(0,))


def test_lr_rule_picks_the_best_held_out_accuracy_and_never_the_test():
    setting = replace(TINY, lr_grid=(1e-4, 3e-2))
    templates = lp_ft_runs(setting, ood=())[:1]
    lrs, table = choose_lrs(templates, setting)
    assert len(table) == 2 and table.chosen.sum() == 1
    best = table.sort_values(["val_acc", "lr"], ascending=[False, True]).iloc[0]
    assert lrs[templates[0].key] == best.lr
    # the accuracies in the table are validation ones: rerun one and compare
    rerun = run_transfer(replace(templates[0], lr=float(best.lr), split="val", seed=0))
    assert rerun["acc"] == best.val_acc


def test_map_keeps_order_on_an_executor_and_refuses_shared_threads():
    with ThreadPoolExecutor(1) as ex:
        assert _map(lambda x: x * 2, [3, 1, 2], ex) == [6, 2, 4]
    with ThreadPoolExecutor(2) as ex, pytest.raises(ValueError, match="ProcessPoolExecutor"):
        _map(abs, [1], ex)


# ---------------------------------------------------------------- findings and plots (synthetic)

def _result(name, rows):
    return LabResult(name, pd.DataFrame(rows), pd.DataFrame(), TINY, 0.0)


def _yos():
    rows = [dict(target="B", strategy="baseB", n=0, seed=s, acc=0.80) for s in (0, 1)]
    curves = {"AnB": [0.80, 0.78, 0.70], "BnB": [0.80, 0.75, 0.80], "AnB+": [0.82, 0.81, 0.81]}
    for c, vals in curves.items():
        rows += [dict(target="B", strategy=c, n=n, seed=s, acc=v + 0.01 * s)
                 for n, v in zip((1, 2, 3), vals) for s in (0, 1)]
    return _result("yosinski", rows)


def test_yosinski_findings_read_the_three_claims():
    f = yosinski_findings(_yos())
    assert f["ns"] == [1, 2, 3] and f["anb_drop"] == pytest.approx(0.10)
    assert f["bnb_dip"] == pytest.approx(0.05) and f["anb_plus_gain"] > 0
    assert all(f["matched"].values())
    assert f["paper"]["anb_drop"] == pytest.approx(0.628 - 0.543)


def test_lp_ft_and_surgical_findings():
    lp = _result("lp_ft", [dict(strategy=s, acc=i, acc_ood=o) for s, i, o in
                           [("LP", 0.80, 0.60), ("FT", 0.85, 0.50), ("LP-FT", 0.86, 0.62)]])
    f = lp_ft_findings(lp)
    assert f["ft_minus_lp_ood"] == pytest.approx(-0.10) and all(f["matched"].values())
    rows = []
    for target, best in (("noise", "stem"), ("label_permutation", "head")):
        for s in ("none", *GROUPS, "all"):
            rows.append(dict(target=target, strategy=s, n=0, seed=0, acc=0.9 if s == best else 0.5))
    sf = surgical_findings(_result("surgical", rows))
    assert sf["shifts"]["noise"]["best"] == "stem" and sf["shifts"]["noise"]["matched"]
    assert sf["shifts"]["label_permutation"]["matched"]
    table = surgical_table(_result("surgical", rows))
    assert list(table.columns) == ["none", *GROUPS, "all"] and table["all"].abs().max() == 0


def test_plots_return_axes_and_the_widget_runs():
    y = _yos()
    assert plot_yosinski(y.summary()).get_xlabel().startswith("n:")
    lp = pd.DataFrame([dict(strategy=s, acc=0.8, acc_noise=0.5) for s in ("LP", "FT", "LP-FT")])
    assert len(plot_lp_ft(lp, ["noise"]).patches) == 6
    rows = [dict(target="noise", strategy=s, n=0, seed=0, acc=a)
            for s, a in zip(("none", *GROUPS, "all"), np.linspace(0.3, 0.9, 7))]
    res = _result("surgical", rows)
    plot_surgical(surgical_table(res), highlight=("noise (input)", "stem"))
    calls = []
    w = surgical_widget(lambda shift: calls.append(shift) or res, shift="noise", block="head")
    out = w.run()
    assert calls == ["noise"] and out["best"] == "head" and out["all"] == pytest.approx(0.9)
    w.run()
    assert calls == ["noise"]          # computed once, then remembered
    assert w.image.value[:4] == b"\x89PNG"


def test_accuracy_counts_correct_predictions():
    model = SmallCNN(5).eval()
    task = _task(20)
    with torch.no_grad():
        pred = model(task.X).argmax(1)
    assert accuracy(model, replace(task, y=pred)) == 1.0
