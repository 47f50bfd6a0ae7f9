"""The config reader on its own: old Keras 2 spellings, a keras.applications base nested inside a
Sequential, Keras 3 serialised values, and the dialect rule for hard_sigmoid."""
import json
import os
import sys

import h5py
import numpy as np
import pytest

import npcnn
from npcnn.io import model_from_config
from npcnn.io.config import detect_dialect

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures", "keras")
sys.path.insert(0, os.path.join(HERE, "fixtures"))
from seeded_weights import seeded_weight  # noqa: E402


def test_keras20_sequential_list_config_with_weights_only_h5(tmp_path):
    """Keras 2.0-2.2: the Sequential config *is* the layer list and the first layer carries
    batch_input_shape; weights in a save_weights() file (layer_names / weight_names)."""
    cfg = {"class_name": "Sequential", "keras_version": "2.1.6", "config": [
        {"class_name": "Conv2D", "config": {"name": "conv", "batch_input_shape": [None, 5, 5, 1], "filters": 2,
                                            "kernel_size": [3, 3], "padding": "valid", "activation": "relu",
                                            "use_bias": True, "kernel_initializer": {"class_name": "VarianceScaling",
                                                                                     "config": {"scale": 1.0}}}},
        {"class_name": "Flatten", "config": {"name": "flat"}},
        {"class_name": "Dense", "config": {"name": "out", "units": 3, "activation": "linear"}}]}
    rng = np.random.default_rng(0)
    w = {"conv": [rng.standard_normal((3, 3, 1, 2)), rng.standard_normal(2)],
         "out": [rng.standard_normal((18, 3)), rng.standard_normal(3)]}
    path = tmp_path / "w.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"conv", b"flat", b"out"]
        for layer, names in (("conv", ["kernel", "bias"]), ("flat", []), ("out", ["kernel", "bias"])):
            g = f.create_group(layer)
            g.attrs["weight_names"] = [f"{layer}_1/{n}:0".encode() for n in names] if names else np.array([])
            for n, value in zip(names, w.get(layer, [])):
                g[f"{layer}_1/{n}:0"] = value.astype(np.float32)
    model = npcnn.load_model(path, config=json.dumps(cfg))
    assert isinstance(model, npcnn.Sequential) and model.input_shape == (None, 5, 5, 1)
    x = rng.standard_normal((2, 5, 5, 1)).astype(np.float32)
    k, b = w["conv"]
    conv = np.zeros((2, 3, 3, 2))
    for i in range(3):
        for j in range(3):
            conv[:, i, j] = np.einsum("nabc,abcf->nf", x[:, i:i + 3, j:j + 3], k) + b
    want = np.maximum(conv, 0).reshape(2, -1) @ w["out"][0] + w["out"][1]
    np.testing.assert_allclose(model.predict(x), want, rtol=1e-5, atol=1e-5)


def seeded(model, gain):
    def leaves(m):
        for layer in m.layers:
            yield from leaves(layer) if isinstance(layer, npcnn.Model) else [layer]
    for layer in leaves(model):
        for n in [n for n in layer.weight_names if n in layer.params]:
            layer.params[n] = seeded_weight(layer.name, n, layer.params[n].shape, kernel_gain=gain)
    return model


def test_application_inside_sequential(tmp_path):
    """keras.applications base as the first layer of a Keras 3 Sequential, then a head: activations are
    keyed "base/layer", and the whole equals base -> mean -> dense computed step by step."""
    base_path = os.path.join(FIX, "MobileNetV2.notop.json")
    if not os.path.exists(base_path):
        pytest.skip("fixture not generated")
    base = json.load(open(base_path))
    head = {"module": "keras.layers", "class_name": "Dense", "registered_name": None,
            "config": {"name": "head", "units": 4, "activation": "softmax"}}
    gap = {"module": "keras.layers", "class_name": "GlobalAveragePooling2D", "config": {"name": "gap"}}
    cfg = {"module": "keras", "class_name": "Sequential", "registered_name": None,
           "config": {"name": "clf", "layers": [base, gap, head]}}
    model = seeded(model_from_config(cfg), 1.0)
    alone = seeded(model_from_config(base), 1.0)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    name = base["config"]["name"]
    acts = model.activations(x, [f"{name}/block_1_expand", name])
    np.testing.assert_allclose(acts[name], alone.predict(x), rtol=1e-6)
    np.testing.assert_allclose(acts[f"{name}/block_1_expand"], alone.activations(x, "block_1_expand")[
        "block_1_expand"], rtol=1e-6)
    logits = acts[name].mean(axis=(1, 2)) @ model.get_layer("head").params["kernel"] + model.get_layer(
        "head").params["bias"]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(model.predict(x), e / e.sum(axis=1, keepdims=True), rtol=1e-5)
    for ext in (".keras", ".h5"):  # and it survives writing
        model.save(str(tmp_path / f"clf{ext}"))
        np.testing.assert_array_equal(npcnn.load_model(str(tmp_path / f"clf{ext}")).predict(x), model.predict(x))


def test_dialect_detection():
    assert detect_dialect({}, "2.0.5") == 2 and detect_dialect({}, b"3.1.0") == 3
    assert detect_dialect({"keras_version": "2.15.0", "class_name": "Functional"}) == 2
    assert detect_dialect({"config": {"layers": [{"config": {"batch_shape": [None, 3]}}]}}) == 3
    assert detect_dialect({"config": {"layers": [{"config": {"batch_input_shape": [None, 3]}}]}}) == 2


def test_keras3_serialised_values():
    """Activation as a function object, arrays as __numpy__, tuples as __tuple__, DTypePolicy dtypes."""
    policy = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}}
    cfg = {"module": "keras", "class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, 3], "name": "x"}},
        {"class_name": "Rescaling", "config": {"name": "r", "dtype": policy, "offset": 0.0, "scale": {
            "class_name": "__numpy__", "config": {"value": [1.0, 2.0, 3.0], "dtype": "float32"}}}},
        {"class_name": "Dense", "config": {"name": "d", "units": 2, "dtype": policy, "activation": {
            "module": "keras.activations", "class_name": "function", "config": "tanh", "registered_name": "function"}}},
        {"class_name": "Reshape", "config": {"name": "rs", "target_shape": {"class_name": "__tuple__",
                                                                          "config": {"value": [2, 1]}}}}]}}
    model = model_from_config(cfg)
    assert model.get_layer("d").activation.name == "tanh"
    assert model.get_layer("r").scale == [1.0, 2.0, 3.0]
    assert model.output_shape == (None, 2, 1)


def test_quantized_policy_is_unsupported():
    cfg = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, 3], "name": "x"}},
        {"class_name": "Dense", "config": {"name": "d", "units": 2, "dtype": {
            "class_name": "QuantizedDTypePolicy", "config": {"name": "int8_from_float32"}}}}]}}
    with pytest.raises(npcnn.UnsupportedError, match="'d'.*quantized"):
        model_from_config(cfg)


def test_subclassed_model_is_explained():
    with pytest.raises(npcnn.UnsupportedError, match="subclassed"):
        model_from_config({"class_name": "MyNet", "config": {"name": "net"}})
