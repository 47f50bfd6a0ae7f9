"""The Layer contract, and the symbolic tensors that wire layers into a graph (Keras's functional API).

A layer is its config (Keras argument names), its weights (``layer.params``, Keras order) and two
functions written side by side in each subclass::

    forward(x, training=False)              -> (out, cache)
    backward(dout, cache, need_dx=True,
             need_params=True)              -> (dx, {weight name: dW})

``x``/``dx`` are arrays, or lists of arrays for merge layers. A fused ``activation=`` (Conv2D(...,
activation="relu")) is applied by :meth:`Layer.apply` after ``forward``; its backward, and so the
backward *rule* a model may impose on ReLU-like units, lives in one place: :meth:`Layer.apply_backward`.
"""
import contextlib
import re

import numpy as np

from .. import activations
from ..blas import map_rows
from ..errors import InputError, NpcnnError
from ..initializers import initialize

_name_counters = {}
MAX_WEIGHT_ELEMENTS = 1 << 31
"""No single weight may hold more numbers than this (8 GiB in float32; VGG16's largest holds 0.1 G):
a file asking for more is refused before any memory is taken."""
MAX_DIMENSION = 1 << 24
"""No declared input size may exceed this (16 M pixels along one axis)."""
_lazy_init = [False]


@contextlib.contextmanager
def zero_init():
    """Build layers with zero weights (fast; the loader overwrites them from the file)."""
    _lazy_init.append(True)
    try:
        yield
    finally:
        _lazy_init.pop()


def _auto_name(cls_name):
    base = re.sub("([a-z])([A-Z])", r"\1_\2", re.sub("(.)([A-Z][a-z]+)", r"\1_\2", cls_name)).lower()
    n = _name_counters.get(base, 0)
    _name_counters[base] = n + 1
    return base if n == 0 else f"{base}_{n}"


class SymbolicTensor:
    """A placeholder for an array while a graph is being wired: a shape (batch None) and its producer."""

    def __init__(self, shape, node=None, index=0):
        self.shape, self.node, self.index = tuple(shape), node, index

    def __repr__(self):
        producer = self.node.layer.name if self.node else "?"
        return f"<SymbolicTensor shape={self.shape} from {producer!r}>"


class Node:
    """One call of a layer inside a graph: which tensors went in and which came out."""

    def __init__(self, layer, inputs, output_shapes):
        self.layer, self.inputs = layer, list(inputs)
        self.outputs = [SymbolicTensor(s, self, i) for i, s in enumerate(output_shapes)]


def _shape_list(x):
    return [t.shape for t in x] if isinstance(x, (list, tuple)) else x.shape


