"""Bad files: npcnn's own error, naming the file, the layer and what was expected; never a raw
h5py / zipfile / json traceback."""
import json
import os
import shutil
import zipfile

import h5py
import numpy as np
import pytest

import npcnn
from npcnn.errors import FormatError, InputError, UnsafeModelError, UnsupportedError

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures", "keras")
TFJS = os.path.join(HERE, "fixtures", "tfjs", "nsfwjs_mobilenet_v2")


def fixture(name):
    return os.path.join(FIX, name)


def raises(exc, path, *words, config=None):
    """load_model(path) raises ``exc`` whose message contains every word."""
    with pytest.raises(exc) as e:
        npcnn.load_model(path, config=config)
    for w in words:
        assert w in str(e.value), f"{w!r} not in: {e.value}"
    return str(e.value)


@pytest.mark.parametrize("name", ["conv2d.k3.keras", "conv2d.k2.h5", "conv2d.k3.h5"])
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_truncated_files(name, keep, tmp_path):
    data = open(fixture(name), "rb").read()
    path = tmp_path / name
    path.write_bytes(data[:int(len(data) * keep)])
    raises(FormatError, path, str(path))


def test_empty_and_garbage_files(tmp_path):
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    raises(FormatError, empty, "empty")
    junk = tmp_path / "junk.keras"
    noise = np.random.default_rng(7).integers(0, 256, 256, dtype=np.uint8).tobytes()
    junk.write_bytes(b"\x00" + noise)  # seeded, and cannot start like a zip, HDF5 or JSON file
    raises(FormatError, junk, "not a Keras model file")
    bad_json = tmp_path / "model.json"
    bad_json.write_text('{"modelTopology": ')
    raises(FormatError, bad_json, "not valid JSON")
    raises(InputError, tmp_path / "missing.h5", "no such file")


def test_zip_that_is_not_a_keras_archive(tmp_path):
    path = tmp_path / "photos.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    raises(FormatError, path, "not a Keras archive", "config.json")


def test_hdf5_that_is_not_a_model(tmp_path):
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f["images"] = np.zeros((3, 4))
    raises(FormatError, path, "not a Keras model", "images")


def test_weights_only_needs_config():
    raises(InputError, fixture("conv2d.k3.weights.h5"), "config=")


