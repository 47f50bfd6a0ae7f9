"""Feature maps: what a layer outputs for an image, and the per-channel standardisation used to show them.

    maps = feature_maps(model, x, "conv2d_1")      # (N, h, w, C), exactly model.activations(x)[layer]
    strip = standardize(maps)                      # uint8 0..255: (m - mean) / std * 64 + 128, clipped
"""
import numpy as np

from ..errors import InputError
from ..layers.activation import ELU, LeakyReLU, PReLU, ReLU
from ..layers.conv import _ConvBase
from ..layers.core import Activation
from ..layers.merge import Add, Concatenate
from ..layers.normalization import BatchNormalization
from ..layers.pooling import _Pool2D
from .receptive_field import tensor_shapes

KINDS = {
    "conv": (_ConvBase,),
    "pool": (_Pool2D,),
    "activation": (Activation, ReLU, LeakyReLU, ELU, PReLU),
    "norm": (BatchNormalization,),
    "merge": (Add, Concatenate),
}
"""Layer families :func:`all_feature_maps` can select by name ("all" takes every 4-D output)."""


def feature_maps(model, x, layer):
    """The output of ``layer`` for images x: what Keras's ``Model(model.inputs, layer.output).predict(x)`` gives.

    x: (N, H, W, C) -> (N, h, w, channels) for a convolutional layer (any shape for other layers).
    """
    return model.activations(x, [layer])[layer]


def layers_of_kind(model, kinds=("conv", "pool")):
    """Activation keys (graph order) of the layers in the families ``kinds`` whose output is 4-D."""
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    unknown = [k for k in kinds if k not in KINDS and k != "all"]
    if unknown:
        raise InputError(f"unknown layer kind(s) {unknown}; use some of {sorted(KINDS)} or 'all'")
    classes = tuple(c for k in kinds if k != "all" for c in KINDS[k])
    shapes = tensor_shapes(model)
    return [step.key for step in model._steps
            if len(shapes[step.output]) == 4 and ("all" in kinds or isinstance(step.layer, classes))]


def all_feature_maps(model, x, kinds=("conv", "pool")):
    """{layer key: (N, h, w, C)} for every layer of the given families, from ONE forward pass.

    kinds: names from :data:`KINDS` ("conv", "pool", "activation", "norm", "merge") or "all".
    """
    keys = layers_of_kind(model, kinds)
    if not keys:
        raise InputError(f"model {model.name!r} has no 4-D outputs of kind {kinds}; layers: "
                         f"{', '.join(model.layer_keys()[:12])}")
    return model.activations(x, keys)


def standardize(maps, scale=64.0, center=128.0, clip=True):
    """Each channel of each image to (m - mean) / std * scale + center, the display of the feature-map strip.

    maps: (N, h, w, C) or (h, w, C); mean and std are taken over (h, w) per image and channel.
    clip=True -> uint8 in 0..255; clip=False -> the float values before clipping (mean ``center``,
    std ``scale`` for every non-constant channel). A constant channel (std 0) becomes flat ``center``,
    never NaN.
    """
    m = np.asarray(maps, dtype=np.float64)
    if m.ndim not in (3, 4):
        raise InputError(f"standardize expects feature maps (N, h, w, C) or (h, w, C), got shape {m.shape}")
    mean = m.mean(axis=(-3, -2), keepdims=True)
    std = m.std(axis=(-3, -2), keepdims=True)
    z = np.divide(m - mean, std, out=np.zeros_like(m), where=std > 1e-12 * (1 + np.abs(mean)))
    out = z * scale + center
    return np.clip(out, 0, 255).round().astype(np.uint8) if clip else out
