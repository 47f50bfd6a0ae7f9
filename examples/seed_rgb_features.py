"""Colour: the first-layer filters of a trained RGB model drawn as colour images (normalised 0..1 over
the layer), and activation maximization with Lucid's Fourier parameterisation and colour decorrelation.
Model: the MobileNetV2 of nsfwjs (a TF.js layers model, 224x224 RGB, inputs 0..1).

    python examples/seed_rgb_features.py [out_dir] [steps]
"""
import os
import sys

import numpy as np

import npcnn
from npcnn import features as F
from npcnn import plot

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(HERE, "..", "tests", "fixtures", "tfjs", "nsfwjs_mobilenet_v2", "model.json")


def main(out="seed_figures", steps="48"):
    os.makedirs(out, exist_ok=True)
    model = npcnn.load_model(MODEL)
    plot.plot_filters(F.filters(model, "Conv1"), "MobileNetV2 Conv1").savefig(
        os.path.join(out, "rgb_conv1_filters.png"), dpi=100)
    plot.plot_filters(F.filters(model, "expanded_conv_depthwise"), "expanded_conv_depthwise").savefig(
        os.path.join(out, "rgb_depthwise_filters.png"), dpi=100)
    for layer in ["Conv1_relu", "block_3_expand_relu"]:
        obj = F.channel(layer, list(range(8)))
        options = dict(param="fourier", decorrelate=True, input_range=(0.0, 1.0), seed=0)
        start = F.objective_value(model, obj, F.maximize(model, obj, steps=0, progress=False, **options))
        image = F.maximize(model, obj, steps=int(steps), **options)
        end = F.objective_value(model, obj, image)
        print(f"{obj!r}: start {np.round(start, 2)} -> end {np.round(end, 2)}")
        titles = [f"ch {i}: {a:.2f}->{b:.2f}" for i, (a, b) in enumerate(zip(start, end))]
        plot.plot_gallery(image, titles=titles, title=f"MobileNetV2 {layer}").savefig(
            os.path.join(out, f"rgb_am_{layer}.png"), dpi=100)


if __name__ == "__main__":
    main(*sys.argv[1:])