class Layer:
    """Base class. Subclasses set ``weight_names`` (Keras order) and implement forward/backward."""

    weight_names = ()
    non_trainable_names = ()
    multi_input = False
    couples_batch = False  # True where training mode mixes the samples of a batch (batch statistics)
    fuses_activation = False  # True where forward(x, training, epilogue=f) applies f to each finished output block

    def __init__(self, name=None, activation=None, trainable=True, dtype=None, input_shape=None,
                 batch_input_shape=None, batch_shape=None, batch_size=None, input_dim=None, **ignored):
        self.name = name or _auto_name(type(self).__name__)
        self.trainable = trainable
        self.set_activation(activation)
        self.params = {}
        self.nodes = []
        shape = batch_shape or batch_input_shape
        if shape is None and input_shape is not None:
            shape = (batch_size, *tuple(input_shape))
        if shape is None and input_dim is not None:
            shape = (batch_size, input_dim)
        self.batch_input_shape = tuple(shape) if shape is not None else None
        self.extra_config = ignored  # Keras options with no effect at inference (initialisers, regularisers...)

    # -- activation fused into the layer (Keras's activation= argument) --------------------------
    def set_activation(self, activation, **params):
        if isinstance(activation, dict):  # Keras 3 may serialise an activation as an object
            activation = activation.get("config", {}).get("name", activation.get("class_name"))
        self.activation = activations.get(activation)
        self.activation_params = params

    def apply(self, x, training=False, keep_cache=True):
        """forward, then the fused activation: (y, cache). keep_cache=False (inference, no gradient to
        follow): the cache is None. The activation overwrites the forward's own fresh output where the
        backward does not need that (inference, or an activation whose backward reads y); layers that
        compute their output in blocks (``fuses_activation``) apply it to each block while it is in cache."""
        act, params = self.activation, self.activation_params
        if act.name == "linear":
            z, cache = self.forward(x, training)
            return z, ((cache, None) if keep_cache else None)
        saves = act.saves(**params)
        if self.fuses_activation and act.keeps_shape and (saves == "y" or not keep_cache):
            y, cache = self.forward(x, training, epilogue=lambda block: act.forward_into(block, **params))
            return y, ((cache, y) if keep_cache else None)
        z, cache = self.forward(x, training)
        fn = lambda z_: act.forward(z_, **params)  # noqa: E731
        if not act.keeps_shape:
            y = fn(z)
        elif keep_cache or any(np.may_share_memory(z, a) for a in (x if self.multi_input else [x])):
            y = map_rows(fn, z)  # on every core, in blocks of rows
        else:
            y = map_rows(fn, z, out=z)
        return y, ((cache, z if saves == "z" else y) if keep_cache else None)

    def apply_backward(self, dy, cache, rule=None, need_dx=True, need_params=True, overwrite=False):
        """Backward through the fused activation (under ``rule``), then through :meth:`backward`.
        ``overwrite``: dy is the caller's own scratch, so the activation's backward may write into it."""
        cache, saved = cache
        if saved is None:
            dz = dy
        elif self.activation.keeps_shape and not callable(rule):  # in blocks of rows, in place if allowed
            in_place = overwrite and dy.flags.writeable and dy.dtype == np.result_type(dy.dtype, saved.dtype)
            dz = map_rows(lambda dy_, s_: self.activation.backward(dy_, s_, rule, **self.activation_params), dy,
                          saved, out=dy if in_place else None)
        else:  # a custom rule (a function) may look at the whole array: then no blocks
            dz = self.activation.backward(dy, saved, rule, **self.activation_params)
        return self.backward(dz, cache, need_dx=need_dx, need_params=need_params)

    # -- to be written by each layer -------------------------------------------------------------
    def forward(self, x, training=False):
        return x, None

    def backward(self, dout, cache, need_dx=True, need_params=True):
        return dout, {}

    def output_shape(self, input_shape):
        return input_shape

    def weight_shapes(self, input_shape):
        """{weight name: shape} for an input shape (layers with weights override)."""
        return {}

    def initializer(self, weight_name):
        return "zeros"

    # -- weights ---------------------------------------------------------------------------------
    def build(self, input_shape, dtype="float32"):
        shapes = self.weight_shapes(input_shape)
        for wname, shape in shapes.items():
            if any(d is None or d < 0 for d in shape):
                raise InputError(f"layer {self.name!r} ({type(self).__name__}) cannot size its weight {wname!r} "
                                 f"from input shape {input_shape}: declare the input's sizes (got {shape})")
            if int(np.prod([int(d) for d in shape], dtype=object)) > MAX_WEIGHT_ELEMENTS:
                raise InputError(f"layer {self.name!r} ({type(self).__name__}): weight {wname!r} of shape {shape} "
                                 f"would hold more than {MAX_WEIGHT_ELEMENTS:,} numbers; refusing to allocate it")
        for wname in self.weight_names:
            if wname in shapes and wname not in self.params:
                spec = "zeros" if _lazy_init[-1] else self.initializer(wname)
                self.params[wname] = initialize(spec, shapes[wname], dtype)

    def get_weights(self):
        return [self.params[n] for n in self.weight_names if n in self.params]

    def set_weights(self, weights):
        names = [n for n in self.weight_names if n in self.params]
        if len(weights) != len(names):
            raise InputError(f"layer {self.name!r} has {len(names)} weights ({', '.join(names)}), got {len(weights)}")
        for n, w in zip(names, weights):
            w = np.asarray(w)
            if w.shape != self.params[n].shape:
                raise InputError(f"layer {self.name!r}: weight {n!r} has shape {self.params[n].shape}, "
                                 f"got {w.shape}")
            self.params[n] = w.astype(self.params[n].dtype)

    def count_params(self):
        return sum(int(np.prod(p.shape)) for p in self.params.values())

    def astype(self, dtype):
        self.params = {k: v.astype(dtype) for k, v in self.params.items()}
        return self

    # -- config ------------------------------------------------------------------------------------
    def get_config(self):
        """Keras-style config (the keys Keras's own layer writes that npcnn uses)."""
        cfg = {"name": self.name, "trainable": self.trainable}
        if self.activation.name != "linear" and "activation" in self.config_keys():
            cfg["activation"] = self.activation.name
        for k in self.config_keys():
            if k != "activation":
                cfg[k] = getattr(self, k)
        return cfg

    def config_keys(self):
        return ()

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    # -- wiring ------------------------------------------------------------------------------------
    def __call__(self, inputs, training=False):
        """On symbolic tensors: add a node to the graph. On arrays: run eagerly (inference)."""
        items = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        if all(isinstance(t, SymbolicTensor) for t in items):
            node = Node(self, items, [wired_output_shape(self, _shape_list(inputs))])
            self.nodes.append(node)
            return node.outputs[0]
        x = [np.asarray(t) for t in items] if self.multi_input else np.asarray(inputs)
        if not self.params and self.weight_names:
            self.build(_shape_list(x) if self.multi_input else (None, *x.shape[1:]), x.dtype)
        return run_layer(self, x, training)[0]

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r}>"


