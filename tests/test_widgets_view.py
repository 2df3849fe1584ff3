"""What a learner sees in a widget: exact start values, no empty image, no blank dropdown, crisp PNGs."""
import numpy as np
import pytest

from ftkit.viz.widgets import centre_crop, lr_slider, predict_widget, race_widget


@pytest.mark.parametrize("lr", [3e-4, 1e-3, 7.05e-4, 2.5e-2])
def test_lr_slider_starts_exactly_at_the_lesson_value(lr):
    s = lr_slider(lr, "LR")
    assert s.value == lr  # a FloatLogSlider would snap 3e-4 to 3.16e-4
    assert s.style.description_width == "initial"  # labels are never cut


def test_lr_slider_rejects_nonsense():
    with pytest.raises(ValueError, match="positive"):
        lr_slider(0.0, "LR")


def test_race_widget_starts_at_the_given_values_and_hides_its_empty_image():
    w = race_widget(lambda **k: k, n_per_class=12, epochs=3, num_seeds=2, lr_finetune=3e-4, lr_scratch=3e-3,
                    lr_probe=1e-2)
    assert w.settings() == {"n_per_class": 12, "epochs": 3, "num_seeds": 2, "lr_finetune": 3e-4,
                            "lr_scratch": 3e-3, "lr_probe": 1e-2}
    assert w.image.layout.display == "none"
    with pytest.raises(TypeError, match="unknown settings"):
        race_widget(lambda **k: k, images=3)


def test_predict_widget_runs_without_a_kernel():
    from ftkit.models.zoo import load_backbone

    rng = np.random.default_rng(0)
    photos = {"noise": rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)}
    w = predict_widget(load_backbone("mobilenet_v2"), photos, top_k=3)
    assert w.image.layout.display == "none"
    w.controls["zoom"].value = 0.5
    w.button.click()
    assert "most likely" in w.status.value, w.status.value
    assert w.image.layout.display == "" and w.image.value[:4] == b"\x89PNG"
    assert int(w.image.width) == 650  # shown at its size in inches x 100, rendered at 150 dpi
    assert len(w.result) == 3 and "nan" not in w.table.value.lower()
    assert centre_crop(photos["noise"], 0.5).shape == (30, 40, 3)
