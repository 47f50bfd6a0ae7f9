"""Filters (convolution kernels) as images, and the weights of every layer for histograms.

Every kernel is returned filter-major and channels-last, ``(F, kh, kw, Cin)``, so ``f[i]`` is directly an
image: a colour image when the layer reads RGB (Cin = 3), one grey image per input channel otherwise.
Values are normalised to 0..1 with the min and max of the WHOLE layer (as the cats-vs-dogs article does),
so filters of one layer are comparable with each other.
"""
import numpy as np

from ..errors import InputError
from ..layers.conv import Conv2DTranspose, DepthwiseConv2D, SeparableConv2D, _ConvBase
from ..layers.core import Dense


def _conv_layer(model, layer):
    lay = model.get_layer(layer)
    if not isinstance(lay, _ConvBase):
        raise InputError(f"layer {layer!r} is a {type(lay).__name__}, not a convolution; conv layers: "
                         f"{', '.join(conv_layers(model)[:12])}")
    return lay


def conv_layers(model):
    """Keys of the convolution layers, in graph order."""
    return [s.key for s in model._steps if isinstance(s.layer, _ConvBase)]


def raw_filters(model, layer, part=None):
    """The kernels of a conv layer, unnormalised, as (F, kh, kw, Cin) images.

    Conv2D (kh, kw, Cin, F)                 -> (F, kh, kw, Cin)
    Conv1D (k, Cin, F)                      -> (F, 1, k, Cin)
    Conv2DTranspose (kh, kw, F, Cin)        -> (F, kh, kw, Cin)
    DepthwiseConv2D (kh, kw, Cin, m)        -> (Cin*m, kh, kw, 1): output channel c*m + j
    SeparableConv2D part="effective" (default): the equivalent full kernel
                 sum_j depthwise[:, :, c, j] * pointwise[c*m + j, f]   -> (F, kh, kw, Cin)
                    part="depthwise"        -> (Cin*m, kh, kw, 1);  part="pointwise" -> (F, 1, 1, Cin*m)
    """
    lay = _conv_layer(model, layer)
    if isinstance(lay, SeparableConv2D):
        part = part or "effective"
        dw, pw = lay.params["depthwise_kernel"], lay.params["pointwise_kernel"][0, 0]
        kh, kw, cin, m = dw.shape
        if part == "effective":
            k = np.einsum("abcj,cjf->fabc", dw, pw.reshape(cin, m, -1))
        elif part == "depthwise":
            k = dw.reshape(kh, kw, cin * m).transpose(2, 0, 1)[..., None]
        elif part == "pointwise":
            k = pw.T[:, None, None, :]
        else:
            raise InputError(f"part must be 'effective', 'depthwise' or 'pointwise', got {part!r}")
        return k
    if part not in (None, "depthwise") or (part == "depthwise" and not isinstance(lay, DepthwiseConv2D)):
        raise InputError(f"part={part!r} is only for SeparableConv2D layers; {layer!r} is a {type(lay).__name__}")
    if isinstance(lay, DepthwiseConv2D):
        dw = lay.params["depthwise_kernel"]
        kh, kw, cin, m = dw.shape
        return dw.reshape(kh, kw, cin * m).transpose(2, 0, 1)[..., None]
    w = lay.params["kernel"]
    if w.ndim == 3:  # Conv1D
        w = w[None]
    if isinstance(lay, Conv2DTranspose):
        return w.transpose(2, 0, 1, 3)
    return w.transpose(3, 0, 1, 2)


def normalize01(w):
    """(w - min) / (max - min) over the whole array; a constant array becomes 0.5."""
    w = np.asarray(w, dtype=np.float64)
    lo, hi = w.min(), w.max()
    return np.full_like(w, 0.5) if hi - lo <= 0 else (w - lo) / (hi - lo)


def filters(model, layer, part=None, normalize=True):
    """The kernels of a conv layer as images (F, kh, kw, Cin), normalised 0..1 over the layer.

    See :func:`raw_filters` for the layouts of Conv1D, depthwise and separable layers. A first layer on
    RGB input gives F colour images ``filters(...)[i]`` of shape (kh, kw, 3).
    """
    k = raw_filters(model, layer, part)
    return normalize01(k) if normalize else k


def layer_weights(model, kinds=("conv", "dense")):
    """{layer key: flat array of its kernel weights (biases excluded)} for histograms, in graph order."""
    classes = {"conv": _ConvBase, "dense": Dense}
    want = tuple(classes[k] for k in kinds)
    out = {}
    for step in model._steps:
        lay = step.layer
        if isinstance(lay, want):
            out[step.key] = np.concatenate([np.ravel(v) for n, v in lay.params.items() if n != "bias"])
    return out
