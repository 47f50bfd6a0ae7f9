"""BatchNormalization (inference and training), LayerNormalization, Normalization (preprocessing)."""
import numpy as np

from ..errors import InputError
from .base import Layer


def _axes(axis, ndim):
    """Keras's ``axis`` (int or list, may be negative; None: no axis kept) -> sorted tuple of positive kept axes."""
    axis = [] if axis is None else axis if isinstance(axis, (list, tuple)) else [axis]
    if any(not -ndim <= a < ndim for a in axis):
        raise InputError(f"axis {axis} is out of range for a rank {ndim} input")
    return tuple(sorted(a % ndim for a in axis))


def _param_view(p, kept, ndim):
    """A weight stored over the kept axes, reshaped to broadcast against a rank-``ndim`` input."""
    full = [1] * ndim
    for a, size in zip(kept, p.reshape([-1] if len(kept) == 1 else p.shape).shape):
        full[a] = size
    return p.reshape(full)


def _normalize_backward(dxhat, xhat, inv_std, reduce_axes):
    """dx of xhat = (x - mean(x)) * inv_std, with mean/var taken over ``reduce_axes`` of x itself.

    dx = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
    """
    return inv_std * (dxhat - dxhat.mean(axis=reduce_axes, keepdims=True)
                      - xhat * (dxhat * xhat).mean(axis=reduce_axes, keepdims=True))


class BatchNormalization(Layer):
    """Per-channel affine normalisation with moving statistics.

    inference: y = gamma * (x - moving_mean) / sqrt(moving_variance + eps) + beta
               dx = dy * gamma / sqrt(moving_variance + eps); dgamma = sum(dy * xhat); dbeta = sum(dy)
    training:  the batch's mean/variance (biased, as Keras 3) replace the moving ones, which are updated
               moving = momentum * moving + (1 - momentum) * batch;
               dx = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dy * gamma
    shapes:    x (N, ..., C, ...) -> y same shape; every weight has the shape of the ``axis`` dims
    """

    weight_names = ("gamma", "beta", "moving_mean", "moving_variance")
    non_trainable_names = ("moving_mean", "moving_variance")
    couples_batch = True

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis if isinstance(axis, int) else [int(a) for a in axis]
        if isinstance(self.axis, list) and len(self.axis) == 1:
            self.axis = self.axis[0]
        self.momentum, self.epsilon = float(momentum), float(epsilon)
        self.center, self.scale = bool(center), bool(scale)

    def config_keys(self):
        return ("axis", "momentum", "epsilon", "center", "scale")

    def initializer(self, weight_name):
        return "ones" if weight_name in ("gamma", "moving_variance") else "zeros"

    def weight_shapes(self, input_shape):
        kept = _axes(self.axis, len(input_shape))
        shape = tuple(input_shape[a] for a in kept)
        names = (["gamma"] if self.scale else []) + (["beta"] if self.center else []) + [
            "moving_mean", "moving_variance"]
        return {n: shape for n in names}

    def _view(self, name, x):
        p = self.params.get(name)
        return None if p is None else _param_view(p, _axes(self.axis, x.ndim), x.ndim)

    def forward(self, x, training=False):
        kept = _axes(self.axis, x.ndim)
        reduce_axes = tuple(a for a in range(x.ndim) if a not in kept)
        if training:
            mean = x.mean(axis=reduce_axes, keepdims=True)
            var = x.var(axis=reduce_axes, keepdims=True)
            for name, batch in (("moving_mean", mean), ("moving_variance", var)):
                m = self.params[name]
                self.params[name] = (m * self.momentum + batch.reshape(m.shape) * (1 - self.momentum)).astype(m.dtype)
        else:
            mean, var = self._view("moving_mean", x), self._view("moving_variance", x)
        inv_std = 1.0 / np.sqrt(var + self.epsilon)
        xhat = (x - mean) * inv_std
        gamma, beta = self._view("gamma", x), self._view("beta", x)
        y = xhat * gamma if gamma is not None else xhat.copy()
        if beta is not None:
            y += beta
        return y.astype(x.dtype, copy=False), (xhat, inv_std, reduce_axes, training)

    def backward(self, dout, cache, need_dx=True, need_params=True):
        xhat, inv_std, reduce_axes, training = cache
        kept_shape = self.params["moving_mean"].shape
        grads = {}
        if need_params:
            if self.scale:
                grads["gamma"] = (dout * xhat).sum(axis=reduce_axes).reshape(kept_shape)
            if self.center:
                grads["beta"] = dout.sum(axis=reduce_axes).reshape(kept_shape)
        if not need_dx:
            return None, grads
        gamma = self._view("gamma", dout)
        dxhat = dout * gamma if gamma is not None else dout
        if training:
            return _normalize_backward(dxhat, xhat, inv_std, reduce_axes), grads
        return dxhat * inv_std, grads


