"""The cats-vs-dogs article's whole pipeline in npcnn: its Sequential model at 150x150x3, Adam, binary
cross-entropy from logits, ImageDataGenerator augmentation and flow_from_directory; then its figures:
the filters of every conv layer, and the per-layer feature-map strips (64·z + 128) for one image.

    python examples/train_cats_vs_dogs.py DATA_DIR [--epochs 50] [--steps 1000] [-o out_dir]

DATA_DIR holds train/cats, train/dogs, validation/cats, validation/dogs (Kaggle's "Dogs vs. Cats",
not shipped: its licence does not allow it). The trained model is saved as out_dir/cats_vs_dogs.keras,
which Keras loads, and which every npcnn command accepts (its one-logit head: npcnn explain ... uses the
logit as the score).
"""
import argparse
import os

import numpy as np

import npcnn
from npcnn import features, plot
from npcnn import layers as L
from npcnn.atomic import save_figure
from npcnn.train import BinaryCrossentropy, ImageDataGenerator

SIZE = (150, 150)


def build_model():
    """The article's model, layer for layer."""
    return npcnn.Sequential([
        L.Conv2D(16, 3, padding="same", activation="relu", input_shape=(*SIZE, 3)),
        L.MaxPooling2D(),
        L.Dropout(0.2),
        L.Conv2D(32, 3, padding="same", activation="relu"),
        L.MaxPooling2D(),
        L.Conv2D(64, 3, padding="same", activation="relu"),
        L.MaxPooling2D(),
        L.Dropout(0.2),
        L.Flatten(),
        L.Dense(512, activation="relu"),
        L.Dense(1),
    ], name="cats_vs_dogs")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="folder with train/ and validation/, one sub-folder per class")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--steps", type=int, default=None, help="batches per epoch (default: the whole folder)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("-o", "--out", default="cats_vs_dogs_out")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    npcnn.set_seed(0)

    augment = ImageDataGenerator(rescale=1 / 255, rotation_range=45, width_shift_range=0.15,
                                 height_shift_range=0.15, horizontal_flip=True, zoom_range=0.3)
    train = augment.flow_from_directory(os.path.join(args.data, "train"), target_size=SIZE, class_mode="binary",
                                        batch_size=args.batch_size, seed=0)
    val = ImageDataGenerator(rescale=1 / 255).flow_from_directory(
        os.path.join(args.data, "validation"), target_size=SIZE, class_mode="binary", batch_size=args.batch_size,
        shuffle=False)
    model = build_model()
    model.compile(optimizer="adam", loss=BinaryCrossentropy(from_logits=True), metrics=["accuracy"])
    model.summary()
    history = model.fit(train, epochs=args.epochs, steps_per_epoch=args.steps, validation_data=val)
    model.save(os.path.join(args.out, "cats_vs_dogs.keras"))
    print("final:", {k: round(v[-1], 4) for k, v in history.history.items()})

    # the article's figures: every conv layer's filters, then one image's feature maps layer by layer
    for layer in features.conv_layers(model):
        save_figure(plot.plot_filters(features.filters(model, layer), layer=layer, max_filters=32),
                    os.path.join(args.out, f"filters_{layer}.png"))
    x = next(iter(val))[0][:1]
    maps = features.all_feature_maps(model, x, kinds=("conv", "pool"))
    save_figure(plot.plot_layer_strips(maps, cmap="viridis"), os.path.join(args.out, "feature_map_strips.png"))
    logit = float(np.ravel(model.predict(x))[0])
    print(f"wrote {args.out}/: filters_*.png, feature_map_strips.png (this image: "
          f"{'dog' if logit > 0 else 'cat'}, logit {logit:.2f})")


if __name__ == "__main__":
    main()
