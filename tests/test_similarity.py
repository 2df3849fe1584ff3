"""measure_similarity: one number with a stated meaning; the catalogue's labels checked against it."""
import pandas as pd
import pytest

from ftkit.lab.similarity import MEANING, _agrees, catalogue_level, measure_similarity


def test_similarity_is_pretrained_minus_pixel_accuracy():
    s = measure_similarity("mobilenet_v2", "digits", n_per_class=3, val_per_class=3, image_size=32)
    assert s.score == pytest.approx(s.pretrained_acc - s.pixel_acc)
    assert 0 <= s.pretrained_acc <= 1 and 0 <= s.pixel_acc <= 1
    assert s.meaning == MEANING and "raw pixels" in MEANING


def test_unknown_data_set_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown data set"):
        measure_similarity("mobilenet_v2", "imagenette", n_per_class=3)


def test_catalogue_levels():
    assert catalogue_level("photo_crops") == "high"
    assert catalogue_level("digits") == "low"
    assert catalogue_level("not_a_dataset") is None


def test_catalogue_agreement_compares_orders_not_values():
    df = pd.DataFrame({"dataset": ["a", "b", "c"], "catalogue": ["high", "low", "low-medium"],
                       "score": [0.4, 0.0, -0.1]})
    assert _agrees(df, 0) is True       # high above both
    assert _agrees(df, 1) is False      # low measured above low-medium
    assert _agrees(df, 2) is False
