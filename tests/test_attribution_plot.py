"""npcnn.plot.attribution: the figures carry what they claim (colour scales, colorbars, titles, AUCs)."""
import numpy as np
import pytest
from matplotlib.figure import Figure

from npcnn import plot
from npcnn.attribution.metrics import Curve, Randomization
from npcnn.errors import InputError

rng = np.random.default_rng(0)
IMAGE = rng.uniform(-1, 1, (16, 16, 1))


def _heat_images(fig):
    """The translucent heatmap AxesImages (the image underneath is drawn opaque)."""
    return [im for ax in fig.axes for im in ax.get_images() if im.get_alpha() is not None]


def test_overlay_signed_map_is_diverging_and_symmetric(tmp_path):
    heat = rng.normal(size=(16, 16))
    fig = plot.plot_overlay(IMAGE, heat, alpha=0.3, title="IG", percentile=100)
    assert isinstance(fig, Figure)
    (im,) = _heat_images(fig)
    lo, hi = im.get_clim()
    assert im.get_alpha() == 0.3 and lo == -hi == -np.abs(heat).max()
    assert im.get_cmap().name == "RdBu_r"
    assert len(fig.axes) == 2 and fig.axes[0].get_title() == "IG"    # the map and its colorbar
    fig.savefig(tmp_path / "overlay.png")
    assert (tmp_path / "overlay.png").stat().st_size > 1000


def test_overlay_positive_map_uses_jet_from_zero_and_clips_outliers():
    heat = rng.uniform(0, 1, (16, 16))
    heat[0, 0] = 100.0
    (im,) = _heat_images(plot.plot_overlay(IMAGE, heat))
    lo, hi = im.get_clim()
    assert lo == 0 and hi == pytest.approx(np.percentile(heat, 99.5)) and hi < 100
    assert im.get_cmap().name == "jet"


def test_overlay_channels_are_summed_and_sizes_checked():
    heat = rng.uniform(0, 1, (16, 16, 3))
    (im,) = _heat_images(plot.plot_overlay(rng.uniform(0, 255, (16, 16, 3)), heat, percentile=100))
    np.testing.assert_allclose(im.get_array(), heat.sum(axis=-1))
    with pytest.raises(InputError, match="does not match"):
        plot.plot_overlay(IMAGE, np.zeros((8, 8)))


def test_attribution_panels():
    maps = {"Grad-CAM": rng.uniform(0, 1, (16, 16)), "saliency": rng.normal(size=(16, 16, 1)),
            "LRP": rng.normal(size=(16, 16))}
    fig = plot.plot_attributions(IMAGE, maps, title="three methods", cols=2)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["input", "Grad-CAM", "saliency", "LRP"]
    assert len(_heat_images(fig)) == 3
    assert fig._suptitle.get_text() == "three methods"


def test_curves_and_randomization():
    f = np.linspace(0, 1, 5)
    curves = {"a": Curve(f, np.array([[1, 0.5, 0.2, 0.1, 0.0]]), np.array([0.3])),
              "b": Curve(f, np.array([[1, 0.9, 0.8, 0.5, 0.0]]), np.array([0.6]))}
    fig = plot.plot_curves(curves, title="deletion")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["a (AUC 0.300)", "b (AUC 0.600)"]
    maps = [rng.normal(size=(1, 16, 16)) for _ in range(3)]
    res = Randomization(["original", "dense", "conv"], maps, np.array([[1.0], [0.5], [0.1]]))
    fig = plot.plot_randomization(res, input_image=IMAGE)
    ticks = [t.get_text() for t in fig.axes[-1].get_xticklabels()]
    assert ticks == ["original", "dense", "conv"]
    np.testing.assert_allclose(fig.axes[-1].get_lines()[0].get_ydata(), [1.0, 0.5, 0.1])
