"""Keras's weight initialisers (the ones Keras configs name), drawn from one seeded NumPy generator."""
import contextlib
import math
import threading

import numpy as np

from .errors import InputError

_rng = np.random.default_rng()
_local = threading.local()  # .generator: this thread's own, while it trains one part of a batch


def set_seed(seed):
    """Seed every random draw npcnn makes (initialisers, dropout, noise, augmentation)."""
    global _rng
    _rng = np.random.default_rng(seed)


def rng():
    """npcnn's shared random generator (in a thread within :func:`own_generator`, that thread's own)."""
    return getattr(_local, "generator", None) or _rng


@contextlib.contextmanager
def own_generator(seed):
    """Within the block, :func:`rng` in this thread is a generator of its own seeded by ``seed``: threads
    that draw at the same time then draw the same numbers whatever order they run in."""
    _local.generator = np.random.default_rng(seed)
    try:
        yield
    finally:
        _local.generator = None


def _fans(shape):
    if len(shape) < 2:
        return (shape[0], shape[0]) if shape else (1, 1)
    receptive = int(np.prod(shape[:-2]))
    return shape[-2] * receptive, shape[-1] * receptive


def _variance_scaling(shape, scale, mode, distribution):
    fan_in, fan_out = _fans(shape)
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    var = scale / max(1.0, n)
    if distribution == "uniform":
        lim = math.sqrt(3 * var)
        return _rng.uniform(-lim, lim, shape)
    # Keras's truncated normal: std corrected for the truncation at 2 sigma
    std = math.sqrt(var) / 0.87962566103423978
    return _truncated_normal(shape, 0.0, std)


def _truncated_normal(shape, mean, std):
    out = _rng.standard_normal(shape)
    bad = np.abs(out) > 2
    while bad.any():
        out[bad] = _rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2
    return mean + std * out


INITIALIZERS = {
    "zeros": lambda shape, **k: np.zeros(shape),
    "ones": lambda shape, **k: np.ones(shape),
    "constant": lambda shape, value=0.0, **k: np.full(shape, value),
    "random_normal": lambda shape, mean=0.0, stddev=0.05, **k: _rng.normal(mean, stddev, shape),
    "random_uniform": lambda shape, minval=-0.05, maxval=0.05, **k: _rng.uniform(minval, maxval, shape),
    "truncated_normal": lambda shape, mean=0.0, stddev=0.05, **k: _truncated_normal(shape, mean, stddev),
    "glorot_uniform": lambda shape, **k: _variance_scaling(shape, 1.0, "fan_avg", "uniform"),
    "glorot_normal": lambda shape, **k: _variance_scaling(shape, 1.0, "fan_avg", "normal"),
    "he_uniform": lambda shape, **k: _variance_scaling(shape, 2.0, "fan_in", "uniform"),
    "he_normal": lambda shape, **k: _variance_scaling(shape, 2.0, "fan_in", "normal"),
    "lecun_uniform": lambda shape, **k: _variance_scaling(shape, 1.0, "fan_in", "uniform"),
    "lecun_normal": lambda shape, **k: _variance_scaling(shape, 1.0, "fan_in", "normal"),
    "variance_scaling": lambda shape, scale=1.0, mode="fan_in", distribution="truncated_normal", **k:
        _variance_scaling(shape, scale, mode, "uniform" if distribution == "uniform" else "normal"),
}


def _snake(name):
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def initialize(spec, shape, dtype="float32"):
    """Draw an array for a Keras initializer spec: a name, or ``{"class_name": ..., "config": {...}}``."""
    params = {}
    if isinstance(spec, dict):
        params = dict(spec.get("config") or {})
        spec = spec.get("class_name")
    name = _snake(str(spec)) if spec and not str(spec).islower() else spec
    if name not in INITIALIZERS:
        raise InputError(f"unknown initializer {spec!r}; known: {', '.join(sorted(INITIALIZERS))}")
    return np.asarray(INITIALIZERS[name](tuple(shape), **params), dtype=dtype)
