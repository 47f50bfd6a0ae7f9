"""The gradient family: vanilla saliency, Input x Gradient, SmoothGrad (and its squared and variance
forms), Integrated Gradients. Every method is ``method(model, x, target=None, ...) -> array``.

The building block is one backward pass: g = d score / dx with score = sum(cotangent * model(x))
(:mod:`npcnn.attribution.targets`), from :meth:`npcnn.Model.trace`.
"""
import numpy as np

from ..errors import InputError
from ..initializers import rng as shared_rng
from . import _common, targets


def gradient_at(model, xs, cot, rule=None):
    """d sum(cot * model(xs)) / dxs for a batch xs (M, H, W, C) with a fixed cotangent cot (M, ...)."""
    return model.trace(xs).input_gradient(cotangent=cot, rule=rule)


def _gradient(model, x, target, rule=None, batch_size=None):
    """Gradient of each image's own target score (the target read from its own output): (N, H, W, C)."""
    x = _common.as_batch(model, x)
    out = np.empty_like(x)
    for sl in _common.chunks(len(x), batch_size):
        tr = model.trace(x[sl])
        cot = targets.cotangent(target, targets.single_output(model, tr.outputs))
        out[sl] = tr.input_gradient(cotangent=cot, rule=rule)
    return out


def saliency(model, x, target=None, absolute=True, batch_size=None):
    """Vanilla gradient saliency (Simonyan et al. 2013).

    x (N, H, W, C) -> absolute=True: max over channels of |d score / dx|, (N, H, W);
                      absolute=False: the signed gradient d score / dx, (N, H, W, C).
    """
    g = _gradient(model, x, target, batch_size=batch_size)
    return np.abs(g).max(axis=-1) if absolute else g


def input_x_gradient(model, x, target=None, batch_size=None):
    """x * d score / dx (Shrikumar et al. 2016): (N, H, W, C)."""
    x = _common.as_batch(model, x)
    return x * _gradient(model, x, target, batch_size=batch_size)


def _generator(seed):
    return shared_rng() if seed is None else np.random.default_rng(seed)


def smoothgrad(model, x, target=None, samples=50, noise=0.15, kind="mean", value_range=None, seed=None,
               batch_size=32, progress=True):
    """SmoothGrad (Smilkov et al. 2017): gradients averaged over noisy copies x + N(0, sigma²).

    sigma = noise * (high - low) of each image's value range (or of ``value_range=(low, high)``).
    kind: "mean" (SmoothGrad), "squared" (SmoothGrad², mean of g²), "vargrad" (variance of g).
    x (N, H, W, C) -> (N, H, W, C). With noise=0 "mean" is exactly the vanilla gradient.
    """
    if kind not in ("mean", "squared", "vargrad"):
        raise InputError(f"smoothgrad kind must be 'mean', 'squared' or 'vargrad', got {kind!r}")
    if samples < 1:
        raise InputError(f"smoothgrad needs samples >= 1, got {samples}")
    x = _common.as_batch(model, x)
    _, cot = _common.cotangent(model, x, target)
    lo, hi = _common.value_range(x, value_range)
    sigma = np.broadcast_to(noise * (hi - lo), (len(x),) + (1,) * (x.ndim - 1))
    gen = _generator(seed)
    image = np.repeat(np.arange(len(x)), samples)  # sample m explains image m // samples

    def noisy(sl):
        i = image[sl]
        return x[i] + (gen.standard_normal(x[i].shape) * sigma[i]).astype(x.dtype)

    total, total_sq = np.zeros(x.shape), np.zeros(x.shape)
    for sl in _common.chunks(len(image), batch_size, progress, "smoothgrad"):
        g = gradient_at(model, noisy(sl), cot[image[sl]]).astype(np.float64)
        np.add.at(total, image[sl], g)
        np.add.at(total_sq, image[sl], g * g)
    mean, mean_sq = total / samples, total_sq / samples
    result = {"mean": mean, "squared": mean_sq, "vargrad": mean_sq - mean * mean}[kind]
    return result.astype(x.dtype)


