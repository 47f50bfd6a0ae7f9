"""Weight readers, one per layout, each filling the layers of a built :class:`~npcnn.io.config.Spec` tree.

    legacy HDF5 (Keras 2 model.save / save_weights, Keras 3 legacy .h5):
        group per top-level layer, attribute ``layer_names``; in each, attribute ``weight_names``
        ("conv2d_1/kernel:0"). A nested model's group holds all its weights in Keras's
        ``trainable_weights + non_trainable_weights`` order, which is how Keras itself reads them back.
    object paths (Keras 3 .keras archive's model.weights.h5, .weights.h5):
        ``layers/<snake_case class>[_<n>]/vars/<i>``; nested ``layers/functional/layers/conv2d/vars/0``.
        The path comes from the class name and a per-class counter in ``model.layers`` order, not the
        layer's name (Keras's saving_lib); recent Keras also writes the layer name as an attribute,
        which is used to cross-check and to recover when the counting disagrees.
    TF.js manifest: tensors by name ("Conv1/kernel"), packed in shards, maybe quantized.
"""
import os

import numpy as np

from ..errors import FormatError
from ..layers import CLASSES
from ..layers.base import MAX_DIMENSION, MAX_WEIGHT_ELEMENTS
from ..layers.core import InputLayer
from ..model import Model
from .config import _snake

# Keras 3 calls a DepthwiseConv2D's kernel "kernel"; Keras 2 and npcnn say "depthwise_kernel".
_ALIASES = {"depthwise_kernel": ("kernel",)}


def present_weights(layer):
    """The weight names ``layer`` holds, in Keras order."""
    return [n for n in layer.weight_names if n in layer.params]


def assign(layer, arrays, where):
    """Give a leaf layer its weights (Keras order), checking the count and every shape."""
    names = present_weights(layer)
    kind = type(layer).__name__
    if len(arrays) != len(names):
        raise FormatError(f"{where}: layer {layer.name!r} ({kind}) needs {len(names)} weights "
                          f"({', '.join(names) or 'none'}), the file has {len(arrays)}")
    for name, array in zip(names, arrays):
        try:  # a dataset the HDF5 reader could not read (not numbers, stored elsewhere) says why here
            array = np.asarray(array)
        except FormatError as e:
            raise FormatError(f"layer {layer.name!r} ({kind}) weight {name!r}: {e}") from None
        want = layer.params[name].shape
        if array.shape != want:
            raise FormatError(f"{where}: layer {layer.name!r} ({kind}) weight {name!r} should have shape {want} "
                              f"from the config, the file has {array.shape}")
        if array.dtype.kind not in "biuf":
            raise FormatError(f"{where}: layer {layer.name!r} weight {name!r} is stored as {array.dtype}, "
                              "not numbers")
        layer.params[name] = array.astype(layer.params[name].dtype, copy=False)  # no copy when it already fits


def h5_strings(group, attr):
    """A list-of-names attribute, Keras style: bytes or str, maybe split into attr0, attr1... chunks."""
    if attr in group.attrs:
        values = list(group.attrs[attr])
    else:
        values, i = [], 0
        while f"{attr}{i}" in group.attrs:
            values += list(group.attrs[f"{attr}{i}"])
            i += 1
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def legacy_weights(layer):
    """[(leaf layer, weight name)] in Keras's ``trainable_weights + non_trainable_weights`` order for a
    layer or a nested model (the order Keras 2 / legacy .h5 files store a group in; frozen layers'
    weights all count as non-trainable)."""
    train, frozen, seen = [], [], set()

    def visit(lay, trainable):
        trainable = trainable and lay.trainable
        if isinstance(lay, Model):
            for child in lay.layers:
                if not isinstance(child, InputLayer) and id(child) not in seen:
                    seen.add(id(child))
                    visit(child, trainable)
            return
        for n in present_weights(lay):
            (train if trainable and n not in lay.non_trainable_names else frozen).append((lay, n))

    visit(layer, True)
    return train + frozen


