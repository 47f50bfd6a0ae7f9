"""The graph model: Functional, Sequential and nested models; forward in topological order, backward in
reverse with accumulation (reverse-mode autodiff, as micrograd does it, over whole arrays).

Nested models are *inlined* when a model is built: its plan is one flat list of steps, each a layer call
keyed by its path ("inner_model/conv2d"), so every activation and every gradient, at any depth, comes
from the same dozen-line loops below.

    trace = model.trace(x)                       # forward once, keep every activation and cache
    trace["block5_conv3"]                        # an activation
    g = trace.gradient("predictions", cot)       # d sum(cot * predictions) / dx ... as often as needed
"""
import contextlib
import difflib
import itertools
from collections import namedtuple

import numpy as np

from .activations import check_rule
from .errors import InputError
from .layers.base import Layer, Node, SymbolicTensor, run_layer
from .layers.core import InputLayer

Step = namedtuple("Step", "key layer inputs output")


def Input(shape=None, batch_size=None, name=None, dtype=None, batch_shape=None):
    """A symbolic input tensor, as ``keras.Input``: ``Input((28, 28, 1))``."""
    layer = InputLayer(input_shape=shape, batch_size=batch_size, name=name, batch_shape=batch_shape)
    return _input_tensor(layer)


def _input_tensor(layer):
    node = Node(layer, [], [layer.batch_input_shape])
    layer.nodes.append(node)
    return node.outputs[0]


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