def baseline_for(x, baseline, value_range=None, blur_sigma=None, seed=None):
    """The reference input of Integrated Gradients, same shape as x (N, H, W, C).

    "black": every pixel at the low end of the value range; "white": the high end; "blurred": x under a
    Gaussian blur (sigma = blur_sigma, default a sixth of the image side); "uniform": uniform noise over the
    value range; a number or an array broadcastable to x: used as given.
    """
    lo, hi = _common.value_range(x, value_range)
    if isinstance(baseline, str):
        if baseline == "black":
            return np.broadcast_to(lo, x.shape).astype(x.dtype)
        if baseline == "white":
            return np.broadcast_to(hi, x.shape).astype(x.dtype)
        if baseline in ("blurred", "blur"):
            return _common.blur(x, blur_sigma if blur_sigma is not None else max(x.shape[1:3]) / 6)
        if baseline in ("uniform", "noise"):
            return (lo + (hi - lo) * _generator(seed).random(x.shape)).astype(x.dtype)
        raise InputError(f"unknown baseline {baseline!r}: use 'black', 'white', 'blurred', 'uniform', a number "
                         "or an array")
    try:
        return np.broadcast_to(np.asarray(baseline, x.dtype), x.shape).copy()
    except ValueError:
        raise InputError(f"baseline of shape {np.shape(baseline)} cannot broadcast to the input {x.shape}") from None


def path_points(steps, method="riemann"):
    """Points alpha_k in [0, 1] and weights w_k with sum_k w_k f(alpha_k) ~ integral_0^1 f(alpha) d alpha.

    "riemann": midpoints (k + 1/2)/steps, weights 1/steps; "trapezoid": k/(steps-1) with halved end weights;
    "gauss_legendre": the Legendre nodes mapped from [-1, 1] to [0, 1], weights halved.
    """
    if steps < 1 or (method == "trapezoid" and steps < 2):
        raise InputError(f"integrated gradients needs more steps than {steps} for method {method!r}")
    if method == "riemann":
        return (np.arange(steps) + 0.5) / steps, np.full(steps, 1.0 / steps)
    if method == "trapezoid":
        w = np.full(steps, 1.0 / (steps - 1))
        w[[0, -1]] /= 2
        return np.linspace(0, 1, steps), w
    if method in ("gauss_legendre", "gausslegendre"):
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (nodes + 1) / 2, weights / 2
    raise InputError(f"unknown integration method {method!r}: use 'riemann', 'trapezoid' or 'gauss_legendre'")


def integrated_gradients(model, x, target=None, baseline="black", steps=64, method="riemann", value_range=None,
                         blur_sigma=None, seed=None, batch_size=64, progress=True, return_error=False):
    """Integrated Gradients (Sundararajan et al. 2017):

        IG(x) = (x - b) * integral_0^1 d score / dx (b + alpha (x - b)) d alpha      (N, H, W, C)

    The integral is a weighted sum over ``steps`` points (:func:`path_points`), evaluated in batches of
    ``batch_size`` inputs. Completeness says sum(IG) = score(x) - score(b); with ``return_error=True``
    the function returns (IG, error) where error (N,) = sum(IG) - (score(x) - score(b)), Captum's
    "convergence delta". On a ReLU network the integrand is piecewise constant with many jumps along the
    path, so the error falls slowly with ``steps``: check it, and raise ``steps`` when it is large.
    """
    x = _common.as_batch(model, x)
    b = baseline_for(x, baseline, value_range, blur_sigma, seed)
    _, cot = _common.cotangent(model, x, target)
    alphas, weights = path_points(steps, method)
    image, k = np.repeat(np.arange(len(x)), steps), np.tile(np.arange(steps), len(x))
    alpha = alphas[k].reshape(-1, *([1] * (x.ndim - 1))).astype(x.dtype)
    total = np.zeros(x.shape)
    for sl in _common.chunks(len(image), batch_size, progress, "integrated gradients"):
        i = image[sl]
        g = gradient_at(model, b[i] + alpha[sl] * (x[i] - b[i]), cot[i])
        np.add.at(total, i, weights[k[sl]].reshape(alpha[sl].shape) * g)
    ig = ((x - b) * total).astype(x.dtype)
    if not return_error:
        return ig
    delta = _common.scores(model, x, cot) - _common.scores(model, b, cot)
    return ig, ig.reshape(len(x), -1).sum(axis=1, dtype=np.float64) - delta
