"""Core layers: Input, Dense, Activation, reshapes, rescaling, and the layers that only act in training."""
import numpy as np

from .. import initializers
from ..blas import matmul
from ..errors import InputError
from .base import Layer, check_rank, check_sizes


class InputLayer(Layer):
    """Where an array enters the graph. Holds the declared shape (batch axis None)."""

    def __init__(self, input_shape=None, batch_size=None, name=None, shape=None, **kwargs):
        kwargs.pop("sparse", None), kwargs.pop("ragged", None), kwargs.pop("input_tensor", None)
        kwargs.pop("optional", None)
        if shape is not None and input_shape is None:
            input_shape = shape
        super().__init__(name=name, input_shape=input_shape, batch_size=batch_size, **kwargs)
        if self.batch_input_shape is None:
            raise InputError(f"input layer {self.name!r} needs a shape")

    def get_config(self):
        return {"name": self.name, "batch_shape": list(self.batch_input_shape)}


class Dense(Layer):
    """out = x @ kernel + bias over the last axis (any rank), then activation.

    forward:  x (..., in) -> out (..., units)
    backward: dx = dout @ kernel.T                       (..., in)
              dkernel = x.reshape(-1, in).T @ dout       (in, units)
              dbias = dout summed over all but the last axis
    """

    weight_names = ("kernel", "bias")

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(activation=activation, **kwargs)
        self.units, self.use_bias = int(check_sizes(self, "units", [units])[0]), bool(use_bias)
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer

    def config_keys(self):
        return ("units", "activation", "use_bias")

    def initializer(self, weight_name):
        return self.bias_initializer if weight_name == "bias" else self.kernel_initializer

    def weight_shapes(self, input_shape):
        shapes = {"kernel": (input_shape[-1], self.units)}
        if self.use_bias:
            shapes["bias"] = (self.units,)
        return shapes

    def output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def forward(self, x, training=False):
        w = self.params["kernel"]
        if x.shape[-1] != w.shape[0]:
            raise InputError(f"layer {self.name!r} (Dense) expects {w.shape[0]} input features on the last "
                             f"axis, got input shape {x.shape}")
        out = matmul(x, w)
        if self.use_bias:
            out += self.params["bias"]
        return out, x

    def backward(self, dout, x, need_dx=True, need_params=True):
        w = self.params["kernel"]
        grads = {}
        if need_params:
            grads["kernel"] = matmul(x.reshape(-1, x.shape[-1]).T, dout.reshape(-1, dout.shape[-1]))
            if self.use_bias:
                grads["bias"] = dout.reshape(-1, dout.shape[-1]).sum(axis=0)
        return (matmul(dout, w.T) if need_dx else None), grads


