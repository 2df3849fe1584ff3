"""Tests for ftkit.lab.crossval: stratified folds fixed by seed, one row per fold, summary, determinism."""
import numpy as np
import pandas as pd
import pytest
from tiny_task import FAST, Quadrants, TinyNet

from ftkit.lab.crossval import CrossValResult, CrossValSummary, cross_validate, fold_summary, kfold_indices


@pytest.fixture(scope="module")
def data():
    return Quadrants(192, seed=0), Quadrants(96, seed=1)


# ---------------------------------------------------------------- cross-validation

def test_kfold_indices_are_stratified_partitions_fixed_by_seed(data):
    train, _ = data
    folds = kfold_indices(train, k=4, seed=0)
    vals = np.concatenate([va for _, va in folds])
    assert sorted(vals.tolist()) == list(range(len(train)))
    overall = np.bincount(train.targets, minlength=4)
    for tr, va in folds:
        assert len(np.intersect1d(tr, va)) == 0
        assert np.abs(np.bincount(train.targets[va], minlength=4) - overall / 4).max() <= 1
    again = kfold_indices(train, k=4, seed=0)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))
    other = kfold_indices(train, k=4, seed=1)
    assert not np.array_equal(folds[0][1], other[0][1])
    with pytest.raises(ValueError, match="k must be"):
        kfold_indices(train, k=1)


def test_cross_validate_rows_summary_and_determinism(data):
    train, _ = data
    kw = dict(k=3, seed=0, epochs=2, lr=0.05, **FAST)
    cv = cross_validate(lambda: TinyNet(), train, **kw)
    assert isinstance(cv, CrossValResult) and cv.complete and (cv.k, cv.seed, cv.interrupted) == (3, 0, False)
    df = cv.folds
    assert df.columns.tolist() == ["fold", "n_train", "n_val", "val_loss", "val_acc", "time_s"]
    assert df["fold"].tolist() == [0, 1, 2] and df["n_val"].sum() == len(train)
    assert (df["n_train"] + df["n_val"] == len(train)).all()
    assert (df["val_acc"] > 0.6).all()
    s = cv.summary
    assert isinstance(s, CrossValSummary) and s.n_folds == 3
    assert s.val_acc_mean == pytest.approx(df["val_acc"].mean())
    assert s.val_acc_std == pytest.approx(df["val_acc"].std(ddof=1))
    # the summary survives what pandas does to a DataFrame (df.attrs did not)
    assert cv.to_dict()["summary"]["val_acc_mean"] == s.val_acc_mean and len(cv.to_dict()["folds"]) == 3
    again = cross_validate(lambda: TinyNet(), train, **kw)
    assert again.folds["val_loss"].tolist() == df["val_loss"].tolist()


def test_fold_summary_of_one_or_no_fold():
    one = fold_summary(pd.DataFrame({"val_loss": [0.5], "val_acc": [0.8]}))
    assert (one.n_folds, one.val_acc_mean, one.val_acc_std) == (1, 0.8, 0.0)
    none = fold_summary(pd.DataFrame(columns=["val_loss", "val_acc"]))
    assert none.n_folds == 0 and np.isnan(none.val_acc_mean)


def test_cross_validate_on_cpu_leaves_the_cuda_rngs_alone(data, monkeypatch):
    """torch.manual_seed inside fork_rng(devices=[]) seeded every CUDA generator, unforked."""
    import torch

    calls = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: calls.append(("all", seed)))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: calls.append(("one", seed)))
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    calls.clear()
    cv = cross_validate(lambda: TinyNet(), data[0], k=2, seed=0, max_steps=2, **FAST)
    assert calls == [] and len(cv.folds) == 2
    assert torch.equal(torch.rand(3), expected)  # the caller's CPU RNG too


# ---------------------------------------------------------------- TrainSpec and run units

def test_a_train_spec_gives_the_same_folds_as_fit_keywords(data):
    from ftkit.training.spec import TrainSpec

    spec = TrainSpec(optimizer="sgd", lr=0.05, epochs=1, batch_size=32, precise_bn=False, device="cpu")
    a = cross_validate(lambda: TinyNet(), data[0], k=2, seed=0, train=spec, progress=False)
    b = cross_validate(lambda: TinyNet(), data[0], k=2, seed=0, progress=False, **spec.fit_kwargs())
    assert a.folds["val_loss"].tolist() == b.folds["val_loss"].tolist()
    with pytest.raises(TypeError, match="not both"):
        cross_validate(lambda: TinyNet(), data[0], k=2, train=spec, epochs=3)
    with pytest.raises(ValueError, match="a function cannot be sent to a worker"):
        cross_validate(lambda: TinyNet(), data[0], k=2, train=spec, out="somewhere")


def test_folds_of_a_data_spec_are_run_specs_mapped_over_by_a_sweep(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from ftkit.lab.crossval import cross_validation_specs
    from ftkit.lab.runs import run_one
    from ftkit.lab.specs import DataSpec, ModelSpec
    from ftkit.lab.sweep import load_records
    from ftkit.training.spec import TrainSpec

    data = DataSpec("digits", n_per_class=4, image_size=32)
    probe = ModelSpec(freeze="all_but_head")
    spec = TrainSpec(lr=1e-2, epochs=1, batch_size=10)
    cv = cross_validate(probe, data, k=2, train=spec, seed=0, out=tmp_path, progress=False)
    assert cv.folds["fold"].tolist() == [0, 1] and cv.folds["n_val"].sum() == 40
    assert (cv.folds["n_train"] + cv.folds["n_val"] == 40).all() and len(cv.records) == 2
    specs = cross_validation_specs(probe, data, k=2, train=spec, seed=0)
    assert [s.data.fold for s in specs] == [(2, 0), (2, 1)] and set(load_records(tmp_path)) == {s.key for s in specs}
    assert cv.folds["val_acc"].tolist() == [run_one(s).final_acc for s in specs]  # a fold is just a run
    train0, val0 = specs[0].data.load()
    train1, val1 = specs[1].data.load()
    assert set(val0.indices).isdisjoint(val1.indices) and sorted(val0.indices + val1.indices) == list(range(40))
    with ThreadPoolExecutor(max_workers=1) as ex:  # any executor; resume finds both folds done
        again = cross_validate(probe, data, k=2, train=spec, seed=0, executor=ex, out=tmp_path, resume=True,
                               progress=False)
    assert again.folds.drop(columns="time_s").equals(cv.folds.drop(columns="time_s"))
    with pytest.raises(TypeError, match="train=TrainSpec"):
        cross_validate(probe, data, k=2)
    with pytest.raises(ValueError, match="sets DataSpec.fold itself"):
        cross_validate(probe, DataSpec("digits", n_per_class=4, fold=(2, 0)), k=2, train=spec)
    with pytest.raises(ValueError, match="fold must be"):
        DataSpec("digits", fold=(2, 2))
