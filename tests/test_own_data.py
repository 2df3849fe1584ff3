"""Your own folder: the example folder, the check, cross-validated strategies, the saved model and report."""
import json

import pytest

from ftkit.lab.own_data import build_example_folder, check_folder, cross_validate_strategies, train_and_save
from ftkit.lab.scenarios import scenario_strategies
from ftkit.training.spec import TrainSpec


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_example_folder(tmp_path_factory.mktemp("own") / "images", "digits", n_classes=2, n_per_class=8)


def test_example_folder_is_checked_and_readable(folder):
    report = check_folder(folder)
    assert report.classes == ["0", "1"]
    assert sum(report.train_counts.values()) + sum(report.test_counts.values()) == 16
    assert not report.problems, report.problems
    with pytest.raises(FileExistsError, match="already exists"):
        build_example_folder(folder, "digits")


def test_check_lists_problems(tmp_path):
    root = build_example_folder(tmp_path / "tiny", "digits", n_classes=2, n_per_class=3)
    assert any("fewer than 5" in p for p in check_folder(root).problems)
    with pytest.raises(FileNotFoundError):
        check_folder(tmp_path / "nope")


def test_cross_validation_and_saving(folder, tmp_path):
    probe, disc = scenario_strategies(["linear_probe", "discriminative"],
                                      train=TrainSpec(lr=1e-2, max_steps=2, batch_size=4, device="cpu"))
    df = cross_validate_strategies([probe, disc, "features"], folder, k=2, image_size=32)
    assert sorted(df["strategy"].unique()) == ["discriminative", "features", "linear_probe"] and len(df) == 6
    assert df["val_acc"].between(0, 1).all()
    sizes = df.groupby("strategy")["n_val"].apply(list)
    assert sizes["features"] == sizes["linear_probe"] == sizes["discriminative"]   # the same folds
    with pytest.raises(TypeError, match="Strategy objects"):
        cross_validate_strategies([3], folder, k=2, image_size=32)
    info = train_and_save(probe, folder, tmp_path / "model", image_size=32, report={"advice": "probe it"})
    assert (tmp_path / "model" / "model.pt").exists()
    assert json.loads((tmp_path / "model" / "report.json").read_text())["test_acc"] == info["test_acc"]
    assert "probe it" in (tmp_path / "model" / "report.md").read_text()
    with pytest.raises(FileExistsError):
        train_and_save(probe, folder, tmp_path / "model", image_size=32)
