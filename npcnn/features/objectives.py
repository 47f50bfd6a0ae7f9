"""What activation maximization maximizes. An objective is a small object called on a :class:`~npcnn.Trace`::

    values, seeds = objective(trace)     # values (N,): one number per image
                                         # seeds {tensor id: cotangent}: d sum(values) / d activation

so the optimiser runs ONE forward (``model.trace``) and ONE backward (``trace.backward(seeds)``) per step
whatever the objective. Objectives combine like numbers::

    channel("conv2d_3", 5) + 0.5 * neuron("conv2d_3", 7) - class_logit(2)
    channel("block3_conv1", 3) - 1e2 * diversity("block3_conv1")     # a batch of different images

A channel/neuron/class index may be a list: image n of the batch then maximizes index[n], so a gallery
of many channels is one batched optimisation.
"""
import numbers

import numpy as np

from ..errors import InputError
from ..layers.base import Layer
from ..model import Trace


class Objective:
    """Base: subclasses implement ``__call__(trace) -> (values (N,), seeds)``; ``batch`` is the batch size
    the objective asks for (None: any)."""

    batch = None

    def __call__(self, trace):
        raise NotImplementedError

    def tensors(self, model):
        """The tensor ids the objective reads: a forward pass may stop at the last of them."""
        return [model._tensor(self.layer)]

    def __add__(self, other):
        return Sum([(1.0, self), (1.0, _as_objective(other))])

    def __radd__(self, other):  # sum([...]) starts from 0
        return self if isinstance(other, numbers.Number) and other == 0 else _as_objective(other) + self

    def __neg__(self):
        return Sum([(-1.0, self)])

    def __sub__(self, other):
        return self + (-_as_objective(other))

    def __mul__(self, weight):
        if not isinstance(weight, numbers.Number):
            raise InputError(f"an objective can only be scaled by a number, got {type(weight).__name__}")
        return Sum([(float(weight), self)])

    __rmul__ = __mul__


def _as_objective(obj):
    if not isinstance(obj, Objective):
        raise InputError(f"expected an objective (channel, neuron, class_logit...), got {type(obj).__name__}")
    return obj


class Sum(Objective):
    """sum_i weight_i * objective_i: values and seeds are the weighted sums of the parts'."""

    def __init__(self, terms):
        flat = []
        for w, obj in terms:  # flatten nested sums so the repr stays readable
            flat += [(w * w2, o2) for w2, o2 in obj.terms] if isinstance(obj, Sum) else [(w, obj)]
        self.terms = flat
        sizes = {o.batch for _, o in flat if o.batch is not None}
        if len(sizes) > 1:
            raise InputError(f"objectives ask for different batch sizes {sorted(sizes)}")
        self.batch = sizes.pop() if sizes else None

    def tensors(self, model):
        return [t for _, obj in self.terms for t in obj.tensors(model)]

    def __call__(self, trace):
        total, seeds = 0.0, {}
        for w, obj in self.terms:
            values, s = obj(trace)
            total = total + w * values
            for tid, cot in s.items():
                seeds[tid] = seeds[tid] + w * cot if tid in seeds else w * cot
        return total, seeds

    def __repr__(self):
        return " + ".join(f"{w:g}*{o!r}" for w, o in self.terms).replace("+ -", "- ")


def _indices(index, n, what):
    """A class/channel index (int or one per image) -> int array (n,)."""
    idx = np.atleast_1d(np.asarray(index, dtype=int))
    if idx.size == 1:
        idx = np.repeat(idx, n)
    if idx.shape != (n,):
        raise InputError(f"{what}: {idx.size} indices for a batch of {n} images")
    return idx


def _activation(trace, key):
    tid = trace.model._tensor(key)
    return tid, trace.values[tid]


class _Unit(Objective):
    """A unit of a layer per image: channel ``c`` averaged over space (``at=None``) or at position ``at``."""

    def __init__(self, layer, index, at=None, kind="channel"):
        self.layer, self.index, self.at, self.kind = layer, index, at, kind
        self.batch = None if np.ndim(index) == 0 else len(index)

    def __call__(self, trace):
        tid, a = _activation(trace, self.layer)
        n, channels = a.shape[0], a.shape[-1]
        idx = _indices(self.index, n, f"{self.kind}({self.layer!r})")
        if idx.min() < -channels or idx.max() >= channels:
            raise InputError(f"{self.kind}({self.layer!r}, {self.index}): the layer has {channels} channels "
                             f"(output shape {a.shape})")
        cot = np.zeros_like(a)
        rows = np.arange(n)
        if a.ndim == 2 or self.at is None:  # mean over every spatial position
            spatial = int(np.prod(a.shape[1:-1]))
            cot.reshape(n, -1, channels)[rows, :, idx] = 1.0 / spatial
        else:
            if a.ndim != 4:
                raise InputError(f"neuron({self.layer!r}) needs a 4-D layer output, got shape {a.shape}")
            y, x = self.at
            y = a.shape[1] // 2 if y is None else y
            x = a.shape[2] // 2 if x is None else x
            if not (0 <= y < a.shape[1] and 0 <= x < a.shape[2]):
                raise InputError(f"neuron({self.layer!r}) position {(y, x)} is outside the map {a.shape[1:3]}")
            cot[rows, y, x, idx] = 1.0
        values = (cot * a).reshape(n, -1).sum(axis=1)
        return values, {tid: cot}

    def __repr__(self):
        where = "" if self.at is None else f", y={self.at[0]}, x={self.at[1]}"
        return f"{self.kind}({self.layer!r}, {self.index}{where})"


