"""Tests for the depth analyses: depth layers, filters, activation maps, receptive fields and
top patches, feature visualisation, CAMs (against references and hand-built cases)."""
import numpy as np
import pytest
import torch
from feature_nets import Spots, stages
from torch import nn

from ftkit.analysis.activations import activation_maps, capture_outputs
from ftkit.analysis.cam import CAM_METHODS, class_activation_maps, share_inside
from ftkit.analysis.depth import depth_layers, pick_depths
from ftkit.analysis.featviz import FourierImage, pre_activation, visualize_channels
from ftkit.analysis.filters import filter_images, filter_structure, first_layer_filters, structure_summary
from ftkit.analysis.patches import receptive_field, to_rgb, top_patches


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_depth_layers_follow_the_groups_and_pick_by_name_or_spread():
    m = stages()
    d = depth_layers(m)
    assert [(x.group, x.layer, x.depth) for x in d] == [("stem", "stem", 0), ("s1", "s1", 1), ("s2", "s2", 2)]
    assert depth_layers(m, include_head=True)[-1].group == "head"
    assert [x.group for x in pick_depths(d, n=2)] == ["stem", "s2"]
    assert [x.group for x in pick_depths(d, ["s1"])] == ["s1"]
    with pytest.raises(KeyError, match="the groups are"):
        pick_depths(d, ["layer9"])


# ---------------------------------------------------------------- filters

def test_filter_structure_on_hand_built_kernels():
    const = np.ones((1, 3, 5, 5))
    ramp = np.tile(np.linspace(-1, 1, 5), (1, 3, 5, 1))            # smooth, identical R, G, B
    noise = np.random.default_rng(0).normal(size=(64, 3, 5, 5))
    s = filter_structure(np.concatenate([const, ramp, noise]))
    assert s.low_freq_energy[0] == pytest.approx(1.0)                 # all energy in the DC term
    assert s.smoothness[1] > 0.8 and s.channel_coherence[1] == pytest.approx(1.0)
    noisy = s.iloc[2:]
    assert abs(noisy.smoothness.median()) < 0.25 and noisy.channel_coherence.median() < 0.5
    # opposite colours (a colour-opponent filter) are as coherent as equal ones
    opp = np.stack([ramp[0, 0], -ramp[0, 0], ramp[0, 0]])[None]
    assert filter_structure(opp).channel_coherence[0] == pytest.approx(1.0)


def test_first_layer_filters_copy_and_display_range():
    m = stages()
    f = first_layer_filters(m)
    assert f.layer == "stem.0" and f.weight.shape == (8, 3, 3, 3)
    f.weight[:] = 0
    assert m.stem[0].weight.abs().sum() > 0                            # a copy
    img = filter_images(first_layer_filters(m).weight)
    assert img.shape == (8, 3, 3, 3) and img.min() >= 0 and img.max() <= 1
    assert structure_summary({"a": first_layer_filters(m).weight}).index.tolist() == ["a"]
    with pytest.raises(ValueError, match="no Conv2d"):
        first_layer_filters(nn.Linear(3, 3))


# ---------------------------------------------------------------- activations

def test_activation_maps_one_pass_ranked_channels_and_modes_restored():
    m = stages().train()
    x = torch.randn(2, 3, 16, 16)
    acts = activation_maps(m, x)
    assert m.training and all(mod.training for mod in m.modules())
    assert [tuple(v.shape) for v in acts.maps.values()] == [(2, 8, 16, 16), (2, 8, 8, 8), (2, 16, 4, 4)]
    order = acts.channel_order("s1", 1)
    means = acts.maps["s1"][1].mean(dim=(1, 2)).numpy()
    assert np.all(np.diff(means[order]) <= 0)
    ids, maps = acts.top_channels("s2", 0, k=3)
    assert maps.shape == (3, 4, 4) and list(ids) == list(acts.channel_order("s2", 0)[:3])
    m.eval()
    with torch.no_grad():
        ref = m.s1(m.stem(x))
    assert torch.allclose(acts.maps["s1"], ref)
    with pytest.raises(ValueError, match="unsqueeze"):
        activation_maps(m, x[0])
    with pytest.raises(KeyError):
        capture_outputs(m, x, ["nope"])


# ---------------------------------------------------------------- receptive fields and patches

