"""Layer-wise Relevance Propagation (Bach et al. 2015; Montavon et al. 2019), over any model graph.

Relevance starts at the explained output, R = cotangent * z (z the pre-softmax/pre-sigmoid value), and
flows back step by step through the model's own plan, summing where branches meet. Each *linear* map
z_j = sum_i x_i w_ij + b_j (Dense, convolutions, BatchNormalization) redistributes with a rule; everything
else is handled generically:

  rule        z used in the denominator                      R_i
  "0"         z_j = sum_i x_i w_ij + b_j                     x_i sum_j w_ij R_j / z_j
  "epsilon"   z_j + eps * sign(z_j)                          same, small or weak z_j absorb relevance
  "alpha_beta" alpha * (positive part) - beta * (negative part), each normalised on its own;
              "alpha1beta0" and "alpha2beta1" are the common choices
  "z_plus"    sum_i x_i^+ w_ij^+                             x_i^+ sum_j w_ij^+ R_j / z_j
  "w_square"  sum_i w_ij²                                    sum_j w_ij² R_j / z_j      (input rule)
  "flat"      w = 1                                          uniform over the receptive field (input rule)
  "z_b"       sum_i x_i w_ij - l_i w_ij^+ - h_i w_ij^-       bounded inputs l <= x <= h   (input rule)

Every rule is computed with the layer's own forward and backward (the backward *is* W^T):
  z = sum_t c_t F_t(a_t);  s = R / z;  R_in = sum_t c_t a_t * F_t^T(s)
where each term t is the layer with transformed weights (w, w+, w-, w², 1) applied to an input a_t.

Generic steps: activations pass relevance unchanged; reshapes, padding, cropping, concatenation and
upsampling move it with their backward; pooling, global pooling and Add/Average/Subtract/Maximum
share it in proportion to each input's contribution, x * backward(R / z); Multiply (squeeze-excitation)
gives it all to the feature map, none to the gate. BatchNormalization directly after a convolution or
Dense layer is folded into it (w' = w * gamma / std, b' = (b - mean) * gamma / std + beta).

"composite" uses z_b at the input layer, alpha1beta0 on convolutions and epsilon on dense layers
("composite_b": alpha2beta1 on convolutions).
"""
import copy

import numpy as np

from ..errors import InputError, UnsupportedError
from ..layers import activation as act_layers
from ..layers import conv, core, merge, normalization, pooling, reshaping
from ..layers.base import Layer
from . import _common, targets

LINEAR = (core.Dense, conv.Conv2D, conv.DepthwiseConv2D, conv.SeparableConv2D, conv.Conv2DTranspose,
          normalization.BatchNormalization)
ROUTE = (core.Flatten, core.Reshape, core.Permute, reshaping.ZeroPadding2D, reshaping.Cropping2D,
         reshaping.UpSampling2D, merge.Concatenate)
PASS = (core.Activation, core.Dropout, core.GaussianNoise, core.GaussianDropout, core.ActivityRegularization,
        core.Rescaling, normalization.LayerNormalization, normalization.Normalization, act_layers.ReLU,
        act_layers.LeakyReLU, act_layers.ELU, act_layers.Softmax, act_layers.PReLU)
PROPORTIONAL = (pooling._Pool2D, pooling._GlobalPool, merge.Add, merge.Average, merge.Subtract, merge.Maximum)
COMPOSITES = {"composite": {"input": "z_b", "conv": "alpha1beta0", "dense": "epsilon"},
              "composite_b": {"input": "z_b", "conv": "alpha2beta1", "dense": "epsilon"}}
RULES = ("0", "epsilon", "alpha_beta", "alpha1beta0", "alpha2beta1", "z_plus", "w_square", "flat", "z_b")


class _Affine(Layer):
    """y = x * scale + shift per channel (a BatchNormalization at inference, as a linear map).

    forward: x (N, ..., C) -> same shape;  backward: dx = dy * scale
    """

    weight_names = ("kernel", "bias")

    def __init__(self, scale, shift):
        super().__init__(name="lrp_affine")
        self.params = {"kernel": scale, "bias": shift}
        self.use_bias = True

    def forward(self, x, training=False):
        return x * self.params["kernel"] + self.params.get("bias", 0), None

    def backward(self, dout, cache, need_dx=True, need_params=True):
        return dout * self.params["kernel"], {}


