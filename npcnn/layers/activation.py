"""Activation layers with options (ReLU, LeakyReLU, ELU, Softmax) and the one with weights (PReLU).

ReLU/LeakyReLU/ELU/Softmax are the fused-activation machinery of :class:`Layer` with their options
bound, so a model-wide backward rule (guided backprop, deconvnet) reaches them with no extra code.
"""
import numpy as np

from .base import Layer


class ReLU(Layer):
    """y = max_value if x >= max_value; x if threshold <= x; negative_slope * (x - threshold) otherwise.

    dx = dy * (1 inside [threshold, max_value), negative_slope below threshold, 0 above max_value)
    """

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        self.max_value = None if max_value is None else float(max_value)
        self.negative_slope, self.threshold = float(negative_slope), float(threshold)
        self.set_activation("relu", negative_slope=self.negative_slope, max_value=self.max_value,
                            threshold=self.threshold)

    def config_keys(self):
        return ("max_value", "negative_slope", "threshold")


class LeakyReLU(Layer):
    """y = x if x > 0 else negative_slope * x (Keras 2 calls the slope ``alpha``); dx = dy * slope."""

    def __init__(self, negative_slope=None, alpha=None, **kwargs):
        super().__init__(**kwargs)
        slope = negative_slope if negative_slope is not None else alpha
        self.negative_slope = 0.3 if slope is None else float(slope)
        self.set_activation("leaky_relu", negative_slope=self.negative_slope)

    def config_keys(self):
        return ("negative_slope",)


class ELU(Layer):
    """y = x if x > 0 else alpha * (exp(x) - 1); dx = dy * (1 or alpha * exp(x))."""

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)
        self.set_activation("elu", alpha=self.alpha)

    def config_keys(self):
        return ("alpha",)


class Softmax(Layer):
    """y = exp(x) / sum(exp(x)) along ``axis``; dx = y * (dy - sum(dy * y, axis))."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis if isinstance(axis, int) else tuple(axis)
        self.set_activation("softmax", axis=self.axis)

    def config_keys(self):
        return ("axis",)


class PReLU(Layer):
    """y = max(x, 0) + alpha * min(x, 0), alpha learned per position (shared over ``shared_axes``).

    forward:  x (N, ...) -> y (N, ...);  alpha shape = x.shape[1:] with 1 on shared axes
    backward: dx = dy * (1 if x > 0 else alpha);  dalpha = sum over batch/shared axes of dy * min(x, 0)
    """

    weight_names = ("alpha",)

    def __init__(self, alpha_initializer="zeros", shared_axes=None, **kwargs):
        super().__init__(**kwargs)
        if shared_axes is not None and not isinstance(shared_axes, (list, tuple)):
            shared_axes = [shared_axes]
        self.shared_axes = None if shared_axes is None else [int(a) for a in shared_axes]
        self.alpha_initializer = alpha_initializer

    def config_keys(self):
        return ("shared_axes",)

    def initializer(self, weight_name):
        return self.alpha_initializer

    def weight_shapes(self, input_shape):
        shape = list(input_shape[1:])
        for a in self.shared_axes or ():
            shape[a - 1] = 1
        return {"alpha": tuple(shape)}

    def forward(self, x, training=False):
        return np.where(x > 0, x, self.params["alpha"] * x), x

    def backward(self, dout, x, need_dx=True, need_params=True):
        alpha = self.params["alpha"]
        grads = {}
        if need_params:
            g = (dout * np.minimum(x, 0)).sum(axis=0)
            axes = tuple(i for i, s in enumerate(alpha.shape) if s == 1 and g.shape[i] != 1)
            grads["alpha"] = g.sum(axis=axes, keepdims=True) if axes else g
        return (np.where(x > 0, dout, alpha * dout) if need_dx else None), grads
