"""ftkit.data.shifts: tasks, corruptions against hand-written references, label derangements."""
import math

import pytest
import torch
import torch.nn.functional as F

from ftkit.core.imagenet import IMAGENET_MEAN, IMAGENET_STD
from ftkit.data import shifts
from ftkit.data.catalogue import load_dataset
from ftkit.data.shifts import (
    CORRUPTIONS,
    SHIFTS,
    SUBPOPULATIONS,
    TASKS,
    TensorTask,
    apply_shift,
    corrupt,
    fashion_task,
    label_permutation,
    shift_level,
    subpopulation_task,
)

M = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
S = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def _grey(n=4, size=12, seed=0):
    """Normalised grey images, as load_dataset gives them."""
    g = torch.Generator().manual_seed(seed)
    pix = torch.rand(n, 1, size, size, generator=g).expand(n, 3, size, size)
    return (pix - M) / S, pix


def test_tasks_are_disjoint_halves_and_renumbered():
    a = fashion_task("A", "test", n_per_class=5)
    b = fashion_task("B", "test", n_per_class=5)
    assert a.X.shape == (25, 3, 28, 28) and sorted(a.y.unique().tolist()) == [0, 1, 2, 3, 4]
    assert a.classes[0] == "T-shirt/top" and b.classes[0] == "Sandal"
    assert set(TASKS["A"]).isdisjoint(TASKS["B"])
    assert torch.bincount(b.y).tolist() == [5] * 5


def test_subpopulations_use_disjoint_fine_classes_with_the_same_coarse_labels():
    src = subpopulation_task("source", "test", n_per_class=4)
    tgt = subpopulation_task("target", "test", n_per_class=4)
    assert src.classes == tgt.classes == tuple(SUBPOPULATIONS)
    fine_src = {f for s, _ in SUBPOPULATIONS.values() for f in s}
    fine_tgt = {f for _, t in SUBPOPULATIONS.values() for f in t}
    assert fine_src.isdisjoint(fine_tgt)
    # every coarse class appears on both sides, 4 images per fine class
    assert torch.bincount(src.y).tolist() == [4 * len(s) for s, _ in SUBPOPULATIONS.values()]
    assert torch.bincount(tgt.y).tolist() == [4 * len(t) for _, t in SUBPOPULATIONS.values()]


def test_invert_matches_one_minus_pixels():
    X, pix = _grey()
    assert torch.allclose(corrupt(X, "invert"), ((1 - pix) - M) / S, atol=1e-5)


def test_noise_is_seeded_and_clamped():
    X, pix = _grey()
    a, b = corrupt(X, "noise", seed=3), corrupt(X, "noise", seed=3)
    assert torch.equal(a, b) and not torch.equal(a, corrupt(X, "noise", seed=4))
    back = a * S + M
    assert back.min() >= -1e-5 and back.max() <= 1 + 1e-5
    assert (back - pix).abs().mean() > 0.1


def test_blur_matches_a_hand_written_gaussian_filter():
    X, pix = _grey(n=1, size=9)
    sigma = 2.0 * 0.5
    radius = math.ceil(3 * sigma)
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k1 = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k2 = torch.outer(k1, k1) / k1.sum() ** 2
    ref = F.conv2d(F.pad(pix[:, :1], (radius,) * 4, mode="replicate"), k2[None, None])
    out = corrupt(X, "blur", 0.5) * S + M
    assert torch.allclose(out[:, :1], ref, atol=1e-5)


def test_rotation_by_90_degrees_matches_rot90():
    X, pix = _grey(n=2, size=8)
    out = corrupt(X, "rotate", 1.0) * S + M
    # a quarter turn moves pixels exactly; which direction is a convention, so accept either
    ok = [torch.allclose(out, torch.rot90(pix, k, dims=(2, 3)), atol=1e-5) for k in (1, -1)]
    assert any(ok)


def test_task_images_are_exactly_what_load_dataset_gives():
    """The cache keeps uint8 pixels; the normalised images must still be load_dataset's, bit for bit."""
    task = fashion_task("B", "test", n_per_class=3, seed=0)
    data = load_dataset("fashion_mnist", "test", n_per_class=3, seed=0, image_size=28)
    rows = [i for i in range(len(data)) if data.targets[i] in TASKS["B"]]
    assert torch.equal(task.X, torch.stack([data[i][0] for i in rows]))
    pixels, _ = shifts._fashion("test", 3, 0)
    assert pixels.dtype == torch.uint8 and pixels.shape == (30, 28, 28)


@pytest.mark.parametrize("kind", ["blur", "rotate"])
def test_chunked_corruptions_equal_one_whole_batch(kind, monkeypatch):
    X, _ = _grey(n=7)
    whole = corrupt(X, kind, 0.7)
    monkeypatch.setattr(shifts, "_CHUNK", 3)            # 3 + 3 + 1 images
    assert torch.allclose(corrupt(X, kind, 0.7), whole, atol=1e-6)


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_corrupt_leaves_its_input_alone_and_rejects_bad_input(kind):
    X, _ = _grey()
    before = X.clone()
    corrupt(X, kind)
    assert torch.equal(X, before)
    with pytest.raises(ValueError, match="kind must be one of"):
        corrupt(X, "fog")
    with pytest.raises(ValueError, match="severity"):
        corrupt(X, "blur", 0.0)


@pytest.mark.parametrize("k", [2, 3, 5, 10])
def test_label_permutation_is_a_seeded_derangement(k):
    p = label_permutation(k, seed=1)
    assert sorted(p.tolist()) == list(range(k))
    assert all(p[i] != i for i in range(k))
    assert torch.equal(p, label_permutation(k, seed=1))


def test_apply_shift_levels():
    task = TensorTask(*_grey(n=6)[:1], y=torch.arange(6) % 3, classes=("a", "b", "c"), description="t")
    assert {shift_level(s) for s in SHIFTS} == {"input", "feature", "output"}
    assert all(shift_level(c) == "input" for c in CORRUPTIONS)
    permuted = apply_shift(task, "label_permutation", seed=0)
    assert torch.equal(permuted.X, task.X) and not torch.equal(permuted.y, task.y)
    noisy = apply_shift(task, "noise")
    assert torch.equal(noisy.y, task.y) and "noise" in noisy.description
    with pytest.raises(ValueError, match="subpopulation_task"):
        apply_shift(task, "subpopulation")
    with pytest.raises(ValueError, match="Unknown shift 'fog'"):
        apply_shift(task, "fog")
