"""The convolution core: im2col through strided views, one GEMM per chunk, and the backward passes.

Layout: NHWC activations, Keras kernels ``(kh, kw, cin/groups, cout)`` and depthwise kernels
``(kh, kw, cin, multiplier)``. Every routine takes explicit paddings ``((top, bottom), (left, right))``;
:func:`resolve_padding` turns Keras's ``"same"``/``"valid"`` into them (TensorFlow's rule: the odd
pixel of a "same" padding goes at the bottom/right).

Forward (cross-correlation, as every framework computes it)::

    out[n, i, j, o] = sum_{a, b, c} xpad[n, i*sh + a*dh, j*sw + b*dw, c] * w[a, b, c, o]

im2col turns the sum into a matrix product: the windows of ``xpad`` seen as a ``(N*oh*ow, kh*kw*cin)``
matrix (a strided *view*, copied one block of rows at a time so memory stays within
``MEMORY_BUDGET``) times ``w.reshape(kh*kw*cin, cout)``.

Backward::

    dw = cols.T @ dout                                  (accumulated block by block)
    dx = stride 1:  conv(pad(dout), flip(w) with cin/cout swapped)   -- itself a convolution
         stride s:  dcols = dout @ w.T, then added back window offset by window offset (col2im)
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided

from .errors import InputError

MEMORY_BUDGET = 64 << 20
"""Bytes one im2col block may take; rows of the output are processed in blocks that fit."""


def pair(v, name="value"):
    """An int or a pair -> a 2-tuple of ints (Keras accepts both for sizes, strides and rates)."""
    if isinstance(v, (int, np.integer)):
        return (int(v), int(v))
    v = tuple(int(t) for t in v)
    if len(v) != 2:
        raise InputError(f"{name} must be an int or a pair, got {v}")
    return v


def output_length(size, k, stride, padding, dilation=1):
    """Keras's conv output length for one spatial axis (None stays None)."""
    if size is None:
        return None
    eff = (k - 1) * dilation + 1
    if padding == "same":
        return -(-size // stride)
    if padding == "causal":
        return (size - 1) // stride + 1
    return max((size - eff) // stride + 1, 0)


def same_padding(size, k, stride, dilation=1):
    """TensorFlow's SAME padding for one axis: (before, after), the extra pixel after."""
    eff = (k - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


def resolve_padding(padding, hw, kernel, strides, dilation=(1, 1)):
    """Keras padding name -> ((top, bottom), (left, right))."""
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        return tuple(same_padding(s, k, st, d) for s, k, st, d in zip(hw, kernel, strides, dilation))
    if padding == "causal":  # Conv1D: all padding on the left (the time axis is W here)
        return (0, 0), ((kernel[1] - 1) * dilation[1], 0)
    raise InputError(f"unknown padding {padding!r}: use 'valid' or 'same'")


def _pad(x, pads, value=0.0):
    (t, b), (l, r) = pads
    if t == b == l == r == 0:
        return x
    return np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), constant_values=value)


def _out_hw(hp, wp, kernel, strides, dilation):
    return tuple((s - ((k - 1) * d + 1)) // st + 1 for s, k, st, d in zip((hp, wp), kernel, strides, dilation))


def windows(xpad, kernel, strides, dilation, out_hw):
    """The ``(N, oh, ow, kh, kw, C)`` read-only view of every window of ``xpad`` (no copy)."""
    n, _, _, c = xpad.shape
    s0, s1, s2, s3 = xpad.strides
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilation
    return as_strided(xpad, (n, *out_hw, kh, kw, c), (s0, s1 * sh, s2 * sw, s1 * dh, s2 * dw, s3),
                      writeable=False)


def _blocks(n, rows, bytes_per_row):
    """Split (images, output rows) into blocks whose im2col fits MEMORY_BUDGET.

    Yields (n0, n1, r0, r1); a block spans several images only when it spans all their rows,
    so ``out[n0:n1, r0:r1]`` is always contiguous.
    """
    if n * rows * bytes_per_row <= MEMORY_BUDGET:
        yield 0, n, 0, rows
        return
    step = max(1, MEMORY_BUDGET // max(bytes_per_row, 1))
    for i in range(n):
        for r in range(0, rows, step):
            yield i, i + 1, r, min(rows, r + step)


def _group_kernel(w, groups):
    """(kh, kw, cin/G, cout) -> (G, kh*kw*cin/G, cout/G): one weight matrix per channel group."""
    kh, kw, cin_g, cout = w.shape
    return w.reshape(kh * kw * cin_g, groups, cout // groups).transpose(1, 0, 2)


def conv2d(x, w, b=None, strides=(1, 1), pads=((0, 0), (0, 0)), dilation=(1, 1), groups=1):
    """Convolution forward.

    x: (N, H, W, Cin); w: (kh, kw, Cin/groups, Cout); b: (Cout,) or None -> (N, oh, ow, Cout).
    """
    n, _, _, cin = x.shape
    kh, kw, cin_g, cout = w.shape
    if cin_g * groups != cin:
        raise InputError(f"the kernel {w.shape} with groups={groups} expects {cin_g * groups} input channels, "
                         f"got {cin} (input shape {x.shape})")
    xpad = _pad(x, pads)
    oh, ow = _out_hw(xpad.shape[1], xpad.shape[2], (kh, kw), strides, dilation)
    if oh <= 0 or ow <= 0:
        raise InputError(f"the input {x.shape[1:3]} (padded {xpad.shape[1:3]}) is smaller than the kernel "
                         f"{(kh, kw)} with dilation {dilation}")
    out = np.empty((n, oh, ow, cout), dtype=np.result_type(x.dtype, w.dtype))
    if kh == kw == 1 and strides == (1, 1) and groups == 1:  # 1x1: a plain matmul, no copy
        np.matmul(xpad.reshape(-1, cin), w.reshape(cin, cout), out=out.reshape(-1, cout))
    else:
        win = windows(xpad, (kh, kw), strides, dilation, (oh, ow))
        wmat = _group_kernel(w, groups)
        k = kh * kw * cin
        for n0, n1, r0, r1 in _blocks(n, oh, ow * k * x.itemsize):
            cols = win[n0:n1, r0:r1].reshape(-1, k)
            dest = out[n0:n1, r0:r1].reshape(-1, cout)
            if groups == 1:
                np.matmul(cols, wmat[0], out=dest)
            else:  # (G, M, taps*cin_g) @ (G, taps*cin_g, cout_g) -> (M, G*cout_g)
                res = np.matmul(_cols_by_group(cols, groups, kh * kw), wmat)
                dest[...] = res.transpose(1, 0, 2).reshape(dest.shape)
    if b is not None:
        out += b
    return out


def _cols_by_group(cols, groups, taps):
    """Columns (M, taps*cin) with cin ordered (group, cin_g) -> (G, M, taps*cin_g)."""
    m = cols.shape[0]
    return cols.reshape(m, taps, groups, -1).transpose(2, 0, 1, 3).reshape(groups, m, -1)


def _cols_from_groups(gcols, groups, taps):
    """Inverse of :func:`_cols_by_group`: (G, M, taps*cin_g) -> (M, taps*cin)."""
    m = gcols.shape[1]
    return gcols.reshape(groups, m, taps, -1).transpose(1, 2, 0, 3).reshape(m, -1)


def flip_kernel(w, groups=1):
    """The kernel of the transposed correlation: spatially flipped, in/out channels swapped per group.

    (kh, kw, cin/G, cout) -> (kh, kw, cout/G, cin)
    """
    kh, kw, cin_g, cout = w.shape
    wf = w[::-1, ::-1].reshape(kh, kw, cin_g, groups, cout // groups)
    return np.ascontiguousarray(wf.transpose(0, 1, 4, 3, 2).reshape(kh, kw, cout // groups, groups * cin_g))


def conv2d_input_grad(dout, w, x_shape, strides=(1, 1), pads=((0, 0), (0, 0)), dilation=(1, 1), groups=1):
    """dx of :func:`conv2d`: dout (N, oh, ow, Cout) -> (N, H, W, Cin) with x_shape = (N, H, W, Cin)."""
    n, h, wd, cin = x_shape
    kh, kw, cin_g, cout = w.shape
    (pt, pb), (pl, pr) = pads
    (dh, dw), (sh, sw) = dilation, strides
    oh, ow = dout.shape[1:3]
    hp, wp = h + pt + pb, wd + pl + pr
    if strides == (1, 1):
        # dx_pad[p] = sum_a dout[p - a*d] w[a]: a stride-1 correlation of the zero-padded dout with the
        # flipped kernel; padding dout by (k-1)*d - pad lands directly on the unpadded dx.
        before = ((kh - 1) * dh - pt, (kw - 1) * dw - pl)
        bot = h + (kh - 1) * dh - before[0] - oh  # padding below so that the output has h rows
        rgt = wd + (kw - 1) * dw - before[1] - ow
        if min(before) >= 0 and bot >= 0 and rgt >= 0:
            return conv2d(dout, flip_kernel(w, groups), None, (1, 1), ((before[0], bot), (before[1], rgt)),
                          dilation, groups)
    # General case (strides, or paddings larger than the kernel): col2im offset by offset.
    dxpad = np.zeros((n, hp, wp, cin), dtype=dout.dtype)
    wmat = _group_kernel(w, groups)  # (G, taps*cin_g, cout_g)
    taps = kh * kw
    for n0, n1, r0, r1 in _blocks(n, oh, ow * taps * cin * dout.itemsize):
        d = dout[n0:n1, r0:r1].reshape(-1, cout)
        if groups == 1:
            dcols = d @ wmat[0].T
        else:
            dg = d.reshape(d.shape[0], groups, -1).transpose(1, 0, 2)
            dcols = _cols_from_groups(np.matmul(dg, wmat.transpose(0, 2, 1)), groups, taps)
        dcols = dcols.reshape(n1 - n0, r1 - r0, ow, kh, kw, cin)
        for a in range(kh):
            for b in range(kw):
                y0, x0 = a * dh + r0 * sh, b * dw
                dxpad[n0:n1, y0:y0 + (r1 - r0 - 1) * sh + 1:sh, x0:x0 + (ow - 1) * sw + 1:sw] += dcols[:, :, :, a, b]
    return dxpad[:, pt:pt + h, pl:pl + wd]


def conv2d_weight_grad(x, dout, w_shape, strides=(1, 1), pads=((0, 0), (0, 0)), dilation=(1, 1), groups=1):
    """dw of :func:`conv2d`: x (N, H, W, Cin), dout (N, oh, ow, Cout) -> (kh, kw, Cin/groups, Cout)."""
    kh, kw, cin_g, cout = w_shape
    n, _, _, cin = x.shape
    oh, ow = dout.shape[1:3]
    if kh == kw == 1 and strides == (1, 1) and groups == 1 and pads == ((0, 0), (0, 0)):
        return (x.reshape(-1, cin).T @ dout.reshape(-1, cout)).reshape(w_shape)
    win = windows(_pad(x, pads), (kh, kw), strides, dilation, (oh, ow))
    k, taps = kh * kw * cin, kh * kw
    dw = np.zeros((groups, taps * cin_g, cout // groups), dtype=np.result_type(x.dtype, dout.dtype))
    for n0, n1, r0, r1 in _blocks(n, oh, ow * k * x.itemsize):
        cols = win[n0:n1, r0:r1].reshape(-1, k)
        d = dout[n0:n1, r0:r1].reshape(-1, cout)
        if groups == 1:
            dw[0] += cols.T @ d
        else:
            dg = d.reshape(d.shape[0], groups, -1).transpose(1, 0, 2)
            dw += np.matmul(_cols_by_group(cols, groups, taps).transpose(0, 2, 1), dg)
    return dw.transpose(1, 0, 2).reshape(w_shape)


# ---------------------------------------------------------------- depthwise
def depthwise_conv2d(x, w, strides=(1, 1), pads=((0, 0), (0, 0)), dilation=(1, 1)):
    """Depthwise forward: each input channel convolved with its own ``multiplier`` kernels.

    x: (N, H, W, C); w: (kh, kw, C, m) -> (N, oh, ow, C*m), output channel c*m + j.
    Vectorised over channels; the only loop is over the kh*kw kernel taps.
    """
    n, _, _, c = x.shape
    kh, kw, cw, m = w.shape
    if cw != c:
        raise InputError(f"the depthwise kernel {w.shape} expects {cw} input channels, got {c} (input {x.shape})")
    xpad = _pad(x, pads)
    oh, ow = _out_hw(xpad.shape[1], xpad.shape[2], (kh, kw), strides, dilation)
    win = windows(xpad, (kh, kw), strides, dilation, (oh, ow))
    out = np.zeros((n, oh, ow, c, m), dtype=np.result_type(x.dtype, w.dtype))
    for a in range(kh):
        for b in range(kw):
            out += win[:, :, :, a, b, :, None] * w[a, b]
    return out.reshape(n, oh, ow, c * m)


def depthwise_input_grad(dout, w, x_shape, strides=(1, 1), pads=((0, 0), (0, 0)), dilation=(1, 1)):
    """dx of :func:`depthwise_conv2d`: dout (N, oh, ow, C*m) -> (N, H, W, C)."""
    n, h, wd, c = x_shape
    kh, kw, _, m = w.shape
    (pt, pb), (pl, pr) = pads
    oh, ow = dout.shape[1:3]
    d5 = dout.reshape(n, oh, ow, c, m)
    dxpad = np.zeros((n, h + pt + pb, wd + pl + pr, c), dtype=dout.dtype)
    (sh, sw), (dh, dw) = strides, dilation
    for a in range(kh):
        for b in range(kw):
            y0, x0 = a * dh, b * dw
            dxpad[:, y0:y0 + (oh - 1) * sh + 1:sh, x0:x0 + (ow - 1) * sw + 1:sw] += (d5 * w[a, b]).sum(-1)
    return dxpad[:, pt:pt + h, pl:pl + wd]


def depthwise_weight_grad(x, dout, w_shape, strides=(1, 1), pads=((0, 0), (0, 0)), dilation=(1, 1)):
    """dw of :func:`depthwise_conv2d`: (kh, kw, C, m)."""
    kh, kw, c, m = w_shape
    n, oh, ow, _ = dout.shape
    win = windows(_pad(x, pads), (kh, kw), strides, dilation, (oh, ow))
    d5 = dout.reshape(n * oh * ow, c, m)
    dw = np.empty(w_shape, dtype=dout.dtype)
    for a in range(kh):
        for b in range(kw):
            dw[a, b] = np.einsum("pc,pcm->cm", win[:, :, :, a, b].reshape(-1, c), d5)
    return dw


# ---------------------------------------------------------------- pooling
def pool2d(x, pool, strides, pads, mode):
    """Max or average pooling over windows. x: (N, H, W, C) -> (N, oh, ow, C).

    Padding never wins a max (it is -inf) and never counts in an average (Keras's 'same' semantics).
    """
    xpad = _pad(x, pads, -np.inf if mode == "max" else 0.0)
    oh, ow = _out_hw(xpad.shape[1], xpad.shape[2], pool, strides, (1, 1))
    if oh <= 0 or ow <= 0:
        raise InputError(f"the input {x.shape[1:3]} is smaller than the pooling window {pool}")
    win = windows(xpad, pool, strides, (1, 1), (oh, ow))
    if mode == "max":
        return win.max(axis=(3, 4))
    return win.sum(axis=(3, 4)) / window_counts(x.shape[1:3], pool, strides, pads).astype(x.dtype)


def window_counts(hw, pool, strides, pads):
    """How many real (unpadded) pixels each pooling window covers: (oh, ow, 1)."""
    ones = np.ones((1, *hw, 1), dtype=np.float64)
    onespad = _pad(ones, pads)
    oh, ow = _out_hw(onespad.shape[1], onespad.shape[2], pool, strides, (1, 1))
    return windows(onespad, pool, strides, (1, 1), (oh, ow)).sum(axis=(3, 4))[0]


def pool2d_backward(dout, x, out, pool, strides, pads, mode):
    """dx of :func:`pool2d`. Max routes each window's gradient to its first maximum (as TensorFlow)."""
    n, h, wd, c = x.shape
    (pt, pb), (pl, pr) = pads
    oh, ow = dout.shape[1:3]
    (sh, sw) = strides
    dxpad = np.zeros((n, h + pt + pb, wd + pl + pr, c), dtype=dout.dtype)
    if mode == "max":
        win = windows(_pad(x, pads, -np.inf), pool, strides, (1, 1), (oh, ow))
        taken = np.zeros(dout.shape, dtype=bool)
    else:
        dout = dout / window_counts((h, wd), pool, strides, pads).astype(dout.dtype)
    for a in range(pool[0]):
        for b in range(pool[1]):
            sl = (slice(None), slice(a, a + (oh - 1) * sh + 1, sh), slice(b, b + (ow - 1) * sw + 1, sw))
            if mode == "max":
                hit = (win[:, :, :, a, b] == out) & ~taken
                taken |= hit
                dxpad[sl] += np.where(hit, dout, 0)
            else:
                dxpad[sl] += dout
    return dxpad[:, pt:pt + h, pl:pl + wd]
