"""advise(): reads its recommendation off the measured grid and says why, with numbers."""
import pandas as pd
import pytest
from scenario_grid import make_grid

from ftkit.lab.advisor import advise, lr_range, what_it_freezes
from ftkit.lab.similarity import SimilarityResult


def grid():
    accs = {("near", 5, "linear_probe"): [0.80, 0.82, 0.81], ("near", 5, "finetune"): [0.90, 0.91, 0.92],
            ("near", 100, "linear_probe"): [0.93, 0.94, 0.95], ("near", 100, "finetune"): [0.97, 0.97, 0.98],
            ("far", 5, "freeze_k"): [0.60, 0.70, 0.65], ("far", 5, "scratch"): [0.20, 0.22, 0.21]}
    lr_tables = {"near": pd.DataFrame({"strategy": ["finetune"] * 3, "lr": [1e-4, 1e-3, 1e-2],
                                       "holdout_acc_mean": [0.85, 0.86, 0.40], "holdout_acc_std": [0.0] * 3,
                                       "chosen": [False, True, False]})}
    return make_grid(accs, scores={"near": 0.4, "far": -0.05}, lr_tables=lr_tables, small_max=50,
                     similar_min=0.1)


def sim(score):
    return SimilarityResult("mine", "mobilenet_v2", 0.9, 0.9 - score, score, 10, 10, 64, 0)


def test_advice_is_the_nearest_cells_measured_best_with_reasons():
    a = advise("mine", grid=grid(), n_per_class=8, similarity=sim(0.35))
    assert a.cell == ("near", 5) and a.strategy == "finetune"
    assert a.lr_range == (1e-4, 1e-3)                  # within 2 points of the best held-out accuracy
    assert a.expected_acc == pytest.approx(0.91)
    assert a.course_agrees is False and "retrain the head only" in a.course_says
    text = a.to_markdown()
    assert "+0.350" in text and "0.910" in text and "disagrees" in text


def test_advice_follows_the_similarity_and_the_size():
    assert advise("mine", grid=grid(), n_per_class=60, similarity=sim(0.3)).cell == ("near", 100)
    far = advise("mine", grid=grid(), n_per_class=5, similarity=sim(-0.2))
    assert far.cell == ("far", 5) and far.strategy == "freeze_k" and far.course_agrees is True
    assert far.lr_range is None or far.lr_range[0] <= far.lr_range[1]


def test_a_grid_of_another_backbone_is_refused():
    with pytest.raises(ValueError, match="same backbone"):
        advise("mine", "efficientnet_lite0", grid=grid(), n_per_class=5, similarity=sim(0.3))


def test_helpers():
    assert "head" in what_it_freezes("linear_probe")
    with pytest.raises(ValueError, match="unknown strategy"):
        what_it_freezes("magic")
    assert lr_range(grid(), "near", "features") is None