class LayerNormalization(Layer):
    """Normalise each sample over ``axis`` (default the channels), then scale and shift.

    forward:  xhat = (x - mean_axis(x)) / sqrt(var_axis(x) + eps);  y = gamma * xhat + beta
    backward: dx = inv_std * (dxhat - mean_axis(dxhat) - xhat * mean_axis(dxhat * xhat)), dxhat = dy*gamma
              dgamma = sum over the other axes of dy * xhat; dbeta = sum of dy
    """

    weight_names = ("gamma", "beta")

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, rms_scaling=False, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis if isinstance(axis, int) else [int(a) for a in axis]
        self.epsilon, self.center, self.scale = float(epsilon), bool(center), bool(scale)
        self.rms_scaling = bool(rms_scaling)

    def config_keys(self):
        return ("axis", "epsilon", "center", "scale")

    def initializer(self, weight_name):
        return "ones" if weight_name == "gamma" else "zeros"

    def weight_shapes(self, input_shape):
        shape = tuple(input_shape[a] for a in _axes(self.axis, len(input_shape)))
        return {n: shape for n, on in (("gamma", self.scale), ("beta", self.center)) if on}

    def forward(self, x, training=False):
        kept = _axes(self.axis, x.ndim)
        norm_axes = kept
        mean = x.mean(axis=norm_axes, keepdims=True)
        inv_std = 1.0 / np.sqrt(x.var(axis=norm_axes, keepdims=True) + self.epsilon)
        xhat = (x - mean) * inv_std
        y = xhat * _param_view(self.params["gamma"], kept, x.ndim) if self.scale else xhat.copy()
        if self.center:
            y += _param_view(self.params["beta"], kept, x.ndim)
        return y.astype(x.dtype, copy=False), (xhat, inv_std, kept)

    def backward(self, dout, cache, need_dx=True, need_params=True):
        xhat, inv_std, kept = cache
        other = tuple(a for a in range(dout.ndim) if a not in kept)
        grads = {}
        if need_params:
            if self.scale:
                grads["gamma"] = (dout * xhat).sum(axis=other).reshape(self.params["gamma"].shape)
            if self.center:
                grads["beta"] = dout.sum(axis=other).reshape(self.params["beta"].shape)
        if not need_dx:
            return None, grads
        dxhat = dout * _param_view(self.params["gamma"], kept, dout.ndim) if self.scale else dout
        return _normalize_backward(dxhat, xhat, inv_std, kept), grads


class Normalization(Layer):
    """Feature-wise standardisation with fixed statistics (EfficientNet's first layers use it).

    forward:  y = (x - mean) / max(sqrt(variance), 1e-7)   (invert=True: y = mean + x * sqrt(variance))
    backward: dx = dy / max(sqrt(variance), 1e-7)           (invert: dy * sqrt(variance))
    mean/variance come from the config or from the weights ``mean``, ``variance`` (and ``count``).
    """

    weight_names = ("mean", "variance", "count")
    non_trainable_names = weight_names

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis if axis is None or isinstance(axis, int) else [int(a) for a in axis]
        self.invert = bool(invert)
        self.mean = None if mean is None else np.asarray(mean, dtype="float32")
        self.variance = None if variance is None else np.asarray(variance, dtype="float32")
        if self.mean is not None:
            self.weight_names = ()

    def config_keys(self):
        return ("axis", "invert")

    def get_config(self):
        cfg = super().get_config()
        if self.mean is not None:
            cfg.update(mean=self.mean.tolist(), variance=self.variance.tolist())
        return cfg

    def weight_shapes(self, input_shape):
        if self.mean is not None:
            return {}
        shape = tuple(input_shape[a] for a in _axes(self.axis, len(input_shape)))
        return {"mean": shape, "variance": shape, "count": ()}

    def initializer(self, weight_name):
        return "ones" if weight_name == "variance" else "zeros"

    def _stats(self, x):
        mean = self.mean if self.mean is not None else self.params["mean"]
        var = self.variance if self.variance is not None else self.params["variance"]
        kept = _axes(self.axis, x.ndim)
        if mean.ndim == len(kept) and mean.size > 1:
            mean, var = _param_view(mean, kept, x.ndim), _param_view(var, kept, x.ndim)
        return mean.astype(x.dtype), var.astype(x.dtype)

    def forward(self, x, training=False):
        mean, var = self._stats(x)
        if self.invert:
            return mean + x * np.sqrt(var), None
        return (x - mean) / np.maximum(np.sqrt(var), np.asarray(1e-7, x.dtype)), None

    def backward(self, dout, cache, need_dx=True, need_params=True):
        _, var = self._stats(dout)
        if self.invert:
            return dout * np.sqrt(var), {}
        return dout / np.maximum(np.sqrt(var), np.asarray(1e-7, dout.dtype)), {}
