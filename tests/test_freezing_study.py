"""Freezing studies: strategies that differ in one thing, fair sweeps, tables with the right rows."""
import pytest

from ftkit.lab.fair import check_budget, fair_sweep, summarise
from ftkit.lab.freezing import bn_pitfall, discriminative_vs_single, freeze_depth_grid, freeze_ladder, group_names
from ftkit.lab.specs import DataSpec, LRGroups, ModelSpec, Strategy
from ftkit.training.spec import TrainSpec

DATA = DataSpec("digits", n_per_class=4, image_size=32, val_n_per_class=2)
BUDGET = TrainSpec(lr=1e-3, max_steps=1, batch_size=8, precise_bn=False, device="cpu")


def test_ladder_freezes_k_groups_and_refuses_impossible_k():
    names = group_names()
    assert names[-1] == "head" and len(names) >= 5
    ladder = freeze_ladder([0, 3, len(names) - 1], BUDGET)
    assert [s.name for s in ladder] == ["freeze_0", "freeze_3", f"freeze_{len(names) - 1}"]
    assert ladder[0].model.freeze is None and ladder[1].model.freeze == 3
    with pytest.raises(ValueError, match="all but the head"):
        freeze_ladder([len(names)], BUDGET)
    with pytest.raises(ValueError, match="duplicates"):
        freeze_ladder([1, 1], BUDGET)
    with pytest.raises(ValueError, match="k >= 1"):
        bn_pitfall(DATA, 0, train=BUDGET, lr_grid=(1e-3,))
    with pytest.raises(TypeError, match="LRGroups"):
        discriminative_vs_single(DATA, train=BUDGET, lr_grid=(1e-3,), groups=2.6)


def test_fair_sweep_refuses_unequal_budgets_and_bad_data():
    a = Strategy("a", ModelSpec(freeze="all_but_head"), BUDGET)
    b = Strategy("b", ModelSpec(freeze="all_but_head"), BUDGET.replace(max_steps=2))
    with pytest.raises(ValueError, match="same budget"):
        check_budget([a, b])
    with pytest.raises(ValueError, match="unique"):
        check_budget([a, a])
    with pytest.raises(TypeError, match="DataSpec"):
        fair_sweep([a], ["digits"], lr_grid=(1e-3,))


def test_freeze_grid_chooses_lrs_by_the_rule_and_runs_every_seed():
    top = len(group_names()) - 1
    study = freeze_depth_grid([DATA], [top - 1, top], train=BUDGET, lr_grid=(1e-3, 1e-2), seeds=(0, 1),
                              include_scratch=False)
    runs = study.runs
    assert sorted(set(runs["k"])) == [top - 1, top] and len(runs) == 4
    assert set(runs["seed"]) == {0, 1} and set(runs["steps"]) == {1}
    # Every run trains at the LR the rule chose for its strategy, from the shared grid.
    chosen = study.lr_table[study.lr_table["chosen"]].set_index("strategy")["lr"]
    assert all(r.lr == chosen[r.strategy] for r in runs.itertuples())
    assert set(study.lr_table["lr"]) == {1e-3, 1e-2}
    s = summarise(runs, ["k"])
    assert list(s.columns[:3]) == ["k", "mean", "std"] and (s["count"] == 2).all()


def test_bn_pitfall_and_discriminative_compare_two_strategies():
    top = len(group_names()) - 1
    bn = bn_pitfall(DATA, top, train=BUDGET, lr_grid=(1e-2,), seeds=(0,))
    assert set(bn.runs["strategy"]) == {"bn_frozen", "bn_train"}
    disc = discriminative_vs_single(DATA, train=BUDGET, lr_grid=(1e-3,), groups=LRGroups(decay=10.0), seeds=(0,))
    assert set(disc.runs["strategy"]) == {"one_lr", "discriminative"}
    # Same (head) LR by the rule (one-point grid); the body trains slower under the decay: it moves less.
    assert disc.runs["lr"].nunique() == 1
    drift = disc.runs.set_index("strategy")["body_drift"]
    assert drift["discriminative"] < drift["one_lr"]


def test_summarise_names_missing_columns():
    import pandas as pd

    with pytest.raises(KeyError, match="not in the runs table"):
        summarise(pd.DataFrame({"a": [1]}), ["k"])


def test_freeze_verdicts_check_the_course_cell_by_cell():
    import pandas as pd

    from ftkit.lab.freezing import freeze_verdicts

    k = [0, 2, 9, -1]
    s = pd.DataFrame({"data": ["a"] * 8, "n_per_class": [10] * 4 + [50] * 4, "k": k * 2,
                      "mean": [0.8, 0.7, 0.5, 0.2, 0.9, 0.92, 0.6, 0.5], "std": [0.02] * 8})
    v = freeze_verdicts(s, top=9).set_index("n_per_class")
    # Little data: the course says head only (k=9): 0.5 against the best 0.8 -> disagrees.
    assert v.loc[10, "advised"] == "head only" and v.loc[10, "best_k"] == 0 and not v.loc[10, "agrees"]
    # More data: "freeze the first few" (best k in 1..4 is 2) is the best -> agrees.
    assert v.loc[50, "advised_k"] == 2 and v.loc[50, "agrees"] and v.loc[50, "scratch_mean"] == 0.5
    with pytest.raises(ValueError, match="no k between"):
        freeze_verdicts(s[s["k"] != 2], top=9)
