"""Shared test helpers: a float64 central-difference gradient checker and a relative error.

The check everyone uses::

    check_gradient(f, x, analytic, rng)     # f() reads x; x is perturbed in place, then restored

compares ``analytic`` (d f / d x, same shape as x) with central differences
``(f(x + eps e_i) - f(x - eps e_i)) / (2 eps)`` at every coordinate of x (or at ``n_coords`` random ones
when x is big): max |num - ana| <= 1e-6 * max(|num|, |ana|) + (round-off floor of f, see ROUNDOFF_MARGIN).
"""
import numpy as np
import pytest

FD_EPS = 1e-6
"""Central-difference step. In float64: truncation ~eps² f''' ~ 1e-12, round-off ~1e-16 |f| / eps ~ 1e-10 |f|."""
FD_TOL = 1e-6
"""The bound on :func:`rel_error` between finite differences and an analytic gradient."""
ROUNDOFF_MARGIN = 100
"""An absolute slack of ROUNDOFF_MARGIN * 2.2e-16 * max(|f|, 1) / eps (2e-8 for |f| <= 1) is added to the bound:
the floor of what a difference quotient resolves, so tiny gradients (deep saturated stacks) don't fail on
round-off, while any real error in a gradient of ordinary size is still caught at 1e-6."""


def rel_error(num, ana):
    """max |num - ana| / max(max |num|, max |ana|, 1e-8): the error relative to the gradient's own scale.

    One scale per tensor (not per element): an entry that is ~0 analytically and 1e-11 numerically
    is round-off, not a bug, and must not count as a 100% error.
    """
    num, ana = np.asarray(num, np.float64), np.asarray(ana, np.float64)
    scale = max(np.abs(num).max(initial=0.0), np.abs(ana).max(initial=0.0), 1e-8)
    return float(np.abs(num - ana).max(initial=0.0) / scale)


def sample_coords(size, n_coords, rng):
    """Every flat index of a tensor of ``size`` elements, or ``n_coords`` distinct random ones."""
    if n_coords is None or size <= n_coords:
        return np.arange(size)
    return np.sort(rng.choice(size, n_coords, replace=False))


def numerical_gradient(f, x, coords, eps=FD_EPS):
    """Central differences of the scalar ``f()`` with respect to ``x.flat[coords]`` (x perturbed in place).

    x: float64 array that ``f`` reads -> (len(coords),) array of d f / d x at those coordinates.
    """
    assert x.dtype == np.float64, f"finite differences need float64, got {x.dtype}"
    flat = x.reshape(-1)  # a view: writing to it writes to x
    assert np.shares_memory(flat, x)
    out = np.empty(len(coords))
    for k, i in enumerate(coords):
        old = flat[i]
        flat[i] = old + eps
        plus = f()
        flat[i] = old - eps
        minus = f()
        flat[i] = old
        out[k] = (plus - minus) / (2 * eps)
    return out


def check_gradient(f, x, analytic, rng=None, n_coords=40, eps=FD_EPS, tol=FD_TOL, what="gradient"):
    """Assert that ``analytic`` (shape of x) agrees with central differences of ``f()`` w.r.t. x.

    Returns the relative error (for reports). ``what`` names the tensor in the failure message.
    """
    analytic = np.asarray(analytic)
    assert analytic.shape == x.shape, f"{what}: analytic gradient shape {analytic.shape} != {x.shape}"
    rng = rng if rng is not None else np.random.default_rng(0)
    coords = sample_coords(x.size, n_coords, rng)
    num = numerical_gradient(f, x, coords, eps)
    ana = analytic.reshape(-1)[coords]
    err = rel_error(num, ana)
    # what central differences can resolve at all: f's own round-off (~1e-16 |f|) divided by 2 eps
    noise = ROUNDOFF_MARGIN * np.finfo(np.float64).eps * max(abs(f()), 1.0) / eps
    diff = np.abs(num - ana)
    bound = tol * max(np.abs(num).max(initial=0.0), np.abs(ana).max(initial=0.0)) + noise
    worst = int(np.argmax(diff)) if len(coords) else 0
    ok = diff.max(initial=0.0) <= bound
    assert ok, (f"{what}: relative error {err:.2e} >= {tol:.0e}; worst coordinate "
                f"{np.unravel_index(coords[worst], x.shape)}: numeric {num[worst]:.8g} vs analytic {ana[worst]:.8g}")
    return err


def check_model_gradients(model, xs, rng, n_coords=25, n_param_coords=None):
    """FD-check ``model.input_gradient`` and every entry of ``model.param_gradients`` for the scalar
    sum(cot * model.predict(xs)), one random cotangent per output. The model must be float64.

    xs: list of float64 input arrays (one per model input), perturbed in place and restored.
    Returns the parameter-gradient dict (its keys are for the caller to check).
    """
    arg = xs if len(xs) > 1 else xs[0]
    outs = _as_list(model.predict(arg))
    cots = [rng.normal(size=o.shape) for o in outs]
    cot = cots if len(cots) > 1 else cots[0]

    def f():
        return sum(float((c * o).sum()) for c, o in zip(cots, _as_list(model.predict(arg))))

    grads = _as_list(model.input_gradient(arg, cotangent=cot))
    assert len(grads) == len(xs)
    for i, (x, g) in enumerate(zip(xs, grads)):
        check_gradient(f, x, g, rng, n_coords, what=f"{model.name} input {i}")
    pgrads = model.param_gradients(arg, cotangent=cot)
    weights = model.named_weights()
    for key, g in pgrads.items():
        check_gradient(f, weights[key], g, rng, n_param_coords or n_coords, what=key)
    return pgrads


def _as_list(v):
    return list(v) if isinstance(v, (list, tuple)) else [v]


def away_from(x, kinks, margin=0.1):
    """Move entries of x that lie within ``margin`` of a kink (0 for ReLU, 6 for ReLU6...) by 2*margin,
    so a finite difference never straddles a point where the function is not differentiable."""
    x = np.array(x, dtype=np.float64)
    for k in kinks:
        near = np.abs(x - k) < margin
        x[near] = k + np.where(x[near] >= k, 2 * margin, -2 * margin)
    return x


def randomize_weights(weights, rng, scale=0.7):
    """Overwrite, in place, every array of ``weights`` ({name: array}, e.g. ``layer.params`` or
    ``model.named_weights()``) with random values; variances uniform in [0.5, 1.5] so they stay valid.
    Random biases, gammas and betas make sure no gradient is trivially zero or one."""
    for name, p in weights.items():
        if name.endswith("count"):
            continue
        p[...] = rng.uniform(0.5, 1.5, p.shape) if "variance" in name else rng.normal(0.0, scale, p.shape)


@pytest.fixture
def rng():
    """A fresh, seeded generator per test (tests stay reproducible and independent of order)."""
    return np.random.default_rng(12345)
