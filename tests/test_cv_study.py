"""Cross-validation studies on synthetic feature vectors (no network) and one tiny real network."""
import numpy as np
import pytest

from ftkit.lab.cv_study import Pool, fold_balance, lr_by_cv, network_folds, single_split, split_spread, spread_summary
from ftkit.lab.specs import DataSpec, ModelSpec, Strategy
from ftkit.training.spec import TrainSpec


def blobs(n_per_class=10, classes=3, dim=5, seed=0, sep=1.5):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class)
    centres = rng.normal(0, sep, (classes, dim))
    return Pool(centres[y] + rng.normal(0, 1, (len(y), dim)), y)


def test_single_split_holds_out_the_same_share_of_every_class():
    pool = blobs()
    tr, va = single_split(pool, 0.2, seed=3)
    assert np.bincount(pool.y[va]).tolist() == [2, 2, 2]
    assert not set(tr) & set(va) and len(tr) + len(va) == len(pool)
    assert not np.array_equal(va, single_split(pool, 0.2, seed=4)[1])
    with pytest.raises(ValueError, match="val_frac"):
        single_split(pool, 1.0, seed=0)


def test_split_spread_rows_and_the_deployed_accuracy():
    pool, test = blobs(), blobs(n_per_class=30, seed=1)
    t = split_spread(pool, test, k=5, repeats=4)
    assert len(t) == 8 and set(t["method"]) == {"single split", "k-fold"}
    assert t["deployed_acc"].nunique() == 1
    assert (t.loc[t["method"] == "k-fold", "n_val"] == 30).all()
    assert (t.loc[t["method"] == "single split", "n_val"] == 6).all()
    np.testing.assert_allclose(t["error"], t["estimate"] - t["deployed_acc"])
    s = spread_summary(t)
    assert set(s["method"]) == {"single split", "k-fold"} and (s["repeats"] == 4).all()
    with pytest.raises(ValueError, match="k must be"):
        split_spread(pool, test, k=11)
    with pytest.raises(ValueError, match="repeats"):
        split_spread(pool, test, repeats=1)
    with pytest.raises(TypeError, match="Pool"):
        split_spread((pool.X, pool.y), test)


def test_lr_by_cv_picks_from_the_grid_and_measures_regret():
    pool, test = blobs(), blobs(n_per_class=30, seed=1)
    picks, by_lr = lr_by_cv(pool, test, [1e-3, 1e-1], k=3, repeats=2, epochs=20)
    assert list(by_lr["lr"]) == [1e-3, 1e-1]
    assert set(picks["lr"]) <= {1e-3, 1e-1} and len(picks) == 4
    assert (picks["regret"] >= 0).all()
    with pytest.raises(ValueError, match="at least two"):
        lr_by_cv(pool, test, [1e-3])


def test_stratified_folds_keep_class_shares_exactly_when_they_divide():
    t = fold_balance(blobs(n_per_class=10), k=5, repeats=3)
    strat, plain = t[t["folds"] == "stratified"], t[t["folds"] == "plain"]
    assert (strat["worst_class_gap"] < 1e-9).all()
    assert (plain["worst_class_gap"] > 0).all()


def test_network_folds_cross_validates_the_real_network():
    probe = Strategy("linear_probe", ModelSpec(freeze="all_but_head"),
                     TrainSpec(lr=1e-2, max_steps=1, batch_size=8, precise_bn=False, device="cpu"))
    data = DataSpec("digits", n_per_class=3, image_size=32, val_n_per_class=2)
    folds, deployed = network_folds(probe, data, k=2)
    assert list(folds["fold"]) == [0, 1] and folds["n_val"].sum() == 30
    assert 0.0 <= deployed <= 1.0
    with pytest.raises(ValueError, match="holdout_frac"):
        network_folds(probe, DataSpec("digits", n_per_class=3, holdout_frac=0.2))