def read_legacy(group, spec, where):
    """Fill ``spec``'s model from a legacy HDF5 weights group (a file's ``model_weights`` or the root of a
    ``save_weights("w.h5")`` file). Top-level layers are matched by name (so Keras 2 weights fit a Keras 3
    config and back); if the names do not line up, by order, as Keras does."""
    stored = [n for n in h5_strings(group, "layer_names") if h5_strings(group[n], "weight_names")]
    wanted = [c for c in spec.children if not c.is_input and legacy_weights(c.layer)]
    if all(c.name in stored for c in wanted):
        pairs = [(c, c.name) for c in wanted]
    elif len(stored) == len(wanted):
        pairs = list(zip(wanted, stored))
    else:
        missing = [c.name for c in wanted if c.name not in stored]
        raise FormatError(f"{where}: no weights for layer(s) {', '.join(missing[:8])}; the file has weights for "
                          f"{len(stored)} layers ({', '.join(stored[:8])}), the config for {len(wanted)}")
    for child, stored_name in pairs:
        g = group[stored_name]
        arrays = child.convert_weights([g[n] for n in h5_strings(g, "weight_names")])  # Keras 1 layouts
        order = legacy_weights(child.layer)
        if len(arrays) != len(order):
            raise FormatError(f"{where}: layer {child.name!r} ({child.class_name}) needs {len(order)} weights, "
                              f"the file's group {stored_name!r} has {len(arrays)}")
        per_leaf = {}
        for (leaf, name), array in zip(order, arrays):
            per_leaf.setdefault(id(leaf), (leaf, {}))[1][name] = array
        for leaf, got in per_leaf.values():
            assign(leaf, [got[n] for n in present_weights(leaf)], where)


def keras3_class(spec):
    """The class name Keras 3 instantiates for a config entry (aliases and old "Model" resolved)."""
    if spec.is_model:
        return spec.kind
    cls = CLASSES.get(spec.class_name)
    return cls.__name__ if cls is not None else spec.class_name


def read_object_paths(root, spec, where):
    """Fill ``spec``'s model from a Keras 3 weights file (``model.weights.h5`` in a .keras archive, or
    ``.weights.h5``): variables at ``layers/<class>[_<n>]/vars/<i>`` by ``model.layers`` order."""
    key = "_layer_checkpoint_dependencies" if "layers" not in root and "_layer_checkpoint_dependencies" in root \
        else "layers"
    seen = set()

    def visit(model_spec, group, path):
        layers = group.get(key) if group is not None else None
        used = {}
        for child in model_spec.children:
            if child.is_input:
                continue
            base = _snake(keras3_class(child))
            n = used.get(base)
            used[base] = 0 if n is None else n + 1
            name = base if n is None else f"{base}_{n + 1}"
            if id(child.layer) in seen:  # a layer shared with an enclosing model is stored once
                continue
            seen.add(id(child.layer))
            sub = layers.get(name) if layers is not None else None
            if child.is_model:
                visit(child, sub, f"{path}{key}/{name}/")
            elif present_weights(child.layer):
                vars_ = _vars_group(sub, layers, child, f"{path}{key}/{name}", where)
                assign(child.layer, [vars_[k] for k in sorted(vars_, key=_int_key)], where)

    visit(spec, root, "")


def _int_key(k):
    return int(k) if str(k).isdigit() else 1 << 30


def _vars_group(sub, layers, child, path, where):
    """The ``vars`` group of one layer: at its object path, unless the stored layer name says otherwise."""
    vars_ = sub.get("vars") if sub is not None else None
    stored = vars_.attrs.get("name") if vars_ is not None else None
    stored = stored.decode() if isinstance(stored, bytes) else stored
    if vars_ is not None and (stored is None or stored == child.name):
        return vars_
    for g in (layers.values() if layers is not None else []):
        v = g.get("vars") if hasattr(g, "get") else None
        name = v.attrs.get("name") if v is not None else None
        if (name.decode() if isinstance(name, bytes) else name) == child.name:
            return v
    raise FormatError(f"{where}: no weights for layer {child.name!r} ({child.class_name}): expected them at "
                      f"'{path}/vars'" + (f", which holds layer {stored!r}" if stored else ""))


# ---------------------------------------------------------------------------------------------- TF.js
_TFJS_DTYPES = {"float32": "<f4", "int32": "<i4", "uint8": "u1", "uint16": "<u2", "float16": "<f2",
                "bool": "u1"}


