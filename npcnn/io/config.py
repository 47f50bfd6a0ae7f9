"""Keras model configs -> npcnn models. One reader for every dialect, kept apart from any math.

    Keras 2 (tf.keras, tf_keras)                     Keras 3
    InputLayer "batch_input_shape"                   "batch_shape"
    inbound_nodes [[["layer", node, tensor, {}]]]    [{"args": [{"class_name": "__keras_tensor__",
                                                        "config": {"keras_history": [layer, node, tensor]}}],
                                                       "kwargs": {}}]
    "dtype": "float32"                               {"class_name": "DTypePolicy", "config": {"name": ...}}
    a nested model's node 0 is its own Input, so     node indices count the calls from 0
    calls are numbered from 1
    hard_sigmoid = clip(0.2 x + 0.5, 0, 1)           hard_sigmoid = relu6(x + 3) / 6

Keras 1 files (dialect 1) are first translated to the Keras 2 form by :mod:`.keras1` (one table of
renames), then read as Keras 2: node numbering and hard_sigmoid are Keras 2's for dialects 1 and 2.

Flow: :func:`parse` turns the JSON into a tree of :class:`Spec` (one per layer entry, nested models
carry their children); :func:`build` creates layers from ``npcnn.layers.CLASSES`` (the only way a name
from a file becomes a class) and wires them with the functional API, the way Keras's own
``Functional.from_config`` replays the recorded calls.
"""
import contextlib
import heapq
import json
import re

from .. import activations
from ..errors import FormatError, NpcnnError, UnsupportedError
from ..layers import CLASSES
from ..layers.base import MAX_DIMENSION, zero_init
from ..model import Input, Model, Sequential
from . import keras1, safety
from .guard import MAX_LAYERS, check_json_text, reading

MODEL_CLASSES = {"Functional": "Functional", "Model": "Functional", "Sequential": "Sequential"}

# Keras layers that exist but npcnn does not implement: "unsupported", not "unsafe".
KNOWN_KERAS_LAYERS = {
    "Conv3D", "Conv3DTranspose", "SeparableConv1D", "DepthwiseConv1D", "Conv1DTranspose", "MaxPooling3D",
    "AveragePooling3D", "GlobalAveragePooling3D", "GlobalMaxPooling3D", "UpSampling1D", "UpSampling3D",
    "ZeroPadding1D", "ZeroPadding3D", "Cropping1D", "Cropping3D", "RepeatVector", "Masking", "Embedding",
    "LSTM", "GRU", "SimpleRNN", "ConvLSTM2D", "RNN", "Bidirectional", "TimeDistributed", "Attention",
    "AdditiveAttention", "MultiHeadAttention", "GroupQueryAttention", "Dot", "ThresholdedReLU",
    "AlphaDropout", "GroupNormalization", "UnitNormalization", "SpectralNormalization", "Identity",
    "Resizing", "CenterCrop", "RandomFlip", "RandomRotation", "RandomZoom", "RandomCrop", "RandomContrast",
    "RandomTranslation", "RandomBrightness", "TFOpLambda", "SlicingOpLambda", "LocallyConnected1D",
    "LocallyConnected2D", "EinsumDense", "Discretization", "CategoryEncoding", "Hashing", "StringLookup",
    "IntegerLookup", "TextVectorization", "Wrapper", "TorchModuleWrapper", "JaxLayer", "FlaxLayer",
}

# Options that change the numbers; value(s) npcnn computes correctly. Anything else -> UnsupportedError.
_EVERY_LAYER = {"data_format": (None, "channels_last")}
_MATH_OPTIONS = {
    "Dense": {"lora_rank": (None, 0), "quantization_config": (None,)},
    "Conv1D": {"lora_rank": (None, 0)}, "Conv2D": {"lora_rank": (None, 0)},
    "LayerNormalization": {"rms_scaling": (False, None)},
    "BatchNormalization": {"renorm": (False, None)},
    "UpSampling2D": {"interpolation": ("nearest", "bilinear")},
    "InputLayer": {"sparse": (False, None), "ragged": (False, None)},
    # tf_keras writes Conv2D's "groups" into these configs too; npcnn's constructors have no such option
    "DepthwiseConv2D": {"groups": (1, None)}, "SeparableConv2D": {"groups": (1, None)},
}
_DROP = {"DepthwiseConv2D": ("groups",), "SeparableConv2D": ("groups",)}