class Model(Layer):
    """A graph of layers from input tensors to output tensors (Keras's Functional model).

    Public API (shapes NHWC, float32 unless :meth:`astype` changed it):
      predict(x, batch_size=None)                  -> ndarray, or a list for several outputs
      activations(x, layers=None)                  -> {layer key: ndarray}; nested keys "inner/layer"
      input_gradient(x, layer=None, cotangent=None) -> d sum(cotangent * out) / dx, same shape as x
      param_gradients(x, cotangent=None, layer=None) -> {"layer/kernel": ndarray, ...}
      trace(x)                                      -> a :class:`Trace`: one forward, many gradients
      backward_rule(rule)                           -> context: ReLU-family backward replaced model-wide
    """

    def __init__(self, inputs=None, outputs=None, name=None, layer_order=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.dtype = np.dtype("float32")
        self._rule = None
        if inputs is not None:
            self._build_graph(_as_list(inputs), _as_list(outputs), layer_order)
            self._multi_out = isinstance(outputs, (list, tuple))

    # ------------------------------------------------------------------ graph
    def _build_graph(self, inputs, outputs, layer_order=None):
        for t in inputs + outputs:
            if not isinstance(t, SymbolicTensor):
                raise InputError(f"model {self.name!r}: inputs and outputs must be symbolic tensors "
                                 f"(from Input(...) and layer calls), got {type(t).__name__}")
        self._inputs, self._outputs = inputs, outputs
        self._nodes = _topological_nodes(outputs, self.name)
        reached = {id(n) for n in self._nodes}
        for t in inputs:
            if id(t.node) not in reached:
                self._nodes.insert(0, t.node)
        seen, layers = set(), []
        for node in self._nodes:
            if id(node.layer) not in seen:
                seen.add(id(node.layer))
                layers.append(node.layer)
        names = [layer.name for layer in layers]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:  # keys, weights and gradients are named by layer: two layers may not share a name
            raise InputError(f"model {self.name!r}: layer names must be unique, {', '.join(map(repr, twice))} "
                             "is used by several layers")
        if layer_order is not None:
            by_name = {layer.name: layer for layer in layers}
            layers = [by_name[n] for n in layer_order if n in by_name] + [
                layer for layer in layers if layer.name not in set(layer_order)]
        self._layers = layers
        self._plan()

    def _plan(self):
        """Flatten the graph (nested models inlined) into steps; record where every key lives."""
        steps, keys, owner = [], {}, {}
        counter = iter(range(1 << 62))

        def expand(model, prefix, in_ids):
            tid = {id(t): i for t, i in zip(model._inputs, in_ids)}
            calls = {}
            for node in model._nodes:
                layer = node.layer
                if isinstance(layer, InputLayer):
                    keys.setdefault(prefix + layer.name, tid.get(id(node.outputs[0])))
                    continue
                k = calls.get(id(layer), 0)
                calls[id(layer)] = k + 1
                key = prefix + layer.name + (f":{k}" if k else "")
                ins = [tid[id(t)] for t in node.inputs]
                if isinstance(layer, Model):
                    outs = expand(layer, key + "/", ins)
                else:
                    outs = [next(counter)]
                    steps.append(Step(key, layer, ins, outs[0]))
                    owner.setdefault(id(layer), key)
                keys[key] = outs[0]
                for t, o in zip(node.outputs, outs):
                    tid[id(t)] = o
            return [tid[id(t)] for t in model._outputs]

        self._input_ids = [next(counter) for _ in self._inputs]
        self._output_ids = expand(self, "", self._input_ids)
        self._steps, self._keys, self._owner = steps, keys, owner
        self._producer = {s.output: i for i, s in enumerate(steps)}
        last = {}
        for i, s in enumerate(steps):
            for t in s.inputs:
                last[t] = i
        self._last_use = last

    @property
    def layers(self):
        return list(self._layers)

    @property
    def inputs(self):
        return list(self._inputs)

    @property
    def outputs(self):
        return list(self._outputs)

    @property
    def input_shape(self):
        shapes = [t.shape for t in self._inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        """The output shape (batch None), as Keras's ``model.output_shape`` (a list for several outputs).
        A property here, where layers have a method: a nested model is inlined, never asked for a shape."""
        shapes = [t.shape for t in self._outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    def layer_keys(self):
        """Every activation key in graph order: "conv2d", "inner_model/dense", "inner_model"..."""
        order = {tid: i for i, tid in enumerate([*self._input_ids, *[s.output for s in self._steps]])}

        def produced_by_own_step(k):  # the step's key, or a nested model around it; not an input alias
            step_key = self._steps[self._producer[self._keys[k]]].key
            return step_key == k or step_key.startswith(k + "/")
        # a nested model's key comes after its last layer's (deepest first)
        return sorted((k for k, t in self._keys.items() if t in self._producer and produced_by_own_step(k)),
                      key=lambda k: (order[self._keys[k]], -k.count("/")))

    def get_layer(self, name=None, index=None):
        """The layer called ``name`` (nested: "inner_model/conv2d"), or at ``index`` in :attr:`layers`."""
        if index is not None:
            if not -len(self._layers) <= index < len(self._layers):
                raise InputError(f"model {self.name!r} has {len(self._layers)} layers, no index {index}")
            return self._layers[index]
        head, _, rest = str(name).partition("/")
        base, _, call = head.rpartition(":")
        head = base if base and call.isdigit() else head  # an activation key "conv:1" names the layer "conv"
        for layer in self._layers:
            if layer.name == head:
                if rest:
                    if isinstance(layer, Model):
                        return layer.get_layer(rest)
                    break
                return layer
        raise InputError(self._unknown(name))

    def _unknown(self, name):
        known = self.layer_keys()
        close = difflib.get_close_matches(str(name), known, n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else f"; layers: {', '.join(known[:12])}..."
        return f"model {self.name!r} has no layer {name!r}{hint}"

    def _tensor(self, key):
        if not isinstance(key, str):
            raise InputError(f"model {self.name!r}: a layer is named by a string (\"conv2d\", \"inner/dense\"), "
                             f"got {type(key).__name__} {key!r}")
        if key not in self._keys or self._keys[key] is None:
            raise InputError(self._unknown(key))
        return self._keys[key]

    # ------------------------------------------------------------------ Keras-style call
    def __call__(self, inputs, training=False):
        items = _as_list(inputs)
        if all(isinstance(t, SymbolicTensor) for t in items):
            node = Node(self, items, [t.shape for t in self._outputs])
            self.nodes.append(node)
            return node.outputs if len(node.outputs) > 1 else node.outputs[0]
        return self.predict(inputs)

    # ------------------------------------------------------------------ inputs
    def _prepare(self, x):
        xs = _input_list(x, len(self._inputs))
        if len(xs) != len(self._inputs):
            raise InputError(f"model {self.name!r} has {len(self._inputs)} inputs, got {len(xs)} arrays")
        out = []
        for arr, t in zip(xs, self._inputs):
            out.append(check_input(arr, t.shape, f"model {self.name!r} input {t.node.layer.name!r}", self.dtype))
        if len({a.shape[0] for a in out}) > 1:
            raise InputError(f"model {self.name!r}: inputs have different batch sizes {[a.shape[0] for a in out]}")
        if out[0].shape[0] == 0:  # as Keras: nothing to compute (and no gradient of an empty batch)
            raise InputError(f"model {self.name!r}: the batch is empty (input shape {out[0].shape}); "
                             "pass at least one sample")
        return out

    # ------------------------------------------------------------------ forward
    def _run(self, xs, training=False, keep=None, need_caches=False, upto=None, compact=None):
        """Run the steps. keep: tensor ids to retain (None: all); compact(layer, cache) -> the cache to keep
        (None: the whole cache). Returns (values, caches)."""
        values = dict(zip(self._input_ids, xs))
        caches = {}
        retain = None if keep is None else set(keep) | set(self._output_ids)
        last = len(self._steps) if upto is None else upto + 1
        for i, step in enumerate(self._steps[:last]):
            args = [values[t] for t in step.inputs]
            out, cache = run_layer(step.layer, args if step.layer.multi_input else args[0], training, step.key,
                                   keep_cache=need_caches)
            values[step.output] = out
            if need_caches:
                caches[i] = cache if compact is None else compact(step.layer, cache)
            del cache  # the full cache (the step's input, its pre-activation) must not live into the next step
            if retain is not None:
                for t in step.inputs:
                    if self._last_use.get(t) == i and t not in retain:
                        values.pop(t, None)
        return values, caches

    def predict(self, x, batch_size=None, verbose=0):
        """Model output(s) for x: (N, H, W, C) -> (N, ...) (a list when the model has several outputs)."""
        xs = self._prepare(x)
        n = xs[0].shape[0]
        if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
            raise InputError(f"model {self.name!r}: batch_size must be a positive integer, got {batch_size!r}")
        step = batch_size or n or 1
        chunks = []
        for s in range(0, max(n, 1), step):
            values, _ = self._run([a[s:s + step] for a in xs], keep=())
            chunks.append([values[t] for t in self._output_ids])
        outs = [np.concatenate(parts) if len(chunks) > 1 else parts[0] for parts in zip(*chunks)]
        return outs if self._multi_out else outs[0]

    def activations(self, x, layers=None):
        """{key: activation} for every layer (or the keys in ``layers``): what Keras's
        ``Model(model.inputs, layer.output).predict(x)`` gives, nested layers keyed "inner/layer"."""
        wanted = self.layer_keys() if layers is None else _as_list(layers)
        ids = [self._tensor(k) for k in wanted]
        upto = max((self._producer.get(t, -1) for t in ids), default=-1)
        values, _ = self._run(self._prepare(x), keep=ids, upto=upto)
        return {k: values[t] for k, t in zip(wanted, ids)}

    def trace(self, x, training=False):
        """Run forward once and keep everything needed for any number of gradients (:class:`Trace`)."""
        return Trace(self, self._prepare(x), training)

    def input_gradient(self, x, layer=None, cotangent=None):
        """d sum(cotangent * out) / dx, out = the model output (or the output of ``layer``); ones by default.

        x: (N, H, W, C) -> same shape (a list for several inputs).
        """
        if callable(self._rule):  # a custom rule may read any saved activation: keep everything
            return self.trace(x).input_gradient(layer, cotangent)
        # One gradient only: a lean trace keeps no activations, and of the caches only what dx needs
        ids = [] if layer is None else [self._tensor(k) for k in _as_list(layer)]
        upto = max(self._producer.get(t, -1) for t in ids) if ids else None
        return Trace(self, self._prepare(x), lean=True, keep=ids, upto=upto).input_gradient(layer, cotangent)

    def param_gradients(self, x, cotangent=None, layer=None):
        """{"layer/weight": d sum(cotangent * out) / dweight} for every trainable weight (nested:
        "inner/layer/kernel"); weights the output does not depend on get zeros."""
        return self.trace(x).param_gradients(layer, cotangent)

    @contextlib.contextmanager
    def backward_rule(self, rule):
        """Within the block, the backward of every ReLU-like unit is ``rule``: "guided", "deconvnet", or a
        function ``rule(dy, saved, normal_backward) -> dz``."""
        previous, self._rule = self._rule, check_rule(rule)
        try:
            yield self
        finally:
            self._rule = previous

    # ------------------------------------------------------------------ training (npcnn.train does it)
    def compile(self, optimizer="rmsprop", loss=None, metrics=None):
        """Choose the optimiser, loss and metrics, as Keras's ``compile`` (see :mod:`npcnn.train`)."""
        from .train import compile as _compile
        return _compile(self, optimizer, loss, metrics)

    def fit(self, x=None, y=None, **kwargs):
        """Train: ``fit(x, y, epochs=1, batch_size=32, validation_data=None | validation_split=0.0,
        callbacks=None, verbose=1, shuffle=True)`` -> History (``.history`` dict), as Keras's."""
        from .train import fit as _fit
        return _fit(self, x, y, **kwargs)

    def evaluate(self, x=None, y=None, **kwargs):
        """Loss and metrics on (x, y) in inference mode: loss, or [loss, metric...] as Keras's."""
        from .train import evaluate as _evaluate
        return _evaluate(self, x, y, **kwargs)

    # ------------------------------------------------------------------ weights
    def _unique_layers(self):
        seen, out = set(), []
        for layer in self._layers:
            if id(layer) not in seen:
                seen.add(id(layer))
                out.append(layer)
        return out

    @property
    def params(self):
        """A model owns no weights itself (its layers do); Layer.__init__'s assignment is ignored."""
        return {}

    @params.setter
    def params(self, value):
        pass

    def get_weights(self):
        """Every weight array in Keras's order (layer by layer, each layer's own order)."""
        return [w for layer in self._unique_layers() for w in layer.get_weights()]

    def set_weights(self, weights):
        weights = list(weights)
        expected = len(self.get_weights())
        if len(weights) != expected:
            raise InputError(f"model {self.name!r} has {expected} weight arrays, got {len(weights)}")
        i = 0
        for layer in self._unique_layers():
            k = len(layer.get_weights())
            layer.set_weights(weights[i:i + k])
            i += k

    def save(self, path):
        """Write a Keras file: ``.keras`` (Keras 3 archive) or ``.h5`` (Keras 2 layout); see :mod:`npcnn.io`."""
        from .io import save_model
        save_model(self, path)

    def count_params(self):
        return sum(layer.count_params() for layer in self._unique_layers())

    def named_weights(self):
        """{"layer/weight": array} for every weight, nested ones with their path."""
        out = {}
        for layer in self._unique_layers():
            if isinstance(layer, Model):
                out.update({f"{layer.name}/{k}": v for k, v in layer.named_weights().items()})
            else:
                out.update({f"{layer.name}/{k}": v for k, v in layer.params.items()})
        return out

    def astype(self, dtype):
        """Cast every weight (and future inputs) to ``dtype``, e.g. "float64" for gradient checks. In place."""
        self.dtype = np.dtype(dtype)
        for layer in self._unique_layers():
            layer.astype(dtype)
        return self

    def summary(self, print_fn=print):
        """Print a Keras-like table: layer (type), output shape, parameter count, and the totals."""
        rows = [("Layer (type)", "Output Shape", "Param #", "Connected to")]
        for layer in self._layers:
            shapes = [n.outputs[0].shape for n in layer.nodes if n in self._nodes] or [
                getattr(layer, "batch_input_shape", None)]
            inbound = sorted({t.node.layer.name for n in layer.nodes if n in self._nodes for t in n.inputs})
            rows.append((f"{layer.name} ({type(layer).__name__})", str(shapes[0]).replace("None", "None"),
                         f"{layer.count_params():,}", ", ".join(inbound)))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        line = "  ".join(f"{{:<{w}}}" for w in widths)
        trainable = sum(int(np.prod(p.shape)) for layer in self._all_layers() for name, p in layer.params.items()
                        if layer.trainable and name not in layer.non_trainable_names)
        total = self.count_params()
        text = [f'Model: "{self.name}"', "-" * (sum(widths) + 6), line.format(*rows[0]), "=" * (sum(widths) + 6)]
        text += [line.format(*r) for r in rows[1:]]
        text += ["=" * (sum(widths) + 6), f"Total params: {total:,}", f"Trainable params: {trainable:,}",
                 f"Non-trainable params: {total - trainable:,}"]
        print_fn("\n".join(text))

    def _all_layers(self):
        for layer in self._unique_layers():
            if isinstance(layer, Model):
                yield from layer._all_layers()
            else:
                yield layer


class Sequential(Model):
    """A plain stack of layers, as ``keras.Sequential([...])``. The graph is wired as soon as the input
    shape is known (an ``input_shape=`` on the first layer, an InputLayer, or the first call)."""

    def __init__(self, layers=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self._stack = []
        self._multi_out = False
        for layer in layers or []:
            self.add(layer)

    def add(self, layer):
        if not isinstance(layer, Layer):
            raise InputError(f"Sequential.add expects a layer, got {type(layer).__name__}")
        self._stack.append(layer)
        first = self._stack[0]
        shape = first.batch_input_shape if not isinstance(first, Model) else first.input_shape
        if shape is not None:
            self._wire(shape)

    def _wire(self, batch_shape):
        stack = self._stack
        if isinstance(stack[0], InputLayer):
            start, stack = _input_tensor(stack[0]), stack[1:]
        else:
            start = Input(batch_shape=batch_shape, name=f"{self.name}_input")
        t = start
        for layer in stack:
            t = layer(t)
        self._build_graph([start], [t])
        self._layers = [layer for layer in self._layers if not isinstance(layer, InputLayer)]

    def _prepare(self, x):
        if not hasattr(self, "_inputs"):
            if not self._stack:
                raise InputError(f"Sequential model {self.name!r} has no layers")
            first = check_input(_input_list(x, 1)[0], None, f"model {self.name!r} input", self.dtype)
            self._wire((None, *first.shape[1:]))
        return super()._prepare(x)


def check_input(x, shape, what, dtype):
    """Validate and convert one input array: numeric, finite, the declared rank and sizes."""
    if isinstance(x, SymbolicTensor):
        raise InputError(f"{what}: expected an array, got a symbolic tensor")
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as e:  # ragged nested lists
        raise InputError(f"{what}: cannot be read as one array ({e})") from None
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{what}: expected a real numeric array, got dtype {arr.dtype}")
    if shape is not None:
        if arr.ndim != len(shape):
            hint = " (add a batch axis: x[None])" if arr.ndim == len(shape) - 1 else ""
            raise InputError(f"{what} expects shape {tuple(shape)} (rank {len(shape)}), got {arr.shape}{hint}")
        for got, want in zip(arr.shape[1:], shape[1:]):
            if want is not None and got != want:
                raise InputError(f"{what} expects shape {tuple(shape)}, got {arr.shape}")
    arr = arr.astype(dtype, copy=False)
    if not np.isfinite(arr).all():
        raise InputError(f"{what} contains NaN or infinite values")
    return arr


def _input_list(x, n_inputs):
    """The caller's x as a list of per-input arrays. For a one-input model, a nested Python list is one
    array-like (``[[0.1, 0.2]]``), not a list of inputs; a list of NumPy arrays is a list of inputs."""
    if n_inputs == 1 and isinstance(x, (list, tuple)) and not any(
            isinstance(e, (np.ndarray, SymbolicTensor)) for e in x):
        return [x]
    return _as_list(x)


def _topological_nodes(outputs, model_name):
    """The nodes that produce ``outputs``, each after its inputs' producers (iterative DFS)."""
    order, done, active = [], set(), set()
    for t in outputs:
        stack = [(t.node, False)]
        while stack:
            node, expanded = stack.pop()
            if node is None:
                raise InputError(f"model {model_name!r}: a tensor has no producing layer")
            if id(node) in done:
                continue
            if expanded:
                active.discard(id(node))
                done.add(id(node))
                order.append(node)
                continue
            if id(node) in active:
                raise InputError(f"model {model_name!r}: the layer graph has a cycle through {node.layer.name!r}")
            active.add(id(node))
            stack.append((node, True))
            for t_in in reversed(node.inputs):
                if id(t_in.node) not in done:
                    stack.append((t_in.node, False))
    return order


class Trace:
    """One forward pass with every activation and layer cache kept, for many backward passes.

    trace[key]                           the activation of a layer (nested: "inner/layer")
    trace.gradient(of, cotangent, wrt)   d sum(cotangent * out[of]) / d (inputs and/or keys in wrt)
    """

    def __init__(self, model, xs, training=False, lean=False, keep=(), upto=None):
        """lean=True (used by Model.input_gradient): keep only the values in ``keep`` and the outputs, and
        cut every cache to what an input gradient needs (:func:`_lean_cache`): about 1/4 of the memory
        of a full trace, for one backward pass (caches are freed as it goes); activations (tr[key]), parameter
        gradients and function rules are then unavailable.
        upto: the last step to run (lean traces of an inner layer stop there)."""
        self.model, self.inputs, self.training, self.lean = model, xs, training, lean
        if lean:
            self.values, self.caches = model._run(xs, training, keep=keep, need_caches=True, upto=upto,
                                                  compact=_lean_cache)
        else:
            self.values, self.caches = model._run(xs, training, keep=None, need_caches=True)

    def __getitem__(self, key):
        return self.values[self.model._tensor(key)]

    @property
    def outputs(self):
        return [self.values[t] for t in self.model._output_ids]

    def _cotangents(self, of, cotangent):
        model = self.model
        ids = model._output_ids if of is None else [model._tensor(k) for k in _as_list(of)]
        cots = [None] * len(ids) if cotangent is None else _as_list(cotangent) if len(ids) > 1 else [cotangent]
        if len(cots) != len(ids):
            raise InputError(f"model {model.name!r}: {len(ids)} outputs but {len(cots)} cotangents")
        out = {}
        for t, c in zip(ids, cots):
            value = self.values[t]
            if c is None:
                c = np.ones_like(value)
            where = "the model output" if of is None else f"layer {of!r}"
            c = check_input(c, None, f"model {model.name!r}: the cotangent for {where}", value.dtype)
            if c.shape != value.shape:
                raise InputError(f"cotangent for {where} has shape {c.shape}, but the output has shape {value.shape}")
            out[t] = out.get(t, 0) + c.astype(value.dtype, copy=False)
        return out

    def backward(self, seeds, want_inputs=True, want_params=False, wrt=(), rule=None):
        """Reverse-mode sweep from ``seeds`` {tensor id: cotangent}.

        Returns (input grads list, {param key: grad}, {wrt tensor id: grad}).
        """
        model = self.model
        rule = check_rule(model._rule if rule is None else rule)
        grads = dict(seeds)
        wrt = set(wrt)
        need = _needs_grad(model, want_inputs, want_params, wrt)
        pgrads, wrt_grads = {}, {}
        for i in range(len(model._steps) - 1, -1, -1):
            step = model._steps[i]
            dy = grads.pop(step.output, None)
            if step.output in wrt and dy is not None:
                wrt_grads[step.output] = dy
            if dy is None or not (need.get(step.output) or (want_params and step.layer.params)):
                continue
            need_dx = any(need.get(t) for t in step.inputs)
            # a lean trace serves one backward pass: each cache is freed as soon as it has been used
            cache = _unpack_cache(self.caches.pop(i)) if self.lean else self.caches[i]
            # dy may be overwritten (by the activation's backward) when nothing else can see it: not a seed
            # (the caller's cotangent), not asked for, not another pending gradient (Add passes one on twice)
            kept = itertools.chain(seeds.values(), grads.values(), wrt_grads.values())
            own = step.output not in wrt and not any(np.may_share_memory(dy, a) for a in kept)
            dx, g = step.layer.apply_backward(dy, cache, rule, need_dx=need_dx,
                                              need_params=want_params and step.layer.trainable, overwrite=own)
            for name, value in g.items():
                key = f"{model._owner[id(step.layer)]}/{name}"
                pgrads[key] = pgrads[key] + value if key in pgrads else value
            if need_dx:
                for t, d in zip(step.inputs, dx if step.layer.multi_input else [dx]):
                    if d is not None and need.get(t):
                        grads[t] = grads[t] + d if t in grads else d
        for t in wrt:
            if t in model._input_ids:
                wrt_grads[t] = grads.get(t)
        inputs = [grads.get(t, np.zeros_like(x)) for t, x in zip(model._input_ids, self.inputs)]
        return inputs, pgrads, wrt_grads

    def input_gradient(self, layer=None, cotangent=None, rule=None):
        """d sum(cotangent * out) / dx, out = model output or ``layer``'s; x-shaped (list for several)."""
        ins, _, _ = self.backward(self._cotangents(layer, cotangent), rule=rule)
        return ins if len(ins) > 1 else ins[0]

    def param_gradients(self, layer=None, cotangent=None, rule=None):
        """{"layer/weight": gradient} of sum(cotangent * out) for every trainable weight."""
        _, pgrads, _ = self.backward(self._cotangents(layer, cotangent), want_inputs=False, want_params=True,
                                     rule=rule)
        for lay in self.model._steps:
            layer = lay.layer
            if not layer.trainable:
                continue
            for name, value in layer.params.items():
                key = f"{self.model._owner[id(layer)]}/{name}"
                if name not in layer.non_trainable_names and key not in pgrads:
                    pgrads[key] = np.zeros_like(value)
        return pgrads

    def gradient(self, of=None, cotangent=None, wrt=None, rule=None):
        """d sum(cotangent * out[of]) / d wrt, where wrt is a layer key or a list of keys (default the input).

        Returns an array (or a list matching ``wrt``). Used by CAM methods: the gradient of a class score
        with respect to a feature map, without recomputing the forward pass.
        """
        seeds = self._cotangents(of, cotangent)
        if wrt is None:
            return self.input_gradient(of, cotangent, rule)
        keys = _as_list(wrt)
        ids = [self.model._tensor(k) for k in keys]
        _, _, got = self.backward(seeds, want_inputs=False, wrt=ids, rule=rule)
        out = [got.get(t) if got.get(t) is not None else np.zeros_like(self.values[t]) for t in ids]
        return out if isinstance(wrt, (list, tuple)) else out[0]


LEAN_MIN_BYTES = 16 << 20
"""Caches smaller than this are kept whole even in a lean trace: cutting them costs time (max pooling's
winners are found in the forward pass, signs packed to bits) and saves little memory."""


def _nbytes(cache):
    if isinstance(cache, np.ndarray):
        return cache.nbytes
    if isinstance(cache, (tuple, list)):
        return sum(_nbytes(c) for c in cache)
    return 0


def _lean_cache(layer, cache):
    """The part of a layer's cache an input gradient needs (for Trace(lean=True)): the layer's own
    ``lean_cache`` when it has one (convolutions drop their input, max pooling keeps the winning tap),
    and for a plain ReLU the sign of its saved pre-activation, packed 8 to a byte (1/32 of the array).
    Caches under LEAN_MIN_BYTES are kept whole."""
    if _nbytes(cache) < LEAN_MIN_BYTES:
        return cache
    inner, saved = cache
    shrink = getattr(layer, "lean_cache", None)
    if shrink is not None:
        inner = shrink(inner)
    if saved is not None and layer.activation.name == "relu" and not layer.activation_params:
        saved = _PackedSign(saved)
    return inner, saved


class _PackedSign:
    """z > 0 as bits (np.packbits); :func:`_unpack_cache` turns it back into a boolean array."""

    def __init__(self, z):
        self.shape, self.bits = z.shape, np.packbits(z > 0)

    def unpack(self):
        return np.unpackbits(self.bits, count=int(np.prod(self.shape))).view(bool).reshape(self.shape)


def _unpack_cache(cache):
    inner, saved = cache
    return inner, (saved.unpack() if isinstance(saved, _PackedSign) else saved)


def _needs_grad(model, want_inputs, want_params, wrt):
    """Which tensors' gradients must be computed: those with a path to something wanted."""
    need = {t: want_inputs for t in model._input_ids}
    for t in wrt:
        need[t] = True
    for step in model._steps:
        up = any(need.get(t) for t in step.inputs)
        own = want_params and bool(step.layer.params) and step.layer.trainable
        need[step.output] = need.get(step.output, False) or up or own
    return need
