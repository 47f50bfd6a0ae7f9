"""Write npcnn models as files Keras reads: a Keras 3 ``.keras`` archive or a Keras 2 layout ``.h5``.

The config is each layer's ``get_config()`` (Keras argument names) plus the graph, written in the dialect
of the target: Keras 3 ``__keras_tensor__`` / ``keras_history`` dicts and object-path weights for
``.keras``; Keras 2 nested lists, ``batch_input_shape`` and ``model_weights/<layer>/<layer>/kernel:0``
for ``.h5``. The reader in this package reads both back (the round trip is tested).
"""
import datetime
import io
import json
import os
import tempfile
import zipfile

import h5py
import numpy as np

from ..errors import InputError, UnsupportedError
from ..layers.core import InputLayer
from ..model import Model, Sequential
from .config import _snake
from .weights import legacy_weights, present_weights

_ONE_D = {"Conv1D": ("kernel_size", "strides", "dilation_rate"), "MaxPooling1D": ("pool_size", "strides"),
          "AveragePooling1D": ("pool_size", "strides")}
_NOT_KERAS = {"SpatialDropout1D": ("noise_shape", "trainable"), "SpatialDropout2D": ("noise_shape", "trainable")}
KERAS3_VERSION = "3.6.0"      # what metadata.json claims: the oldest Keras 3 format this layout matches
KERAS2_VERSION = "2.15.0"


def save_model(model, path):
    """Write ``model`` to ``path``: ``.keras`` (Keras 3 archive) or ``.h5``/``.hdf5`` (Keras 2 layout)."""
    path = os.fspath(path)
    if not isinstance(model, Model) or not hasattr(model, "_inputs"):
        raise InputError("save_model needs a built npcnn Model (a Sequential must know its input shape)")
    if path.endswith(".keras"):
        data = _keras_archive(model)
    elif path.endswith((".h5", ".hdf5")):
        data = _legacy_h5(model)
    else:
        raise InputError(f"{path}: choose the format by the name: '.keras' (Keras 3) or '.h5' (Keras 2 layout)")
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".part")
    with os.fdopen(fd, "wb") as f:  # written whole, then renamed: no half-written model files
        f.write(data)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------- graph
def _graph_nodes(model):
    """The set of node ids of ``model``'s own graph (from its outputs back to its inputs)."""
    stop = {id(t.node) for t in model.inputs}
    seen, stack = set(stop), [t.node for t in model.outputs]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.extend(t.node for t in node.inputs)
    return seen


def _keras_layers(model):
    """model.layers as Keras lists them: a functional model's include its InputLayers."""
    if isinstance(model, Sequential):
        return model.layers
    layers = model.layers
    return [t.node.layer for t in model.inputs if t.node.layer not in layers] + layers


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _layer_config(layer, dialect):
    """One layer's config dict in the target dialect."""
    cfg = dict(layer.get_config())
    if isinstance(layer, InputLayer):
        shape = list(layer.batch_input_shape)
        cfg = {"name": layer.name, "dtype": "float32", "sparse": False, "ragged": False}
        cfg["batch_shape" if dialect == 3 else "batch_input_shape"] = shape
        return cfg
    if layer.activation.name == "hard_sigmoid" and layer.activation_params.get("slope", 1 / 6) != 1 / 6:
        if dialect == 3:
            raise UnsupportedError(f"layer {layer.name!r} uses Keras 2's hard_sigmoid (slope 0.2), which Keras 3 "
                                   "cannot express; save as .h5")
    kind = type(layer).__name__
    for key in _ONE_D.get(kind, ()):  # npcnn runs 1-D layers as 1×k 2-D ones; Keras wants (k,)
        cfg[key] = [int(np.ravel(cfg[key])[-1])]
    for key in _NOT_KERAS.get(kind, ()):
        cfg.pop(key, None)
    if dialect == 2 and kind == "LeakyReLU":
        cfg["alpha"] = cfg.pop("negative_slope")
    cfg["dtype"] = "float32"
    return _jsonable(cfg)


def _model_config(model, dialect):
    """{"class_name", "config"} of a (possibly nested) npcnn model in the target dialect."""
    layers = _keras_layers(model)
    if isinstance(model, Sequential):
        entries = [_entry(model.inputs[0].node.layer, [], dialect, None)]
        entries += [_entry(layer, [], dialect, None) for layer in layers]
        return {"class_name": "Sequential", "config": {"name": model.name, "trainable": model.trainable,
                                                       "layers": entries}}
    own = _graph_nodes(model)
    calls = {id(layer): [n for n in layer.nodes if id(n) in own] for layer in layers}

    def history(t):
        producer = t.node.layer
        k = next(i for i, n in enumerate(calls[id(producer)]) if n is t.node)
        offset = 1 if dialect == 2 and isinstance(producer, Model) else 0  # Keras 2: node 0 is its own Input
        return [producer.name, k + offset, t.index]

    entries = []
    for layer in layers:
        nodes = [] if isinstance(layer, InputLayer) else calls[id(layer)]
        entries.append(_entry(layer, [([history(t) for t in n.inputs], layer.multi_input or isinstance(
            layer, Model) and len(n.inputs) > 1) for n in nodes], dialect, nodes))
    refs = [history(t) for t in model.inputs], [history(t) for t in model.outputs]
    if dialect == 3:  # Keras 3 writes a single input/output as one triple
        refs = tuple(r[0] if len(r) == 1 else r for r in refs)
    return {"class_name": "Functional", "config": {"name": model.name, "trainable": model.trainable,
                                                   "layers": entries, "input_layers": refs[0],
                                                   "output_layers": refs[1]}}


