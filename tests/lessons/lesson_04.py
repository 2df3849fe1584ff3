"""Lesson 04: what its notebook must show (read by tests/test_notebooks.py)."""

from lessons import Lesson


def check_04(r: dict) -> None:
    ratio, acc = r["ratio_init"], r["val_acc"]
    chance = 1.0 / r["num_classes"]
    # The lesson: the plain sigmoid network's first/last gradient ratio is orders of magnitude below the
    # residual network's (measured, seeds 0-1, fast and full: ~1e-16 vs 0.5-0.8).
    assert ratio["sigmoid"] < 1e-3 * ratio["residual"], ratio
    assert ratio["sigmoid"] < 1e-6, ratio
    assert ratio["tanh"] < ratio["relu_bn"] and ratio["tanh"] < ratio["residual"], ratio
    # ... and stays so while training: the sigmoid net's low layers never get a usable signal.
    assert r["ratio_end"]["sigmoid"] < 1e-3 * r["ratio_end"]["residual"], r["ratio_end"]
    # Modern building blocks learn on the same budget; the plain sigmoid network does not leave chance.
    assert acc["residual"] > chance + 0.3, acc
    assert acc["residual"] > acc["sigmoid"] + 0.3, acc
    # The networks we fine-tune: MobileNetV2's ratio is far from the sigmoid network's, from either init.
    for name, v in r["real_ratio"].items():
        assert v > 1e6 * ratio["sigmoid"], (name, v, ratio["sigmoid"])
    # Same budget for everyone.
    assert len(set(r["steps"].values())) == 1, r["steps"]


LESSON = Lesson(notebook="04_vanishing_gradients.ipynb", parameters={"fast": True}, check=check_04)
