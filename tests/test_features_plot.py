"""Figures of npcnn.plot.features: each is rendered to PNG and checked for what a reader needs
(titles naming layer, shape and channels; one panel per channel; no blank panel; pagination)."""
import numpy as np
import pytest

import npcnn
from npcnn import features as F
from npcnn import plot
from npcnn.errors import InputError
from npcnn.layers import Conv2D, DepthwiseConv2D, Flatten, MaxPooling2D, SeparableConv2D, Dense


@pytest.fixture(scope="module")
def model():
    npcnn.set_seed(1)
    return npcnn.Sequential([
        Conv2D(8, 3, padding="same", activation="relu", input_shape=(32, 32, 3), name="conv2d"),
        MaxPooling2D(name="pool"), SeparableConv2D(12, 3, padding="same", name="sep"),
        DepthwiseConv2D(3, depth_multiplier=2, name="dw"), Flatten(name="flat"), Dense(3, name="dense")])


@pytest.fixture(scope="module")
def x():
    # a smooth picture with structure (a disc and a bar), so maps are not noise
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    img = np.stack([(xx - 0.4) ** 2 + (yy - 0.5) ** 2 < 0.08, np.abs(yy - 0.2) < 0.05, xx * yy], -1)
    return img[None].astype("float32")


def image_panels(fig):
    """The image arrays shown in the figure's axes (one per panel that has an image)."""
    return [ax.images[0].get_array() for ax in fig.axes if ax.images]


def save(fig, tmp_path, name):
    path = tmp_path / name
    fig.savefig(path, dpi=60)
    import matplotlib.image as mpimg
    png = mpimg.imread(path)
    assert png.std() > 0.02, f"{name} looks blank"
    return png


def test_grid_shape():
    assert plot.grid_shape(8) == (2, 4)
    assert plot.grid_shape(32) == (4, 8)
    assert plot.grid_shape(64) == (8, 8)
    assert plot.grid_shape(3) == (1, 3)
    assert plot.grid_shape(7) == (3, 3)
    assert plot.grid_shape(12) == (3, 4)


def test_feature_grid_2x4_and_pages(model, x, tmp_path):
    maps = F.feature_maps(model, x, "conv2d")
    fig = plot.plot_feature_grid(maps, "conv2d")
    assert "conv2d" in fig._suptitle.get_text() and "(1, 32, 32, 8)" in fig._suptitle.get_text()
    panels = image_panels(fig)
    assert len(panels) == 8 and len(fig.axes) == 8
    np.testing.assert_array_equal(panels[5], maps[0, ..., 5])
    save(fig, tmp_path, "grid.png")
    big = np.random.default_rng(0).normal(size=(1, 4, 4, 512))
    fig = plot.plot_feature_grid(big, "block5_conv3", page=2)
    assert "channels 128-191 of 512" in fig._suptitle.get_text() and len(image_panels(fig)) == 64
    np.testing.assert_array_equal(image_panels(fig)[0], big[0, ..., 128])
    with pytest.raises(InputError, match="page 8 does not exist"):
        plot.plot_feature_grid(big, page=8)


def test_feature_strip_and_layer_strips(model, x, tmp_path):
    maps = F.feature_maps(model, x, "sep")
    fig = plot.plot_feature_strip(maps, "sep", cmap="gray", per_row=6)
    ax = fig.axes[0]
    assert ax.get_title().startswith("sep  (1, 16, 16, 12)")
    shown = ax.images[0].get_array()
    assert shown.shape == (2 * 17 - 1, 6 * 17 - 1)                     # 2 rows of 6, 1-pixel gaps
    np.testing.assert_array_equal(shown[17:33, 0:16], F.standardize(maps)[0, ..., 6])
    assert ax.images[0].get_cmap().name == "gray" and ax.images[0].get_clim() == (0, 255)
    save(fig, tmp_path, "strip.png")
    fig = plot.plot_layer_strips(F.all_feature_maps(model, x, kinds="all"), max_channels=8)
    titles = [a.get_title(loc="left") for a in fig.axes]
    assert titles[0].startswith("conv2d  (1, 32, 32, 8)") and "channels 0-7 of 24" in titles[-1]
    save(fig, tmp_path, "strips.png")


def test_filters_rgb_and_multichannel(model, tmp_path):
    f = F.filters(model, "conv2d")
    fig = plot.plot_filters(f, "conv2d")
    panels = image_panels(fig)
    assert len(panels) == 8 and panels[0].shape == (3, 3, 3)            # colour images
    np.testing.assert_allclose(panels[3], f[3])
    save(fig, tmp_path, "filters_rgb.png")
    fig = plot.plot_filters(F.filters(model, "sep", part="effective"), "sep", max_inputs=8)
    assert len(image_panels(fig)) == 12 * 8 and "first 8 of 8" not in fig._suptitle.get_text()
    save(fig, tmp_path, "filters_sep.png")
    fig = plot.plot_filters(F.filters(model, "dw"), "dw")
    assert len(image_panels(fig)) == 24
    save(fig, tmp_path, "filters_dw.png")
    fig = plot.plot_weight_histograms(F.layer_weights(model))
    assert [a.get_title() for a in fig.axes if a.patches][:2] == ["conv2d (216)", "sep (168)"]
    save(fig, tmp_path, "hist.png")


def test_gallery_and_dataset_examples(model, x, tmp_path):
    imgs = F.maximize(model, F.channel("sep", [0, 1, 2]), steps=3, progress=False)
    fig = plot.plot_gallery(imgs, titles=["a", "b", "c"])
    assert len(image_panels(fig)) == 3
    save(fig, tmp_path, "gallery.png")
    rng = np.random.default_rng(0)
    data = np.clip(x + rng.normal(0, 0.3, size=(20, 32, 32, 3)), 0, 1).astype("float32")
    top = F.top_k_images(model, data, "pool", k=4, batch_size=6, progress=False)
    fig = plot.plot_dataset_examples(top, layer="pool", max_channels=3)
    assert len(image_panels(fig)) == 12 and "channels 0-2 of 8" in fig._suptitle.get_text()
    save(fig, tmp_path, "examples_patches.png")
    fig = plot.plot_dataset_examples(top, images=data, max_channels=3)
    assert sum(len(a.patches) for a in fig.axes) == 12                    # one receptive-field box each
    save(fig, tmp_path, "examples_images.png")