class Spec:
    """One entry of a config: a layer, or a nested model (``kind`` "Functional"/"Sequential").

    calls: the recorded calls, each ``(refs, as_list)`` with refs [(layer name, node index, tensor index)].
    children / inputs / outputs: for models. layer: the npcnn object once built.
    """

    def __init__(self, name, class_name, config, calls, kind="layer", module=None):
        self.name, self.class_name, self.config, self.calls, self.kind = name, class_name, config, calls, kind
        self.module = module
        self.children, self.inputs, self.outputs, self.layer = [], [], [], None
        self.by_name = {}
        self.node_offset = 0
        self.weight_converter = None  # Keras 1 kernels laid out differently: stored arrays -> Keras 2 arrays

    def convert_weights(self, arrays):
        """The stored arrays of this layer in the layout its npcnn layer expects (Keras 1 re-layouts)."""
        return self.weight_converter(arrays) if self.weight_converter else arrays

    @property
    def is_model(self):
        return self.kind != "layer"

    @property
    def is_input(self):
        return self.class_name == "InputLayer"

    def leaves(self):
        """(spec, path) for every weight-holding level below a model: "inner/conv"."""
        for child in self.children:
            if child.is_model:
                yield from ((s, f"{child.name}/{p}") for s, p in child.leaves())
            elif not child.is_input:
                yield child, child.name


def loads(text, where):
    """Parse JSON text (str/bytes) into Python objects; FormatError naming ``where`` on failure.
    Size and nesting are checked first (:func:`.guard.check_json_text`)."""
    check_json_text(text, where)
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise FormatError(f"{where}: not valid JSON ({str(e)[:200]})") from None


def _text(version):
    """A keras_version attribute (bytes, str or None) as str or None."""
    return version.decode("utf8", "replace") if isinstance(version, bytes) else None if version is None else str(version)


def detect_dialect(config, version=None):
    """1, 2 or 3: from a recorded keras_version when there is one, else from the config's own markers."""
    if version:
        v = _text(version)
        if v[:1].isdigit():
            return min(max(int(v.split(".")[0]), 1), 3)
    if isinstance(config, dict) and str(config.get("keras_version", ""))[:1].isdigit():
        return detect_dialect(None, config["keras_version"])
    text = json.dumps(config)
    if '"__keras_tensor__"' in text or '"batch_shape"' in text or '"DTypePolicy"' in text:
        return 3
    return 1 if keras1.looks_like_keras1(config) else 2


def parse(config, where, dialect, version=None, backend=None):
    """The top-level model config (dict) -> a model :class:`Spec`. Safety is checked first, on all of it.
    version / backend: the file's keras_version and backend, when known (Keras 1.0 and 1.1+ stored
    BatchNormalization differently; Theano-trained Keras 1 kernels are flipped)."""
    with reading(where, "reading the model config"):  # a config dict given in code may nest too deep
        safety.check_config(config, where)
        if dialect == 1:
            config = keras1.translate(config, where, _text(version), _text(backend))
        spec = _parse_model(config, where, dialect)
    count = _count_layers(spec)
    if count > MAX_LAYERS:
        raise FormatError(f"{where}: the config has {count:,} layer entries; npcnn builds models of up to "
                          f"{MAX_LAYERS:,} layers (the largest Keras applications have about 1,000)")
    return spec


