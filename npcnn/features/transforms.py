"""Random transforms applied to the image before each forward pass (transformation robustness, Olah
et al. 2017): the optimised image must excite the unit even when shifted, scaled or rotated a little,
which removes pixel-exact adversarial patterns.

Each transform is called as ``t(x, rng) -> (y, adjoint)`` with x, y (N, H, W, C) of the same size and
``adjoint(dy) -> dx`` the transpose of the (linear) map, so the gradient reaches the image exactly:

    jitter   y = roll(x, (dy, dx))                     adjoint: roll back
    scale    y[p] = bilinear sample of x at c + (p - c) / s
    rotate   y[p] = bilinear sample of x at c + R(-angle) (p - c)
             bilinear sampling is y = S x with a sparse S (4 weights per output pixel); adjoint S^T dy
"""
import numpy as np

from ..errors import InputError


class jitter:
    """Shift by a random whole number of pixels in [-pixels, pixels] per axis (wrapping around)."""

    def __init__(self, pixels=4):
        self.pixels = int(pixels)

    def __call__(self, x, rng):
        shift = tuple(int(s) for s in rng.integers(-self.pixels, self.pixels + 1, size=2))
        back = (-shift[0], -shift[1])
        return np.roll(x, shift, axis=(1, 2)), (lambda g: np.roll(g, back, axis=(1, 2)))

    def __repr__(self):
        return f"jitter({self.pixels})"


def bilinear_sampler(src_y, src_x, hw):
    """The sparse sampling matrix of bilinear interpolation at source points (clamped to the edges).

    src_y, src_x: (P,) coordinates in an image of size hw. Returns (idx (4, P), weights (4, P)) so that
    y[p] = sum_k weights[k, p] * x_flat[idx[k, p]]  (x_flat: pixels in row-major order).
    """
    h, w = hw
    sy = np.clip(src_y, 0, h - 1)
    sx = np.clip(src_x, 0, w - 1)
    y0, x0 = np.floor(sy).astype(int), np.floor(sx).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = sy - y0, sx - x0
    idx = np.stack([y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1])
    weights = np.stack([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx])
    return idx, weights


def sample(x, idx, weights):
    """y = S x: x (N, H, W, C) -> (N, P, C) with S given by :func:`bilinear_sampler`."""
    n, h, w, c = x.shape
    flat = x.reshape(n, h * w, c)
    return sum(wk[None, :, None] * flat[:, ik, :] for ik, wk in zip(idx, weights))


def sample_adjoint(g, idx, weights, shape):
    """dx = S^T g: g (N, P, C) -> (N, H, W, C); each output pixel's gradient spread over its 4 sources."""
    n, h, w, c = shape
    rows = n * c
    g_rows = g.transpose(0, 2, 1).reshape(rows, 1, -1)             # (N*C, 1, P)
    offsets = (np.arange(rows) * h * w)[:, None, None]
    total = np.bincount((idx[None] + offsets).ravel(), (weights[None] * g_rows).ravel(), minlength=rows * h * w)
    return total.reshape(n, c, h, w).transpose(0, 2, 3, 1)


def _affine(x, matrix):
    """Resample x about its centre: output pixel p reads the input at c + matrix @ (p - c)."""
    n, h, w, c = x.shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    py, px = np.mgrid[0:h, 0:w]
    d = np.stack([py.ravel() - cy, px.ravel() - cx])
    src = matrix @ d
    idx, weights = bilinear_sampler(src[0] + cy, src[1] + cx, (h, w))
    y = sample(x, idx, weights).reshape(x.shape)
    return y, (lambda g: sample_adjoint(g.reshape(n, h * w, c), idx, weights, x.shape))


class random_scale:
    """Zoom by a factor picked at random from ``scales`` (about the centre, same output size)."""

    def __init__(self, scales=(0.95, 0.975, 1.0, 1.025, 1.05)):
        self.scales = tuple(float(s) for s in scales)
        if min(self.scales) <= 0:
            raise InputError(f"scales must be positive, got {self.scales}")

    def __call__(self, x, rng):
        s = self.scales[rng.integers(len(self.scales))]
        return _affine(x, np.eye(2) / s)

    def __repr__(self):
        return f"random_scale({self.scales})"


class random_rotate:
    """Rotate by an angle (degrees) picked at random from ``angles`` (about the centre, same size)."""

    def __init__(self, angles=tuple(range(-5, 6))):
        self.angles = tuple(float(a) for a in angles)

    def __call__(self, x, rng):
        a = np.deg2rad(self.angles[rng.integers(len(self.angles))])
        rot = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])  # R(-a): output rotated by +a
        return _affine(x, rot)

    def __repr__(self):
        return f"random_rotate({self.angles[0]:g}..{self.angles[-1]:g})"


def standard_transforms(pixels=4):
    """Lucid-like default: a jitter, a small random scale, a small random rotation, a final jitter."""
    return [jitter(pixels), random_scale(), random_rotate(), jitter(max(1, pixels // 2))]
