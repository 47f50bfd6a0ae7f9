"""Every Keras activation by name: the function and its derivative side by side.

Each entry is ``forward(z, **params) -> y`` and ``backward(dy, saved, **params) -> dz`` where
``saved`` is whichever of the input ``z`` or the output ``y`` the derivative is cheapest from
(``uses`` says which), so a layer keeps one array, not two.

Backward *rules* replace the ReLU-family backward for a whole model (Springenberg et al. 2014
guided backprop; Zeiler & Fergus 2014 deconvnet) without touching any layer's code:
  normal      dz = f'(z) * dy
  guided      dz = f'(z) * max(dy, 0)        only positive signal through positive inputs
  deconvnet   dz = max(dy, 0)                 the forward mask is ignored
"""
import math

import numpy as np

from .errors import InputError

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


_erf_vec = np.vectorize(math.erf, otypes=[np.float64])


def _erf(x):
    """Exact erf without scipy (math.erf per element: slow, but gelu is rare in CNNs)."""
    return _erf_vec(x).astype(x.dtype, copy=False)


def _sigmoid(z):
    # exp of a non-positive number never overflows
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


def _softplus(z):
    return (np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))).astype(z.dtype, copy=False)


_ZERO_ROW = 16384
_zero_rows = {}


def relu(z, out=None):
    """max(z, 0) into ``out`` (a new array by default; ``out=z`` for in place).

    NumPy's maximum against the scalar 0 runs ~4x slower than against an array of zeros (its SIMD loop
    takes two arrays: 360,000 float32 numbers 0.20 vs 0.05 ms, NumPy 2.4 on AVX-512), so a contiguous z
    is taken in rows of _ZERO_ROW numbers against one cached row of zeros.
    """
    out = np.empty_like(z) if out is None else out
    if not (z.flags.c_contiguous and out.flags.c_contiguous) or z.size < _ZERO_ROW:
        return np.maximum(z, 0, out=out)
    zeros = _zero_rows.get(z.dtype)
    if zeros is None:
        zeros = _zero_rows[z.dtype] = np.zeros(_ZERO_ROW, z.dtype)
    flat, dest = z.reshape(-1), out.reshape(-1)
    whole = flat.size - flat.size % _ZERO_ROW
    np.maximum(flat[:whole].reshape(-1, _ZERO_ROW), zeros, out=dest[:whole].reshape(-1, _ZERO_ROW))
    np.maximum(flat[whole:], zeros[:flat.size - whole], out=dest[whole:])
    return out


def relu_forward(z, negative_slope=0.0, max_value=None, threshold=0.0, out=None):
    """Keras's ReLU with its options, into ``out`` when given (``out=z``: in place)."""
    if negative_slope == 0 and max_value is None and threshold == 0:
        return relu(z, out)
    y = np.where(z >= threshold, z, negative_slope * (z - threshold)).astype(z.dtype, copy=False)
    if max_value is not None:
        y = np.minimum(y, max_value)
    if out is None:
        return y
    out[...] = y
    return out


def relu_derivative(z, negative_slope=0.0, max_value=None, threshold=0.0):
    inside = z >= threshold if threshold != 0 else z > 0
    if negative_slope == 0 and max_value is None:
        return inside  # a 0/1 mask: dy * mask keeps dy's dtype (np.where(inside, 1.0, 0) made float64 temporaries)
    slope = np.where(inside, 1.0, negative_slope).astype(z.dtype, copy=False)
    if max_value is not None:
        slope = slope * (z < max_value)
    return slope


def _softmax(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _softmax_backward(dy, y, axis=-1):
    return y * (dy - (dy * y).sum(axis=axis, keepdims=True))


def _log_softmax(z, axis=-1):
    s = z - z.max(axis=axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))


def _log_softmax_backward(dy, y, axis=-1):
    return dy - np.exp(y) * dy.sum(axis=axis, keepdims=True)


def _elu(z, alpha=1.0):
    return np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0))).astype(z.dtype, copy=False)


def _elu_backward(dy, z, alpha=1.0):
    return dy * np.where(z > 0, 1.0, alpha * np.exp(np.minimum(z, 0))).astype(z.dtype, copy=False)


def _gelu(z, approximate=False):
    if approximate:
        return 0.5 * z * (1 + np.tanh(_SQRT_2_OVER_PI * (z + 0.044715 * z ** 3)))
    return 0.5 * z * (1 + _erf(z / math.sqrt(2.0)))


def _gelu_backward(dy, z, approximate=False):
    if approximate:
        inner = _SQRT_2_OVER_PI * (z + 0.044715 * z ** 3)
        t = np.tanh(inner)
        d = 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * z * z)
    else:
        pdf = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
        d = 0.5 * (1 + _erf(z / math.sqrt(2.0))) + z * pdf
    return dy * d.astype(z.dtype, copy=False)


def _hard_sigmoid(z, slope=1.0 / 6.0):
    # Keras 3: relu6(x + 3) / 6; Keras 2 used slope 0.2: clip(0.2 x + 0.5, 0, 1)
    return np.clip(slope * z + 0.5, 0, 1).astype(z.dtype, copy=False)