def _count_layers(spec):
    """Layer entries in a Spec tree, nested models included (iterative: nesting depth is untrusted)."""
    count, stack = 0, [spec]
    while stack:
        s = stack.pop()
        count += len(s.children)
        stack.extend(c for c in s.children if c.is_model)
    return count


def _parse_model(config, where, dialect):
    if not isinstance(config, dict) or "class_name" not in config:
        keys = list(config)[:6] if isinstance(config, dict) else ""
        raise FormatError(f"{where}: expected a Keras model config with 'class_name' and 'config', "
                          f"got {type(config).__name__} {keys}")
    spec = _parse_entry(config, where, dialect)
    if not spec.is_model:
        raise UnsupportedError(f"{where}: the top-level class is {spec.class_name!r}, not a Functional or "
                               "Sequential model; subclassed models keep their architecture in Python code, "
                               "not in the file, so npcnn cannot rebuild them")
    return spec


def _parse_entry(entry, where, dialect):
    if not isinstance(entry, dict):
        raise FormatError(f"{where}: expected a layer entry (a JSON object), got {str(entry)[:120]!r}")
    cls = entry.get("class_name")
    cfg = entry.get("config", {})
    if not isinstance(cls, str):
        raise FormatError(f"{where}: a layer entry has no class_name: {str(entry)[:200]}")
    kind = MODEL_CLASSES.get(cls, "layer")
    if kind == "Sequential" and isinstance(cfg, list):  # Keras 2.0-2.2: the config is the layer list
        cfg = {"layers": cfg}
    if not isinstance(cfg, dict):
        raise FormatError(f"{where}: layer entry {cls} has a config of type {type(cfg).__name__}")
    name = entry.get("name") or cfg.get("name") or _snake(cls)
    spec = Spec(name, cls, cfg, _parse_calls(entry.get("inbound_nodes", []), where, name), kind,
                entry.get("module"))
    spec.weight_converter = keras1.weight_converter(entry)
    if kind == "layer":
        return spec
    children = cfg.get("layers")
    if not isinstance(children, list):
        raise FormatError(f"{where}: model {name!r} has no 'layers' list in its config")
    spec.children = [_parse_entry(c, where, dialect) for c in children]
    seen = set()
    for child in spec.children:
        if child.name in seen:
            raise FormatError(f"{where}: model {name!r} has two layers named {child.name!r}")
        seen.add(child.name)
    if kind == "Functional":
        spec.inputs = _refs(cfg.get("input_layers"), where, name, "input_layers")
        spec.outputs = _refs(cfg.get("output_layers"), where, name, "output_layers")
        # Keras 2 numbers a nested functional model's calls from 1: node 0 is its own Input -> output.
        has_input = any(c.is_input for c in spec.children)
    else:
        first = spec.children[0].config if spec.children else {}
        has_input = bool(spec.children) and (spec.children[0].is_input or any(
            k in first for k in ("batch_input_shape", "batch_shape", "input_shape")))
    spec.node_offset = 1 if dialect < 3 and has_input else 0
    return spec


def _refs(value, where, model, what):
    """input_layers / output_layers: ["x", 0, 0] (Keras 3, one) or [["x", 0, 0], ...] -> list of triples."""
    if not value:
        raise FormatError(f"{where}: model {model!r} config has no {what}")
    items = [value] if isinstance(value[0], str) else value
    try:
        return [(str(v[0]), int(v[1]), int(v[2])) for v in items]
    except (TypeError, ValueError, IndexError):
        raise FormatError(f"{where}: model {model!r}: cannot read {what} {value!r}") from None


