"""The shipped Fashion-MNIST model (trained by npcnn, examples/train_fashion_mnist.py): it loads, it is as
accurate as claimed, a trained-then-saved model reloads to identical predictions, and real Keras (when
TensorFlow is installed) reads the file and gets the same answers."""
import json
import os
import sys

import numpy as np
import pytest

import npcnn
from npcnn import train

ROOT = os.path.join(os.path.dirname(__file__), "..")
SHIPPED = os.path.join(ROOT, "weights", "fashion_mnist_cnn.keras")
CLASSES = os.path.join(ROOT, "weights", "fashion_mnist_cnn.classes.json")
SUBSET = os.path.join(os.path.dirname(__file__), "fixtures", "fashion_mnist", "subset.npz")
FULL = os.path.isdir(train.idx.FASHION_MNIST_DIR)

needs_save = pytest.mark.skipif(not hasattr(npcnn.Model, "save"), reason="npcnn.io writer not available")


def _test_images():
    """The full 10,000 test images when the Debian package is installed, else the committed 200."""
    if FULL:
        _, (x, y) = train.load_fashion_mnist()
        return x[..., None], y
    d = np.load(SUBSET)
    return d["x_test"][..., None], d["y_test"]


@pytest.fixture(scope="module")
def shipped():
    return npcnn.load_model(SHIPPED)


def test_shipped_model_is_small_named_and_accurate(shipped):
    assert shipped.count_params() < 100_000
    assert shipped.input_shape == (None, 28, 28, 1)
    assert [layer.name for layer in shipped.layers][:2] == ["rescale", "conv1"]
    classes = json.load(open(CLASSES))["classes"]
    assert classes == train.FASHION_MNIST_CLASSES
    x, y = _test_images()
    prob = shipped.predict(x, batch_size=1000)
    np.testing.assert_allclose(prob.sum(-1), 1, rtol=1e-5)
    accuracy = (prob.argmax(-1) == y).mean()
    assert accuracy >= (0.90 if FULL else 0.85), accuracy  # 200 images: a +-2 % sampling error


@needs_save
def test_trained_model_saved_and_loaded_predicts_the_same(tmp_path):
    d = np.load(SUBSET)
    x, y = d["x_train"][:64, ..., None], d["y_train"][:64]
    npcnn.set_seed(0)
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    from train_fashion_mnist import build_model
    model = build_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    path = tmp_path / "trained.keras"
    model.save(str(path))
    again = npcnn.load_model(str(path))
    xt = d["x_test"][..., None]
    assert np.array_equal(again.predict(xt), model.predict(xt))
    assert all(np.array_equal(u, v) for u, v in zip(again.get_weights(), model.get_weights()))


def test_keras_loads_the_shipped_file_and_agrees(shipped):
    keras = pytest.importorskip("keras")
    pytest.importorskip("tensorflow")
    km = keras.saving.load_model(SHIPPED)
    x, y = _test_images()
    kp = km.predict(x.astype(np.float32), batch_size=1000, verbose=0)
    np_ = shipped.predict(x, batch_size=1000)
    assert np.abs(kp - np_).max() < 1e-4
    k_acc, n_acc = (kp.argmax(-1) == y).mean(), (np_.argmax(-1) == y).mean()
    assert abs(k_acc - n_acc) <= 1 / len(y)  # at most one borderline image may flip
    assert k_acc >= (0.90 if FULL else 0.85)
