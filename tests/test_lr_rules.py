"""Suggestion rules against fastai's and torch-lr-finder's numbers on fixed curves,
and the edge cases that crash or mislead the peers."""
import math

import numpy as np
import pytest

from ftkit.lr.rules import (
    RULES,
    Suggestion,
    disagreement,
    gradient,
    minimum,
    reliability_notes,
    slide,
    steep,
    suggest,
    trim,
    valley,
)


# Fixed curves: closed forms, with deterministic sin "noise" so valleys are not trivial.
def curve_a():  # exponential sweep over 8 decades, smooth dip then explosion
    lrs = np.logspace(-7, 1, 90)
    x = np.log10(lrs)
    losses = (2.3 - 1.2 / (1 + np.exp(-2.5 * (x + 3.5))) + 0.6 * np.exp(1.8 * (x - 0.2))
              + 0.03 * np.sin(9 * x))
    return lrs, losses


def curve_b():  # noisy exponential sweep
    lrs = np.logspace(-6, 0, 120)
    x = np.log10(lrs)
    i = np.arange(120)
    noise = 0.04 * np.sin(i * i * 0.37) + 0.02 * np.cos(i * 1.3)
    losses = 1.8 - 0.9 / (1 + np.exp(-3.0 * (x + 2.5))) + 0.4 * np.exp(2.2 * (x + 0.4)) + noise
    return lrs, losses


def curve_c():  # linear sweep
    lrs = np.linspace(1e-3, 0.3, 70)
    losses = (1.5 - 2.0 * lrs + 12 * np.maximum(lrs - 0.15, 0) ** 2
              + 0.01 * np.sin(np.arange(70) * 2.1))
    return lrs, losses


CURVES = {"a": curve_a, "b": curve_b, "c": curve_c}

# Reference values from fastai 2.8.12 (fastai.callback.schedule.valley/slide/minimum/steep),
# installed in a throwaway venv (/tmp/fastai_ref, pip install fastai --no-deps + fastcore,
# fastprogress==1.0.3, fasttransform, plum-dispatch, rich) and called on
# torch.tensor(curve, dtype=torch.float64) with num_it=100. With float32 tensors (what
# fastai's lr_find passes) the same points are chosen (values agree to ~1e-7 relative).
FASTAI = {
    "a": {"valley": 0.0003940085244553465, "slide": 9.744600632908472e-07,
          "minimum": 0.002473195382353419, "steep": 0.0001399804598013949},
    "b": {"valley": 0.0038004229563658857, "slide": 0.0435166507092442,
          "minimum": 0.003874675120456128, "steep": 0.0016861288382868805},
    "c": {"valley": 0.17866666666666667, "slide": 0.13966666666666666,
          "minimum": 0.023066666666666666, "steep": 0.18733333333333332},
}
# fastai's lr_find applies the rules to recorder.lrs[num_it//10:-5] (float32):
FASTAI_TRIMMED = {
    "a": {"valley": 0.00048461099504493177, "slide": 9.744600220074062e-07,
          "minimum": 0.00247319545596838, "steep": 0.00013998046051710844},
    "b": {"valley": 0.004793715663254261, "slide": 0.043516650795936584,
          "minimum": 0.0038746751844882963, "steep": 0.0016861287876963615},
}
# torch-lr-finder 0.2.2: LRFinder.plot(skip_start=0, skip_end=0, suggest_lr=True) on the
# same exponential curves (np.gradient per step; same point as ours on log-LR).
TORCH_LR_FINDER = {"a": 0.00017216903932435344, "b": 0.003012947724726992}


@pytest.mark.parametrize("name", sorted(FASTAI))
@pytest.mark.parametrize("rule", ["valley", "slide", "minimum", "steep"])
def test_rules_match_fastai(name, rule):
    got = RULES[rule](*CURVES[name]())
    assert got.ok and got.reason is None
    assert got.lr == pytest.approx(FASTAI[name][rule], rel=1e-12)