def _edit_k3_archive(src, dst, edit_config=None, edit_weights=None):
    """Copy a .keras archive, editing its config dict and/or its weights HDF5 (a function of an h5py File)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "config.json" and edit_config:
                cfg = json.loads(data)
                edit_config(cfg)
                data = json.dumps(cfg).encode()
            if item.filename == "model.weights.h5" and edit_weights:
                tmp = os.path.join(os.path.dirname(dst), "w.h5")
                open(tmp, "wb").write(data)
                with h5py.File(tmp, "r+") as f:
                    edit_weights(f)
                data = open(tmp, "rb").read()
            zout.writestr(item, data)


def _layer(cfg, name):
    return next(layer for layer in cfg["config"]["layers"] if layer["name"] == name)


def test_weight_shape_mismatch(tmp_path):
    path = str(tmp_path / "m.keras")

    def wrong_shape(f):
        del f["layers/conv2d/vars/0"]
        f["layers/conv2d/vars/0"] = np.zeros((3, 3, 4, 99), np.float32)
    _edit_k3_archive(fixture("conv2d.k3.keras"), path, edit_weights=wrong_shape)
    raises(FormatError, path, "conv_same_relu", "(3, 3, 4, 8)", "(3, 3, 4, 99)", path)


def test_weight_shape_mismatch_legacy_h5(tmp_path):
    path = str(tmp_path / "m.h5")
    shutil.copy(fixture("conv2d.k2.h5"), path)
    with h5py.File(path, "r+") as f:
        g = f["model_weights/conv_groups2/conv_groups2"]
        del g["bias:0"]
        g["bias:0"] = np.zeros(5, np.float32)
    raises(FormatError, path, "conv_groups2", "bias", "(8,)", "(5,)")


def test_missing_weights_for_a_layer(tmp_path):
    path = str(tmp_path / "m.keras")
    _edit_k3_archive(fixture("conv2d.k3.keras"), path, edit_weights=lambda f: f.__delitem__("layers/conv2d_2"))
    raises(FormatError, path, "conv_dil2_valid", "layers/conv2d_2/vars")


def test_config_names_a_layer_that_does_not_exist(tmp_path):
    path = str(tmp_path / "m.keras")

    def rewire(cfg):
        node = _layer(cfg, "conv_groups2")["inbound_nodes"][0]
        node["args"][0]["config"]["keras_history"][0] = "no_such_layer"
    _edit_k3_archive(fixture("conv2d.k3.keras"), path, edit_config=rewire)
    raises(FormatError, path, "conv_groups2", "no_such_layer", "does not define")


def test_unknown_and_unsupported_classes(tmp_path):
    unknown, lstm = str(tmp_path / "u.keras"), str(tmp_path / "l.keras")

    def rename(cls, module):
        def edit(cfg):
            layer = _layer(cfg, "conv_groups2")
            layer["class_name"], layer["module"] = cls, module
        return edit
    _edit_k3_archive(fixture("conv2d.k3.keras"), unknown, edit_config=rename("FancyConv", None))
    raises(UnsafeModelError, unknown, "conv_groups2", "FancyConv")
    _edit_k3_archive(fixture("conv2d.k3.keras"), lstm, edit_config=rename("LSTM", "keras.layers"))
    raises(UnsupportedError, lstm, "conv_groups2", "LSTM", "does not implement")


def test_math_changing_option_is_unsupported(tmp_path):
    path = str(tmp_path / "m.keras")
    _edit_k3_archive(fixture("normalization.k3.keras"), path,
                     edit_config=lambda cfg: _layer(cfg, "ln")["config"].update(rms_scaling=True))
    raises(UnsupportedError, path, "'ln'", "rms_scaling")
    cf = str(tmp_path / "cf.keras")
    channels_first = {"data_format": "channels_first"}
    _edit_k3_archive(fixture("conv2d.k3.keras"), cf,
                     edit_config=lambda cfg: _layer(cfg, "conv_same_relu")["config"].update(channels_first))
    raises(UnsupportedError, cf, "conv_same_relu", "channels_first")


def test_config_argument_errors():
    raises(InputError, fixture("conv2d.k3.weights.h5"), "neither JSON text nor an existing file",
           config="/nonexistent/arch.json")
    raises(FormatError, fixture("conv2d.k3.weights.h5"), "not valid JSON", config="{not json")


def test_tfjs_truncated_shard_and_escaping_path(tmp_path):
    doc = json.load(open(os.path.join(TFJS, "model.json")))
    shard = open(os.path.join(TFJS, doc["weightsManifest"][0]["paths"][0]), "rb").read()
    short = tmp_path / "short"
    short.mkdir()
    (short / "model.json").write_text(json.dumps(doc))
    (short / doc["weightsManifest"][0]["paths"][0]).write_bytes(shard[:1000])
    raises(FormatError, short, "truncated")
    doc["weightsManifest"][0]["paths"] = ["../../etc/passwd"]
    escape = tmp_path / "escape"
    escape.mkdir()
    (escape / "model.json").write_text(json.dumps(doc))
    raises(FormatError, escape, "leaves the model's folder")


def _paths(node, prefix=()):
    """Every (path, value) in a JSON tree."""
    yield prefix, node
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for k, v in items:
        yield from _paths(v, prefix + (k,))


def test_mutated_configs_raise_only_npcnn_errors():
    """Damage a real config at random places (delete, or replace by another JSON value): the result is a
    model or an NpcnnError, never a raw KeyError/TypeError/ValueError from deep inside."""
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    base = json.load(open(fixture("nested_shared.k3.json")))
    places = [p for p, _ in _paths(base) if p]
    junk = st.one_of(st.none(), st.integers(-3, 3), st.text(max_size=3), st.lists(st.integers(-1, 2), max_size=3),
                     st.just({}), st.just(1e300))

    @hypothesis.settings(max_examples=150, deadline=None, derandomize=True, database=None)
    @hypothesis.given(st.sampled_from(places), st.booleans(), junk)
    def check(path, delete, value):
        cfg = json.loads(json.dumps(base))
        parent = cfg
        for k in path[:-1]:
            parent = parent[k]
        if delete and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = value
        try:
            npcnn.io.model_from_config(cfg)
        except npcnn.NpcnnError:
            pass

    check()


def test_object_paths_cross_checked_by_stored_names(tmp_path):
    """Keras >= 3.? writes each layer's name beside its vars; when the class-counter path holds another
    layer's weights (here two paths swapped), the name wins and the model still matches Keras."""
    path = str(tmp_path / "swapped.keras")

    def swap(f):
        f.move("layers/conv2d_1", "layers/tmp")
        f.move("layers/conv2d_2", "layers/conv2d_1")
        f.move("layers/tmp", "layers/conv2d_2")
    _edit_k3_archive(fixture("conv2d.k3.keras"), path, edit_weights=swap)
    ref = np.load(fixture("conv2d.ref.npz"))
    out = npcnn.load_model(path).predict(ref["x"])
    assert np.abs(out - ref["out"]).max() <= 1e-5 * np.abs(ref["out"]).max()
