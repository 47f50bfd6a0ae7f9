"""Model files are untrusted: anything that asks for code to be imported or run is refused with
UnsafeModelError naming the layer, before anything from the file is built, and the code never runs.

The committed fixtures were written by real Keras (tools/make_keras_fixtures.py): a Lambda layer whose
bytecode writes /tmp/npcnn_pwned_marker (Keras 3 .keras and .h5, tf_keras .h5), a .keras whose layer
names ``os.system`` as its module/class, and a registered custom layer. The synthetic configs below
cover the other spellings, including a real importable module that would leave a marker if imported.
"""
import json
import os
import sys
import zipfile

import pytest

import npcnn
from npcnn.errors import UnsafeModelError

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures", "keras")
MARKER = "/tmp/npcnn_pwned_marker"


@pytest.fixture(autouse=True)
def no_marker():
    if os.path.exists(MARKER):
        os.remove(MARKER)
    yield
    assert not os.path.exists(MARKER), "code from a model file ran"


@pytest.mark.parametrize("name,layer", [("lambda.k3.keras", "lambda_pwn"), ("lambda.k3.h5", "lambda_pwn"),
                                        ("lambda.k2.h5", "lambda_pwn"), ("os_system.k3.keras", "evil"),
                                        ("custom_object.k3.keras", "evil")])
def test_keras_written_unsafe_files_refused(name, layer):
    path = os.path.join(FIX, name)
    if not os.path.exists(path):
        pytest.skip(f"{name} not generated")
    with pytest.raises(UnsafeModelError) as e:
        npcnn.load_model(path)
    assert repr(layer) in str(e.value) and name in str(e.value)


def _dense(name, inbound):
    return {"class_name": "Dense", "name": name, "config": {"name": name, "units": 2},
            "inbound_nodes": [[[inbound, 0, 0, {}]]]}


def _model(evil):
    """A Keras 2 functional config x -> dense -> evil -> head."""
    return {"class_name": "Functional", "config": {
        "name": "m", "input_layers": [["x", 0, 0]], "output_layers": [["head", 0, 0]],
        "layers": [{"class_name": "InputLayer", "name": "x", "config": {"name": "x", "batch_input_shape": [None, 4]},
                    "inbound_nodes": []},
                   _dense("dense", "x"), dict(evil, name="evil", inbound_nodes=[[["dense", 0, 0, {}]]]),
                   _dense("head", "evil")]}}


EVIL_LAYERS = {
    "keras2 lambda": {"class_name": "Lambda", "config": {"name": "evil", "function": ["4wEAAAAAAAAA", None, None],
                                                         "function_type": "lambda", "module": "__main__"}},
    "keras3 lambda": {"class_name": "Lambda", "module": "keras.layers", "config": {
        "name": "evil", "function": {"class_name": "__lambda__", "config": {"code": "4wEAAAAAAAAA"}}}},
    "module outside keras": {"class_name": "Dense", "module": "npcnn_marker_module",
                             "config": {"name": "evil", "units": 2}},
    "registered custom": {"class_name": "MyLayer", "module": None, "registered_name": "my_pkg>MyLayer",
                          "config": {"name": "evil"}},
    "unknown class": {"class_name": "MyCustomBlock", "config": {"name": "evil"}},
    "function payload": {"class_name": "Activation", "config": {"name": "evil", "activation": {
        "module": "builtins", "class_name": "function", "config": "eval", "registered_name": "function"}}},
}


@pytest.fixture
def marker_module(tmp_path, monkeypatch):
    """A real module on sys.path that writes the marker when imported: importing it would be caught."""
    (tmp_path / "npcnn_marker_module.py").write_text(f"open({MARKER!r}, 'w').write('imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("npcnn_marker_module", None)


@pytest.mark.parametrize("kind", sorted(EVIL_LAYERS))
def test_synthetic_unsafe_configs_refused(kind, tmp_path, marker_module):
    cfg = json.dumps(_model(EVIL_LAYERS[kind]))
    with pytest.raises(UnsafeModelError) as e:
        npcnn.io.model_from_config(cfg)
    assert "'evil'" in str(e.value)
    assert "npcnn_marker_module" not in sys.modules
    # the same config inside a .keras archive whose weights are garbage: refused before weights are read
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", cfg)
        zf.writestr("metadata.json", "{}")
        zf.writestr("model.weights.h5", b"not hdf5")
    with pytest.raises(UnsafeModelError):
        npcnn.load_model(path)


def test_safe_twin_loads():
    """The same skeleton with a plain Dense in the middle is fine (the checks are not over-eager)."""
    cfg = _model({"class_name": "Dense", "module": "keras.layers", "registered_name": None,
                  "config": {"name": "evil", "units": 2, "activation": {
                      "module": "keras.activations", "class_name": "function", "config": "relu",
                      "registered_name": "function"}}})
    model = npcnn.io.model_from_config(json.dumps(cfg))
    assert [layer.name for layer in model.layers] == ["x", "dense", "evil", "head"]
    assert model.get_layer("evil").activation.name == "relu"


def test_custom_loss_in_compile_config_is_ignored():
    """npcnn never reads compile_config, so a custom loss there neither runs nor blocks loading."""
    cfg = _model(EVIL_LAYERS["keras2 lambda"])
    cfg["config"]["layers"][2] = _dense("evil", "dense")
    cfg["compile_config"] = {"loss": {"module": "my_losses", "class_name": "function", "config": "focal",
                                      "registered_name": "my_pkg>focal"}}
    model = npcnn.io.model_from_config(json.dumps(cfg))
    assert "my_losses" not in sys.modules and model.get_layer("evil").units == 2
