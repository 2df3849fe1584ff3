"""The four-scenario grid: its rules (budget, error bar, the course's table) and one tiny real run."""
import math

import pytest
from scenario_grid import make_grid

from ftkit.lab.scenarios import (
    COURSE,
    ScenarioConfig,
    ScenarioResult,
    cell_steps,
    course_pick,
    run_scenarios,
    scenario_strategies,
)


def test_config_rejects_bad_values_with_the_reason():
    with pytest.raises(ValueError, match="unknown strategies"):
        ScenarioConfig(strategies=("finetune", "magic"))
    with pytest.raises(ValueError, match="sizes must be ints"):
        ScenarioConfig(sizes=(1,))
    with pytest.raises(ValueError, match="min_steps"):
        ScenarioConfig(min_steps=50, max_steps=10)


def test_every_strategy_of_a_cell_gets_the_same_budget():
    cfg = ScenarioConfig(batch_size=10, epochs=2, min_steps=5, max_steps=100)
    assert cell_steps(cfg, 5, 10) == 10          # 2 epochs of 50 images at batch 10
    assert cell_steps(cfg, 1, 10) == 5           # clipped up to min_steps
    assert cell_steps(cfg, 500, 10) == 100       # clipped down to max_steps
    strategies = scenario_strategies(train=cfg.train_spec(10))
    assert [s.name for s in strategies] == ["scratch", "linear_probe", "freeze_k", "finetune", "discriminative"]
    assert len({s.train for s in strategies}) == 1
    assert strategies[0].model.weights is None and strategies[2].model.freeze == 4
    assert strategies[-1].groups.decay == 2.6
    with pytest.raises(ValueError, match="'features' is not trained"):
        scenario_strategies(["features"])


def test_course_table_covers_the_four_quadrants():
    assert set(COURSE) == {(True, True), (True, False), (False, True), (False, False)}
    assert course_pick(True, True) == ("linear_probe", "features")
    assert course_pick(False, False) == ("scratch",)


def grid():
    accs = {("near", 5, "linear_probe"): [0.80, 0.82, 0.81], ("near", 5, "finetune"): [0.90, 0.91, 0.92],
            ("near", 5, "scratch"): [0.30, 0.35, 0.32],
            ("near", 500, "finetune"): [0.95, 0.96, 0.95], ("near", 500, "scratch"): [0.94, 0.96, 0.955],
            ("far", 5, "freeze_k"): [0.60, 0.70, 0.65], ("far", 5, "finetune"): [0.66, 0.64, 0.68],
            ("far", 5, "scratch"): [0.20, 0.22, 0.21]}
    return make_grid(accs, scores={"near": 0.4, "far": -0.05}, small_max=50, similar_min=0.1)


def test_best_margin_and_ties():
    best = grid().best().set_index(["dataset", "n_per_class"])
    near5 = best.loc[("near", 5)]
    assert near5["best"] == "finetune" and near5["runner_up"] == "linear_probe"
    assert near5["margin"] == pytest.approx(0.91 - 0.81)
    assert near5["tied"] == ["finetune"]                           # 10 points is far outside the error bar
    assert set(best.loc[("far", 5)]["tied"]) == {"finetune", "freeze_k"}   # 1 point, seeds spread 5: a tie


def test_course_table_says_agrees_or_disagrees_cell_by_cell():
    table = grid().course_table().set_index(["dataset", "n_per_class"])
    assert table.loc[("near", 5), "quadrant"] == "little data, similar"
    assert table.loc[("near", 5), "verdict"] == "disagrees"        # head only loses 10 points to fine-tuning
    assert table.loc[("near", 5), "gap"] == pytest.approx(0.10)
    assert table.loc[("far", 5), "verdict"] == "agrees"            # freeze_k is tied with the best
    assert table.loc[("near", 500), "course_pick"] == "finetune"
    assert table.loc[("near", 500), "verdict"] == "agrees"


def test_result_round_trips_through_json(tmp_path):
    g = grid()
    g.save(tmp_path / "grid.json")
    back = ScenarioResult.load(tmp_path / "grid.json")
    assert back.best().equals(g.best())
    assert back.config == g.config


