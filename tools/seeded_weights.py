# Byte-identical copies live at tools/seeded_weights.py and tests/fixtures/seeded_weights.py:
# edit one, copy it over the other (tools/make_keras_fixtures.py refuses to run if they differ).
"""Seeded, framework-free weights for the keras.applications reference fixtures.

``seeded_weight(layer_name, weight_name, shape, seed)`` depends only on its arguments, so npcnn's
tests can rebuild the exact weights of an application model from its JSON config alone, and
tools/make_keras_fixtures.py produced the references from the same values.

Each (seed, layer, weight) triple gets its own generator: numpy's PCG64 seeded through a
SeedSequence of [seed, crc32("layer/weight")].  Draw order inside one weight is C order.
"""
import math
import zlib

import numpy as np

# Default gain on He scaling.  Inference-mode BatchNormalization with random moving statistics
# does not renormalise, so a residual net grows with depth at gain 1 (ResNet50, Xception) while
# most others stay level; the fixture tool passes a per-application kernel_gain (recorded in
# each APP.*.ref.npz as the key "kernel_gain" and in tests/fixtures/keras/README.md).
KERNEL_GAIN = 1.0


def _rng(layer_name, weight_name, seed):
    key = zlib.crc32(f"{layer_name}/{weight_name}".encode("utf-8"))
    return np.random.default_rng(np.random.SeedSequence([int(seed), key]))


def fan_in(weight_name, shape):
    """Fan-in used for He scaling: kernels are (..., in, out); depthwise (kh, kw, in, mult)."""
    if weight_name == "depthwise_kernel":
        return max(1, int(np.prod(shape[:-2])))
    return max(1, int(np.prod(shape[:-1])))


def seeded_weight(layer_name: str, weight_name: str, shape: tuple, seed: int = 0,
                  kernel_gain: float = KERNEL_GAIN) -> np.ndarray:
    """Return a float32 array of `shape` for weight `weight_name` of layer `layer_name`.

    Weight names are Keras 3's short names, except that a DepthwiseConv2D's kernel (Keras 3:
    "kernel", Keras 2: "depthwise_kernel") must be asked for as "depthwise_kernel", so that its
    fan-in is kh * kw.

    kernel, depthwise_kernel, pointwise_kernel : N(0, 1) * kernel_gain * sqrt(2 / fan_in)
    bias, beta                                  : N(0, 0.05)
    gamma, moving_variance                      : U(0.5, 1.5)
    moving_mean                                 : N(0, 0.1)
    mean   (Normalization)                      : 0.45 + N(0, 0.02)
    variance (Normalization)                    : 0.05 * U(0.8, 1.2)
    count  (Normalization)                      : 1000 (cast it to the variable's int dtype)
    alpha  (PReLU)                              : U(0.1, 0.3)
    anything else                               : N(0, 0.05)
    """
    shape = tuple(int(s) for s in shape)
    rng = _rng(layer_name, weight_name, seed)
    w = weight_name
    if w in ("kernel", "depthwise_kernel", "pointwise_kernel"):
        std = float(kernel_gain) * math.sqrt(2.0 / fan_in(w, shape))
        out = rng.standard_normal(shape) * std
    elif w in ("bias", "beta"):
        out = rng.standard_normal(shape) * 0.05
    elif w in ("gamma", "moving_variance"):
        out = rng.uniform(0.5, 1.5, shape)
    elif w == "moving_mean":
        out = rng.standard_normal(shape) * 0.1
    elif w == "mean":
        out = 0.45 + rng.standard_normal(shape) * 0.02
    elif w == "variance":
        out = 0.05 * rng.uniform(0.8, 1.2, shape)
    elif w == "count":
        out = np.full(shape, 1000.0)
    elif w == "alpha":
        out = rng.uniform(0.1, 0.3, shape)
    else:
        out = rng.standard_normal(shape) * 0.05
    return np.asarray(out, dtype=np.float32)
