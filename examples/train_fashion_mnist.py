"""Train the demo's own Fashion-MNIST CNN with npcnn alone, and save it as a .keras file Keras opens.

    python3 examples/train_fashion_mnist.py                       # the shipped weights/fashion_mnist_cnn.keras
    python3 examples/train_fashion_mnist.py --epochs 2 --out /tmp/fm.keras

Data: Debian's ``dataset-fashion-mnist`` (``apt-get install dataset-fashion-mnist``), 60,000 training and
10,000 test images, 28x28 grayscale, uint8. The model takes *raw pixels* (0..255, shape (N, 28, 28, 1)):
its first layer, Rescaling(1/255), does the scaling, so the file works without any preprocessing code.

The recipe is fixed in advance (no choice is made by looking at the test set): Adam, 1e-3 for 12 epochs
then 3e-4 for 6, sparse categorical cross-entropy, batch 128, seed 0. The test set is only *reported*
each epoch (val_loss / val_accuracy) so the log shows how accuracy grows.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import npcnn  # noqa: E402
from npcnn import layers  # noqa: E402
from npcnn import train  # noqa: E402


def build_model():
    """Three conv blocks, 60,874 weights: small enough for a microcontroller, in the TinyML spirit."""
    return npcnn.Sequential([
        layers.Rescaling(1 / 255, input_shape=(28, 28, 1), name="rescale"),
        layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
        layers.MaxPooling2D(name="pool1"),                                  # 14x14x16
        layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2"),
        layers.MaxPooling2D(name="pool2"),                                  # 7x7x32
        layers.Conv2D(64, 3, padding="same", activation="relu", name="conv3"),
        layers.MaxPooling2D(name="pool3"),                                  # 3x3x64
        layers.Flatten(name="flatten"),
        layers.Dropout(0.2, name="dropout"),
        layers.Dense(64, activation="relu", name="dense"),
        layers.Dense(10, activation="softmax", name="predictions"),
    ], name="fashion_mnist_cnn")


class EpochTimer(train.Callback):
    """Logs each epoch's wall time as "seconds" (and prints one line per epoch for the log file)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs["seconds"] = time.perf_counter() - self.start
        print(f"epoch {epoch + 1}: " + ", ".join(f"{k} {v:.4f}" for k, v in logs.items()), flush=True)


def save(model, out, facts):
    """The .keras file if npcnn can write one, and its classes.json; the weight arrays (.npz in the temp
    folder) always, so no training is lost (``--from-weights`` turns them into the .keras later)."""
    backup = os.path.join(tempfile.gettempdir(), os.path.basename(os.path.splitext(out)[0]) + ".weights.npz")
    np.savez(backup, *model.get_weights())
    if not hasattr(model, "save"):
        return backup
    model.save(out)
    info = {"model": os.path.basename(out), "source": "trained by npcnn: examples/train_fashion_mnist.py",
            "classes": train.FASHION_MNIST_CLASSES,
            "input": {"shape": [28, 28, 1], "layout": "NHWC", "dtype": "float32 (uint8 values are fine)",
                      "color": "grayscale, white article on black, as in Fashion-MNIST"},
            "preprocessing": {"formula": "none outside the model: its first layer 'rescale' computes x / 255",
                              "input_range": [0, 255]},
            "output": "softmax probabilities, 10 values in the order of 'classes'", **facts}
    with open(os.path.splitext(out)[0] + ".classes.json", "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    return out


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=train.idx.FASHION_MNIST_DIR, help="folder with the four IDX .gz files")
    p.add_argument("--epochs", type=int, default=18)
    p.add_argument("--slow-after", type=int, default=12, help="epochs at 1e-3 before the rate drops to 3e-4")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="train on the first N images only (quick runs)")
    p.add_argument("--out", default=os.path.join(here, "..", "weights", "fashion_mnist_cnn.keras"))
    p.add_argument("--verbose", type=int, default=2)
    p.add_argument("--from-weights", help="skip training: load these np.savez arrays, evaluate, save")
    args = p.parse_args(argv)

    (x_train, y_train), (x_test, y_test) = train.load_fashion_mnist(args.data)
    x_train, x_test = x_train[..., None], x_test[..., None]          # (N, 28, 28, 1) raw uint8 pixels
    if args.limit:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]

    npcnn.set_seed(args.seed)
    model = build_model()
    model.compile(optimizer=train.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    facts = {"training": {"epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
                          "optimizer": f"Adam, learning rate 1e-3, 3e-4 from epoch {args.slow_after + 1}",
                          "loss": "sparse_categorical_crossentropy", "images": len(y_train)}}
    if args.from_weights:  # a finished run's arrays: only evaluate and write the files
        saved = np.load(args.from_weights)
        model.set_weights([saved[f"arr_{i}"] for i in range(len(saved.files))])
    else:
        model.summary()
        schedule = train.LearningRateScheduler(lambda epoch, lr: 1e-3 if epoch < args.slow_after else 3e-4)
        start = time.perf_counter()
        model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                  validation_data=(x_test, y_test), callbacks=[schedule, EpochTimer()], verbose=args.verbose)
        facts["training"]["minutes"] = round((time.perf_counter() - start) / 60, 1)
    loss, accuracy = model.evaluate(x_test, y_test, batch_size=500)
    print(f"test loss {loss:.4f}, test accuracy {accuracy:.4f}", flush=True)
    facts["test_accuracy"] = {"npcnn": round(accuracy, 4), "images": len(y_test)}
    print("saved", save(model, args.out, facts))
    return accuracy


if __name__ == "__main__":
    main()