def run_layer(layer, x, training=False, key=None, keep_cache=True):
    """``layer.apply(x)``, with any failure raised as npcnn's own error naming the layer and input shapes.

    key: the layer's name in a model ("inner/conv"); x: an array, or a list for merge layers.
    """
    key = layer.name if key is None else key
    try:
        return layer.apply(x, training, keep_cache)
    except NpcnnError as e:
        if repr(layer.name) in str(e) or repr(key) in str(e):
            raise
        raise type(e)(f"layer {key!r} ({type(layer).__name__}) on input shape(s) {_shape_list(x)}: {e}") from None
    except (ValueError, IndexError, TypeError) as e:
        raise InputError(f"layer {key!r} ({type(layer).__name__}) failed on input shape(s) {_shape_list(x)}: "
                         f"{e}") from None


def wired_output_shape(layer, input_shape):
    """Build the layer's weights (first call) and infer its output shape while a graph is wired: a wrong
    rank, a mismatch or an empty/negative size is refused there, naming the layer and the input shape."""
    try:
        if not layer.params:
            layer.build(input_shape)
        else:  # a layer called again (shared weights) must fit its weights
            for wname, shape in layer.weight_shapes(input_shape).items():
                have = layer.params[wname].shape if wname in layer.params else tuple(shape)
                if len(have) != len(shape) or any(a is not None and a != b for a, b in zip(shape, have)):
                    raise InputError(f"its weight {wname!r} has shape {have}, the input needs {tuple(shape)}")
        out = tuple(layer.output_shape(input_shape))
    except (NpcnnError, ValueError, IndexError, TypeError) as e:
        if isinstance(e, NpcnnError) and repr(layer.name) in str(e):
            raise
        raise InputError(f"layer {layer.name!r} ({type(layer).__name__}) cannot take input shape(s) "
                         f"{input_shape}: {e}") from None
    if any(d is not None and d <= 0 for d in out[1:]):
        raise InputError(f"layer {layer.name!r} ({type(layer).__name__}) on input shape {input_shape} would give "
                         f"output shape {out}: the input is too small for the layer")
    return out


def as_1d_config(cfg, keys):
    """1-D layers keep (1, k) pairs to run on the 2-D core; their config says (k,), as Keras writes it."""
    for k in keys:
        cfg[k] = tuple(cfg[k][1:])
    return cfg


def check_sizes(layer, what, values, minimum=1):
    """Raise InputError unless every value is an int >= ``minimum`` (kernel sizes, strides, units...)."""
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
            raise InputError(f"layer {layer.name!r} ({type(layer).__name__}): {what} must be "
                             f"{'positive integers' if minimum == 1 else f'integers >= {minimum}'}, got {values}")
    return values


def single_int(layer, what, v):
    """Keras writes 1-D sizes as an int or a one-element list: -> the int (checked positive)."""
    v = v[0] if isinstance(v, (list, tuple)) and len(v) == 1 else v
    return int(check_sizes(layer, what, [v])[0])


def check_rank(layer, x, ranks):
    """Raise InputError naming the layer if ``x`` (an array, or a shape while wiring) has a rank outside ``ranks``."""
    shape = tuple(x.shape) if hasattr(x, "shape") else tuple(x)
    if len(shape) not in ranks:
        raise InputError(f"layer {layer.name!r} ({type(layer).__name__}) expects a rank "
                         f"{' or '.join(map(str, ranks))} input, got shape {shape}")


def reduce_to_shape(g, shape):
    """Sum a broadcast gradient back to ``shape`` (the backward of NumPy broadcasting)."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    axes = tuple(i for i, (a, b) in enumerate(zip(g.shape, shape)) if b == 1 and a != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g