def channel(layer, c):
    """The mean activation of channel ``c`` of ``layer`` (Graetz 2019): mean over (h, w) of out[n, :, :, c].

    For a 2-D output (Dense) the unit ``out[n, c]``. ``c`` may be a list: image n maximizes c[n].
    """
    return _Unit(layer, c)


def neuron(layer, c, y=None, x=None):
    """One unit out[n, y, x, c] of ``layer`` (Erhan 2009); y, x default to the centre of the map."""
    return _Unit(layer, c, at=(y, x), kind="neuron")


def _identity_forward(layer):
    return type(layer).forward is Layer.forward


def _final_step(model, layer):
    tid = model._output_ids[0] if layer is None else model._tensor(layer)
    if tid not in model._producer:
        raise InputError(f"layer {layer!r} is the model input, not a class score")
    return model._producer[tid]


class _ClassScore(Objective):
    """Class ``c`` of the model output: the probability, or the logit (the input of a final softmax/sigmoid)."""

    def __init__(self, c, logit, layer=None):
        self.index, self.logit, self.layer = c, logit, layer
        self.batch = None if np.ndim(c) == 0 else len(c)

    def tensors(self, model):
        step = model._steps[_final_step(model, self.layer)]
        return [step.output, *step.inputs]

    def __call__(self, trace):
        model = trace.model
        i = _final_step(model, self.layer)
        step = model._steps[i]
        squash = step.layer.activation.name in ("softmax", "sigmoid")
        if not self.logit or not squash:  # the output itself
            scores, back = trace.values[step.output], None
            seed_id = step.output
        elif _identity_forward(step.layer):  # Activation("softmax") / Softmax(): logits are its input
            seed_id = step.inputs[0]
            scores, back = trace.values[seed_id], None
        else:  # softmax fused in the layer (Dense(7, activation="softmax")): pre-activation z by hand
            seed_id = step.inputs[0]
            scores = step.layer.forward(trace.values[seed_id])[0]
            inner_cache = trace.caches[i][0]
            back = (lambda cot: step.layer.backward(cot, inner_cache, need_dx=True, need_params=False)[0])
        n, classes = scores.shape[0], scores.shape[-1]
        idx = _indices(self.index, n, repr(self))
        if idx.min() < -classes or idx.max() >= classes:
            raise InputError(f"{self!r}: the model has {classes} classes")
        cot = np.zeros_like(scores)
        cot.reshape(n, -1, classes)[np.arange(n), :, idx] = 1.0
        values = (cot * scores).reshape(n, -1).sum(axis=1)
        return values, {seed_id: cot if back is None else back(cot)}

    def __repr__(self):
        return f"class_{'logit' if self.logit else 'probability'}({self.index})"


def class_logit(c, layer=None):
    """The pre-softmax score of class ``c`` (the literature's advice: a probability can rise by pushing
    the other classes down). A final Activation("softmax")/Softmax layer is stepped back over; a softmax
    fused into the last Dense/Conv is undone by recomputing that layer's linear part from the trace.
    A model without a final softmax/sigmoid: the output itself."""
    return _ClassScore(c, True, layer)


def class_probability(c, layer=None):
    """The model output for class ``c`` (the softmax probability for a softmax classifier)."""
    return _ClassScore(c, False, layer)


class _Diversity(Objective):
    """Lucid's diversity term (Olah et al. 2017): images in the batch should differ in *style*.

    G_n = A_n^T A_n (C, C) is image n's Gram matrix over positions, g_n = G_n / |G_n|;
    value_n = -(1/N) * sum_{m != n} g_n . g_m        (0 when all styles are orthogonal)
    d total / d G_n = -(2/N) * (s_n - (g_n . s_n) g_n) / |G_n|,   s_n = sum_{m != n} g_m
    d total / d A_n = A_n (dG_n + dG_n^T) = 2 A_n dG_n             (dG_n is symmetric)
    """

    def __init__(self, layer):
        self.layer = layer

    def __call__(self, trace):
        tid, a = _activation(trace, self.layer)
        n, c = a.shape[0], a.shape[-1]
        if n < 2:
            raise InputError("diversity needs a batch of at least 2 images (maximize(..., batch=4))")
        A = a.reshape(n, -1, c).astype(np.float64)
        G = np.einsum("npc,npd->ncd", A, A).reshape(n, -1)
        norm = np.linalg.norm(G, axis=1, keepdims=True) + 1e-12
        g = G / norm
        s = g.sum(axis=0, keepdims=True) - g
        values = -(g * s).sum(axis=1) / n
        dG = -(2.0 / n) * (s - (g * s).sum(axis=1, keepdims=True) * g) / norm
        dA = 2.0 * np.einsum("npc,ncd->npd", A, dG.reshape(n, c, c))
        return values.astype(a.dtype), {tid: dA.reshape(a.shape).astype(a.dtype)}

    def __repr__(self):
        return f"diversity({self.layer!r})"


def diversity(layer):
    """Negative mean cosine similarity between the Gram matrices of ``layer`` across the batch; add it
    (weighted) to another objective to get several different images for one unit."""
    return _Diversity(layer)


def trace_for(model, objective, x):
    """A forward pass that stops at the last layer the objective reads and keeps only what it reads
    and what one input gradient needs (a lean :class:`~npcnn.Trace`): an objective on conv1 of a deep
    model costs one layer, not the whole model."""
    if callable(model._rule):  # a custom backward rule may read any activation: keep everything
        return model.trace(x)
    ids = objective.tensors(model)
    upto = max(model._producer.get(t, -1) for t in ids)
    return Trace(model, model._prepare(x), lean=True, keep=ids, upto=upto)


def objective_value(model, objective, x):
    """The objective's value for each image of x: (N, H, W, C) -> (N,)."""
    values, _ = objective(trace_for(model, objective, x))
    return np.asarray(values)