def tfjs_tensors(manifest, folder, where):
    """{name: float array} from a TF.js ``weightsManifest``: each group's shards concatenated in order,
    tensors read one after another; quantized ones dequantized as ``q * scale + min`` (float16: cast).
    The shards' sizes on disk are checked against the manifest before any shard is read."""
    tensors = {}
    if not isinstance(manifest, list):
        raise FormatError(f"{where}: weightsManifest should be a list of groups")
    for group in manifest:
        if not isinstance(group, dict):
            raise FormatError(f"{where}: a weightsManifest group should be an object, got {str(group)[:80]}")
        paths, entries = group.get("paths", []), group.get("weights", [])
        layout = [_tfjs_layout(w, where) for w in entries]
        want = sum(dt.itemsize * count for _, _, dt, count in layout)
        files = [_shard_path(folder, p, where) for p in paths]
        have = sum(os.path.getsize(f) for f in files)
        if have != want:
            raise FormatError(f"{where}: the shards {paths} hold {have:,} bytes, the manifest describes {want:,} "
                              "(truncated or padded shards?)")
        buf = b"".join(_read_shard(f, where) for f in files)
        offset = 0
        for w, (name, shape, dt, count) in zip(entries, layout):
            raw = np.frombuffer(buf, dtype=dt, count=count, offset=offset).reshape(shape)
            offset += count * dt.itemsize
            tensors[name.split(":")[0]] = _dequantize(w, raw, where)
    return tensors


def _shard_path(folder, name, where):
    """A shard's path, refused when it leaves the model's folder or does not exist."""
    path = os.path.normpath(os.path.join(folder, str(name)))
    if os.path.isabs(str(name)) or not path.startswith(os.path.normpath(folder) + os.sep):
        raise FormatError(f"{where}: weight shard path {name!r} leaves the model's folder; refused")
    if not os.path.isfile(path):
        raise FormatError(f"{where}: cannot read weight shard {name!r}: no such file")
    return path


def _read_shard(path, where):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise FormatError(f"{where}: cannot read weight shard {os.path.basename(path)!r}: {e.strerror}") from None


def _tfjs_layout(w, where):
    """One manifest entry -> (name, shape, stored dtype, element count), checked before reading."""
    if not isinstance(w, dict):
        raise FormatError(f"{where}: a weightsManifest entry should be an object, got {str(w)[:80]}")
    name, shape = str(w.get("name")), w.get("shape", [])
    if not isinstance(shape, list) or not all(isinstance(s, int) and 0 <= s <= MAX_DIMENSION for s in shape):
        raise FormatError(f"{where}: weight {name!r} has the shape {str(shape)[:80]}; expected a list of sizes "
                          f"0..{MAX_DIMENSION}")
    q = w.get("quantization")
    stored = (q if isinstance(q, dict) else {}).get("dtype", w.get("dtype", "float32"))
    if stored not in _TFJS_DTYPES:
        raise FormatError(f"{where}: weight {name!r} has dtype {stored!r}; expected one of {sorted(_TFJS_DTYPES)}")
    count = int(np.prod(shape, dtype=object))
    if count > MAX_WEIGHT_ELEMENTS:
        raise FormatError(f"{where}: weight {name!r} of shape {tuple(shape)} holds over {MAX_WEIGHT_ELEMENTS:,} "
                          "numbers; refused")
    return name, tuple(shape), np.dtype(_TFJS_DTYPES[stored]), count


def _dequantize(w, raw, where):
    """float32 values of a stored tensor: quantized uint8/uint16 as ``q * scale + min``, others cast."""
    q = w.get("quantization")
    if isinstance(q, dict) and q.get("dtype") in ("uint8", "uint16"):
        try:
            scale, low = float(q["scale"]), float(q["min"])
        except (KeyError, TypeError, ValueError):
            raise FormatError(f"{where}: weight {w.get('name')!r} is quantized without a numeric scale and "
                              "min") from None
        return (raw.astype(np.float64) * scale + low).astype(np.float32)
    return raw.astype(np.float32)


def read_tfjs(tensors, spec, where):
    """Fill every leaf of ``spec`` from TF.js tensors looked up by "layer/weight" (or the nested path)."""
    for leaf, path in spec.leaves():
        arrays = []
        for n in present_weights(leaf.layer):
            keys = [f"{p}/{m}" for p in (path, leaf.name) for m in (n, *_ALIASES.get(n, ()))]
            hit = next((k for k in keys if k in tensors), None)
            if hit is None:
                raise FormatError(f"{where}: the weights manifest has no {keys[0]!r} for layer {leaf.name!r} "
                                  f"({leaf.class_name})")
            arrays.append(tensors[hit])
        if arrays:
            assign(leaf.layer, arrays, where)
