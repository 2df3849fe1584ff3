"""Smoke tests for the feature plots (data in, Axes out) and the lesson 03/04 widgets (driven without a kernel)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from feature_nets import Spots, stages  # noqa: E402
from tiny_task import Quadrants  # noqa: E402

from ftkit.analysis.activations import activation_maps  # noqa: E402
from ftkit.analysis.cam import class_activation_maps  # noqa: E402
from ftkit.analysis.embeddings import Embedding  # noqa: E402
from ftkit.analysis.featviz import visualize_channels  # noqa: E402
from ftkit.analysis.filters import first_layer_filters  # noqa: E402
from ftkit.analysis.gradients import gradient_flow  # noqa: E402
from ftkit.analysis.patches import top_patches  # noqa: E402
from ftkit.models.deepnets import deep_net  # noqa: E402
from ftkit.viz import feature_plots as fp  # noqa: E402
from ftkit.viz.feature_widgets import FeatureExplorer, GradientExplorer  # noqa: E402

MEAN, STD = (0.5,) * 3, (0.25,) * 3


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_tile_places_images_on_a_grid():
    g = fp.tile(np.zeros((5, 2, 2, 3)), ncols=3, pad=1, fill=1.0)
    assert g.shape == (2 * 3 + 1, 3 * 3 + 1, 3) and g[1, 1, 0] == 0 and g[0, 0, 0] == 1


def test_every_plot_returns_what_it_drew_on():
    m = stages()
    x = torch.randn(3, 3, 16, 16)
    acts = activation_maps(m, x)
    assert fp.plot_filter_grid(first_layer_filters(m).weight).images
    assert np.asarray(fp.plot_activation_maps(acts, 1, k=3, mean=MEAN, std=STD)).shape == (3, 4)
    assert fp.plot_top_patches(top_patches(m, Spots(), "s1", 0, k=4), mean=MEAN, std=STD).images
    vis = visualize_channels(m, [("stem", 0), ("s2", 1)], size=16, steps=2)
    assert len(fp.plot_feature_vis(vis)) == 2
    cams = {"a": class_activation_maps(m, x), "b": class_activation_maps(m, x, method="gradcampp")}
    assert np.asarray(fp.plot_cams(x, cams, mean=MEAN, std=STD, class_names=["w", "x", "y", "z"])).shape == (3, 3)
    table = pd.DataFrame({"group": ["stem", "s1"], "depth": [0, 1], "val_acc": [0.3, 0.6], "drift": [0.1, 0.2],
                          "cka": [0.9, 0.5]})
    assert fp.plot_probes({"a": table, "b": table}, chance={"a": 0.25}).lines
    assert len(fp.plot_movement(table)) == 2
    emb = Embedding("stem", np.random.default_rng(0).normal(size=(10, 2)), np.arange(10) % 3, 0.5)
    assert len(fp.plot_embeddings([emb, emb], class_names=["a", "b", "c"])) == 2
    flow = gradient_flow(deep_net((3, 16, 16), 4, depth=2, width=8), Quadrants(32), steps=2, every=1,
                         batch_size=16, device="cpu")
    axes = fp.plot_gradient_flow({"net": flow})
    assert len(axes) == 2 and axes[0].get_yscale() == "log"


def test_feature_explorer_redraws_from_the_maps_it_was_given():
    acts = activation_maps(stages(), torch.randn(2, 3, 16, 16))
    ex = FeatureExplorer(acts, mean=MEAN, std=STD, k=4)
    first = ex.view.value
    assert first and ex.channel.value == int(acts.channel_order("stem", 0)[0])
    ex.depth.value = "s2"                                       # the slider: channels re-ranked, figure redrawn
    assert ex.view.value != first and ex.channel.value == int(acts.channel_order("s2", 0)[0])
    assert len(ex.channel.options) == 16
    shown = ex.view.value
    ex.image_pick.value = 1
    assert ex.view.value != shown and ex.last_redraw_s > 0 and ex.last_redraw_cpu_s >= 0
    shown = ex.view.value
    ex.channel.value = ex.channel.options[-1][1]
    assert ex.view.value != shown


def test_gradient_explorer_rebuilds_on_every_control():
    ds = Quadrants(16)
    g = GradientExplorer(ds.x, torch.as_tensor(ds.targets), depth=6, width=8)
    sigmoid = g.table.grad_norm.iloc[0] / g.table.grad_norm.iloc[-1]
    g.controls["residual"].value = True
    g.controls["norm"].value = True
    g.controls["activation"].value = "relu"
    residual = g.table.grad_norm.iloc[0] / g.table.grad_norm.iloc[-1]
    assert residual > 10 * sigmoid and "first/last" in g.status.value