def test_receptive_field_matches_the_arithmetic():
    # stem 3x3 s1: 3; + 3x3 s2: 5; + 3x3 s2 (jump 2): 9 -- capped by nothing at 32 px
    m = stages()
    assert [receptive_field(m, d.layer, 32).size for d in depth_layers(m)] == [3, 5, 9]
    assert receptive_field(m, "s2", 32).stride == 4 and receptive_field(m, "s2", 32).map_size == 8


def test_top_patches_find_the_bright_spot_and_crop_to_the_field():
    m = stages()
    with torch.no_grad():  # a channel that sums its input: fires on the bright spot
        m.stem[0].weight.zero_()
        m.stem[0].weight[0] = 1.0
        m.stem[0].bias.zero_()
    data = Spots(hot=5, r=10, c=4)
    top = top_patches(m, data, "stem", channel=0, k=3)
    assert top.indices[0] == 5 and top.scores[0] == top.scores.max()
    assert top.patches.shape == (3, 3, 3, 3)
    assert tuple(top.centers[0]) == (10, 4)
    assert torch.equal(top.patches[0], data[5][0][:, 9:12, 3:6])
    rgb = to_rgb(top.patches, (0.5,) * 3, (0.5,) * 3)
    assert rgb.shape == (3, 3, 3, 3) and rgb.min() >= 0 and rgb.max() <= 1
    with pytest.raises(IndexError, match="channels"):
        top_patches(m, data, "stem", channel=99)


# ---------------------------------------------------------------- feature visualisation

def test_fourier_image_range_and_shape():
    img = FourierImage(2, 12, generator=torch.Generator().manual_seed(0))()
    assert img.shape == (2, 3, 12, 12) and img.min() >= 0 and img.max() <= 1


def test_visualize_channels_raises_each_target_and_leaves_the_model_alone():
    m = stages().train()
    before = state(m)
    assert pre_activation(m, "s1") == "s1.0" and pre_activation(m, "stem") == "stem.1"
    vis = visualize_channels(m, [("stem", 0), ("s2", 3)], size=16, steps=15, lr=0.1, seed=0)
    assert vis.images.shape == (2, 16, 16, 3)
    assert np.all(vis.activation > vis.start_activation), (vis.start_activation, vis.activation)
    assert same(before, state(m)) and m.training
    assert all(p.grad is None for p in m.parameters())
    with pytest.raises(KeyError):
        visualize_channels(m, [("nope", 0)], steps=1)


# ---------------------------------------------------------------- class activation maps

def test_cams_through_torchcam_match_a_hand_computed_gradcam():
    m = stages()
    x = torch.randn(3, 3, 16, 16)
    res = class_activation_maps(m, x, method="gradcam", layer="s2")
    assert res.maps.shape == (3, 16, 16) and res.maps.max() == pytest.approx(1.0, abs=1e-5)
    # reference Grad-CAM at the layer's resolution: relu(sum_c mean(dy/dA_c) A_c)
    acts = {}
    h = m.s2.register_forward_hook(lambda mod, a, out: acts.setdefault("a", out))
    out = m(x)
    h.remove()
    a = acts["a"]
    grads = torch.autograd.grad(out[torch.arange(3), out.argmax(1)].sum(), a)[0]
    ref = torch.relu((grads.mean(dim=(2, 3), keepdim=True) * a).sum(1)).detach()
    ref = torch.nn.functional.interpolate(ref[:, None], size=(16, 16), mode="bilinear", align_corners=False)[:, 0]
    ref = ref / ref.flatten(1).amax(1).view(-1, 1, 1)
    assert np.allclose(res.maps, ref.numpy(), atol=1e-4)
    assert list(res.classes) == out.argmax(1).tolist()
    for method in CAM_METHODS:
        assert class_activation_maps(m, x, method=method).maps.shape == (3, 16, 16)
    assert all(p.grad is None for p in m.parameters())
    with pytest.raises(ValueError, match="choose one of"):
        class_activation_maps(m, x, method="cam9")


def test_share_inside():
    maps = np.zeros((2, 4, 4))
    maps[0, :2] = 1.0
    maps[1] = 1.0
    masks = np.zeros((2, 4, 4), bool)
    masks[:, :2] = True
    assert np.allclose(share_inside(maps, masks), [1.0, 0.5])
