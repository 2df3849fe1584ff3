"""Lesson 00: what its notebook must show (read by tests/test_notebooks.py)."""

from lessons import Lesson


def check_00(r: dict) -> None:
    layers = {row["layer"]: row for row in r["layers"]}
    # The anatomy: the image goes in as 3 x 224 x 224, convolutions end at 1280 x 7 x 7,
    # a pool keeps one number per feature map, the FC layer scores 1000 classes.
    assert r["layers"][0]["output"] == "3 x 224 x 224", r["layers"][0]
    assert layers["features.18"]["output"] == "1280 x 7 x 7", layers["features.18"]
    assert layers["classifier.1"]["output"] == "1000" and layers["classifier.1"]["params"] == 1280 * 1000 + 1000
    assert r["layers"][-1]["layer"] == "softmax"
    # MobileNetV2 (torchvision's ImageNet file): 3,504,872 parameters, every one in exactly one group.
    assert r["num_params"] == 3_504_872, r["num_params"]
    assert sum(g["params"] for g in r["groups"]) == r["num_params"], r["groups"]
    assert sum(row["params"] for row in r["layers"]) == r["num_params"], "every parameter in one layer row"
    assert r["groups"][0]["group"] == "stem" and r["groups"][-1]["group"] == "head", r["groups"]
    assert 0.3 < r["head_share"] < 0.4, r["head_share"]
    # The bundled photos, as verified against torchvision's reference preprocessing.
    assert r["top1"]["coffee"]["category"] == "espresso" and r["top1"]["coffee"]["probability"] > 0.9, r["top1"]
    assert r["top1"]["chelsea"]["category"] == "Egyptian cat", r["top1"]
    # The softmax: 1000 probabilities that sum to 1, computed by hand and by classify alike.
    assert r["num_classes"] == 1000 and abs(r["softmax_sum"] - 1) < 1e-5, r
    assert r["by_hand_matches_classify"]


LESSON = Lesson(notebook="00_tour.ipynb", parameters={"fast": True}, check=check_00)