def _bn_affine(bn):
    """(scale, shift) of a BatchNormalization at inference: y = x * scale + shift over the last axis."""
    if bn.axis not in (-1, 3) and bn.axis != [-1]:
        raise UnsupportedError(f"LRP folds BatchNormalization over the channel axis only; layer {bn.name!r} "
                               f"normalises axis {bn.axis}")
    p = bn.params
    scale = p.get("gamma", 1.0) / np.sqrt(p["moving_variance"] + bn.epsilon)
    shift = p.get("beta", 0.0) - p["moving_mean"] * scale
    return np.asarray(scale, np.float64), np.asarray(shift, np.float64)


def _linear_map(layer):
    """A linear layer as one layer with a single kernel (and maybe a bias) whose forward is z = W x + b."""
    if isinstance(layer, normalization.BatchNormalization):
        return _Affine(*_bn_affine(layer))
    if isinstance(layer, conv.SeparableConv2D):
        # depthwise then 1x1 is one convolution with kernel K[a, b, c, f] = sum_j D[a, b, c, j] P[c*m + j, f];
        # the rules (w+, w-, w²) must see that kernel, the layer's real linear map
        d, p = layer.params["depthwise_kernel"], layer.params["pointwise_kernel"][0, 0]
        single = conv.Conv2D(layer.filters, layer.kernel_size, layer.strides, layer.padding,
                             dilation_rate=layer.dilation_rate, use_bias=layer.use_bias, name="lrp_separable")
        single.params = {"kernel": np.einsum("abcj,cjf->abcf", d, p.reshape(d.shape[2], d.shape[3], -1)),
                         **({"bias": layer.params["bias"]} if layer.use_bias else {})}
        return single
    return layer


def _fold(part, scale, shift):
    """``part`` (Dense or a convolution) followed by y * scale + shift, as one layer: the kernel scaled per
    output channel, bias' = bias * scale + shift."""
    folded = copy.copy(part)
    name = "depthwise_kernel" if isinstance(part, conv.DepthwiseConv2D) else "kernel"
    w = part.params[name]
    if isinstance(part, conv.DepthwiseConv2D):
        s = scale.reshape(w.shape[2], w.shape[3])
    elif isinstance(part, conv.Conv2DTranspose):
        s = scale[:, None]
    else:
        s = scale
    bias = part.params.get("bias", 0)
    folded.params = {name: w * s, "bias": bias * scale + shift}
    folded.use_bias = True
    return folded


def _variant(part, weights, bias):
    """A float64 copy of the linear map ``part`` with kernel = weights(kernel) and bias(bias) (or none)."""
    v = copy.copy(part)
    v.params = {k: weights(np.asarray(w, np.float64)) for k, w in part.params.items() if k != "bias"}
    if bias is not None and "bias" in part.params:
        v.params["bias"] = bias(np.asarray(part.params["bias"], np.float64))
    v.use_bias = "bias" in v.params
    return v


def _divide(r, z, eps=0.0):
    """r / (z + eps sign(z)), 0 where the denominator is 0."""
    den = z + eps * np.where(z >= 0, 1.0, -1.0) if eps else z
    return np.divide(r, den, out=np.zeros(np.broadcast_shapes(r.shape, den.shape)), where=den != 0)


def _redistribute(part, terms, r, eps=0.0):
    """R_in = sum_t c_t a_t * F_t^T(s), s = R / sum_t c_t F_t(a_t); terms: (c_t, a_t, weights, bias)."""
    layers, z = [], 0.0
    for c, a, weights, bias in terms:
        lay = _variant(part, weights, bias)
        zt, cache = lay.forward(a)
        layers.append((lay, cache))
        z = z + c * zt
    s = _divide(r, z, eps)
    out = 0.0
    for (c, a, _, _), (lay, cache) in zip(terms, layers):
        dx, _ = lay.backward(s, cache, need_dx=True, need_params=False)
        out = out + c * a * dx
    return out


