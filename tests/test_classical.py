"""Feature vectors + classical classifiers vs networks: tables, timings, refusals."""
import math

import pandas as pd
import pytest

from ftkit.analysis.classical import classifier_settings, feature_classifier_costs
from ftkit.lab.classical_study import classical_vs_finetune, cost_ratio
from ftkit.training.spec import TrainSpec

TINY = dict(image_size=32, val_n_per_class=2)


def test_feature_costs_extract_once_per_size_and_time_every_part():
    t = feature_classifier_costs("digits", [2, 3], kinds=("logistic", "svm", "mlp"), seeds=(0, 1), **TINY)
    assert len(t) == 2 * 2 * 3
    assert set(t["n_train"]) == {20, 30} and (t["dim"] == 1280).all()
    assert t["acc"].between(0, 1).all()
    assert (t["total_s"] == t["extract_s"] + t["fit_s"]).all()
    # One extraction per size, shared by every seed and kind; the cached call costs less than the forward pass.
    assert t.groupby("n_per_class")["extract_s"].nunique().eq(1).all()
    assert (t["cached_s"] < t["extract_s"]).all()
    # Logistic regression and the SVM are deterministic given the images: seeds change nothing.
    det = t[t["method"] != "mlp"].groupby(["n_per_class", "method"])["acc"].nunique()
    assert det.eq(1).all()


def test_feature_costs_refuse_bad_arguments():
    with pytest.raises(ValueError, match="kinds"):
        feature_classifier_costs("digits", [2], kinds=("forest",))
    with pytest.raises(ValueError, match="sizes"):
        feature_classifier_costs("digits", [1])
    with pytest.raises(ValueError, match="kind must be one of"):
        classifier_settings("forest")


def test_classical_vs_finetune_puts_both_families_in_one_table():
    train = TrainSpec(max_steps=1, batch_size=8, precise_bn=False, device="cpu")
    table, study = classical_vs_finetune("digits", [3], train=train, lr_grid=(1e-2,), kinds=("logistic",),
                                         networks=("linear_probe",), seeds=(0,), **TINY)
    assert set(table["family"]) == {"feature vectors", "network, frozen body"}
    assert set(table["method"]) == {"logistic", "linear_probe"}
    assert math.isnan(table.loc[table["method"] == "logistic", "lr"].iloc[0])
    assert table.loc[table["method"] == "linear_probe", "lr"].iloc[0] == 1e-2
    assert list(study.lr_table["chosen"]) == [True]
    with pytest.raises(ValueError, match="network methods"):
        classical_vs_finetune("digits", [3], train=train, lr_grid=(1e-2,), networks=("scratch",), **TINY)


def test_cost_ratio():
    t = pd.DataFrame({"n_per_class": [5, 5, 5, 5], "method": ["logistic", "finetune"] * 2,
                      "time_s": [1.0, 10.0, 1.0, 30.0], "acc": [0.5, 0.7, 0.5, 0.9]})
    r = cost_ratio(t)
    assert r["times_longer"].iloc[0] == 20.0 and r["finetune_acc"].iloc[0] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="must both be in the table"):
        cost_ratio(t, dear="scratch")
