"""Dataset examples, "the other approach" of the visualisation notes: instead of synthesising an image,
find the images (and the image patches, cropped to the receptive field of the strongest unit) of a
dataset that most activate each channel. Here on the fer mini-Xception with a small dataset made of
random crops of the two sample photos and the Fashion-MNIST fixture images.

    python examples/seed_dataset_examples.py [out_dir]
"""
import json
import os
import sys

import numpy as np

import npcnn
from npcnn import features as F
from npcnn import plot
from npcnn.images import load_image, resize

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")


def dataset(n_crops=150, seed=0):
    """(N, 64, 64, 1) in -1..1: random square crops (zoomed 1x-4x) of the sample photos + Fashion-MNIST."""
    rng = np.random.default_rng(seed)
    out = []
    for name in ["grace_hopper.jpg", "astronaut.png"]:
        img = load_image(os.path.join(ROOT, "weights", "samples", name), grayscale=True)
        h, w = img.shape[:2]
        for _ in range(n_crops):
            s = int(rng.integers(min(h, w) // 8, min(h, w) // 2))
            y, x = rng.integers(0, h - s), rng.integers(0, w - s)
            out.append(resize(img[y:y + s, x:x + s], (64, 64)))
    fashion = np.load(os.path.join(ROOT, "tests", "fixtures", "fashion_mnist", "subset.npz"))["x_test"][:100]
    out += [resize(f[..., None].astype("float32"), (64, 64)) for f in fashion]
    return ((np.stack(out) / 255.0 - 0.5) * 2.0).astype("float32")


def main(out="seed_figures", layer="activation_4"):
    os.makedirs(out, exist_ok=True)
    model = npcnn.load_model(os.path.join(ROOT, "weights", "fer_mini_xception.hdf5"))
    x = dataset()
    rf = F.receptive_field(model, layer)
    print(f"{len(x)} images; {layer} receptive field {rf}")
    top = F.top_k_images(model, x, layer, k=6, batch_size=32, channels=range(8))
    fig = plot.plot_dataset_examples(top, layer=layer)
    fig.savefig(os.path.join(out, "dataset_examples_patches.png"), dpi=100)
    fig = plot.plot_dataset_examples(top, images=x, layer=layer, max_channels=4)
    fig.savefig(os.path.join(out, "dataset_examples_images.png"), dpi=100)
    print("wrote", out)


if __name__ == "__main__":
    main(*sys.argv[1:])