def _hard_sigmoid_backward(dy, z, slope=1.0 / 6.0):
    return dy * (slope * ((z > -0.5 / slope) & (z < 0.5 / slope))).astype(z.dtype, copy=False)


def _swish_backward(dy, z):
    s = _sigmoid(z)
    return dy * (s * (1 + z * (1 - s)))


def _hard_swish_backward(dy, z):
    d = np.where(z <= -3, 0.0, np.where(z >= 3, 1.0, (2 * z + 3) / 6.0)).astype(z.dtype, copy=False)
    return dy * d


def _mish(z):
    return z * np.tanh(_softplus(z))


def _mish_backward(dy, z):
    t = np.tanh(_softplus(z))
    return dy * (t + z * (1 - t * t) * _sigmoid(z))


# Keras 3's further activations (keras.activations): forward and derivative side by side.
def _piecewise(z, cuts, values):
    """np.select over conditions on z, cast back to z's dtype."""
    return np.select(cuts, values, default=0.0).astype(z.dtype, copy=False)


def _celu(z, alpha=1.0):
    return (np.maximum(z, 0) + alpha * np.expm1(np.minimum(z, 0) / alpha)).astype(z.dtype, copy=False)


def _celu_backward(dy, z, alpha=1.0):
    return dy * np.where(z > 0, 1.0, np.exp(np.minimum(z, 0) / alpha)).astype(z.dtype, copy=False)


def _glu(z, axis=-1):
    """a * sigmoid(b) with (a, b) the two halves of z along ``axis``: the output is half as wide."""
    a, b = np.split(z, 2, axis=axis)
    return a * _sigmoid(b)


def _glu_backward(dy, z, axis=-1):
    a, b = np.split(z, 2, axis=axis)
    s = _sigmoid(b)
    return np.concatenate([dy * s, dy * a * s * (1 - s)], axis=axis)


def _shrink(z, threshold=0.5, soft=False):
    shift = threshold if soft else 0.0
    return _piecewise(z, [z > threshold, z < -threshold], [z - shift, z + shift])


def _sparse_plus(z):
    return _piecewise(z, [z >= 1, z > -1], [z, 0.25 * (z + 1) ** 2])


def _sparsemax(z, axis=-1):
    """Euclidean projection of z onto the probability simplex (Martins & Astudillo 2016):
    y = max(z - tau, 0), tau chosen so that y sums to 1 along ``axis``."""
    zs = -np.sort(-z, axis=axis)
    k = np.arange(1, z.shape[axis] + 1, dtype=z.dtype).reshape([-1 if a == axis % z.ndim else 1
                                                                 for a in range(z.ndim)])
    cums = np.cumsum(zs, axis=axis)
    support = (1 + k * zs > cums).sum(axis=axis, keepdims=True)
    tau = (np.take_along_axis(cums, support - 1, axis=axis) - 1) / support
    return np.maximum(z - tau, 0).astype(z.dtype, copy=False)


def _sparsemax_backward(dy, y, axis=-1):
    """On the support S (y > 0): dz = dy - mean_S(dy); zero elsewhere."""
    on = y > 0
    mean = (dy * on).sum(axis=axis, keepdims=True) / on.sum(axis=axis, keepdims=True)
    return np.where(on, dy - mean, 0).astype(dy.dtype, copy=False)


KERAS3_EXTRA = [
    ("celu", _celu, _celu_backward, "z"),
    ("hard_shrink", _shrink, lambda dy, z, threshold=0.5: dy * (np.abs(z) > threshold), "z"),
    ("soft_shrink", lambda z, threshold=0.5: _shrink(z, threshold, soft=True),
     lambda dy, z, threshold=0.5: dy * (np.abs(z) > threshold), "z"),
    ("hard_tanh", lambda z: np.clip(z, -1, 1), lambda dy, z: dy * (np.abs(z) <= 1), "z"),
    ("log_sigmoid", lambda z: -_softplus(-z), lambda dy, z: dy * _sigmoid(-z), "z"),
    ("sparse_plus", _sparse_plus, lambda dy, z: dy * _piecewise(z, [z >= 1, z > -1], [1.0, 0.5 * (z + 1)]), "z"),
    ("sparse_sigmoid", lambda z: _piecewise(z, [z >= 1, z > -1], [1.0, 0.5 * (z + 1)]),
     lambda dy, z: dy * _piecewise(z, [z >= 1, z > -1], [0.0, 0.5]), "z"),
    ("sparsemax", _sparsemax, _sparsemax_backward, "y"),
    ("squareplus", lambda z, b=4.0: (z + np.sqrt(z * z + b)) / 2,
     lambda dy, z, b=4.0: dy * (1 + z / np.sqrt(z * z + b)) / 2, "z"),
    ("tanh_shrink", lambda z: z - np.tanh(z), lambda dy, z: dy * np.tanh(z) ** 2, "z"),
]