def test_a_tiny_real_grid_runs_every_kind_of_strategy(tmp_path):
    cfg = ScenarioConfig(datasets=("digits",), sizes=(4, 100000), strategies=("scratch", "features", "linear_probe"),
                         seeds=(0,), image_size=32, val_per_class=3, batch_size=8, min_steps=2, max_steps=2,
                         lr_grid=(1e-2,), similarity_per_class=3)
    r = run_scenarios(cfg, out=tmp_path)
    assert r.skipped and "100000" in r.skipped[0]
    assert set(r.runs["strategy"]) == {"scratch", "features", "linear_probe"}
    assert (r.runs.loc[r.runs["strategy"] != "features", "steps"] == 2).all()
    assert r.lrs == {"digits": {"scratch": 1e-2, "linear_probe": 1e-2}}
    assert r.runs["acc"].between(0, 1).all() and math.isfinite(r.similarity["score"].iloc[0])
    assert len(r.course_table()) == 1


def test_feature_vectors_of_a_grid_cell_are_not_kept_in_the_process_cache():
    """Each set is used once; kept, a full grid's sets would fill 0.4 GB of a 1 GB Binder kernel."""
    from ftkit.analysis.feature_cache import default_feature_cache
    from ftkit.lab.scenarios import features_accuracy
    from ftkit.lab.specs import DataSpec

    before = default_feature_cache().info()
    out = features_accuracy("mobilenet_v2", DataSpec("digits", n_per_class=3, image_size=32, val_n_per_class=2))
    after = default_feature_cache().info()
    assert 0 <= out["acc"] <= 1 and out["time_s"] > 0
    assert after["misses"] == before["misses"] and after["items"] == before["items"]


def test_a_data_set_with_fewer_test_images_is_scored_on_all_it_has_and_says_so():
    """Lesson 07's defaults score on 50 test images per class; digits' fixed test split has 35 of class 2.
    That used to fail after an hour of the full grid, on reaching digits."""
    from ftkit.lab.scenarios import scored_per_class

    assert scored_per_class("digits", 50) == 35 and scored_per_class("digits", 20) == 20
    config = ScenarioConfig(datasets=("digits",), sizes=(3,), strategies=("features",), seeds=(0,),
                            image_size=32, val_per_class=50, similarity_per_class=3)
    result = run_scenarios(config)
    assert len(result.runs) == 1 and 0 <= result.runs.acc.iloc[0] <= 1
    assert result.skipped == ["digits scored on 35 test images per class, not 50: its smallest test class has 35"]


def test_each_data_set_is_dropped_from_memory_before_the_next_one_runs(tmp_path, monkeypatch):
    """Lesson 07's full grid went 1 MB over a 1 GB kernel while every data set it had read stayed resident."""
    from ftkit.data import sources
    from ftkit.lab import scenarios

    held_while_sweeping = []
    real_sweep = scenarios.sweep

    def watching_sweep(specs, **kw):
        held_while_sweeping.append((specs[0].data.name, sources._read_digits.cache_info().currsize,
                                    sources._read_animals.cache_info().currsize))
        return real_sweep(specs, **kw)

    monkeypatch.setattr(scenarios, "sweep", watching_sweep)
    cfg = ScenarioConfig(datasets=("digits", "animals"), sizes=(3,), strategies=("linear_probe",), seeds=(0,),
                         image_size=32, val_per_class=3, batch_size=8, min_steps=2, max_steps=2, lr_grid=(1e-2,),
                         similarity_per_class=3)
    r = run_scenarios(cfg, out=tmp_path)
    grid_calls = [(ds, d, a) for ds, d, a in held_while_sweeping if ds == "animals"]
    assert grid_calls and all(d == 0 and a == 1 for _, d, a in grid_calls), held_while_sweeping
    assert sources._read_animals.cache_info().currsize == 0
    assert sorted(p.name for p in (tmp_path / "grid").iterdir()) == ["animals", "digits"]
    assert list(r.runs["dataset"]) == ["digits", "animals"]