class Activation(Layer):
    """y = f(x) for any Keras activation name; dx = f'(x) * dy (see :mod:`npcnn.activations`)."""

    def __init__(self, activation="linear", **kwargs):
        super().__init__(activation=activation, **kwargs)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "activation": self.activation.name}

    def output_shape(self, input_shape):
        if self.activation.name == "glu":  # the two halves of the last axis are multiplied together
            last = input_shape[-1]
            return (*input_shape[:-1], None if last is None else last // 2)
        return input_shape


class Flatten(Layer):
    """x (N, d1, d2, ...) -> (N, d1*d2*...) in C order (as Keras on channels_last); dx = reshape back."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)

    def output_shape(self, input_shape):
        rest = input_shape[1:]
        return (input_shape[0], None if None in rest else int(np.prod(rest)))

    def forward(self, x, training=False):
        return x.reshape(x.shape[0], -1), x.shape

    def backward(self, dout, shape, need_dx=True, need_params=True):
        return dout.reshape(shape), {}


class Reshape(Layer):
    """x (N, ...) -> (N, *target_shape) (one entry may be -1); dx = reshape back."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        target_shape = list(target_shape) if isinstance(target_shape, (list, tuple)) else [target_shape]
        check_sizes(self, "target_shape", [1 if t == -1 else t for t in target_shape])
        if target_shape.count(-1) > 1:
            raise InputError(f"layer {self.name!r} (Reshape): at most one -1 in target_shape, got {target_shape}")
        self.target_shape = tuple(int(t) for t in target_shape)

    def config_keys(self):
        return ("target_shape",)

    def output_shape(self, input_shape):
        target = list(self.target_shape)
        if -1 in target:
            known = int(np.prod([t for t in target if t != -1]))
            total = None if None in input_shape[1:] else int(np.prod(input_shape[1:]))
            target[target.index(-1)] = None if total is None else total // known
        total_in = None if None in input_shape[1:] else int(np.prod(input_shape[1:]))
        if total_in is not None and None not in target and int(np.prod(target)) != total_in:
            raise InputError(f"layer {self.name!r} cannot reshape {input_shape} ({total_in} values per sample) to "
                             f"(batch, {', '.join(map(str, self.target_shape))})")
        return (input_shape[0], *target)

    def forward(self, x, training=False):
        try:
            return x.reshape(x.shape[0], *self.target_shape), x.shape
        except ValueError:
            raise InputError(f"layer {self.name!r} cannot reshape an input of shape {x.shape} to "
                             f"(batch, {', '.join(map(str, self.target_shape))})") from None

    def backward(self, dout, shape, need_dx=True, need_params=True):
        return dout.reshape(shape), {}


class Permute(Layer):
    """Reorder the non-batch axes: dims are 1-based, as in Keras; dx = the inverse permutation."""

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        self.dims = tuple(int(d) for d in dims)

    def config_keys(self):
        return ("dims",)

    def output_shape(self, input_shape):
        if sorted(self.dims) != list(range(1, len(input_shape))):
            raise InputError(f"layer {self.name!r} (Permute): dims {self.dims} are not a permutation of the "
                             f"axes 1..{len(input_shape) - 1} of input shape {input_shape}")
        return (input_shape[0], *(input_shape[d] for d in self.dims))

    def forward(self, x, training=False):
        check_rank(self, x, (len(self.dims) + 1,))
        return x.transpose(0, *self.dims), None

    def backward(self, dout, cache, need_dx=True, need_params=True):
        return dout.transpose(np.argsort((0, *self.dims))), {}


class Rescaling(Layer):
    """y = x * scale + offset (scale/offset scalars or per-channel); dx = dy * scale."""

    def __init__(self, scale=1.0, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.offset = _number_or_list(scale), _number_or_list(offset)

    def config_keys(self):
        return ("scale", "offset")

    def forward(self, x, training=False):
        return x * np.asarray(self.scale, x.dtype) + np.asarray(self.offset, x.dtype), None

    def backward(self, dout, cache, need_dx=True, need_params=True):
        return dout * np.asarray(self.scale, dout.dtype), {}


def _number_or_list(v):
    if isinstance(v, dict):  # Keras 3 may serialise arrays as {"class_name": "__numpy__", "config": {"value":..}}
        v = v.get("config", {}).get("value", v)
    return float(v) if np.ndim(v) == 0 else [float(t) for t in np.ravel(v)]


class _TrainingOnly(Layer):
    """Identity at inference; subclasses write the training-mode noise as ``y = x * m + a``."""

    def forward(self, x, training=False):
        if not training:
            return x, None
        m, a = self.noise(x)
        return x * m + a if a is not None else x * m, m

    def backward(self, dout, m, need_dx=True, need_params=True):
        return (dout if m is None else dout * m), {}

    def noise(self, x):
        return np.ones((), x.dtype), None


class Dropout(_TrainingOnly):
    """Training: zero each unit with probability ``rate`` and scale the rest by 1/(1-rate)."""

    def __init__(self, rate=0.5, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate, self.noise_shape, self.seed = float(rate), noise_shape, seed

    def config_keys(self):
        return ("rate", "noise_shape", "seed")

    def _mask_shape(self, x):
        if self.noise_shape is None:
            return x.shape
        return tuple(s if n is None else n for s, n in zip(x.shape, self.noise_shape))

    def noise(self, x):
        keep = initializers.rng().random(self._mask_shape(x)) >= self.rate
        return (keep / (1.0 - self.rate)).astype(x.dtype), None


class SpatialDropout2D(Dropout):
    """Dropout of whole channels: the mask has shape (N, 1, 1, C)."""

    def _mask_shape(self, x):
        return (x.shape[0], 1, 1, x.shape[-1])


class SpatialDropout1D(Dropout):
    """Dropout of whole channels of a sequence: mask (N, 1, C)."""

    def _mask_shape(self, x):
        return (x.shape[0], 1, x.shape[-1])


class GaussianNoise(_TrainingOnly):
    """Training: y = x + N(0, stddev²)."""

    def __init__(self, stddev=0.1, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.stddev, self.seed = float(stddev), seed

    def config_keys(self):
        return ("stddev", "seed")

    def noise(self, x):
        return np.ones((), x.dtype), initializers.rng().normal(0, self.stddev, x.shape).astype(x.dtype)


class GaussianDropout(_TrainingOnly):
    """Training: y = x * N(1, rate / (1 - rate))."""

    def __init__(self, rate=0.5, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate, self.seed = float(rate), seed

    def config_keys(self):
        return ("rate", "seed")

    def noise(self, x):
        std = np.sqrt(self.rate / (1.0 - self.rate))
        return initializers.rng().normal(1.0, std, x.shape).astype(x.dtype), None


class ActivityRegularization(Layer):
    """Identity (its penalty only enters a training loss)."""

    def __init__(self, l1=0.0, l2=0.0, **kwargs):
        super().__init__(**kwargs)
        self.l1, self.l2 = float(l1), float(l2)

    def config_keys(self):
        return ("l1", "l2")