@pytest.mark.parametrize("name", sorted(FASTAI_TRIMMED))
def test_trimmed_rules_match_fastai_lr_find(name):
    lrs, losses = CURVES[name]()
    got = suggest(*trim(lrs, losses, len(lrs) // 10, 5), ["valley", "slide", "minimum", "steep"])
    for rule, ref in FASTAI_TRIMMED[name].items():
        assert got[rule].lr == pytest.approx(ref, rel=1e-6), rule  # float32 on their side


@pytest.mark.parametrize("name", sorted(TORCH_LR_FINDER))
def test_gradient_rule_matches_torch_lr_finder_on_exp_sweep(name):
    assert gradient(*CURVES[name]()).lr == pytest.approx(TORCH_LR_FINDER[name], rel=1e-12)


def test_gradient_rule_is_central_difference_on_log_lr():
    lrs, losses = curve_c()
    slopes = np.gradient(losses, np.log10(lrs))
    assert gradient(lrs, losses).lr == lrs[np.argmin(slopes)]


def test_valley_by_hand_on_a_short_curve():
    # longest decreasing run: 5, 4, 3, 2, 1 at indices 1..5 -> end=5, n=5, start=0;
    # n/3 = 1.67 -> 1, n/6 = 0.83 -> 0: idx 1
    lrs = np.array([1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0])
    losses = np.array([3.0, 5.0, 4.0, 3.0, 2.0, 1.0, 9.0])
    s = valley(lrs, losses)
    assert s.lr == 1e-3 and s.point == (1e-3, 5.0)


def test_minimum_is_a_tenth_of_the_lowest_point():
    lrs, losses = curve_a()
    s = minimum(lrs, losses)
    i = int(np.argmin(losses))
    assert s.lr == lrs[i] / 10 and s.point == (lrs[i], losses[i])


def test_steep_by_hand():
    lrs = np.array([1e-3, 1e-2, 1e-1, 1.0])
    losses = np.array([2.0, 1.9, 1.0, 3.0])  # steepest fall between 1e-2 and 1e-1
    assert steep(lrs, losses).lr == 1e-2


@pytest.mark.parametrize("rule", sorted(RULES))
@pytest.mark.parametrize("case, lrs, losses, words", [
    ("flat", np.logspace(-5, 0, 40), np.full(40, 2.3), "flat"),
    ("all nan", np.logspace(-5, 0, 40), np.full(40, np.nan), "no finite"),
    ("empty", np.array([]), np.array([]), "empty curve"),
    ("one point", np.array([1e-3]), np.array([1.0]), "usable points"),
    ("diverged at once", np.logspace(-5, 0, 40), np.r_[1.0, np.full(39, np.inf)], "usable points"),
])
def test_unusable_curves_give_a_reason_not_a_crash(rule, case, lrs, losses, words):
    s = RULES[rule](lrs, losses)
    assert isinstance(s, Suggestion) and not s.ok and s.lr is None
    assert words in s.reason


@pytest.mark.parametrize("rule", ["valley", "minimum", "steep", "gradient"])
def test_rising_curve_gives_a_reason(rule):
    lrs = np.logspace(-5, 0, 30)
    s = RULES[rule](lrs, np.linspace(1.0, 3.0, 30))
    assert not s.ok and s.reason


def test_slide_needs_more_points_than_its_window():
    lrs = np.logspace(-5, 0, 15)
    s = slide(lrs, np.linspace(3.0, 1.0, 15))
    assert not s.ok and "needs at least 16" in s.reason  # fastai raises IndexError here


def test_curve_is_cut_at_the_first_nan():
    lrs, losses = curve_b()
    cut = losses.copy()
    cut[100:] = np.nan
    assert suggest(lrs, cut) == suggest(lrs[:100], losses[:100])


def test_bad_calls_raise_with_a_fix():
    with pytest.raises(ValueError, match="one loss per learning rate"):
        valley([1e-3, 1e-2], [1.0])
    with pytest.raises(ValueError, match="> 0"):
        steep([0.0, 1e-2, 1e-1], [1.0, 0.5, 0.2])
    with pytest.raises(KeyError, match="valley"):
        suggest([1e-3, 1e-2], [1.0, 0.5], ["valey"])


def test_trim_like_fastai():
    lrs, losses = np.arange(1.0, 101.0), np.arange(100.0)
    t_lrs, t_losses = trim(lrs, losses, 10, 5)
    assert t_lrs[0] == 11.0 and t_lrs[-1] == 95.0 and len(t_losses) == 85
    assert len(trim(lrs[:8], losses[:8], 10, 5)[0]) == 0


def test_disagreement_in_decades():
    close = {"a": Suggestion("a", 1e-3), "b": Suggestion("b", 9e-3), "c": Suggestion("c", None)}
    assert disagreement(close) is None
    far = {"a": Suggestion("a", 1e-4), "b": Suggestion("b", 3e-2)}
    msg = disagreement(far)
    assert f"{math.log10(300):.1f} decades" in msg and "a 1.0e-04" in msg


def test_reliability_notes_flag_rules_and_seeds():
    agree = {"valley": Suggestion("valley", 1e-3), "minimum": Suggestion("minimum", 2e-3)}
    other = {"valley": Suggestion("valley", 3e-3), "minimum": Suggestion("minimum", 1e-3)}
    seeds_agree = [agree, other]
    assert reliability_notes(agree, seeds_agree) == []
    apart = {"valley": Suggestion("valley", 5e-2), "minimum": Suggestion("minimum", 1e-3)}
    seeds_apart = [agree, apart]
    (note,) = reliability_notes(agree, seeds_apart)
    assert note.startswith("valley moves 1.7 decades across 2 seeds")
    none = {"valley": Suggestion("valley", None, reason="flat")}
    assert reliability_notes(none) == ["no rule found a usable region of the curve"]
