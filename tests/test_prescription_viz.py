"""Plots (data in, Axes out) and widgets (wiring only) of lessons 05, 06, 08, on hand-made tables."""
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from ftkit.viz import prescription_plots as pp
from ftkit.viz.prescription_widgets import classical_widget, cv_widget, freeze_widget


def axes():
    return Figure().subplots()


def test_every_plot_draws_its_table_and_names_missing_columns():
    grid = pd.DataFrame({"data": ["a"] * 3, "n_per_class": [10] * 3, "k": [0, 9, -1], "mean": [0.8, 0.5, 0.2],
                         "std": [0.02, 0.01, 0.03]})
    ax = pp.plot_freeze_depth(grid, axes(), group_names=[f"g{i}" for i in range(10)])
    assert len(ax.lines) >= 2  # the k curve and scratch's line
    bars = pd.DataFrame({"strategy": ["x", "y"], "mean": [0.5, 0.6], "std": [0.1, 0.0], "min": [0.4, 0.6],
                         "max": [0.6, 0.6]})
    assert len(pp.plot_strategy_bars(bars, axes()).patches) == 2
    cost = pd.DataFrame({"method": ["logistic", "finetune"] * 2, "n_per_class": [5, 5, 20, 20],
                         "acc": [0.5, 0.7, 0.6, 0.8], "time_s": [0.1, 5.0, 0.2, 20.0]})
    assert pp.plot_cost_accuracy(cost, axes()).get_xscale() == "log"
    assert pp.plot_cost_vs_size(cost, axes()).get_yscale() == "log"
    est = pd.DataFrame({"method": ["single split"] * 3 + ["k-fold"] * 3, "estimate": np.linspace(0.6, 0.9, 6),
                        "deployed_acc": 0.8})
    pp.plot_estimates(est, axes())
    picks = pd.DataFrame({"method": ["single split", "k-fold"], "lr": [1e-3, 1e-2]})
    pp.plot_lr_picks(picks, pd.DataFrame({"lr": [1e-3, 1e-2], "test_acc": [0.7, 0.8]}), axes())
    pp.plot_fold_balance(pd.DataFrame({"folds": ["stratified", "plain"], "worst_class_gap": [0.0, 12.0]}), axes())
    with pytest.raises(KeyError, match="lacks columns"):
        pp.plot_freeze_depth(grid.drop(columns="k"), axes())


def test_widgets_pass_their_settings_to_run_and_show_the_result():
    seen = []

    def run(**settings):
        seen.append(settings)
        return pd.DataFrame({"x": [1.0]})

    def draw(result, fig):
        fig.subplots().plot(result["x"])

    w = freeze_widget(run, draw, lambda r: r, datasets=["digits", "photo_crops"], data="digits", n_per_class=10, k=3,
                      max_k=9)
    w.controls["k"].value = 5
    w.run()
    assert seen[-1] == {"data": "digits", "n_per_class": 10, "k": 5}
    assert w.image.value[:4] == b"\x89PNG" and "<table" in w.html.value
    classical_widget(run, draw, lambda r: r, datasets=["digits"], data="digits", n_per_class=5).run()
    assert seen[-1] == {"data": "digits", "n_per_class": 5}
    cv = cv_widget(run, draw, lambda r: r, datasets=["digits"], data="digits", n_per_class=10, k=5, val_frac=0.2)
    cv.run()
    assert set(seen[-1]) == {"data", "n_per_class", "k", "val_frac"}
    with pytest.raises(ValueError, match="not one of the options"):
        freeze_widget(run, draw, lambda r: r, datasets=["digits"], data="mnist", n_per_class=10, k=1, max_k=9)


def test_a_failing_run_is_shown_in_the_widget_not_raised():
    def run(**settings):
        raise ValueError("no such data set")

    w = cv_widget(run, lambda r, f: None, lambda r: r, datasets=["digits"], data="digits", n_per_class=10, k=5,
                  val_frac=0.2)
    w._on_click(w.button)
    assert "no such data set" in w.status.value and not w.button.disabled
