"""Helpers shared by the attribution methods: input checks, batched scoring with a progress bar,
bilinear resizing of maps, Gaussian blur, and per-image value ranges."""
import numpy as np
from tqdm.auto import tqdm

from ..errors import InputError
from ..layers.reshaping import bilinear_matrix
from . import targets


def as_batch(model, x):
    """x as the model's dtype, checked to be an image batch (N, H, W, C)."""
    x = np.asarray(x)
    if x.ndim < 2:
        raise InputError(f"expected a batch of inputs (N, H, W, C), got shape {x.shape}")
    return x.astype(model.dtype, copy=False)


def chunks(n, batch_size, progress=False, desc=None):
    """Slices covering range(n) in blocks of ``batch_size``, with a tqdm bar when ``progress``."""
    size = max(int(batch_size or n or 1), 1)
    starts = range(0, n, size)
    if progress:
        starts = tqdm(starts, desc=desc, total=len(starts), leave=False)
    for s in starts:
        yield slice(s, min(s + size, n))


def cotangent(model, x, target):
    """(output (N, ...), cotangent (N, ...)) of the unperturbed input for ``target``."""
    out = targets.single_output(model, model.predict(x))
    return out, targets.cotangent(target, out)


def scores(model, xs, cot, batch_size=None, progress=False, desc=None):
    """Scores sum(cot * model(xs)) for many inputs xs (M, H, W, C) with cot (M, ...) -> (M,)."""
    out = np.empty(len(xs))
    for sl in chunks(len(xs), batch_size, progress, desc):
        out[sl] = targets.score(cot[sl], targets.single_output(model, model.predict(xs[sl])))
    return out


def resize(maps, hw):
    """Bilinear resize (half-pixel centres, as tf.image.resize) of maps (N, h, w[, C]) to (N, H, W[, C])."""
    a = bilinear_matrix(maps.shape[1], hw[0], np.float64)
    b = bilinear_matrix(maps.shape[2], hw[1], np.float64)
    return np.einsum("ih,nhw...,jw->nij...", a, maps, b, optimize=True)


def blur(x, sigma):
    """Gaussian blur of x (N, H, W, C) with std ``sigma`` pixels, edges repeated (separable matrices)."""
    if sigma <= 0:
        return x.copy()

    def matrix(n):
        radius = int(np.ceil(3 * sigma))
        taps = np.arange(-radius, radius + 1)
        kernel = np.exp(-0.5 * (taps / sigma) ** 2)
        kernel /= kernel.sum()
        m = np.zeros((n, n))
        for t, k in zip(taps, kernel):  # the tap at offset t reads pixel clip(i + t)
            src = np.clip(np.arange(n) + t, 0, n - 1)
            np.add.at(m, (np.arange(n), src), k)
        return m

    return np.einsum("ih,nhwc,jw->nijc", matrix(x.shape[1]), x, matrix(x.shape[2]), optimize=True).astype(x.dtype)


def value_range(x, value_range=None):
    """(low, high) per image, shaped to broadcast over x: the given pair, or each image's min and max."""
    if value_range is not None:
        lo, hi = value_range
        return np.asarray(lo, x.dtype), np.asarray(hi, x.dtype)
    axes = tuple(range(1, x.ndim))
    return x.min(axis=axes, keepdims=True), x.max(axis=axes, keepdims=True)


def check_map(attribution, x):
    """An attribution map (N, H, W) or (N, H, W, C) for x (N, H, W, C) -> (N, H, W) float64 (channels summed)."""
    a = np.asarray(attribution, np.float64)
    if a.shape == x.shape and a.ndim == 4:
        a = a.sum(axis=-1)
    if a.shape != x.shape[:3]:
        raise InputError(f"attribution map of shape {a.shape} does not match the images {x.shape}: "
                         f"expected {x.shape[:3]} or {x.shape}")
    return a
