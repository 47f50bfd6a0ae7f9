"""Spatial reshaping: ZeroPadding2D, Cropping2D, UpSampling2D (nearest and bilinear)."""
import numpy as np

from ..errors import InputError
from .base import Layer, check_rank, check_sizes


def _two_pairs(v, name):
    """Keras's padding/cropping spec: int, (sym_h, sym_w) or ((top, bottom), (left, right))."""
    def one(t):
        return (t, t) if isinstance(t, (int, np.integer)) else tuple(t) if isinstance(t, (list, tuple)) else ()

    pairs = (one(v), one(v)) if isinstance(v, (int, np.integer)) else tuple(one(t) for t in v) \
        if isinstance(v, (list, tuple)) and len(v) == 2 else ()
    flat = [t for p in pairs for t in p]
    if len(flat) != 4 or not all(isinstance(t, (int, np.integer)) and not isinstance(t, bool) and t >= 0
                                 for t in flat):
        raise InputError(f"{name} must be a non-negative int, a pair, or a pair of pairs; got {v!r}")
    return tuple(int(t) for t in pairs[0]), tuple(int(t) for t in pairs[1])


def _add(size, delta):
    return None if size is None else size + delta


class ZeroPadding2D(Layer):
    """Pad rows and columns with zeros: (N, H, W, C) -> (N, t+H+b, l+W+r, C); dx = the centre of dy."""

    def __init__(self, padding=1, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.padding = _two_pairs(padding, "padding")

    def config_keys(self):
        return ("padding",)

    def output_shape(self, s):
        (t, b), (l, r) = self.padding
        return s[0], _add(s[1], t + b), _add(s[2], l + r), s[3]

    def forward(self, x, training=False):
        check_rank(self, x, (4,))
        return np.pad(x, ((0, 0), *self.padding, (0, 0))), x.shape

    def backward(self, dout, shape, need_dx=True, need_params=True):
        (t, _), (l, _) = self.padding
        return dout[:, t:t + shape[1], l:l + shape[2]], {}


class Cropping2D(Layer):
    """Cut rows and columns: (N, H, W, C) -> (N, H-t-b, W-l-r, C); dx = dy padded back with zeros."""

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.cropping = _two_pairs(cropping, "cropping")

    def config_keys(self):
        return ("cropping",)

    def output_shape(self, s):
        (t, b), (l, r) = self.cropping
        return s[0], _add(s[1], -t - b), _add(s[2], -l - r), s[3]

    def forward(self, x, training=False):
        check_rank(self, x, (4,))
        (t, b), (l, r) = self.cropping
        if t + b >= x.shape[1] or l + r >= x.shape[2]:
            raise InputError(f"layer {self.name!r} crops {self.cropping} from an input of shape {x.shape}")
        return x[:, t:x.shape[1] - b, l:x.shape[2] - r], None

    def backward(self, dout, cache, need_dx=True, need_params=True):
        return np.pad(dout, ((0, 0), *self.cropping, (0, 0))), {}


def bilinear_matrix(n_in, n_out, dtype="float32"):
    """(n_out, n_in) matrix of 1-D bilinear resizing with half-pixel centres (tf.image.resize's rule).

    The output pixel i samples the input at (i + 0.5) * n_in / n_out - 0.5, clamped to the edges.
    """
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    m = np.zeros((n_out, n_in), dtype=np.float64)
    np.add.at(m, (np.arange(n_out), lo), 1 - frac)
    np.add.at(m, (np.arange(n_out), hi), frac)
    return m.astype(dtype)


class UpSampling2D(Layer):
    """Enlarge by integer factors (sh, sw).

    nearest:  y[i, j] = x[i // sh, j // sw];        dx = dy summed over each sh×sw block
    bilinear: y = A_h @ x @ A_w.T per channel;      dx = A_h.T @ dy @ A_w  (A: :func:`bilinear_matrix`)
    """

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        self.size = check_sizes(self, "size", (size, size) if isinstance(size, (int, np.integer)) else tuple(size))
        self.interpolation = interpolation
        if interpolation not in ("nearest", "bilinear"):
            raise InputError(f"layer {self.name!r}: interpolation {interpolation!r} is not supported "
                             "(use 'nearest' or 'bilinear')")

    def config_keys(self):
        return ("size", "interpolation")

    def output_shape(self, s):
        return s[0], None if s[1] is None else s[1] * self.size[0], None if s[2] is None else s[2] * self.size[1], s[3]

    def forward(self, x, training=False):
        check_rank(self, x, (4,))
        sh, sw = self.size
        if self.interpolation == "nearest":
            return x.repeat(sh, axis=1).repeat(sw, axis=2), x.shape
        ah = bilinear_matrix(x.shape[1], x.shape[1] * sh, x.dtype)
        aw = bilinear_matrix(x.shape[2], x.shape[2] * sw, x.dtype)
        return np.einsum("ih,nhwc,jw->nijc", ah, x, aw, optimize=True), (ah, aw)

    def backward(self, dout, cache, need_dx=True, need_params=True):
        sh, sw = self.size
        if self.interpolation == "nearest":
            n, h, w, c = cache
            return dout.reshape(n, h, sh, w, sw, c).sum(axis=(2, 4)), {}
        ah, aw = cache
        return np.einsum("ih,nijc,jw->nhwc", ah, dout, aw, optimize=True), {}
