"""Layers that merge several inputs: elementwise (Add, Subtract, Multiply, Average, Maximum, Minimum)
and Concatenate. forward takes a list of arrays; backward returns a list of input gradients."""
import numpy as np

from ..errors import InputError
from .base import Layer, reduce_to_shape


def _broadcast_shape(layer, shapes):
    try:
        return tuple(np.broadcast_shapes(*[tuple(1 if s is None else s for s in sh) for sh in shapes]))
    except ValueError:
        raise InputError(f"layer {layer.name!r} ({type(layer).__name__}) cannot combine inputs of shapes "
                         f"{', '.join(map(str, shapes))}") from None


class _Merge(Layer):
    multi_input = True

    def output_shape(self, input_shapes):
        """The broadcast of the input shapes (a None size stays None unless another input fixes it > 1)."""
        _broadcast_shape(self, input_shapes)
        rank = max(len(s) for s in input_shapes)
        padded = [(1,) * (rank - len(s)) + tuple(s) for s in input_shapes]
        out = []
        for dims in zip(*padded):
            known = [d for d in dims if d is not None and d != 1]
            out.append(known[0] if known else None if None in dims else 1)
        return tuple(out)

    def _check(self, xs):
        if not isinstance(xs, (list, tuple)) or len(xs) < 2:
            raise InputError(f"layer {self.name!r} ({type(self).__name__}) needs a list of at least 2 inputs")
        _broadcast_shape(self, [x.shape for x in xs])


class Add(_Merge):
    """y = x1 + x2 + ...;  dx_i = dy (summed over broadcast axes)."""

    def forward(self, xs, training=False):
        self._check(xs)
        out = xs[0] + xs[1]
        for x in xs[2:]:
            out = out + x
        return out, [x.shape for x in xs]

    def backward(self, dout, shapes, need_dx=True, need_params=True):
        return [reduce_to_shape(dout, s) for s in shapes], {}


class Subtract(_Merge):
    """y = x1 - x2;  dx1 = dy, dx2 = -dy."""

    def forward(self, xs, training=False):
        self._check(xs)
        if len(xs) != 2:
            raise InputError(f"layer {self.name!r} (Subtract) needs exactly 2 inputs, got {len(xs)}")
        return xs[0] - xs[1], [x.shape for x in xs]

    def backward(self, dout, shapes, need_dx=True, need_params=True):
        return [reduce_to_shape(dout, shapes[0]), reduce_to_shape(-dout, shapes[1])], {}


class Average(_Merge):
    """y = mean(x_i);  dx_i = dy / n."""

    def forward(self, xs, training=False):
        self._check(xs)
        return sum(xs[1:], xs[0]) / len(xs), [x.shape for x in xs]

    def backward(self, dout, shapes, need_dx=True, need_params=True):
        return [reduce_to_shape(dout / len(shapes), s) for s in shapes], {}


class Multiply(_Merge):
    """y = x1 * x2 * ...;  dx_i = dy * prod_{j != i} x_j."""

    def forward(self, xs, training=False):
        self._check(xs)
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        return out, xs

    def backward(self, dout, xs, need_dx=True, need_params=True):
        grads = []
        for i, x in enumerate(xs):
            g = dout
            for j, other in enumerate(xs):
                if j != i:
                    g = g * other
            grads.append(reduce_to_shape(g, x.shape))
        return grads, {}


class Maximum(_Merge):
    """y = max(x1, x2, ...) elementwise; dy goes to the first input holding the maximum (as TensorFlow)."""

    pick = staticmethod(np.greater)

    def forward(self, xs, training=False):
        self._check(xs)
        out, owner = xs[0], np.zeros(np.broadcast_shapes(*[x.shape for x in xs]), dtype=np.int32)
        for i, x in enumerate(xs[1:], 1):
            better = self.pick(x, out)
            owner = np.where(better, i, owner)
            out = np.where(better, x, out)
        return out, (owner, [x.shape for x in xs])

    def backward(self, dout, cache, need_dx=True, need_params=True):
        owner, shapes = cache
        return [reduce_to_shape(np.where(owner == i, dout, 0), s) for i, s in enumerate(shapes)], {}


class Minimum(Maximum):
    """y = min(x1, x2, ...) elementwise; dy goes to the first input holding the minimum."""

    pick = staticmethod(np.less)


class Concatenate(Layer):
    """y = concat(x_i, axis);  dx_i = the slice of dy that x_i filled."""

    multi_input = True

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)

    def config_keys(self):
        return ("axis",)

    def output_shape(self, input_shapes):
        rank = len(input_shapes[0])
        if not -rank <= self.axis < rank:
            raise InputError(f"layer {self.name!r} (Concatenate): axis {self.axis} is out of range for rank {rank}")
        ax = self.axis % rank
        for s in input_shapes:
            if len(s) != rank or any(a != b and None not in (a, b) for i, (a, b) in enumerate(zip(s, input_shapes[0]))
                                     if i != ax):
                raise InputError(f"layer {self.name!r} (Concatenate, axis={self.axis}) cannot join inputs of shapes "
                                 f"{', '.join(map(str, input_shapes))}")
        out = list(input_shapes[0])
        sizes = [s[ax] for s in input_shapes]
        out[ax] = None if None in sizes else sum(sizes)
        return tuple(out)

    def forward(self, xs, training=False):
        try:
            out = np.concatenate(xs, axis=self.axis)
        except ValueError:
            raise InputError(f"layer {self.name!r} (Concatenate, axis={self.axis}) cannot join inputs of shapes "
                             f"{', '.join(str(x.shape) for x in xs)}") from None
        return out, np.cumsum([x.shape[self.axis] for x in xs])[:-1]

    def backward(self, dout, splits, need_dx=True, need_params=True):
        return np.split(dout, splits, axis=self.axis), {}
