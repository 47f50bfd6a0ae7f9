"""Receptive fields from the conv/pool geometry, and the static shape of every tensor in a model.

Per spatial axis, a unit of a layer sees an input window described by three numbers
(the classic recurrence, e.g. Araujo et al. 2019, "Computing receptive fields of CNNs")::

    size_out   = size_in + (k - 1) * dilation * jump_in        window length in input pixels
    jump_out   = jump_in * stride                               input pixels between neighbouring units
    start_out  = start_in - pad_before * jump_in                input row of the window of unit 0

``start`` can be negative: windows near the border hang over the zero padding. Where branches meet
(Add, Concatenate) the window is the union of the branches' windows. Global units (after global
pooling, Flatten, Dense) have jump 0 and see the whole input; where such a branch meets a spatial one
(a squeeze-excite gate multiplied onto a feature map) it is left out: it scales all units alike, and the
window that moves with the unit is the spatial branch's (the "local" receptive field).
"""
from collections import namedtuple

import numpy as np

from .. import conv as core
from ..errors import InputError, UnsupportedError
from ..layers.conv import Conv2DTranspose, _ConvBase
from ..layers.core import Dense, Flatten, Reshape
from ..layers.pooling import _GlobalPool, _Pool2D
from ..layers.reshaping import Cropping2D, UpSampling2D, ZeroPadding2D

ReceptiveField = namedtuple("ReceptiveField", "size stride offset")
ReceptiveField.__doc__ = """Per axis (rows, cols): ``size`` window length, ``stride`` (jump) between units,
``offset`` input coordinate of the centre of unit (0, 0)'s window (may be fractional or negative).
Stride 0: the units are global (after global pooling, Flatten or Dense) and see the whole input."""


def tensor_shapes(model, input_shape=None):
    """{tensor id: static shape (None, h, w, C)} for the input and every step of the model's plan.

    input_shape: (H, W, C) to use when the model's declared input has None sizes.
    """
    if len(model._inputs) != 1:
        raise UnsupportedError(f"model {model.name!r} has {len(model._inputs)} inputs; receptive fields and "
                               "feature selection need a single image input")
    shape = tuple(model._inputs[0].shape)
    if input_shape is not None:
        shape = (None, *tuple(input_shape))
    shapes = {model._input_ids[0]: shape}
    for step in model._steps:
        ins = [shapes[t] for t in step.inputs]
        shapes[step.output] = tuple(step.layer.output_shape(ins if step.layer.multi_input else ins[0]))
    return shapes


def _axis_geometry(layer, in_hw):
    """(kernel, stride, dilation, pad_before) per axis for a windowed layer, else None."""
    if isinstance(layer, Conv2DTranspose):
        return None
    if isinstance(layer, _ConvBase):
        k, s, d = layer.kernel_size, layer.strides, layer.dilation_rate
    elif isinstance(layer, _Pool2D):
        k, s, d = layer.pool_size, layer.strides, (1, 1)
    else:
        return None
    if None in in_hw and layer.padding == "same":
        raise InputError(f"layer {layer.name!r}: 'same' padding depends on the input size; pass input_shape=")
    pads = core.resolve_padding(layer.padding, in_hw, k, s, d)
    return k, s, d, [p[0] for p in pads]


def _step_field(step, fields, shapes):
    """(size, jump, start) per axis of a step's output from its inputs' fields."""
    layer = step.layer
    ins = [fields[t] for t in step.inputs]
    in_shape = shapes[step.inputs[0]]
    out_shape = shapes[step.output]
    if isinstance(layer, (_GlobalPool, Flatten, Dense, Reshape)) or len(out_shape) != 4:
        # every unit sees the whole of its input's field; jump 0 marks a global unit (no spatial grid),
        # so a squeeze-excite branch multiplied back onto a feature map keeps that map's jump
        return [(f[0] + (n - 1) * f[1], 0, f[2]) if n else f
                for f, n in zip(ins[0], in_shape[1:3])] if len(in_shape) == 4 else ins[0]
    geo = _axis_geometry(layer, in_shape[1:3])
    if geo is not None:
        return [(size + (k - 1) * d * jump, jump * s, start - pad * jump)
                for (size, jump, start), k, s, d, pad in zip(ins[0], *geo)]
    if isinstance(layer, ZeroPadding2D):
        return [(size, jump, start - p[0] * jump) for (size, jump, start), p in zip(ins[0], layer.padding)]
    if isinstance(layer, Cropping2D):
        return [(size, jump, start + c[0] * jump) for (size, jump, start), c in zip(ins[0], layer.cropping)]
    if isinstance(layer, (UpSampling2D, Conv2DTranspose)):
        ups = layer.size if isinstance(layer, UpSampling2D) else layer.strides
        extra = (0, 0) if isinstance(layer, UpSampling2D) else [k - 1 for k in layer.kernel_size]
        return [(size + e * jump / u, jump / u, start - e * jump / u)
                for (size, jump, start), u, e in zip(ins[0], ups, extra)]
    if out_shape[1:3] != in_shape[1:3] and len(in_shape) == 4:
        raise UnsupportedError(f"layer {step.key!r} ({type(layer).__name__}) changes the spatial size; npcnn "
                               "does not know its receptive field")
    local = [f for f in ins if any(jump for _, jump, _ in f)]
    ins = local or ins  # a global branch (a squeeze-excite gate) scales every unit the same: left out
    if len(ins) == 1:
        return ins[0]
    merged = []
    for axis in zip(*ins):  # union of the branches' windows
        lo = min(start for _, _, start in axis)
        hi = max(start + size for size, _, start in axis)
        merged.append((hi - lo, max(jump for _, jump, _ in axis), lo))
    return merged


def receptive_field(model, layer, input_shape=None):
    """The receptive field of a unit of ``layer`` on the model input: a :class:`ReceptiveField`.

    Returns ``ReceptiveField(size=(sh, sw), stride=(jh, jw), offset=(ch, cw))``: unit (i, j) of the layer
    sees input rows ``offset[0] + i*stride[0] +- (size[0]-1)/2`` (and the same for columns), before
    clipping to the image. Sizes and strides are ints for conv/pool stacks.
    """
    shapes = tensor_shapes(model, input_shape)
    target = model._tensor(layer)
    fields = {model._input_ids[0]: [(1, 1, 0), (1, 1, 0)]}
    for step in model._steps:
        fields[step.output] = _step_field(step, fields, shapes)
        if step.output == target:
            break
    (sh, jh, oh), (sw, jw, ow) = fields[target]
    num = (lambda v: int(v) if float(v).is_integer() else float(v))
    return ReceptiveField((num(sh), num(sw)), (num(jh), num(jw)),
                          (num(oh + (sh - 1) / 2), num(ow + (sw - 1) / 2)))


def window(rf, position, image_hw):
    """The input box (y0, y1, x0, x1) seen by the unit at ``position`` (i, j), clipped to the image.

    A window larger than the image is the whole image; one hanging over a border keeps its size
    and slides inside (so every patch of a layer has the same size ``min(size, image size)``).
    position may also be an int array (..., 2): the boxes are then an array (..., 4).
    """
    pos = np.asarray(position)
    box = []
    for axis, (centre, jump, size, n) in enumerate(zip(rf.offset, rf.stride, rf.size, image_hw)):
        length = int(min(round(size), n))
        lo = np.rint(centre + pos[..., axis] * jump - (length - 1) / 2).astype(int)
        lo = np.clip(lo, 0, n - length)
        box += [lo, lo + length]
    out = np.stack(box, axis=-1)
    return tuple(int(v) for v in out) if out.ndim == 1 else out
