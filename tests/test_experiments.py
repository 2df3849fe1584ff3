"""The race: matched compute, honest summaries, run folders that never overwrite."""
import json

import numpy as np
import pandas as pd
import pytest

from ftkit.lab.folders import write_race
from ftkit.lab.race import (
    STRATEGIES,
    RaceResult,
    build_model,
    make_strategies,
    mean_curves,
    race,
    steps_to_target,
)
from ftkit.lab.specs import DataSpec, ModelSpec, Strategy
from ftkit.models.freeze import trainable_summary
from ftkit.models.heads import find_head
from ftkit.training.spec import TrainSpec
from ftkit.viz.plots import save_race_figure
from ftkit.viz.widgets import race_widget


@pytest.fixture(scope="module")
def tiny_race():
    data = DataSpec("digits", n_per_class=3, image_size=32, val_n_per_class=2)
    strategies = make_strategies(["scratch", "linear_probe"], epochs=2, batch_size=10)
    return race(strategies, data, seeds=(0, 1))


def test_every_run_gets_the_same_budget_and_evaluation_points(tiny_race):
    curves = tiny_race.curves
    steps = curves.groupby(["strategy", "seed"])["step"].apply(tuple)
    assert steps.nunique() == 1 and steps.iloc[0] == (0, 3, 6)  # 30 images / batch 10 = 3 steps an epoch
    assert set(tiny_race.runs["steps"]) == {6}


def test_runs_record_the_start_the_worst_batch_and_how_far_the_body_moved(tiny_race):
    runs, steps = tiny_race.runs, tiny_race.steps
    for r in runs.itertuples():
        mine = steps[(steps.strategy == r.strategy) & (steps.seed == r.seed)]
        assert len(mine) == r.steps and r.max_train_loss == mine["loss"].max()
        first = tiny_race.curves[(tiny_race.curves.strategy == r.strategy) & (tiny_race.curves.seed == r.seed)].iloc[0]
        assert first["step"] == 0 and r.start_acc == first["val_acc"]
        assert r.stopped_reason is None
    probe = runs[runs.strategy == "linear_probe"]
    assert (probe["body_drift"] == 0.0).all()       # frozen body: not one weight moved
    assert (runs[runs.strategy == "scratch"]["body_drift"] > 0).all()


def test_a_diverging_strategy_is_a_result_not_an_error():
    data = DataSpec("digits", n_per_class=3, image_size=32, val_n_per_class=2)
    huge = Strategy("huge_lr", ModelSpec(), TrainSpec(lr=1e36, epochs=2, batch_size=10))
    with pytest.warns(RuntimeWarning, match="fit\\(\\) stopped"):
        result = race([huge], data, seeds=(0,))
    run = result.runs.iloc[0]
    assert run["stopped_reason"] and ("non-finite" in run["stopped_reason"] or "loss became" in run["stopped_reason"])
    assert run["steps"] < 6 and result.summary()["stopped_early"].iloc[0] == 1


def test_summary_is_mean_and_std_over_seeds(tiny_race):
    s = tiny_race.summary().set_index("strategy")
    for name, grp in tiny_race.runs.groupby("strategy"):
        assert s.loc[name, "final_acc_mean"] == pytest.approx(grp["final_acc"].mean())
        assert s.loc[name, "final_acc_std"] == pytest.approx(grp["final_acc"].std(ddof=1))
        assert s.loc[name, "seeds"] == 2
    json.dumps(tiny_race.to_json_dict())  # JSON-able


def test_one_seed_has_no_spread_rather_than_zero_spread(tiny_race):
    one = RaceResult(tiny_race.curves, tiny_race.runs[tiny_race.runs.seed == tiny_race.runs.seed.min()],
                     tiny_race.steps, tiny_race.target_acc)
    s = one.summary()
    assert s["seeds"].eq(1).all() and s["final_acc_std"].isna().all()
    w = race_widget(lambda **settings: one, n_per_class=10, epochs=2)
    w.button.click()
    assert "one seed" in w.table.value and w.status.value == "done"
    assert json.loads(json.dumps(one.to_json_dict()))["summary"][0]["final_acc_std"] is None