def _pos(w):
    return np.maximum(w, 0)


def _neg(w):
    return np.minimum(w, 0)


def _same(w):
    return w


def _linear_rule(part, a, r, rule, eps, alpha, beta, bounds):
    """Relevance at the input of one linear map: a (input), r (relevance at its output)."""
    a = a.astype(np.float64)
    if rule in ("0", "epsilon"):
        return _redistribute(part, [(1, a, _same, _same)], r, eps if rule == "epsilon" else 0.0)
    if rule in ("alpha_beta", "alpha1beta0", "alpha2beta1"):
        al, be = {"alpha1beta0": (1.0, 0.0), "alpha2beta1": (2.0, 1.0)}.get(rule, (alpha, beta))
        ap, an = _pos(a), _neg(a)
        pos = _redistribute(part, [(1, ap, _pos, _pos), (1, an, _neg, None)], r)
        if be == 0:
            return al * pos
        neg = _redistribute(part, [(1, ap, _neg, _neg), (1, an, _pos, None)], r)
        return al * pos - be * neg
    if rule == "z_plus":
        return _redistribute(part, [(1, _pos(a), _pos, None)], r)
    if rule == "w_square":
        return _redistribute(part, [(1, np.ones_like(a), np.square, None)], r)
    if rule == "flat":
        return _redistribute(part, [(1, np.ones_like(a), np.ones_like, None)], r)
    if rule == "z_b":
        lo, hi = bounds
        lo, hi = np.broadcast_to(lo, a.shape).astype(np.float64), np.broadcast_to(hi, a.shape).astype(np.float64)
        return _redistribute(part, [(1, a, _same, None), (-1, lo, _pos, None), (-1, hi, _neg, None)], r)
    raise InputError(f"unknown LRP rule {rule!r}; known: {', '.join(RULES)}, 'composite', 'composite_b'")


def _rule_for(rule, key, layer, at_input):
    """The rule name for one linear layer: a name, or a composite looked up by key, 'input', kind."""
    table = COMPOSITES.get(rule, rule) if isinstance(rule, str) else rule
    if not isinstance(table, dict):
        return table
    kind = "dense" if isinstance(layer, core.Dense) else "conv"
    for k in (key, "input" if at_input else None, kind, "default"):
        if k in table:
            return table[k]
    return "epsilon"


def _single_consumer(model, tid):
    return sum(t == tid for s in model._steps for t in s.inputs) == 1 and tid not in model._output_ids


def _start(model, tr, cot):
    """The relevance at the output step and where it enters: (step index, R at its pre-activation z)."""
    out_id = model._output_ids[0]
    if out_id not in model._producer:
        raise InputError(f"model {model.name!r}: the output is an input; nothing to explain")
    i = model._producer[out_id]
    step = model._steps[i]
    y = tr.values[out_id]
    act = step.layer.activation
    if act.name != "linear" and not act.relu_like:  # softmax/sigmoid...: start from the logits
        args = [tr.values[t] for t in step.inputs]
        y = step.layer.forward(args if step.layer.multi_input else args[0])[0]
    return i, cot * y.astype(np.float64)


