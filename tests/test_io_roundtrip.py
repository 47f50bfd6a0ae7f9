"""Writing: npcnn saves .keras and .h5, npcnn reads them back to identical numbers (always runs).
Whether real Keras reads them is tests/test_keras_parity_write.py (needs TensorFlow)."""
import json
import os
import zipfile

import h5py
import numpy as np
import pytest

import npcnn
from npcnn import layers as L

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures", "keras")
MODELS = ["conv2d", "depthwise", "conv_transpose", "conv1d", "pooling2d", "normalization", "activations",
          "hard_sigmoid", "reshape", "merge", "cats_dogs", "branches", "multi_output", "nested_functional",
          "nested_sequential", "nested_shared"]


def inputs(name):
    ref = np.load(os.path.join(FIX, f"{name}.ref.npz"))
    xs = [ref["x"]] if "x" in ref.files else [ref["x0"], ref["x1"]]
    return xs if len(xs) > 1 else xs[0]


def as_list(y):
    return y if isinstance(y, list) else [y]


def assert_same_model(a, b, x):
    for ya, yb in zip(as_list(a.predict(x)), as_list(b.predict(x))):
        np.testing.assert_array_equal(ya, yb)
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb)
    for p, q in zip(wa, wb):
        np.testing.assert_array_equal(p, q)
    assert [layer.name for layer in a.layers] == [layer.name for layer in b.layers]
    assert a.layer_keys() == b.layer_keys()


@pytest.mark.parametrize("source", [".k3.keras", ".k2.h5"])
@pytest.mark.parametrize("name", MODELS)
def test_fixture_round_trip(name, source, tmp_path):
    if not os.path.exists(os.path.join(FIX, name + source)):
        pytest.skip("fixture not generated")
    model = npcnn.load_model(os.path.join(FIX, name + source))
    for ext in (".keras", ".h5"):
        path = str(tmp_path / f"{name}{ext}")
        if name == "hard_sigmoid" and source == ".k2.h5" and ext == ".keras":
            with pytest.raises(npcnn.UnsupportedError, match="hard_sigmoid"):  # Keras 3 has no 0.2-slope one
                model.save(path)
            continue
        model.save(path)
        assert_same_model(model, npcnn.load_model(path), inputs(name))


def built_in_code():
    """A model made with npcnn's own API: Sequential block nested in a two-branch functional model."""
    npcnn.set_seed(3)
    x = npcnn.Input((12, 12, 3), name="image")
    h = L.Conv2D(6, 3, padding="same", activation="relu", name="c1")(x)
    block = npcnn.Sequential([L.InputLayer(input_shape=(12, 12, 6), name="blk_in"),
                              L.DepthwiseConv2D(3, padding="same", name="dw"),
                              L.BatchNormalization(name="bn"), L.LeakyReLU(0.1, name="lrelu")], name="block")
    a = block(h)
    b = L.MaxPooling2D(1, name="identity_pool")(h)
    h = L.Concatenate(name="cat")([a, b])
    h = L.GlobalAveragePooling2D(name="gap")(h)
    out = L.Dense(4, activation="softmax", name="probs")(h)
    model = npcnn.Model(x, out, name="built")
    bn = model.get_layer("block/bn")
    rng = np.random.default_rng(0)
    for k in ("moving_mean", "moving_variance", "beta", "gamma"):
        bn.params[k] = rng.uniform(0.5, 1.5, bn.params[k].shape).astype(np.float32)
    return model


def test_code_built_model_round_trip(tmp_path):
    model = built_in_code()
    x = np.random.default_rng(1).standard_normal((2, 12, 12, 3)).astype(np.float32)
    for ext in (".keras", ".h5"):
        path = str(tmp_path / f"built{ext}")
        model.save(path)
        assert_same_model(model, npcnn.load_model(path), x)


def test_written_layouts_are_keras_layouts(tmp_path):
    """The .keras archive has Keras 3's three members and object-path weights; the .h5 has Keras 2's
    model_config / model_weights / layer_names / weight_names ("layer/kernel:0")."""
    model = npcnn.load_model(os.path.join(FIX, "nested_shared.k3.keras"))
    model.save(str(tmp_path / "m.keras"))
    model.save(str(tmp_path / "m.h5"))
    with zipfile.ZipFile(tmp_path / "m.keras") as zf:
        assert sorted(zf.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        cfg = json.loads(zf.read("config.json"))
        assert cfg["class_name"] == "Functional" and cfg["config"]["output_layers"] == ["head", 0, 0]
        concat = next(lay for lay in cfg["config"]["layers"] if lay["name"] == "concat")
        histories = [t["config"]["keras_history"] for t in concat["inbound_nodes"][0]["args"][0]]
        assert histories == [["shared_block", 0, 0], ["shared_block", 1, 0]]  # Keras 3 counts calls from 0
        zf.extract("model.weights.h5", tmp_path)
    with h5py.File(tmp_path / "model.weights.h5", "r") as f:
        assert f["layers/functional/layers/conv2d/vars/0"].shape == (3, 3, 4, 4)
        assert f["layers/functional/layers/batch_normalization/vars"].attrs["name"] == "shared_block_bn"
    with h5py.File(tmp_path / "m.h5", "r") as f:
        cfg = json.loads(f.attrs["model_config"])
        concat = next(lay for lay in cfg["config"]["layers"] if lay["name"] == "concat")
        assert [ref[:3] for ref in concat["inbound_nodes"][0]] == [["shared_block", 1, 0], ["shared_block", 2, 0]]
        g = f["model_weights"]
        assert "head" in [n.decode() for n in g.attrs["layer_names"]]
        assert [n.decode() for n in g["head"].attrs["weight_names"]] == ["head/kernel:0", "head/bias:0"]


def test_save_needs_a_known_suffix(tmp_path):
    model = built_in_code()
    with pytest.raises(npcnn.InputError, match=".keras"):
        model.save(str(tmp_path / "m.pkl"))


def shared_layer_model():
    """One Dense layer called on two inputs (a siamese pair), both calls feeding the output."""
    npcnn.set_seed(5)
    a, b = npcnn.Input((6,), name="left"), npcnn.Input((6,), name="right")
    shared = L.Dense(4, activation="tanh", name="shared")
    out = L.Subtract(name="diff")([shared(a), shared(b)])
    return npcnn.Model([a, b], L.Dense(1, name="score")(out), name="siamese")


def test_shared_layer_round_trip(tmp_path):
    model = shared_layer_model()
    rng = np.random.default_rng(2)
    x = [rng.standard_normal((3, 6)).astype(np.float32) for _ in range(2)]
    k, bias = model.get_layer("shared").params["kernel"], model.get_layer("shared").params["bias"]
    s = model.get_layer("score").params
    want = (np.tanh(x[0] @ k + bias) - np.tanh(x[1] @ k + bias)) @ s["kernel"] + s["bias"]
    np.testing.assert_allclose(model.predict(x), want, rtol=1e-5, atol=1e-6)
    for ext in (".keras", ".h5"):
        path = str(tmp_path / f"siamese{ext}")
        model.save(path)
        assert_same_model(model, npcnn.load_model(path), x)