def test_same_seed_same_head_init_for_every_strategy():
    import torch

    rng = torch.get_rng_state()
    a = build_model(STRATEGIES["finetune"], 5, seed=3)
    assert torch.equal(rng, torch.get_rng_state())  # the caller's RNG is not reseeded
    b = build_model(STRATEGIES["linear_probe"], 5, seed=3)
    head = find_head(a)
    assert np.array_equal(a.get_submodule(head).weight.detach(), b.get_submodule(head).weight.detach())
    summary = trainable_summary(b)
    assert summary["trainable"].sum() == sum(p.numel() for p in b.get_submodule(head).parameters())


def test_steps_to_target_and_mean_curves():
    curve = pd.DataFrame({"step": [0, 10, 20], "val_acc": [0.1, 0.6, 0.8]})
    assert steps_to_target(curve, 0.6) == 10
    assert np.isnan(steps_to_target(curve, 0.9))
    curves = pd.DataFrame({"strategy": ["a"] * 4, "seed": [0, 0, 1, 1], "step": [0, 5, 0, 5],
                           "val_acc": [0.1, 0.5, 0.3, 0.7]})
    m = mean_curves(curves).set_index("step")
    assert m.loc[5, "mean"] == pytest.approx(0.6) and m.loc[5, "std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))


def test_bad_arguments_are_refused_before_any_work():
    data = DataSpec("digits", n_per_class=2, image_size=32)
    with pytest.raises(ValueError, match="at least one strategy"):
        race([], data)
    with pytest.raises(ValueError, match="unique"):
        race([STRATEGIES["scratch"], STRATEGIES["scratch"]], data)
    with pytest.raises(ValueError, match="one budget"):
        race([STRATEGIES["scratch"], STRATEGIES["finetune"].with_train(epochs=9)], data)
    with pytest.raises(TypeError, match="DataSpec"):
        race([STRATEGIES["scratch"]], object())
    with pytest.raises(ValueError, match="freeze must be"):
        ModelSpec(freeze="half")


def test_run_folders_are_complete_and_never_overwritten(tiny_race, tmp_path):
    first = write_race(tiny_race, tmp_path, prefix="demo", draw=save_race_figure)
    second = write_race(tiny_race, tmp_path, prefix="demo", draw=save_race_figure)
    assert first != second
    for folder in (first, second):
        assert {p.name for p in folder.iterdir()} == {"curves.csv", "runs.csv", "steps.csv", "summary.csv",
                                                      "summary.json", "convergence.png"}
    assert json.loads((first / "summary.json").read_text())["target_acc"] == tiny_race.target_acc
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_a_failing_write_leaves_nothing(tiny_race, tmp_path, monkeypatch):
    import ftkit.viz.plots

    def boom(*a, **k):
        raise RuntimeError("plot failed")

    monkeypatch.setattr(ftkit.viz.plots, "plot_race", boom)
    with pytest.raises(RuntimeError, match="plot failed"):
        write_race(tiny_race, tmp_path, draw=save_race_figure)
    assert list(tmp_path.iterdir()) == []


def test_race_widget_runs_without_a_kernel(tiny_race):
    calls = []

    def run_race(**settings):
        calls.append(settings)
        return tiny_race

    w = race_widget(run_race, n_per_class=10, epochs=2)
    w.controls["epochs"].value = 3
    w.button.click()
    assert calls == [{"n_per_class": 10, "epochs": 3, "num_seeds": 2, "lr_finetune": 3e-4, "lr_scratch": 1e-3}]
    assert isinstance(w.result, RaceResult) and w.image.value[:4] == b"\x89PNG" and "scratch" in w.table.value
    assert w.status.value == "done"