def _lrp_batch(model, x, target, rule, eps, alpha, beta, bounds):
    tr = model.trace(x)
    cot = targets.cotangent(target, targets.single_output(model, tr.outputs)).astype(np.float64)
    start, r0 = _start(model, tr, cot)
    rel = {model._steps[start].output: r0}
    inputs = set(model._input_ids)
    for i in range(start, -1, -1):
        step = model._steps[i]
        r = rel.pop(step.output, None)
        if r is None:
            continue
        layer = step.layer
        args = [tr.values[t] for t in step.inputs]
        ins = list(step.inputs)
        if isinstance(layer, LINEAR):
            part, key, kind = _linear_map(layer), step.key, layer
            if isinstance(layer, normalization.BatchNormalization) and ins[0] in model._producer:
                j = model._producer[ins[0]]
                prev = model._steps[j].layer
                if (isinstance(prev, LINEAR) and not isinstance(prev, normalization.BatchNormalization)
                        and prev.activation.name == "linear" and _single_consumer(model, ins[0])):
                    part, key, kind = _fold(_linear_map(prev), *_bn_affine(layer)), model._steps[j].key, prev
                    ins = list(model._steps[j].inputs)
                    args = [tr.values[t] for t in ins]
            name = _rule_for(rule, key, kind, ins[0] in inputs)
            r = _linear_rule(part, args[0], r, name, eps, alpha, beta, bounds)
            contributions = [r]
        elif isinstance(layer, PASS):
            contributions = [r]
        elif isinstance(layer, ROUTE):
            d, _ = layer.backward(r, tr.caches[i][0])
            contributions = d if layer.multi_input else [d]
        elif isinstance(layer, PROPORTIONAL):
            z, cache = layer.forward(args if layer.multi_input else args[0])
            d, _ = layer.backward(_divide(r, z.astype(np.float64)), cache)
            contributions = [a * g for a, g in zip(args, d if layer.multi_input else [d])]
        elif isinstance(layer, merge.Multiply):
            big = int(np.argmax([a.size for a in args]))
            contributions = [r if k == big else None for k in range(len(args))]
        else:
            raise UnsupportedError(f"LRP has no rule for layer {step.key!r} ({type(layer).__name__}); supported: "
                                   "dense, convolutions, normalisation, pooling, merges, reshapes, activations")
        for t, c in zip(ins, contributions):
            if c is not None:
                rel[t] = rel[t] + c if t in rel else c
    total = targets.score(np.ones_like(r0), r0)
    return rel.get(model._input_ids[0], np.zeros(x.shape)), total


def lrp(model, x, target=None, rule="epsilon", input_rule=None, epsilon=1e-6, alpha=1.0, beta=0.0, bounds=None,
        batch_size=None, return_error=False):
    """Layer-wise Relevance Propagation: x (N, H, W, C) -> relevance (N, H, W, C).

    rule: one of "0", "epsilon", "alpha_beta" (with ``alpha``, ``beta``; alpha - beta = 1), "alpha1beta0",
    "alpha2beta1", "z_plus", "w_square", "flat", "z_b" for every linear layer; "composite"/"composite_b";
    or a dict {layer key | "input" | "conv" | "dense" | "default": rule name}.
    input_rule: the rule of the layers reading the input (e.g. "z_b", "flat", "w_square"); overrides ``rule``
    there. "z_b" needs input bounds, so it is only allowed at the input.
    bounds: (low, high) of the input for z_b (default: each image's min and max).
    return_error=True: returns (relevance, error), error (N,) = sum(relevance) - the explained output z_c;
    0 for LRP-0 without biases, otherwise what biases and epsilon absorbed (conservation check).
    """
    if not (isinstance(rule, dict) or rule in RULES or rule in COMPOSITES):
        raise InputError(f"unknown LRP rule {rule!r}; known: {', '.join(RULES)}, 'composite', 'composite_b' or a "
                         "dict of them")
    if rule == "z_b":
        raise InputError("z_b is an input-layer rule (it needs the input's bounds): pass input_rule='z_b'")
    if input_rule is not None:
        rule = {**(COMPOSITES.get(rule, rule) if not isinstance(rule, str) or rule in COMPOSITES
                   else {"default": rule}), "input": input_rule}
    if len(model._input_ids) != 1:
        raise UnsupportedError(f"model {model.name!r} has {len(model._input_ids)} inputs; LRP explains one input")
    x = _common.as_batch(model, x)
    rel, err = np.empty(x.shape), np.empty(len(x))
    for sl in _common.chunks(len(x), batch_size):
        lo, hi = _common.value_range(x[sl], bounds)
        rel[sl], total = _lrp_batch(model, x[sl], target, rule, epsilon, alpha, beta, (lo, hi))
        err[sl] = rel[sl].reshape(len(rel[sl]), -1).sum(axis=1) - total
    rel = rel.astype(model.dtype)
    return (rel, err) if return_error else rel