def _parse_calls(nodes, where, layer):
    """inbound_nodes in either dialect -> [(refs, as_list)], one per call of the layer."""
    calls = []
    for node in nodes or []:
        if isinstance(node, dict):  # Keras 3
            args = node.get("args", [])
            tensors = _keras_tensors(args, where, layer)
            if _keras_tensors(node.get("kwargs", {}), where, layer):
                raise UnsupportedError(f"{where}: layer {layer!r} is called with tensors as keyword arguments "
                                       "(e.g. a mask); npcnn supports positional tensor inputs only")
            as_list = bool(args) and isinstance(args[0], (list, tuple))
            if len(args) > 1 and not as_list:
                raise UnsupportedError(f"{where}: layer {layer!r} is called with {len(args)} positional "
                                       "tensor arguments; npcnn supports one tensor or one list of tensors")
            calls.append((tensors, as_list))
        elif isinstance(node, list):  # Keras 2: [["layer", node, tensor, {kwargs}], ...]
            try:
                refs = [(str(t[0]), int(t[1]), int(t[2])) for t in node]
            except (TypeError, ValueError, IndexError):
                raise FormatError(f"{where}: layer {layer!r} has an unreadable inbound node {node!r}") from None
            calls.append((refs, len(refs) > 1))
        else:
            raise FormatError(f"{where}: layer {layer!r} has an unreadable inbound node {node!r}")
    return calls


def _keras_tensors(obj, where, layer):
    """Every __keras_tensor__'s keras_history in an args/kwargs structure, depth first."""
    out = []
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            h = (obj.get("config") or {}).get("keras_history")
            if not isinstance(h, list) or len(h) != 3:
                raise FormatError(f"{where}: layer {layer!r} has an input without a readable keras_history: "
                                  f"{str(obj)[:200]}")
            return [(str(h[0]), int(h[1]), int(h[2]))]
        for v in obj.values():
            out += _keras_tensors(v, where, layer)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            out += _keras_tensors(v, where, layer)
    return out


def _snake(name):
    """Keras's snake_case of a class name: Conv2D -> conv2d, BatchNormalization -> batch_normalization."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


# ---------------------------------------------------------------------------------------------- options
def _plain(value):
    """Unwrap Keras 3's {"class_name": "__numpy__"/"__tuple__", "config": {"value": v}} at any depth."""
    if isinstance(value, dict):
        if value.get("class_name") in ("__numpy__", "__tuple__") and isinstance(value.get("config"), dict):
            return _plain(value["config"].get("value"))
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _activation_name(value, where, layer):
    """A Keras activation as stored: "relu", None, or Keras 3's {"class_name": "function", "config": "relu"}."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):
        cfg = value.get("config")
        if value.get("class_name") == "function" and isinstance(cfg, str):
            return cfg
        if isinstance(cfg, dict) and isinstance(cfg.get("name"), str) and value.get("class_name") in (
                "function", "Activation"):
            return cfg["name"]
    raise UnsupportedError(f"{where}: layer {layer!r}: activation {str(value)[:120]} is not a named Keras "
                           "activation; npcnn supports activations given by name")


def _check_dtype(value, where, layer):
    """dtype: a name or a (Keras 3) DTypePolicy. npcnn computes in float32; quantized policies change the math."""
    if isinstance(value, dict):
        cls = str(value.get("class_name", ""))
        name = str((value.get("config") or {}).get("name", ""))
        if "Quantized" in cls or name.split("_")[0] in ("int8", "int4", "float8"):
            raise UnsupportedError(f"{where}: layer {layer!r} uses the quantized dtype policy {name or cls!r}; "
                                   "npcnn runs float32 weights only")


def layer_kwargs(spec, where, dialect):
    """The constructor arguments for ``spec``'s npcnn layer (Keras argument names; harmless keys kept,
    npcnn's layers ignore them). Raises UnsupportedError for options that would change the math."""
    cfg = _plain(dict(spec.config))
    _check_dtype(cfg.pop("dtype", None), where, spec.name)
    options = dict(_EVERY_LAYER, **_MATH_OPTIONS.get(spec.class_name, {}))
    for key, allowed in options.items():
        if key in cfg and cfg[key] not in allowed:
            raise UnsupportedError(f"{where}: layer {spec.name!r} ({spec.class_name}) has {key}={cfg[key]!r}; "
                                   f"npcnn supports {' or '.join(map(repr, allowed))}")
    for key in _DROP.get(spec.class_name, ()):
        cfg.pop(key, None)
    for key in [k for k in cfg if k.endswith(("_initializer", "_regularizer", "_constraint"))]:
        del cfg[key]  # no effect on inference; npcnn's layers use their own defaults to initialise
    if "activation" in cfg:
        cfg["activation"] = _activation_name(cfg["activation"], where, spec.name)
        try:
            activations.get(cfg["activation"])
        except NpcnnError:
            raise UnsupportedError(f"{where}: layer {spec.name!r} ({spec.class_name}) uses the activation "
                                   f"{cfg['activation']!r}, which npcnn does not implement; known: "
                                   f"{', '.join(sorted(activations.ACTIVATIONS))}") from None
    cfg["name"] = spec.name
    return cfg


