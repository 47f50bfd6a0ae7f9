"""Faithfulness of an attribution map, so methods can be compared on the same image.

Deletion / insertion (Petsiuk et al. 2018, RISE): pixels are removed from (or restored into) the image
in order of decreasing attribution; the target score is recorded after each step. A faithful map makes
the deletion curve fall fast (small AUC) and the insertion curve rise fast (large AUC).

Cascading randomisation (Adebayo et al. 2018, "Sanity checks for saliency maps"): weights are replaced
by random ones from the top layer down; a map that explains the *model* must change as they go.
"""
from collections import namedtuple

import numpy as np

from .. import initializers
from ..errors import InputError
from . import _common
from .gradients import baseline_for

Curve = namedtuple("Curve", "fractions scores auc")
Curve.__doc__ = """fractions (S+1,) of pixels changed; scores (N, S+1) target score after each step; auc (N,)."""

Randomization = namedtuple("Randomization", "layers maps similarity")
Randomization.__doc__ = """layers: ["original", top layer, ...] randomised cumulatively; maps: one map array per
entry; similarity (L, N): Spearman rank correlation of |map| with the original map (1 for "original")."""


def auc(fractions, scores):
    """Trapezoid area under scores (N, S+1) over fractions (S+1,) -> (N,)."""
    return ((scores[:, 1:] + scores[:, :-1]) / 2 * np.diff(fractions)).sum(axis=1)


def _curve(model, x, attribution, target, steps, baseline, insert, batch_size, progress, value_range):
    x = _common.as_batch(model, x)
    a = _common.check_map(attribution, x)
    n, h, w = a.shape
    start = baseline_for(x, baseline, value_range)
    src, dst = (start, x) if insert else (x, start)      # pixels move from src to dst in attribution order
    order = np.argsort(-a.reshape(n, -1), axis=1, kind="stable")
    counts = np.round(np.linspace(0, h * w, steps + 1)).astype(int)
    _, cot = _common.cotangent(model, x, target)
    # every (image, step) pair is one input; built chunk by chunk so memory stays small
    image, step = np.repeat(np.arange(n), steps + 1), np.tile(np.arange(steps + 1), n)
    rank = np.empty_like(order)
    rank[np.arange(n)[:, None], order] = np.arange(h * w)
    scores = np.empty(len(image))
    for sl in _common.chunks(len(image), batch_size, progress, "insertion" if insert else "deletion"):
        i = image[sl]
        changed = (rank[i] < counts[step[sl]][:, None]).reshape(-1, h, w, 1)
        xs = np.where(changed, dst[i], src[i])
        scores[sl] = _common.scores(model, xs, cot[i])
    scores = scores.reshape(n, steps + 1)
    fractions = counts / (h * w)
    return Curve(fractions, scores, auc(fractions, scores))


def deletion(model, x, attribution, target=None, steps=50, baseline="black", batch_size=64, progress=True,
             value_range=None):
    """Deletion curve: the most attributed pixels (all channels) set to ``baseline`` first.

    x (N, H, W, C); attribution (N, H, W) or (N, H, W, C) (channels summed) -> :class:`Curve`.
    baseline: as in Integrated Gradients ("black", "blurred", "uniform", a number or an array).
    """
    return _curve(model, x, attribution, target, steps, baseline, False, batch_size, progress, value_range)


def insertion(model, x, attribution, target=None, steps=50, baseline="blurred", batch_size=64, progress=True,
              value_range=None):
    """Insertion curve: starting from ``baseline`` (a blurred image by default), the most attributed
    pixels are restored first. Same shapes as :func:`deletion`."""
    return _curve(model, x, attribution, target, steps, baseline, True, batch_size, progress, value_range)


def spearman(a, b):
    """Spearman rank correlation per image of two maps (N, ...) -> (N,) (ties ranked by position)."""
    def ranks(m):
        flat = m.reshape(len(m), -1)
        r = np.empty(flat.shape)
        r[np.arange(len(m))[:, None], np.argsort(flat, axis=1, kind="stable")] = np.arange(flat.shape[1])
        return r - r.mean(axis=1, keepdims=True)
    ra, rb = ranks(np.asarray(a, np.float64)), ranks(np.asarray(b, np.float64))
    return (ra * rb).sum(axis=1) / np.sqrt((ra ** 2).sum(axis=1) * (rb ** 2).sum(axis=1))


def randomization_check(model, x, method, target=None, layers=None, seed=0, **kwargs):
    """Cascading model-parameter randomisation: ``method(model, x, target=target, **kwargs)`` recomputed
    after each layer's trainable weights (top layer first, cumulatively) are redrawn from a normal with the
    same mean and std. The weights are restored afterwards. Returns :class:`Randomization`.

    layers: names (keys) of the layers to randomise, in order; default every layer with trainable weights,
    output side first.
    """
    x = _common.as_batch(model, x)
    if layers is None:
        seen, layers = set(), []
        for step in reversed(model._steps):
            if step.layer.trainable and step.layer.params and id(step.layer) not in seen:
                seen.add(id(step.layer))
                layers.append(step.key)
    gen = np.random.default_rng(seed) if seed is not None else initializers.rng()
    original = method(model, x, target=target, **kwargs)
    maps, names, saved = [original], ["original"], []
    try:
        for key in layers:
            layer = model.get_layer(key)
            saved.append((layer, dict(layer.params)))
            for name, w in layer.params.items():
                if name not in layer.non_trainable_names:
                    layer.params[name] = (w.mean() + w.std() * gen.standard_normal(w.shape)).astype(w.dtype)
            maps.append(method(model, x, target=target, **kwargs))
            names.append(key)
    finally:
        for layer, params in reversed(saved):
            layer.params = params
    if not maps[0].shape[0] == len(x):
        raise InputError(f"method returned shape {maps[0].shape} for {len(x)} images")
    similarity = np.stack([spearman(np.abs(original), np.abs(m)) for m in maps])
    return Randomization(names, maps, similarity)