class Activation:
    """One activation: ``forward(z) -> y``, ``backward(dy, saved) -> dz``, ``uses`` in {"z", "y"}.

    Every one acts along the last axis alone (most pixel by pixel), so it may run on blocks of rows;
    ``keeps_shape`` is False for the one whose output is narrower (glu)."""

    def __init__(self, name, forward, backward, uses="z", relu_like=False, keeps_shape=True):
        self.name, self.forward, self._backward, self.uses, self.relu_like = (
            name, forward, backward, uses, relu_like)
        self.keeps_shape = keeps_shape

    def saves(self, **params):
        """Which array the backward reads with these parameters: "z" or "y". A ReLU's derivative is the
        same function of y as of z when y > 0 exactly where z > 0 (threshold 0, no max_value, slope >= 0),
        so it keeps y: the layer then needs one array, not two."""
        if (self.name in ("relu", "leaky_relu") and params.get("threshold", 0) == 0
                and params.get("max_value") is None and params.get("negative_slope", 0) >= 0):
            return "y"
        return self.uses

    def forward_into(self, z, **params):
        """z <- forward(z) in place (z: a finished block of a layer's own fresh output, still in cache)."""
        if self.name == "relu":
            relu_forward(z, out=z, **params)
        else:
            z[...] = self.forward(z, **params)

    def backward(self, dy, saved, rule=None, **params):
        if rule is None or not self.relu_like:
            return self._backward(dy, saved, **params)
        if rule == "guided":
            return self._backward(np.maximum(dy, 0), saved, **params)
        if rule == "deconvnet":
            return np.maximum(dy, 0)
        if callable(rule):
            return rule(dy, saved, lambda g: self._backward(g, saved, **params))
        check_rule(rule)  # raises: every valid rule has returned above


def check_rule(rule):
    """A backward rule is None (normal), "guided", "deconvnet" or a function; anything else is refused."""
    if rule is None or rule in ("guided", "deconvnet") or callable(rule):
        return rule
    raise InputError(f"unknown backward rule {rule!r}; use None, 'guided', 'deconvnet' or a function")


ACTIVATIONS = {a.name: a for a in [
    Activation("linear", lambda z: z, lambda dy, z: dy),
    Activation("relu", relu_forward,
               lambda dy, z, **p: dy * relu_derivative(z, **p), relu_like=True),
    Activation("relu6", lambda z: np.clip(z, 0, 6),
               lambda dy, z: dy * ((z > 0) & (z < 6)), relu_like=True),
    Activation("leaky_relu", lambda z, negative_slope=0.2: relu_forward(z, negative_slope),
               lambda dy, z, negative_slope=0.2: dy * relu_derivative(z, negative_slope), relu_like=True),
    Activation("sigmoid", _sigmoid, lambda dy, y: dy * y * (1 - y), uses="y"),
    Activation("hard_sigmoid", _hard_sigmoid, _hard_sigmoid_backward),
    Activation("tanh", np.tanh, lambda dy, y: dy * (1 - y * y), uses="y"),
    Activation("softmax", _softmax, _softmax_backward, uses="y"),
    Activation("log_softmax", _log_softmax, _log_softmax_backward, uses="y"),
    Activation("elu", _elu, _elu_backward),
    Activation("selu", lambda z: _SELU_SCALE * _elu(z, _SELU_ALPHA),
               lambda dy, z: _SELU_SCALE * _elu_backward(dy, z, _SELU_ALPHA)),
    Activation("gelu", _gelu, _gelu_backward),
    Activation("swish", lambda z: z * _sigmoid(z), _swish_backward),
    Activation("hard_swish", lambda z: z * np.clip(z + 3, 0, 6) / 6, _hard_swish_backward),
    Activation("softplus", _softplus, lambda dy, z: dy * _sigmoid(z)),
    Activation("softsign", lambda z: z / (1 + np.abs(z)), lambda dy, z: dy / (1 + np.abs(z)) ** 2),
    Activation("exponential", np.exp, lambda dy, y: dy * y, uses="y"),
    Activation("mish", _mish, _mish_backward),
] + [Activation(name, f, b, uses=u) for name, f, b, u in KERAS3_EXTRA]}
# Not elementwise: glu halves the last axis (the Activation layer's output_shape knows), so it is kept
# out of ACTIVATIONS, which lists the shape-preserving ones.
SHAPE_CHANGING = {"glu": Activation("glu", _glu, _glu_backward, keeps_shape=False)}
ALIASES = {"silu": "swish", "hard_silu": "hard_swish", None: "linear", "": "linear"}


def get(name):
    """The :class:`Activation` for a Keras activation name (``"relu"``, ``"silu"``...)."""
    key = ALIASES.get(name, name)
    if key in SHAPE_CHANGING:
        return SHAPE_CHANGING[key]
    if key not in ACTIVATIONS:
        raise InputError(f"unknown activation {name!r}; known: {', '.join(sorted(ACTIVATIONS))}")
    return ACTIVATIONS[key]