def layer_class(spec, where):
    """The npcnn class for a layer entry, from the explicit table only."""
    cls = CLASSES.get(spec.class_name)
    if cls is not None:
        return cls
    module = spec.module
    if spec.class_name in KNOWN_KERAS_LAYERS or (module and safety.keras_module(module)):
        raise UnsupportedError(f"{where}: layer {spec.name!r} is a Keras {spec.class_name} layer, which npcnn "
                               f"does not implement (npcnn has: {', '.join(sorted(CLASSES))})")
    raise safety.UnsafeModelError(
        f"{where}: layer {spec.name!r} has class {spec.class_name!r}, which is not a Keras layer npcnn knows; "
        "custom objects would need their Python code, which npcnn never imports")


# ---------------------------------------------------------------------------------------------- build
def build(spec, where, dialect, lazy_weights=True):
    """Create the npcnn model for a model :class:`Spec`; ``spec.layer`` (and every child's) is set.

    lazy_weights: build every layer with zero weights (the caller fills them from the file).
    """
    check_classes(spec, where)
    weights = zero_init() if lazy_weights else contextlib.nullcontext()
    with reading(where, "building the model from its config"), weights:
        return _build_model(spec, where, dialect, None)


def check_classes(spec, where):
    """Every class in the tree is resolvable before anything is built (unsafe ones refused first)."""
    for child in spec.children:
        if child.is_model:
            check_classes(child, where)
        else:
            layer_class(child, where)


def _make_layer(spec, where, dialect):
    cls = layer_class(spec, where)
    kwargs = layer_kwargs(spec, where, dialect)
    try:
        layer = cls(**kwargs)
    except UnsupportedError as e:
        raise UnsupportedError(f"{where}: layer {spec.name!r} ({spec.class_name}): {e}") from None
    except (NpcnnError, TypeError, ValueError, ArithmeticError, MemoryError, RecursionError) as e:
        raise FormatError(f"{where}: layer {spec.name!r} ({spec.class_name}) has a config npcnn cannot use: "
                          f"{e}") from None
    if dialect < 3 and layer.activation.name == "hard_sigmoid":
        layer.set_activation("hard_sigmoid", slope=0.2)  # Keras 1 and 2: clip(0.2 x + 0.5, 0, 1)
    return layer


def _input_shape(spec, where):
    cfg = _plain(spec.config)
    shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
    if shape is None and cfg.get("shape") is not None:
        shape = [cfg.get("batch_size"), *cfg["shape"]]
    if shape is None and cfg.get("input_shape") is not None:
        shape = [cfg.get("batch_size"), *cfg["input_shape"]]
    if shape is None:
        raise FormatError(f"{where}: input layer {spec.name!r} has no shape in its config")
    shape = tuple(None if s is None else int(s) for s in shape)
    if not shape or any(s is not None and not 0 < s <= MAX_DIMENSION for s in shape):
        raise FormatError(f"{where}: input layer {spec.name!r} has the shape {shape}; each size must be None "
                          f"or 1..{MAX_DIMENSION:,}")
    return shape


