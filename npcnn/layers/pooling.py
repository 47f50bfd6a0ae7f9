"""Pooling layers: windowed max/average (2-D, 1-D) and global pooling."""
import numpy as np

from .. import conv as core
from .base import Layer, as_1d_config, check_rank, check_sizes, single_int


class _Pool2D(Layer):
    """Max or average over windows; the window math is :func:`npcnn.conv.pool2d` and its backward.

    forward:  x (N, H, W, C) -> (N, oh, ow, C)
    backward: max: dy goes to the (first) maximum of each window; average: dy / (real pixels in window)
              spread over the window ('same' padding never counts)
    """

    mode = "max"
    rank = 2

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        if self.rank == 2:
            self.pool_size = core.pair(pool_size, "pool_size")
            self.strides = core.pair(strides, "strides") if strides is not None else self.pool_size
        else:
            p = single_int(self, "pool_size", pool_size)
            self.pool_size = (1, p)
            self.strides = (1, single_int(self, "strides", strides) if strides is not None else p)
        self.padding = str(padding).lower()
        check_sizes(self, "pool_size and strides", self.pool_size + self.strides)

    def config_keys(self):
        return ("pool_size", "strides", "padding")

    def get_config(self):
        cfg = super().get_config()
        return as_1d_config(cfg, ("pool_size", "strides")) if self.rank == 1 else cfg

    def output_shape(self, input_shape):
        check_rank(self, input_shape, (self.rank + 2,))
        n, *spatial, c = input_shape
        hw = spatial if self.rank == 2 else [1, *spatial]
        out = [core.output_length(s, k, st, self.padding) for s, k, st in zip(hw, self.pool_size, self.strides)]
        return (n, *(out if self.rank == 2 else out[1:]), c)

    def forward(self, x, training=False):
        check_rank(self, x, (self.rank + 2,))
        x2 = x[:, None] if self.rank == 1 else x
        pads = core.resolve_padding(self.padding, x2.shape[1:3], self.pool_size, self.strides)
        out = core.pool2d(x2, self.pool_size, self.strides, pads, self.mode)
        return (out[:, 0] if self.rank == 1 else out), (x2, out, pads)

    def backward(self, dout, cache, need_dx=True, need_params=True):
        x2, out, pads, *winner = cache
        d2 = dout[:, None] if self.rank == 1 else dout
        dx = core.pool2d_backward(d2, x2, out, self.pool_size, self.strides, pads, self.mode, *winner)
        return (dx[:, 0] if self.rank == 1 else dx), {}

    def lean_cache(self, cache):
        """For an input gradient alone: max pooling keeps which tap of each window won (1 byte per output)
        instead of its input and output; average pooling keeps only the input's shape."""
        x2, out, pads = cache
        winner = core.pool2d_argmax(x2, out, self.pool_size, self.strides, pads) if self.mode == "max" else None
        return x2.shape, None, pads, winner


class MaxPooling2D(_Pool2D):
    mode = "max"


class AveragePooling2D(_Pool2D):
    mode = "avg"


class MaxPooling1D(_Pool2D):
    mode, rank = "max", 1


class AveragePooling1D(_Pool2D):
    mode, rank = "avg", 1


class _GlobalPool(Layer):
    """Reduce every spatial axis: x (N, ..., C) -> (N, C) (or (N, 1, ..., 1, C) with keepdims).

    backward: average: dy / (number of positions) everywhere; max: dy at the (first) maximum.
    """

    mode = "avg"

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.keepdims = bool(keepdims)

    def config_keys(self):
        return ("keepdims",)

    def output_shape(self, input_shape):
        check_rank(self, input_shape, (3, 4))
        if self.keepdims:
            return (input_shape[0], *([1] * (len(input_shape) - 2)), input_shape[-1])
        return (input_shape[0], input_shape[-1])

    def forward(self, x, training=False):
        check_rank(self, x, (3, 4))
        axes = tuple(range(1, x.ndim - 1))
        out = x.mean(axis=axes, keepdims=True) if self.mode == "avg" else x.max(axis=axes, keepdims=True)
        return (out if self.keepdims else out.reshape(x.shape[0], x.shape[-1])), (x, out)

    def backward(self, dout, cache, need_dx=True, need_params=True):
        x, out = cache
        d = dout.reshape(out.shape)
        if self.mode == "avg":
            return np.broadcast_to(d / (x.size // (x.shape[0] * x.shape[-1])), x.shape).copy(), {}
        flat = x.reshape(x.shape[0], -1, x.shape[-1])
        first = flat.argmax(axis=1)  # the first maximum gets the gradient (as TensorFlow)
        dx = np.zeros_like(flat)
        n_idx, c_idx = np.meshgrid(np.arange(x.shape[0]), np.arange(x.shape[-1]), indexing="ij")
        dx[n_idx, first, c_idx] = d.reshape(x.shape[0], x.shape[-1])
        return dx.reshape(x.shape), {}


class GlobalAveragePooling2D(_GlobalPool):
    mode = "avg"


class GlobalMaxPooling2D(_GlobalPool):
    mode = "max"


class GlobalAveragePooling1D(_GlobalPool):
    mode = "avg"


class GlobalMaxPooling1D(_GlobalPool):
    mode = "max"
