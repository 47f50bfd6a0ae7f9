"""TF.js layers models: a model.json + shards written here from a Keras fixture, with every weight
encoding TF.js uses (float32, float16, uint8- and uint16-quantized), split over two shard files."""
import json
import os

import numpy as np
import pytest

import npcnn

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures", "keras")
ENCODINGS = ["float32", "float16", "uint8", "uint16"]


def encode(values, kind):
    """(bytes, manifest entry extras, the float32 values a correct reader must produce)."""
    v = values.astype(np.float64)
    if kind == "float32":
        return values.astype("<f4").tobytes(), {}, values.astype(np.float32)
    if kind == "float16":
        half = values.astype("<f2")
        return half.tobytes(), {"quantization": {"dtype": "float16"}}, half.astype(np.float32)
    levels = 255 if kind == "uint8" else 65535
    lo, hi = float(v.min()), float(v.max())
    scale = (hi - lo) / levels if hi > lo else 1.0
    q = np.round((v - lo) / scale).astype("u1" if kind == "uint8" else "<u2")
    return q.tobytes(), {"quantization": {"dtype": kind, "scale": scale, "min": lo}}, (
        q.astype(np.float64) * scale + lo).astype(np.float32)


@pytest.fixture
def tfjs_model(tmp_path):
    """conv2d fixture as a TF.js folder; returns (folder, {weight name: expected array}, keras model)."""
    keras_model = npcnn.load_model(os.path.join(FIX, "conv2d.k3.keras"))
    config = json.load(open(os.path.join(FIX, "conv2d.k3.json")))
    entries, blobs, expected = [], [], {}
    for i, (name, value) in enumerate(sorted(keras_model.named_weights().items())):
        kind = ENCODINGS[i % len(ENCODINGS)]
        data, extra, want = encode(value, kind)
        entries.append({"name": name, "shape": list(value.shape), "dtype": "float32", **extra})
        blobs.append(data)
        expected[name] = want
    buf = b"".join(blobs)
    cut = len(buf) // 2  # a tensor may straddle two shards
    (tmp_path / "group1-shard1of2.bin").write_bytes(buf[:cut])
    (tmp_path / "group1-shard2of2.bin").write_bytes(buf[cut:])
    doc = {"format": "layers-model", "modelTopology": {"model_config": config, "keras_version": "3.15.1"},
           "weightsManifest": [{"paths": ["group1-shard1of2.bin", "group1-shard2of2.bin"], "weights": entries}]}
    (tmp_path / "model.json").write_text(json.dumps(doc))
    return tmp_path, expected, keras_model


def test_every_encoding_dequantized(tfjs_model):
    folder, expected, _ = tfjs_model
    model = npcnn.load_model(folder)  # the folder, or its model.json
    got = model.named_weights()
    assert set(got) == set(expected)
    for name, want in expected.items():
        np.testing.assert_array_equal(got[name], want, err_msg=name)
    for a, b in zip(npcnn.load_model(folder / "model.json").get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_quantized_model_close_to_original(tfjs_model):
    folder, _, keras_model = tfjs_model
    x = np.load(os.path.join(FIX, "conv2d.ref.npz"))["x"]
    want = keras_model.predict(x)
    got = npcnn.load_model(folder).predict(x)
    err = np.abs(got - want).max() / np.abs(want).max()
    assert 0 < err < 2e-2  # 8-bit weights: close, not equal