def _build_model(spec, where, dialect, input_tensors):
    """Build a Functional or Sequential spec. input_tensors: the tensors a nested Sequential without
    an input shape is first called on (its shape comes from them)."""
    if spec.kind == "Sequential":
        return _build_sequential(spec, where, dialect, input_tensors)
    tensors = {}
    for child in spec.children:
        if child.is_input:
            t = Input(batch_shape=_input_shape(child, where), name=child.name)
            child.layer = t.node.layer
            tensors[(child.name, 0)] = [t]
    _replay_calls(spec, tensors, where, dialect)
    ins = [_lookup(spec, tensors, ref, where, "input_layers") for ref in spec.inputs]
    outs = [_lookup(spec, tensors, ref, where, "output_layers") for ref in spec.outputs]
    try:
        model = Model(ins if len(ins) > 1 else ins[0], outs if len(outs) > 1 else outs[0],
                      name=spec.name, layer_order=[c.name for c in spec.children],
                      trainable=spec.config.get("trainable", True))
    except NpcnnError as e:
        raise FormatError(f"{where}: model {spec.name!r} cannot be wired: {e}") from None
    spec.layer = model
    return model


def _build_sequential(spec, where, dialect, input_tensors):
    layers = []
    for child in spec.children:
        if child.is_input:
            child.layer = CLASSES["InputLayer"](batch_shape=_input_shape(child, where), name=child.name)
        elif child.is_model:
            _build_model(child, where, dialect, None)
        else:
            child.layer = _make_layer(child, where, dialect)
        layers.append(child.layer)
    if not layers:
        raise FormatError(f"{where}: Sequential model {spec.name!r} has no layers")
    first = layers[0]
    if not isinstance(first, (CLASSES["InputLayer"], Model)) and first.batch_input_shape is None:
        if input_tensors is None:
            raise FormatError(f"{where}: Sequential model {spec.name!r} records no input shape, so its weights "
                              "cannot be placed; save it after building it on an input")
        layers.insert(0, CLASSES["InputLayer"](batch_shape=input_tensors[0].shape, name=f"{spec.name}_input"))
    try:
        model = Sequential(layers, name=spec.name, trainable=spec.config.get("trainable", True))
    except NpcnnError as e:
        raise FormatError(f"{where}: Sequential model {spec.name!r} cannot be wired: {e}") from None
    spec.layer = model
    return model


def _lookup(spec, tensors, ref, where, what):
    """The tensor a reference (layer, node, tensor) points to, after Keras 2's node renumbering."""
    name, node, index = ref
    child = spec.by_name.get(name)
    call = node if child is None or child.is_input else node - child.node_offset
    outs = tensors.get((name, call))
    if outs is None:
        raise FormatError(f"{where}: model {spec.name!r}: {what} refers to call {node} of layer {name!r}, "
                          "which the config never makes")
    if index >= len(outs):
        raise FormatError(f"{where}: model {spec.name!r}: layer {name!r} has {len(outs)} outputs, the config "
                          f"asks for output {index}")
    return outs[index]


