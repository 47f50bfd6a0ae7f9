"""Occlusion sensitivity (Zeiler & Fergus 2014): slide a patch of ``fill`` over the image and record how
much the score drops; each pixel gets the mean drop over the patches that covered it."""
import numpy as np

from ..conv import pair
from ..errors import InputError
from . import _common, targets


def occlusion(model, x, target=None, patch=8, stride=4, fill=0.0, batch_size=64, progress=True):
    """x (N, H, W, C) -> (N, H, W): mean over covering patches of score(x) - score(x with the patch filled).

    patch, stride: int or (h, w); windows start at 0, stride, ... while they fit (as Captum).
    fill: a number, or "mean" for each image's mean value. Pixels no window covers get 0.
    """
    x = _common.as_batch(model, x)
    (ph, pw), (sh, sw) = pair(patch, "patch"), pair(stride, "stride")
    n, h, w = x.shape[:3]
    tops, lefts = np.arange(0, h - ph + 1, sh), np.arange(0, w - pw + 1, sw)
    corners = [(t, l) for t in tops for l in lefts]
    if not corners:
        raise InputError(f"occlusion patch {(ph, pw)} is larger than the images {(h, w)}")
    out, cot = _common.cotangent(model, x, target)
    base = targets.score(cot, out)
    values = x.mean(axis=(1, 2, 3)) if isinstance(fill, str) and fill == "mean" else np.full(n, float(fill))
    covered = np.zeros((h, w))
    for t, l in corners:
        covered[t:t + ph, l:l + pw] += 1
    image = np.repeat(np.arange(n), len(corners))
    corner = np.tile(np.arange(len(corners)), n)
    drops = np.empty(len(image))
    for sl in _common.chunks(len(image), batch_size, progress, "occlusion"):
        batch = x[image[sl]].copy()
        for row, (i, c) in enumerate(zip(image[sl], corner[sl])):
            t, l = corners[c]
            batch[row, t:t + ph, l:l + pw] = values[i]
        drops[sl] = base[image[sl]] - targets.score(cot[image[sl]], targets.single_output(model, model.predict(batch)))
    total = np.zeros((n, h, w))
    for i, c, d in zip(image, corner, drops):
        t, l = corners[c]
        total[i, t:t + ph, l:l + pw] += d
    return (total / np.maximum(covered, 1)).astype(x.dtype)