def _entry(layer, calls, dialect, nodes):
    """One layer entry: class, config, and (functional models) its calls in the dialect's node format."""
    if isinstance(layer, Model):
        entry = _model_config(layer, dialect)
        entry.update(module="keras.src.models.functional" if entry["class_name"] == "Functional" else "keras",
                     registered_name="Functional" if entry["class_name"] == "Functional" else None)
    else:
        entry = {"module": "keras.layers", "class_name": type(layer).__name__,
                 "config": _layer_config(layer, dialect), "registered_name": None}
    entry["name"] = layer.name
    if nodes is None:
        return entry
    if dialect == 3:
        entry["inbound_nodes"] = [{"args": [_tensors(refs, n, as_list)], "kwargs": {}}
                                  for (refs, as_list), n in zip(calls, nodes)]
    else:
        entry["inbound_nodes"] = [[[*ref, {}] for ref in refs] for refs, _ in calls]
    return entry


def _tensors(refs, node, as_list):
    ts = [{"class_name": "__keras_tensor__", "config": {"shape": list(t.shape), "dtype": "float32",
                                                        "keras_history": ref}}
          for ref, t in zip(refs, node.inputs)]
    return ts if as_list else ts[0]


def model_config(model, dialect=3):
    """The Keras config of ``model`` (dict), as ``model.to_json()`` of Keras 3 (dialect 3) or tf.keras (2)."""
    cfg = _model_config(model, dialect)
    if dialect == 3:
        cfg.update(module="keras.src.models.functional" if cfg["class_name"] == "Functional" else "keras",
                   registered_name="Functional" if cfg["class_name"] == "Functional" else None)
    else:
        cfg.update(keras_version=KERAS2_VERSION, backend="tensorflow")
    return cfg


# ---------------------------------------------------------------------------------------------- weights
def _write_object_paths(group, model):
    """Keras 3 layout: vars of every layer at layers/<snake class>[_n]/vars/<i>, nested models recursively."""
    group.create_group("vars").attrs["name"] = model.name
    used = {}
    for layer in _keras_layers(model):
        base = "functional" if isinstance(layer, Model) and not isinstance(layer, Sequential) else _snake(
            type(layer).__name__)
        n = used.get(base)
        used[base] = 0 if n is None else n + 1
        sub = group.create_group(f"layers/{base if n is None else f'{base}_{n + 1}'}")
        if isinstance(layer, Model):
            _write_object_paths(sub, layer)
            continue
        vars_ = sub.create_group("vars")
        vars_.attrs["name"] = layer.name
        for i, name in enumerate(present_weights(layer)):
            vars_.create_dataset(str(i), data=layer.params[name])


def _keras_archive(model):
    """The bytes of a .keras zip: metadata.json, config.json, model.weights.h5."""
    weights = io.BytesIO()
    with h5py.File(weights, "w") as f:
        _write_object_paths(f, model)
    meta = {"keras_version": KERAS3_VERSION, "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("metadata.json", json.dumps(meta))
        zf.writestr("config.json", json.dumps(model_config(model, 3)))
        zf.writestr("model.weights.h5", weights.getvalue())
    return out.getvalue()


def _strings(names):
    return np.array([n.encode("utf8") for n in names]) if names else np.array([])


def _leaves(model):
    for layer in model.layers:
        yield from _leaves(layer) if isinstance(layer, Model) else [layer]


def _uses_keras3_hard_sigmoid(model):
    return any(layer.activation.name == "hard_sigmoid" and layer.activation_params.get("slope", 1 / 6) == 1 / 6
               for layer in _leaves(model))


def _legacy_h5(model):
    """The bytes of a Keras 2 model.save(".h5"): model_config attribute, model_weights/<layer> groups.
    A model with Keras 3's hard_sigmoid (which Keras 2 spells the same but computes differently) is
    written as Keras 3's legacy .h5 instead: the same layout with a Keras 3 config and version."""
    dialect = 3 if _uses_keras3_hard_sigmoid(model) else 2
    version = KERAS3_VERSION if dialect == 3 else KERAS2_VERSION
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.attrs["model_config"] = json.dumps(model_config(model, dialect))
        f.attrs["keras_version"] = version
        f.attrs["backend"] = "tensorflow"
        g = f.create_group("model_weights")
        layers = _keras_layers(model)
        g.attrs["layer_names"] = _strings([layer.name for layer in layers])
        g.attrs["keras_version"] = version
        g.attrs["backend"] = "tensorflow"
        for layer in layers:
            lg = g.create_group(layer.name)
            pairs = legacy_weights(layer)
            names = [f"{leaf.name}/{w}" + (":0" if dialect == 2 else "") for leaf, w in pairs]
            lg.attrs["weight_names"] = _strings(names)
            for name, (leaf, w) in zip(names, pairs):
                lg.create_dataset(name, data=leaf.params[w])
    return buf.getvalue()