def _replay_calls(spec, tensors, where, dialect):
    """Call every layer on its recorded inputs, in dependency order (a shared layer's later calls may
    wait for layers listed after it, as Keras's from_config allows)."""
    spec.by_name = {c.name: c for c in spec.children}
    for child in spec.children:
        for refs, _ in child.calls:
            for name, _, _ in refs:
                if name not in spec.by_name:
                    raise FormatError(f"{where}: layer {child.name!r} in model {spec.name!r} takes its input from "
                                      f"{name!r}, which the config does not define (layers: "
                                      f"{', '.join(list(spec.by_name)[:12])})")
    _settle_offsets(spec)
    # Each call waits for its input tensors and for the layer's previous call; a call runs as soon as nothing
    # it waits for is missing, earliest in the config first (a sorted config runs in its own order). Linear
    # in the number of calls, so a config listed backwards cannot make this quadratic.
    waits, missing, ready, position = {}, {}, [], {c.name: i for i, c in enumerate(spec.children)}
    for child in spec.children:
        for k, (refs, _) in enumerate([] if child.is_input else child.calls):
            keys = {_tensor_key(spec, r) for r in refs} | ({(child.name, k - 1)} if k else set())
            keys -= set(tensors)
            missing[(child.name, k)] = len(keys)
            for key in keys:
                waits.setdefault(key, []).append((child, k))
            if not keys:
                heapq.heappush(ready, (position[child.name], k, child.name))
    while ready:
        _, k, name = heapq.heappop(ready)
        child = spec.by_name[name]
        refs, as_list = child.calls[k]
        ins = [_lookup(spec, tensors, r, where, f"layer {child.name!r}") for r in refs]
        tensors[(name, k)] = _call(child, ins if as_list else ins[0], where, dialect)
        for waiter, j in waits.pop((name, k), []):
            missing[(waiter.name, j)] -= 1
            if missing[(waiter.name, j)] == 0:
                heapq.heappush(ready, (position[waiter.name], j, waiter.name))
    stuck = sorted({name for (name, _), n in missing.items() if n})
    if stuck:
        raise FormatError(f"{where}: model {spec.name!r}: the calls of {', '.join(stuck[:8])} wait on each "
                          "other or on calls that never happen (a cycle, or a wrong node index)")


def _settle_offsets(spec):
    """Keras 2 numbers a nested model's calls from 1 when it was built on its own Input. If the references
    to a layer only fit the other numbering (0 used, or one past the last call), follow the references."""
    used = {}
    for ref in [r for c in spec.children for refs, _ in c.calls for r in refs] + spec.inputs + spec.outputs:
        used.setdefault(ref[0], set()).add(ref[1])
    for child in spec.children:
        nodes = used.get(child.name)
        if child.is_input or not nodes:
            continue
        if child.node_offset == 1 and min(nodes) == 0:
            child.node_offset = 0
        elif child.node_offset == 0 and max(nodes) == len(child.calls) and child.is_model:
            child.node_offset = 1


def _tensor_key(spec, ref):
    """The key in the tensors table of a reference (layer, node, tensor), after Keras 2's node renumbering."""
    child = spec.by_name[ref[0]]
    return (ref[0], ref[1] if child.is_input else ref[1] - child.node_offset)


def _call(child, inputs, where, dialect):
    """Call (creating on first use) the layer or nested model of ``child``; returns its output tensors."""
    if child.layer is None:
        if child.is_model:
            _build_model(child, where, dialect, inputs if isinstance(inputs, list) else [inputs])
        else:
            child.layer = _make_layer(child, where, dialect)
    try:
        out = child.layer(inputs)
    except UnsupportedError:
        raise
    except (NpcnnError, TypeError, ValueError, IndexError, ArithmeticError, MemoryError, RecursionError) as e:
        shapes = [t.shape for t in inputs] if isinstance(inputs, list) else inputs.shape
        raise FormatError(f"{where}: layer {child.name!r} ({child.class_name}) cannot take inputs of shape "
                          f"{shapes}: {e}") from None
    return list(out) if isinstance(out, (list, tuple)) else [out]


def model_from_config(config, where="config", dialect=None):
    """A model from a Keras config (dict, JSON text, or ``model.to_json()``), weights freshly initialised
    as Keras's ``model_from_json`` would. Returns (model, spec)."""
    if isinstance(config, (str, bytes)):
        config = loads(config, where)
    config = unwrap(config)
    with reading(where, "reading the model config"):
        dialect = dialect or detect_dialect(config)
    spec = parse(config, where, dialect)
    return build(spec, where, dialect, lazy_weights=False), spec


def unwrap(config):
    """Accept the model config itself or a wrapper holding it (TF.js modelTopology {"model_config": ...})."""
    if isinstance(config, dict) and "class_name" not in config and isinstance(config.get("model_config"), dict):
        return config["model_config"]
    return config

