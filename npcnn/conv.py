"""The convolution core: im2col through strided views, one GEMM per chunk, Winograd for 3×3, the backward passes.

Layout: NHWC activations, Keras kernels ``(kh, kw, cin/groups, cout)`` and depthwise kernels
``(kh, kw, cin, multiplier)``. Every routine takes explicit paddings ``((top, bottom), (left, right))``;
:func:`resolve_padding` turns Keras's ``"same"``/``"valid"`` into them (TensorFlow's rule: the odd
pixel of a "same" padding goes at the bottom/right).

Forward (cross-correlation, as every framework computes it)::

    out[n, i, j, o] = sum_{a, b, c} xpad[n, i*sh + a*dh, j*sw + b*dw, c] * w[a, b, c, o]

im2col turns the sum into a matrix product: the windows of ``xpad`` seen as a ``(N*oh*ow, kh*kw*cin)``
matrix (a strided *view*, copied one block of output rows at a time into a reused workspace, so memory
stays within ``MEMORY_BUDGET`` and no large buffer is allocated per call) times ``w.reshape(kh*kw*cin, cout)``.
Padding is never materialised for the whole image: each block copies only the rows it reads.

Fast paths (each checked against the plain im2col path in tests/test_conv_core.py):
  1×1, stride 1        a plain matmul, no copy at all
  3×3, stride 1        Winograd F(2×2, 3×3) or F(4×4, 3×3) where it pays (see WINOGRAD): 16 (36) GEMMs of
                       (tiles, cin) @ (cin, cout) instead of one with 9*cin columns, 2.25× (4×) fewer
                       multiplies; split over the cores on npcnn's own threads, each GEMM on one BLAS
                       thread (npcnn.blas)
  1-3 input channels   (an image's first layer) tap-major im2col from channel planes in cache-sized blocks,
                       the bias added by the GEMM (a row of ones under the im2col), see :func:`_planar_rows`

Epilogue: a layer's activation can be handed to the forward (``epilogue=``); it runs on each finished
block of the output, on the thread that made it, while the block is still in cache.

Backward::

    dw = cols.T @ dout                                  (accumulated block by block)
    dx = stride 1, cin >= cout (or Winograd):  conv(pad(dout), flip(w) with cin/cout swapped) -- itself a
                    convolution, so the forward's fast paths serve it too
         otherwise: dcols = dout @ w.T, then added back window offset by window offset (col2im: a loop
                    over the kh*kw taps, each a vectorised strided add, never a scatter over pixels);
                    it copies taps*cin numbers per pixel where the flipped convolution copies taps*cout;
                    into an image's 1-3 channels on channel planes; one part per core (:func:`_col2im`)

Threads: every layer is split into one part per core (output rows, images, or output channels), each part
run start to end (copies, GEMMs, transforms) on its own thread with NumPy's BLAS limited to one thread
(:mod:`npcnn.blas`): one hand-off per layer, every core busy for the copies too, and none of OpenBLAS's
spinning worker threads competing for the cores. OPENBLAS_NUM_THREADS=1 makes npcnn single-threaded.

Transformed kernels (flipped, Winograd) are cached per kernel array and recomputed when the array's
contents change (compared exactly with a kept copy, see :func:`_derived`).
"""
import os
import threading
import weakref

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import blas
from .blas import matmul, parallel, parallel_chunks
from .errors import InputError

MEMORY_BUDGET = 32 << 20
"""Bytes the im2col (or Winograd) blocks of one layer may take at once (split between the parts running
in parallel); output rows are processed in blocks that fit."""

_ONE_BLAS_THREAD = (os.cpu_count() == 1 or
                    os.environ.get("OPENBLAS_NUM_THREADS", os.environ.get("OMP_NUM_THREADS")) == "1")
WINOGRAD = "auto"
"""Winograd for 3×3 stride-1 convolutions: "auto" (where it was measured to pay, :func:`winograd_pays`,
with the tile WINOGRAD_AUTO_TILE), 2 or 4 (F(2×2, 3×3) or F(4×4, 3×3) on every such layer; True means 2),
False (never: the plain im2col path)."""
WINOGRAD_AUTO_TILE = 4
"""The tile "auto" uses. F(4×4) took 0.56-0.94x the time of F(2×2) wherever the rule below picks Winograd
(square layers of 32-512 channels, 20x20 to 224x224, 2 cores); its float32 error is larger: up to ~5e-6 of
a layer's largest output against float64 for random weights (F(2×2) ~5e-7, im2col ~4e-7), because its
output transform scales the rounding of the GEMM's sums by up to 8. Set 2 for the smaller error."""
WINOGRAD_MIN_CHANNELS = 32
WINOGRAD_MIN_SIDE = 8
WINOGRAD_MIN_WORK = 1 << 17
"""The "auto" rule (2 cores, interleaved medians over a grid of square layers, cin = cout = 32-512 at
14x14-112x112, and VGG16's layers): Winograd where the narrower of cin and cout is >= 32, each image's
output is at least 8x8 (two whole 4x4 tiles a side: 7x7x32->64 at batch 128 was 1.22x slower) and output
pixels (all images of the batch) x that width >= 2^17. F(4×4) then took 0.5-0.8x the time of im2col (56x56x64
0.51, 28x28x512 0.58; one even: 37x37x128); below the rule it was even or slower (37x37x64 1.11x, 14x14x512
1.09x, 28x28x32 2.5x: too few tiles to pay for the transforms and for reading the 36 transformed kernels)."""

PLANAR_MAX_CHANNELS = 3
"""Inputs with at most this many channels (a grey or RGB image) are handled as channel planes: im2col
copies whole rows of a plane (2x faster than copying kw*C numbers at a time for an RGB image, 2.4x for a
grey one) and their input gradients accumulate plane by plane (1.15-1.3x faster)."""

_local = threading.local()  # per-thread workspaces


def pair(v, name="value"):
    """An int or a pair -> a 2-tuple of ints (Keras accepts both for sizes, strides and rates)."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return (int(v), int(v))
    if not isinstance(v, (list, tuple)) or len(v) != 2 or not all(
            isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in v):
        raise InputError(f"{name} must be an int or a pair of ints, got {v!r}")
    return tuple(int(t) for t in v)


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


# ---------------------------------------------------------------- buffers and padding
def _workspace(name, shape, dtype):
    """A scratch array of ``shape`` (contents undefined), reused between calls (per thread, per name).

    Fresh 100 MB buffers cost page faults on every call; reusing one keeps timings stable. Buffers
    larger than 4 * MEMORY_BUDGET are not kept (they are one-offs, e.g. a huge image's padding).
    """
    dtype = np.dtype(dtype)
    size = int(np.prod(shape))
    pool = _local.__dict__.setdefault("buffers", {})
    buf = pool.get((name, dtype))
    if buf is None or buf.size < size:
        if size * dtype.itemsize > 4 * MEMORY_BUDGET:
            return np.empty(shape, dtype)
        buf = pool[(name, dtype)] = np.empty(size, dtype)
    return buf[:size].reshape(shape)


def _place(dst, src, row_at, col_at, value=0.0):
    """Fill dst (N, R, W, C) with src (N, h, w, C) placed with its first row and column at (row_at, col_at)
    (either may be negative or beyond dst: only the overlap is copied) and ``value`` everywhere else."""
    rows, width = dst.shape[1:3]
    s0, s1 = max(0, -row_at), min(src.shape[1], rows - row_at)  # rows and columns of src inside dst
    t0, t1 = max(0, -col_at), min(src.shape[2], width - col_at)
    if s1 <= s0 or t1 <= t0:
        dst[...] = value
        return dst
    d0, d1, c0, c1 = s0 + row_at, s1 + row_at, t0 + col_at, t1 + col_at
    dst[:, :d0] = value
    dst[:, d1:] = value
    dst[:, d0:d1, :c0] = value
    dst[:, d0:d1, c1:] = value
    dst[:, d0:d1, c0:c1] = src[:, s0:s1, t0:t1]
    return dst


def _padded_rows(x, top, left, r0, r1, width, value=0.0, name="pad"):
    """Rows r0:r1 and columns 0:width of x placed at (top, left) on an infinite plane of ``value``.

    x: (N, H, W, C) -> (N, r1-r0, width, C): a view of x when no padding falls inside, otherwise a
    workspace copy of just those rows (the whole padded image is never built).
    """
    n, h, w, c = x.shape
    if left == 0 and width <= w and r0 >= top and r1 - top <= h:
        return x[:, r0 - top:r1 - top, :width]
    return _place(_workspace(name, (n, r1 - r0, width, c), x.dtype), x, top - r0, left, value)


def _pad(x, pads, value=0.0):
    """The whole padded image (N, H+pt+pb, W+pl+pr, C) (a workspace copy; x itself when no padding)."""
    (t, b), (l, r) = pads
    return _padded_rows(x, t, l, 0, x.shape[1] + t + b, x.shape[2] + l + r, value)


def _out_hw(hp, wp, kernel, strides, dilation):
    return tuple((s - ((k - 1) * d + 1)) // st + 1 for s, k, st, d in zip((hp, wp), kernel, strides, dilation))


def windows(xpad, kernel, strides, dilation, out_hw):
    """The ``(N, oh, ow, kh, kw, C)`` read-only view of every window of ``xpad`` (no copy)."""
    n, _, _, c = xpad.shape
    s0, s1, s2, s3 = xpad.strides
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilation
    return as_strided(xpad, (n, *out_hw, kh, kw, c), (s0, s1 * sh, s2 * sw, s1 * dh, s2 * dw, s3),
                      writeable=False)


def _blocks(n, rows, bytes_per_row, budget=None, first=0):
    """Split (images, output rows first:rows) into blocks whose im2col fits ``budget`` (MEMORY_BUDGET).

    Yields (n0, n1, r0, r1); a block spans several images only when it spans all their rows,
    so ``out[n0:n1, r0:r1]`` is always contiguous.
    """
    budget = MEMORY_BUDGET if budget is None else budget
    per_image = (rows - first) * bytes_per_row
    if first == 0 and per_image <= budget:
        step = max(1, budget // max(per_image, 1))
        for i in range(0, n, step):
            yield i, min(n, i + step), 0, rows
        return
    step = max(1, budget // max(bytes_per_row, 1))
    for i in range(n):
        for r in range(first, rows, step):
            yield i, i + 1, r, min(rows, r + step)


def _im2col(x, r0, r1, ow, kernel, strides, pads, dilation, name="cols"):
    """The im2col rows of output rows r0:r1: x (N, H, W, C) -> (N*(r1-r0)*ow, kh*kw*C), a workspace copy
    (a new array when ``name`` is None: the caller keeps it); Fortran-ordered when C <= PLANAR_MAX_CHANNELS."""
    n, c = x.shape[0], x.shape[3]
    taps = kernel[0] * kernel[1] * c
    if c <= PLANAR_MAX_CHANNELS:
        # An image's 1-3 channels: copy tap-major from channel planes, (kh, kw, C, N, rows, ow), so each copy
        # moves whole output rows (the pixel-major copy moves kw*C numbers at a time, 2x slower for an RGB
        # image, 2.4x for a grey one); the matrix is then the transposed view of (taps, M), which the BLAS
        # reads as it is.
        src = _plane_windows(_planes(x, pads, r0, r1, ow, kernel, strides, dilation), kernel, strides, dilation,
                             r1 - r0, ow)
        axis = 3 if n > 1 else 4  # split the copy over images, else over output rows
    else:
        (pt, _), (pl, _) = pads
        a0, a1, width = _reads(r0, r1, ow, kernel, strides, dilation)
        src = windows(_padded_rows(x, pt, pl, a0, a1, width), kernel, strides, dilation, (r1 - r0, ow))
        axis = 0 if n > 1 else 1
    cols = np.empty(src.shape, x.dtype) if name is None else _workspace(name, src.shape, x.dtype)
    part = lambda i0, i1: (slice(None),) * axis + (slice(i0, i1),)
    parallel(lambda i0, i1: np.copyto(cols[part(i0, i1)], src[part(i0, i1)]), src.shape[axis], cols.nbytes)
    return cols.reshape(taps, -1).T if c <= PLANAR_MAX_CHANNELS else cols.reshape(-1, taps)


def _reads(r0, r1, ow, kernel, strides, dilation):
    """(a0, a1, width): output rows r0:r1 (ow wide) read padded input rows a0:a1, columns 0:width."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilation
    return r0 * sh, (r1 - 1) * sh + (kh - 1) * dh + 1, (ow - 1) * sw + (kw - 1) * dw + 1


def _planes(x, pads, r0, r1, ow, kernel, strides, dilation):
    """The padded input rows that output rows r0:r1 read, as channel planes: x (N, H, W, C) ->
    (C, N, rows, width), a workspace copy."""
    (pt, _), (pl, _) = pads
    a0, a1, width = _reads(r0, r1, ow, kernel, strides, dilation)
    n, _, _, c = x.shape
    planes = _workspace("planes", (c, n, a1 - a0, width), x.dtype)
    _place(planes.transpose(1, 2, 3, 0), x, pt - a0, pl)  # the padding and the transpose in one copy
    return planes


def _plane_windows(planes, kernel, strides, dilation, rows, ow, r0=0):
    """The read-only view (kh, kw, C, N, rows, ow) of planes (C, N, R, width): [a, b, c, n, i, j] =
    planes[c, n, (r0 + i)*sh + a*dh, j*sw + b*dw], every tap's output rows as whole rows."""
    (sh, sw), (dh, dw) = strides, dilation
    c, n = planes.shape[:2]
    sc, sn, sr, sx = planes.strides
    return as_strided(planes[:, :, r0 * sh:], (*kernel, c, n, rows, ow), (sr * dh, sx * dw, sc, sn, sr * sh, sx * sw),
                      writeable=False)


# ---------------------------------------------------------------- cached kernel transforms
_derived_cache = {}


def _derived(w, tag, make):
    """``make()``, a transform of the kernel ``w`` (flip, Winograd) named by ``tag``, cached while w is
    unchanged.

    "Unchanged" is checked exactly against one copy of w kept for all its transforms (one vectorised
    compare, 0.5 ms for VGG16's largest kernel), so an in-place edit of the weights can never reuse a stale
    transform.
    """
    entry = _derived_cache.get(id(w))
    if entry is None or entry[0]() is not w or entry[1].shape != w.shape or entry[1].dtype != w.dtype \
            or not np.array_equal(entry[1], w):
        ref = weakref.ref(w, lambda _, k=id(w), cache=_derived_cache: cache.pop(k, None))
        entry = _derived_cache[id(w)] = (ref, w.copy(), {})
    values = entry[2]
    if tag not in values:
        values[tag] = make()
    return values[tag]


def clear_cache():
    """Forget every cached kernel transform and workspace buffer (frees their memory)."""
    _derived_cache.clear()
    _local.__dict__.pop("buffers", None)


# ---------------------------------------------------------------- convolution forward
def _group_kernel(w, groups):
    """(kh, kw, cin/G, cout) -> (G, kh*kw*cin/G, cout/G): one weight matrix per channel group."""
    kh, kw, cin_g, cout = w.shape
    return w.reshape(kh * kw * cin_g, groups, cout // groups).transpose(1, 0, 2)


def _cols_by_group(cols, groups, taps):
    """Columns (M, taps*cin) with cin ordered (group, cin_g) -> (G, M, taps*cin_g)."""
    m = cols.shape[0]
    return cols.reshape(m, taps, groups, -1).transpose(2, 0, 1, 3).reshape(groups, m, -1)


def conv2d(x, w, b=None, strides=(1, 1), pads=((0, 0), (0, 0)), dilation=(1, 1), groups=1, epilogue=None):
    """Convolution forward.

    x: (N, H, W, Cin); w: (kh, kw, Cin/groups, Cout); b: (Cout,) or None -> (N, oh, ow, Cout).
    ``epilogue``: a function applied in place to each finished block of the output (rows, all channels:
    the layer's activation), on the thread that made it, while it is still in cache.
    """
    return _conv2d(x, w, b, tuple(strides), pads, tuple(dilation), groups, source=(w, False), epilogue=epilogue)


def conv2d_keep_cols(x, w, b=None, strides=(1, 1), pads=((0, 0), (0, 0)), dilation=(1, 1), groups=1,
                     epilogue=None):
    """:func:`conv2d` for training: also returns the im2col matrix (N*oh*ow, kh*kw*Cin) when the plain
    im2col path runs in one block (it fits MEMORY_BUDGET), else None. :func:`conv2d_weight_grad` takes it
    back as ``cols=`` so the backward does not rebuild the same matrix (dw = cols.T @ dout).
    """
    strides, dilation = tuple(strides), tuple(dilation)
    kh, kw, _, cout = w.shape
    n, h, wd, cin = x.shape
    (pt, pb), (pl, pr) = pads
    oh, ow = _out_hw(h + pt + pb, wd + pl + pr, (kh, kw), strides, dilation)
    # where its matrix fits, im2col even where Winograd would be faster forward: the weight gradient needs
    # that matrix anyway (Fashion-MNIST training, 7x7x32->64 at batch 128: Winograd made an epoch 1.07x slower)
    fits = n * oh * ow * kh * kw * cin * x.itemsize <= MEMORY_BUDGET
    if groups != 1 or kh * kw == 1 or oh <= 0 or ow <= 0 or not fits:
        return conv2d(x, w, b, strides, pads, dilation, groups, epilogue), None
    dtype = np.result_type(x.dtype, w.dtype)
    x = x.astype(dtype, copy=False)
    cols = _im2col(x, 0, oh, ow, (kh, kw), strides, pads, dilation, name=None)
    out = matmul(cols, w.astype(dtype, copy=False).reshape(-1, cout)).reshape(n, oh, ow, cout)
    _finish(out, b, epilogue)
    return out, cols


def _conv2d(x, w, b, strides, pads, dilation, groups, source, epilogue=None):
    """:func:`conv2d`; ``source`` = (layer kernel, flipped?) names the kernel for the transform cache."""
    n, h, wd, cin = x.shape
    kh, kw, cin_g, cout = w.shape
    if cin_g * groups != cin:
        raise InputError(f"the kernel {w.shape} with groups={groups} expects {cin_g * groups} input channels, "
                         f"got {cin} (input shape {x.shape})")
    (pt, pb), (pl, pr) = pads
    oh, ow = _out_hw(h + pt + pb, wd + pl + pr, (kh, kw), strides, dilation)
    if oh <= 0 or ow <= 0:
        raise InputError(f"the input {x.shape[1:3]} (padded {(h + pt + pb, wd + pl + pr)}) is smaller than the "
                         f"kernel {(kh, kw)} with dilation {dilation}")
    dtype = np.result_type(x.dtype, w.dtype)
    x, w = x.astype(dtype, copy=False), w.astype(dtype, copy=False)
    out = np.empty((n, oh, ow, cout), dtype=dtype)
    if kh == kw == 1 and strides == (1, 1) and groups == 1 and pads == ((0, 0), (0, 0)):
        matmul(x.reshape(-1, cin), w.reshape(cin, cout), out=out.reshape(-1, cout))  # 1x1: no copy
        _finish(out, b, epilogue)
    elif (m := use_winograd(w.shape, strides, dilation, groups, (n, oh, ow))):
        base, flipped = source  # the layer's kernel: transforms are cached on it (w may be a placeholder)
        u = _derived(base, ("winograd", m, flipped, dtype.str),
                     lambda: winograd_kernel((flip_kernel(base, groups) if flipped else base).astype(dtype), m))
        _winograd_conv(x, u, b, pads, out, epilogue, m)
    else:
        _im2col_conv(x, w, b, strides, pads, dilation, groups, out, epilogue)
    return out


def _finish_block(block, b, epilogue):
    """block (N, rows, ow, C), rows of an NHWC output: += b, then the epilogue, in place. The bias goes in a
    whole row (b repeated ow times) per step: NumPy adding b (C,) to each pixel in turn loops over C numbers
    at a time, 3-4x slower for C = 16."""
    if b is not None:
        n, rows, ow, c = block.shape
        block.reshape(n, rows, ow * c)[...] += np.tile(b, ow)
    if epilogue is not None:
        epilogue(block)


def _finish(out, b, epilogue):
    """out += b, then the epilogue, over a whole output (N, oh, ow, Cout) in blocks of rows on every core."""
    if b is not None or epilogue is not None:
        parallel_chunks(lambda r0, r1: _finish_block(out[:, r0:r1], b, epilogue), out.shape[1], out.nbytes)


def _im2col_conv(x, w, b, strides, pads, dilation, groups, out, epilogue=None):
    """The plain path: out (N, oh, ow, Cout) = im2col(x) @ w, one GEMM per block of output rows.

    Split into one part per core (images when there are as many, else output rows), each part run start
    to end (its im2col copies and GEMMs, one BLAS thread each) on its own thread: one hand-off per layer,
    and each block's GEMM reads the columns its own thread has just copied. Where the output has fewer
    pixels than channels (14x14x512) each part would pack the whole kernel matrix, larger than its share
    of the columns: there the im2col matrix is built once and the GEMM split by output channels
    (14x14x512 0.90x, 7x7x512 0.82x the time, interleaved)."""
    n, oh, ow, cout = out.shape
    parts = blas.gemm_parts()
    budget = MEMORY_BUDGET // parts
    pixels, k = n * oh * ow, w[..., 0].size
    parts = min(parts, blas._parts(pixels * k * cout, blas.SMALL_PRODUCT))  # one per SMALL_PRODUCT multiply-adds
    if parts > 1 and groups == 1 and pixels < cout and pixels * k * x.itemsize <= MEMORY_BUDGET:
        cols = _im2col(x, 0, oh, ow, w.shape[:2], strides, pads, dilation)
        matmul(cols, w.reshape(k, cout), out=out.reshape(pixels, cout))
        _finish(out, b, epilogue)
        return
    if n >= parts:  # whole images per part
        def run(n0, n1):
            _im2col_rows(x[n0:n1], w, b, strides, pads, dilation, groups, out[n0:n1], 0, budget, epilogue)
        count = n
    else:  # output rows per part, image by image (some rows of several images are not one block)
        def run(r0, r1):
            for i in range(n):
                _im2col_rows(x[i:i + 1], w, b, strides, pads, dilation, groups, out[i:i + 1, :r1], r0, budget,
                             epilogue)
        count = oh
    with blas.limited(1):
        parallel(run, count, parts=parts)


def _im2col_rows(x, w, b, strides, pads, dilation, groups, out, first, budget, epilogue=None):
    """:func:`_im2col_conv` for the output rows first: of ``out``, in blocks that fit ``budget``."""
    n, _, _, cin = x.shape
    kh, kw, _, cout = w.shape
    if groups == 1 and cin <= PLANAR_MAX_CHANNELS:
        return _planar_rows(x, w, b, strides, pads, dilation, out, first, epilogue)
    ow = out.shape[2]
    wmat = _group_kernel(w, groups)
    k = kh * kw * cin
    for n0, n1, r0, r1 in _blocks(n, out.shape[1], ow * k * x.itemsize, budget, first):
        cols = _im2col(x[n0:n1], r0, r1, ow, (kh, kw), strides, pads, dilation)
        block = out[n0:n1, r0:r1]
        dest = block.reshape(-1, cout)
        if groups == 1:
            blas.gemm(cols, wmat[0], dest)
        else:  # (G, M, taps*cin_g) @ (G, taps*cin_g, cout_g) -> (M, G*cout_g)
            res = np.matmul(_cols_by_group(cols, groups, kh * kw), wmat)
            dest[...] = res.transpose(1, 0, 2).reshape(dest.shape)
        _finish_block(block, b, epilogue)  # while the block is still in cache


PLANAR_BLOCK_BYTES = 1 << 20
"""The im2col block of an image's first layer (:func:`_planar_rows`): small enough that the block, its GEMM's
output and the activation run in cache (224x224x3->64, one thread, interleaved medians: blocks of 0.4 MB
5.1 ms, 0.8 MB 4.9, 1.4 MB 5.0, 2.7 MB 6.1, 5.4 MB 7.2)."""


def _planar_rows(x, w, b, strides, pads, dilation, out, first, epilogue=None):
    """:func:`_im2col_rows` for inputs of 1-3 channels (an image): output rows first: of ``out``.

    The input rows are turned into channel planes once; then, block by block of PLANAR_BLOCK_BYTES, the
    tap-major im2col (taps, M) is copied from them (whole output rows per copy), with a row of ones under
    it when there is a bias: (M, taps + 1) @ [w; b] adds the bias inside the GEMM, and the activation runs
    on the block while it is in cache. (A separate bias pass over a 224x224x64 output took as long as a
    tenth of the layer; a GEMM with K = 27 is bound by writing its output, not by its sums.)
    """
    n, _, _, c = x.shape
    kh, kw, _, cout = w.shape
    rows, ow = out.shape[1:3]
    taps = kh * kw * c
    wmat = w.reshape(taps, cout) if b is None else np.concatenate([w.reshape(taps, cout), b.reshape(1, cout)],
                                                                  dtype=w.dtype)
    planes = _planes(x, pads, first, rows, ow, (kh, kw), strides, dilation)
    for n0, n1, r0, r1 in _blocks(n, rows, ow * len(wmat) * x.itemsize, PLANAR_BLOCK_BYTES, first):
        src = _plane_windows(planes[:, n0:n1], (kh, kw), strides, dilation, r1 - r0, ow, r0 - first)
        cols = _workspace("cols", (len(wmat), (n1 - n0) * (r1 - r0) * ow), x.dtype)
        np.copyto(cols[:taps].reshape(src.shape), src)
        cols[taps:] = 1.0  # the bias's row, when there is one
        block = out[n0:n1, r0:r1]
        blas.gemm(cols.T, wmat, block.reshape(-1, cout))
        _finish_block(block, None, epilogue)


# ---------------------------------------------------------------- Winograd F(mxm, 3x3)
# Lavin & Gray 2015: an m x m output tile of a 3x3 correlation from an a x a input tile d (a = m + 2) is
#   Y = A^T [ (G g G^T) * (B^T d B) ] A      (* elementwise: a^2 multiplies instead of 9 m^2)
# Summed over input channels the elementwise products become a^2 GEMMs (tiles, cin) @ (cin, cout):
# F(2x2) does 16/36 of im2col's multiplications, F(4x4) 36/144. The transforms of d and of the product
# run along one axis, then the other. F(2x2)'s are 2-4 additions per number, written out below as NumPy
# passes; F(4x4)'s are ~10 multiply-adds per number, which as passes would read and write every number ~20
# times: there each stage is one small GEMM, B^T (6x6) @ (6, everything), reading and writing each number
# once (a layer 1.1-1.2x faster; for F(2x2) the GEMM form was 1.3x slower than its passes).
class WinogradTile:
    """One tile size m: the transform matrices and, where they pay, the passes that apply B^T (a slices -> a)
    and A^T (a slices -> m) along one axis (``scratch``: how many arrays shaped like one output slice they
    need). Without passes (``apply_bt`` None) the transforms run as GEMMs with the matrices."""

    def __init__(self, m, bt, g, at, apply_bt=None, apply_at=None, scratch=0):
        self.m, self.a = m, m + 2
        self.BT, self.G, self.AT = np.array(bt, float), np.array(g, float), np.array(at, float)
        self.apply_bt, self.apply_at, self.scratch = apply_bt, apply_at, scratch


def _bt_2x2(d, out, s):
    np.subtract(d[0], d[2], out=out[0])
    np.add(d[1], d[2], out=out[1])
    np.subtract(d[2], d[1], out=out[2])
    np.subtract(d[1], d[3], out=out[3])


def _at_2x2(m, out, s):
    np.add(m[0], m[1], out=out[0])
    out[0] += m[2]
    np.subtract(m[1], m[2], out=out[1])
    out[1] -= m[3]


WINOGRAD_TILES = {
    2: WinogradTile(2, bt=[[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
                    g=[[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
                    at=[[1, 1, 1, 0], [0, 1, -1, -1]], apply_bt=_bt_2x2, apply_at=_at_2x2, scratch=0),
    # interpolation points 0, 1, -1, 1/2, -2 and infinity: measured here, 2-2.5x less float32 error than the
    # usual 0, +-1, +-2 (Barabasz et al. 2020 study such choices); as GEMMs, fractions cost nothing extra
    4: WinogradTile(4, bt=[[2, -3, -4, 3, 2, 0], [0, -2, 1, 5, 2, 0], [0, -2, 5, -1, -2, 0],
                           [0, 2, 1, -2, -1, 0], [0, 1, -2, -1, 2, 0], [0, 2, -3, -4, 3, 2]],
                    g=[[1 / 2, 0, 0], [1 / 6, 1 / 6, 1 / 6], [1 / 6, -1 / 6, 1 / 6],
                       [16 / 15, 8 / 15, 4 / 15], [1 / 30, -1 / 15, 2 / 15], [0, 0, 1 / 2]],
                    at=[[1, 1, 1, 1, 1, 0], [0, 1, -1, 1 / 2, -2, 0], [0, 1, 1, 1 / 4, 4, 0],
                        [0, 1, -1, 1 / 8, -8, 1]]),
}


def winograd_pays(cin, cout, out_shape):
    """The "auto" rule of :data:`WINOGRAD` for a 3×3 stride-1 layer whose output is ``out_shape``
    (N, oh, ow): the tile size where Winograd was measured to pay (WINOGRAD_AUTO_TILE), else 0.

    Off where the BLAS's threads cannot be limited and it runs several (NumPy built on Accelerate or MKL):
    there every one of the small GEMMs per block would pay a thread barrier (3-8x slower when measured).
    """
    n, oh, ow = out_shape
    narrow = min(cin, cout)
    if narrow < WINOGRAD_MIN_CHANNELS or min(oh, ow) < WINOGRAD_MIN_SIDE:
        return 0
    if n * oh * ow * narrow < WINOGRAD_MIN_WORK:
        return 0
    return WINOGRAD_AUTO_TILE if blas.available() or _ONE_BLAS_THREAD else 0


def use_winograd(w_shape, strides, dilation, groups, out_shape):
    """The Winograd tile size :func:`conv2d` uses for this kernel shape, geometry and output shape (N, oh, ow):
    2 or 4 (F(2×2, 3×3) or F(4×4, 3×3)), or 0 (the im2col path)."""
    kh, kw, cin_g, cout = w_shape
    if (kh, kw) != (3, 3) or tuple(strides) != (1, 1) or tuple(dilation) != (1, 1) or groups != 1 or not WINOGRAD:
        return 0
    if WINOGRAD == "auto":
        return winograd_pays(cin_g, cout, out_shape)
    return 2 if WINOGRAD is True else int(WINOGRAD)


def winograd_kernel(w, m=2):
    """U = G g G^T for every (cin, cout): (3, 3, Cin, Cout) -> (a*a, Cin, Cout), a = m + 2. Computed in
    float64 (G holds sixths and 24ths), a few output channels at a time so the float64 temporaries stay
    small (a whole 512x512 kernel's would take 150 MB)."""
    g = WINOGRAD_TILES[m].G
    cin, cout = w.shape[2:]
    u = np.empty((len(g) ** 2, cin, cout), w.dtype)
    step = max(1, (1 << 20) // max(cin, 1))
    for c0 in range(0, cout, step):
        part = np.einsum("ia,jb,abco->ijco", g, g, w[..., c0:c0 + step].astype(np.float64))
        u[..., c0:c0 + step] = part.reshape(len(g) ** 2, cin, -1)
    return u


def _winograd_conv(x, u, b, pads, out, epilogue=None, m=2):
    """3x3 stride-1 convolution by Winograd F(m×m, 3×3).

    x: (N, H, W, Cin); u: (a*a, Cin, Cout) from :func:`winograd_kernel`; out: (N, oh, ow, Cout), filled.
    The tile rows (or, when there are few tiles, the output channels) are split into one part per core
    (npcnn.blas.gemm_parts), each part run start to end (transforms and GEMMs) on its own thread with the
    BLAS limited to one thread per call: the small GEMMs of a block on a multi-threaded BLAS would each
    wait at its thread barrier, and the transforms would run on one core.
    """
    n, oh, ow, co = out.shape
    tile_rows, tw = -(-oh // m), -(-ow // m)
    group = max(1, MEMORY_BUDGET // _winograd_row_bytes(m, 1, tw, x.shape[3], co, x.itemsize))
    if n > group:  # so many images that one tile row of them all exceeds the budget: a group at a time
        for n0 in range(0, n, group):
            _winograd_conv(x[n0:n0 + group], u, b, pads, out[n0:n0 + group], epilogue, m)
        return
    parts = blas.gemm_parts()
    budget = MEMORY_BUDGET // parts
    with blas.limited(1):
        if tile_rows >= 2 * parts and n * tile_rows * tw >= 64 * parts:
            parallel(lambda t0, t1: _winograd_rows(x, u, b, pads, out, t0, t1, budget, epilogue, m), tile_rows,
                     parts=parts)
        else:  # few tiles: transform the input once (its tile rows split over the parts), then split the
            # output channels (GEMMs and output transform); the epilogue (an activation, maybe along the
            # channels: softmax) waits for all of them
            v = np.empty((m + 2, m + 2, n, tile_rows, tw, x.shape[3]), x.dtype)
            parallel(lambda t0, t1: _winograd_input(x, pads, m, t0, t1, tw, v[:, :, :, t0:t1]), tile_rows,
                     parts=parts)
            parallel(lambda c0, c1: _winograd_output(v, u[:, :, c0:c1], None if b is None else b[c0:c1],
                                                     out[..., c0:c1], m, 0, tile_rows), co, parts=parts)
            _finish(out, None, epilogue)


def _phases(x, top, left, r0, rows, m, width, buf):
    """Rows r0:r0+rows of x zero-padded by (top, left), their columns dealt into m phases: padded column
    m*q + p goes to [p][:, :, q]. x (N, H, W, C) -> buf (m, N, rows, width, C), filled and returned.

    Tile t reads padded columns m*t + k (k < a): phase k % m at q = t + k // m, so every transform pass
    reads whole contiguous rows of a phase instead of C numbers at a time (3-4x faster for C = 64)."""
    for p in range(m):
        first = (p - left) % m  # the first column of x in phase p: padded column first + left = m*q + p
        _place(buf[p], x[:, :, first::m], top - r0, (first + left - p) // m)
    return buf


def _winograd_rows(x, u, b, pads, out, first, last, budget, epilogue=None, m=2):
    """:func:`_winograd_conv` for the output tile rows first:last, in blocks of tile rows sized to ``budget``."""
    n, _, _, c = x.shape
    a, tw = m + 2, -(-out.shape[2] // m)  # output tiles per row
    step = max(1, budget // _winograd_row_bytes(m, n, tw, c, out.shape[3], x.itemsize))
    for t0 in range(first, last, step):
        t1 = min(last, t0 + step)
        v = _winograd_input(x, pads, m, t0, t1, tw, _workspace("wino_v", (a, a, n, t1 - t0, tw, c), x.dtype))
        _winograd_output(v, u, b, out, m, t0, t1, epilogue)


def _winograd_row_bytes(m, n, tw, c, co, itemsize):
    """Bytes of all the arrays of one tile row of n images (tw tiles each): the input block, both input
    transform stages, V, the GEMMs' products, both output stages (scratch included)."""
    tile = WINOGRAD_TILES[m]
    a, s = tile.a, tile.scratch
    if tile.apply_bt is None:  # padded rows, gathered tiles, stage 1, V | products, stage 1 (stage 2 reuses)
        return n * tw * ((m * m + 3 * a * a) * c + (a * a + m * a) * co) * itemsize
    return n * tw * (m * m + a * m + a * a + s * (a + m)) * (c + co) * itemsize


def _winograd_input(x, pads, m, t0, t1, tw, v):
    """V = B^T d B for the tiles of tile rows t0:t1, into v (a, a, N, t1-t0, tw, Cin): along rows (tile t
    reads padded rows m*t + k), then along columns."""
    tile = WINOGRAD_TILES[m]
    a, s = tile.a, tile.scratch
    n, _, _, c = x.shape
    (pt, _), (pl, _) = pads
    tb = t1 - t0
    if tile.apply_bt is None:  # the tiles gathered as (a, a, tiles...), then two GEMMs with B^T
        xb = _padded_rows(x, pt, pl, m * t0, m * t1 + 2, m * tw + 2)
        s0, s1, s2, s3 = xb.strides
        d = _workspace("wino_d", v.shape, x.dtype)
        np.copyto(d, as_strided(xb, v.shape, (s1, s2, s0, m * s1, m * s2, s3), writeable=False))
        bt = tile.BT.astype(x.dtype)
        stage = _workspace("wino_e", v.shape, x.dtype)
        np.matmul(bt, d.reshape(a, -1), out=stage.reshape(a, -1))  # along rows: (a, a) @ (a, a*tiles*C)
        target = v.reshape(a, a, -1)  # a view unless v is a slice of tile rows of several images
        np.matmul(bt, stage.reshape(a, a, -1), out=target)  # along columns, for each row of the tile
        if not np.may_share_memory(target, v):
            v[...] = target.reshape(v.shape)
        return v
    # passes: the padded block's columns dealt into m phases so that every pass reads contiguous rows
    xb = _phases(x, pt, pl, m * t0, m * tb + 2, m, tw + 1,
                 _workspace("wino_x", (m, n, m * tb + 2, tw + 1, c), x.dtype))
    rows = _workspace("wino_rows", (a, m, n, tb, tw + 1, c), x.dtype)
    tile.apply_bt([xb[:, :, k:k + m * tb:m] for k in range(a)], rows,
                  _workspace("wino_s1", (s, m, n, tb, tw + 1, c), x.dtype))
    tile.apply_bt([rows[:, k % m, :, :, k // m:k // m + tw] for k in range(a)], [v[:, j] for j in range(a)],
                  _workspace("wino_s2", (s, a, n, tb, tw, c), x.dtype))
    return v


def _winograd_output(v, u, b, out, m, t0, t1, epilogue=None):
    """out[:, m*t0 : m*t1] (+ b, then the epilogue) from V (a, a, N, t1-t0, tw, Cin) of those tile rows: the
    a*a GEMMs, Y = A^T M A on contiguous tiles, then one pass puts them in place in out (with the bias added
    on the way: the strided writes happen once, not in every pass)."""
    tile = WINOGRAD_TILES[m]
    a, s = tile.a, tile.scratch
    _, _, n, tb, tw, c = v.shape
    _, oh, ow, co = out.shape
    prod = _workspace("wino_m", (a * a, n * tb * tw, co), v.dtype)
    blas.gemm(v.reshape(a * a, -1, c), u, prod)  # the a*a GEMMs (tiles, cin) @ (cin, cout)
    if tile.apply_at is None:  # two GEMMs with A^T; the second writes over the products, no longer needed
        at = tile.AT.astype(v.dtype)
        half = _workspace("wino_half", (m, a, n * tb * tw * co), v.dtype)
        np.matmul(at, prod.reshape(a, -1), out=half.reshape(m, -1))
        tiles = prod.reshape(-1)[:m * m * n * tb * tw * co].reshape(m, m, n, tb, tw, co)
        np.matmul(at, half, out=tiles.reshape(m, m, -1))
    else:
        half = _workspace("wino_half", (m, a, n, tb, tw, co), v.dtype)
        tile.apply_at(prod.reshape(a, a, n, tb, tw, co), half,
                      _workspace("wino_s3", (s, a, n, tb, tw, co), v.dtype))
        tiles = _workspace("wino_y", (m, m, n, tb, tw, co), v.dtype)
        tile.apply_at([half[:, k] for k in range(a)], [tiles[:, j] for j in range(m)],
                      _workspace("wino_s4", (s, m, n, tb, tw, co), v.dtype))
    rows_out = min(m * t1, oh) - m * t0
    placed = tiles.transpose(2, 3, 0, 4, 1, 5)  # (n, tb, m, tw, m, co): the tiles where they go
    if rows_out == m * tb and ow == m * tw:
        dest = out[:, m * t0:m * t1].reshape(n, tb, m, tw, m, co)
    else:  # the last tile row or column hangs over the edge of out: cut it (through a copy)
        placed = placed.reshape(n, m * tb, m * tw, co)[:, :rows_out, :ow]
        dest = out[:, m * t0:m * t0 + rows_out]
    if b is None:
        np.copyto(dest, placed)
    else:
        np.add(placed, b, out=dest)
    if epilogue is not None:
        epilogue(dest)


# ---------------------------------------------------------------- convolution backward
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
    (dh, dw), (sh, sw) = tuple(dilation), tuple(strides)
    oh, ow = dout.shape[1:3]
    dout = dout.astype(np.result_type(dout.dtype, w.dtype), copy=False)
    flipped_shape = (kh, kw, cout // groups, cin)
    fast = use_winograd(flipped_shape, (1, 1), (dh, dw), groups, (n, h, wd))
    if (sh, sw) == (1, 1) and (fast or cin >= cout):
        # dx_pad[p] = sum_a dout[p - a*d] w[a]: a stride-1 correlation of the zero-padded dout with the
        # flipped kernel; padding dout by (k-1)*d - pad lands directly on the unpadded dx. Its im2col
        # copies taps*cout numbers per pixel, col2im below taps*cin: so this path when cin >= cout.
        before = ((kh - 1) * dh - pt, (kw - 1) * dw - pl)
        bot = h + (kh - 1) * dh - before[0] - oh  # padding below so that the output has h rows
        rgt = wd + (kw - 1) * dw - before[1] - ow
        if min(before) >= 0 and bot >= 0 and rgt >= 0:
            # Winograd caches its own transform of the flipped kernel; only the other paths keep the flip
            wf = np.empty(flipped_shape, w.dtype) if fast else _derived(w, ("flip", groups),
                                                                        lambda: flip_kernel(w, groups))
            return _conv2d(dout, wf, None, (1, 1), ((before[0], bot), (before[1], rgt)), (dh, dw), groups,
                           source=(w, True))
    # col2im (strides, cin < cout, or paddings larger than the kernel): per tap t = (a, b),
    # dcols[t] = dout @ w[a, b].T, added back at offset (a*dh, b*dw). Tap-major (taps, M, cin) so that each
    # tap's block is contiguous: its add runs over whole rows (ow*cin numbers at stride 1), not cin at a time
    # (one GEMM with every tap's columns side by side, (M, cout) @ (cout, taps*cin), is up to 1.7x faster
    # itself, but its adds then read cin numbers at a time: the whole input gradient took 1.3-2.6x as long).
    taps, cout_g = kh * kw, cout // groups
    if groups == 1 and cin <= PLANAR_MAX_CHANNELS:
        # few input channels: dcols (taps*cin, M) = w (taps*cin, cout) @ dout.T is one GEMM of a sensible
        # shape (tap-major, it would be taps GEMMs of cin columns each: 3 for an RGB image, which the BLAS
        # runs 4x slower), added into channel planes (cin, N, H, W) along rows of ow numbers of one channel
        wk = w.reshape(taps * cin, cout)
        planes = np.zeros((cin, n, h + pt + pb, wd + pl + pr), dtype=dout.dtype)

        def tap_grads(n0, n1, r0, r1):  # -> (kh, kw, N, rows, ow, cin), a view of (kh, kw, cin, N, rows, ow)
            d = dout[n0:n1, r0:r1].reshape(-1, cout)
            dcols = matmul(wk, d.T, out=_workspace("cols", (taps * cin, d.shape[0]), d.dtype))
            return dcols.reshape(kh, kw, cin, n1 - n0, r1 - r0, ow).transpose(0, 1, 3, 4, 5, 2)

        _col2im(planes.transpose(1, 2, 3, 0), tap_grads, (kh, kw), (sh, sw), (dh, dw), oh, ow, taps * cin, cout)
        return np.ascontiguousarray(planes[:, :, pt:pt + h, pl:pl + wd].transpose(1, 2, 3, 0))
    dxpad = np.zeros((n, h + pt + pb, wd + pl + pr, cin), dtype=dout.dtype)
    wt = np.ascontiguousarray(w.reshape(taps, cin_g, groups, -1).transpose(0, 2, 3, 1))  # (taps, G, cout_g, cin_g)

    def tap_grads(n0, n1, r0, r1):  # -> (kh, kw, N, rows, ow, cin): a view if groups == 1
        d = dout[n0:n1, r0:r1].reshape(-1, groups, cout_g).transpose(1, 0, 2)  # (G, M, cout_g)
        dcols = matmul(d, wt, out=_workspace("cols", (taps, groups, d.shape[1], cin_g), d.dtype))
        return dcols.transpose(0, 2, 1, 3).reshape(kh, kw, n1 - n0, r1 - r0, ow, cin)

    _col2im(dxpad, tap_grads, (kh, kw), (sh, sw), (dh, dw), oh, ow, taps * cin, cout_g)
    return dxpad[:, pt:pt + h, pl:pl + wd]


def _col2im(dxpad, tap_grads, kernel, strides, dilation, oh, ow, k, depth):
    """dxpad (N, Hp, Wp, C) += every tap's gradient at its offset: tap (a, b)'s gradient of output pixel
    (i, j) lands on padded pixel (i*sh + a*dh, j*sw + b*dw). tap_grads(n0, n1, r0, r1) gives the taps'
    gradients of output rows r0:r1 of images n0:n1, (kh, kw, n1-n0, r1-r0, ow, C); k: numbers per output
    pixel in them (for the blocks' size); depth: the length of the sums that make them (for the parts).

    One part per core, each computing its own blocks' GEMMs and adds: by images when there are as many, else
    by rows of dxpad. A part that owns padded rows y0:y1 takes every output row with a tap landing there (the
    kh-1 rows at a border are computed by both neighbours) and adds only what lands inside y0:y1, so no two
    parts ever add to the same numbers.
    """
    n, hp = dxpad.shape[:2]
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilation
    parts = min(blas.gemm_parts(), blas._parts(n * oh * ow * k * depth, blas.SMALL_PRODUCT))  # by multiply-adds
    budget = MEMORY_BUDGET // parts

    def rows(n0, n1, y0, y1):
        first = max(0, -(-(y0 - (kh - 1) * dh) // sh))  # the output rows with a tap landing in y0:y1
        last = min(oh, -(-y1 // sh))
        for m0, m1, r0, r1 in _blocks(n1 - n0, last, ow * k * dxpad.itemsize, budget, first):
            grads = tap_grads(n0 + m0, n0 + m1, r0, r1)
            for a in range(kh):
                i0 = max(r0, -(-(y0 - a * dh) // sh))  # this tap's rows that land in y0:y1
                i1 = min(r1, -(-(y1 - a * dh) // sh))
                if i0 >= i1:
                    continue
                for b in range(kw):
                    dxpad[n0 + m0:n0 + m1, i0 * sh + a * dh:(i1 - 1) * sh + a * dh + 1:sh,
                          b * dw:b * dw + (ow - 1) * sw + 1:sw] += grads[a, b, :, i0 - r0:i1 - r0]

    if n >= parts:
        parallel(lambda n0, n1: rows(n0, n1, 0, hp), n, parts=parts)
    else:
        parallel(lambda y0, y1: rows(0, n, y0, y1), hp, parts=parts)


def conv2d_weight_grad(x, dout, w_shape, strides=(1, 1), pads=((0, 0), (0, 0)), dilation=(1, 1), groups=1,
                       cols=None):
    """dw of :func:`conv2d`: x (N, H, W, Cin), dout (N, oh, ow, Cout) -> (kh, kw, Cin/groups, Cout).

    cols: the forward's im2col matrix from :func:`conv2d_keep_cols`, if kept: then one GEMM, no copy.
    """
    kh, kw, cin_g, cout = w_shape
    n, _, _, cin = x.shape
    oh, ow = dout.shape[1:3]
    if cols is not None:
        return matmul(cols.T, dout.reshape(-1, cout)).reshape(w_shape)
    if kh == kw == 1 and strides == (1, 1) and groups == 1 and pads == ((0, 0), (0, 0)):
        return matmul(x.reshape(-1, cin).T, dout.reshape(-1, cout)).reshape(w_shape)
    k, taps = kh * kw * cin, kh * kw
    dw = np.zeros((groups, taps * cin_g, cout // groups), dtype=np.result_type(x.dtype, dout.dtype))
    for n0, n1, r0, r1 in _blocks(n, oh, ow * k * x.itemsize):
        cols = _im2col(x[n0:n1], r0, r1, ow, (kh, kw), tuple(strides), pads, tuple(dilation))
        d = dout[n0:n1, r0:r1].reshape(-1, cout)
        if groups == 1:
            dw[0] += matmul(cols.T, d)
        else:
            dg = d.reshape(d.shape[0], groups, -1).transpose(1, 0, 2)
            dw += matmul(_cols_by_group(cols, groups, taps).transpose(0, 2, 1), dg)
    return dw.transpose(1, 0, 2).reshape(w_shape)


# ---------------------------------------------------------------- depthwise
def _taps(xpad, kernel, strides, dilation, out_hw):
    """Yield ((a, b), view) for every kernel tap: xpad[:, a*dh + i*sh, b*dw + j*sw] as (N, oh, ow, C) views."""
    (sh, sw), (dh, dw), (oh, ow) = strides, dilation, out_hw
    for a in range(kernel[0]):
        for b in range(kernel[1]):
            yield (a, b), xpad[:, a * dh:a * dh + (oh - 1) * sh + 1:sh, b * dw:b * dw + (ow - 1) * sw + 1:sw]


def depthwise_conv2d(x, w, strides=(1, 1), pads=((0, 0), (0, 0)), dilation=(1, 1)):
    """Depthwise forward: each input channel convolved with its own ``multiplier`` kernels.

    x: (N, H, W, C); w: (kh, kw, C, m) -> (N, oh, ow, C*m), output channel c*m + j.
    Vectorised over channels; the only loop is over the kh*kw kernel taps (a multiply-add each).
    """
    n, _, _, c = x.shape
    kh, kw, cw, m = w.shape
    if cw != c:
        raise InputError(f"the depthwise kernel {w.shape} expects {cw} input channels, got {c} (input {x.shape})")
    strides, dilation = tuple(strides), tuple(dilation)
    xpad = _pad(x, pads)
    oh, ow = _out_hw(xpad.shape[1], xpad.shape[2], (kh, kw), strides, dilation)
    dtype = np.result_type(x.dtype, w.dtype)
    out = np.zeros((n, oh, ow, c, m), dtype=dtype)
    tmp = _workspace("dw_tmp", out.shape, dtype)
    for (a, b), tap in _taps(xpad, (kh, kw), strides, dilation, (oh, ow)):
        np.multiply(tap[..., None], w[a, b], out=tmp)
        out += tmp
    return out.reshape(n, oh, ow, c * m)


def depthwise_input_grad(dout, w, x_shape, strides=(1, 1), pads=((0, 0), (0, 0)), dilation=(1, 1)):
    """dx of :func:`depthwise_conv2d`: dout (N, oh, ow, C*m) -> (N, H, W, C)."""
    n, h, wd, c = x_shape
    kh, kw, _, m = w.shape
    (pt, pb), (pl, pr) = pads
    oh, ow = dout.shape[1:3]
    d5 = dout.reshape(n, oh, ow, c, m)
    dxpad = np.zeros((n, h + pt + pb, wd + pl + pr, c), dtype=np.result_type(dout.dtype, w.dtype))
    tmp = _workspace("dw_tmp", d5.shape, dxpad.dtype)
    for (a, b), tap in _taps(dxpad, (kh, kw), tuple(strides), tuple(dilation), (oh, ow)):
        np.multiply(d5, w[a, b], out=tmp)
        tap += tmp[..., 0] if m == 1 else tmp.sum(-1)
    return dxpad[:, pt:pt + h, pl:pl + wd]


def depthwise_weight_grad(x, dout, w_shape, strides=(1, 1), pads=((0, 0), (0, 0)), dilation=(1, 1)):
    """dw of :func:`depthwise_conv2d`: (kh, kw, C, m)."""
    kh, kw, c, m = w_shape
    n, oh, ow, _ = dout.shape
    d5 = dout.reshape(n * oh * ow, c, m)
    dw = np.empty(w_shape, dtype=np.result_type(x.dtype, dout.dtype))
    for (a, b), tap in _taps(_pad(x, pads), (kh, kw), tuple(strides), tuple(dilation), (oh, ow)):
        dw[a, b] = np.einsum("pc,pcm->cm", tap.reshape(-1, c), d5)
    return dw


# ---------------------------------------------------------------- pooling
def _reduce(views, op):
    """op (np.maximum or np.add) over equally shaped views -> a new array (the first view if only one)."""
    if len(views) == 1:
        return views[0]
    out = op(views[0], views[1])
    for v in views[2:]:
        op(out, v, out=out)
    return out


def _pool_reduce(xpad, pool, strides, out_hw, op):
    """op over every window, separably: first over the kh rows of each window (whole rows at a time),
    then over its kw columns: kh + kw - 2 vectorised ops, no per-pixel loop (a 2x2/2 max pool is two
    np.maximum calls on strided views).

    xpad: (N, Hp, Wp, C) -> (N, oh, ow, C), a new array.
    """
    (kh, kw), (sh, sw), (oh, ow) = pool, strides, out_hw
    rows = _reduce([xpad[:, a:a + (oh - 1) * sh + 1:sh] for a in range(kh)], op)
    out = _reduce([rows[:, :, b:b + (ow - 1) * sw + 1:sw] for b in range(kw)], op)
    return out if kh * kw > 1 else out.copy()


def pool2d(x, pool, strides, pads, mode):
    """Max or average pooling over windows. x: (N, H, W, C) -> (N, oh, ow, C).

    Padding never wins a max (it is -inf) and never counts in an average (Keras's 'same' semantics).
    """
    pool, strides = tuple(pool), tuple(strides)
    xpad = _pad(x, pads, -np.inf if mode == "max" else 0.0)
    oh, ow = _out_hw(xpad.shape[1], xpad.shape[2], pool, strides, (1, 1))
    if oh <= 0 or ow <= 0:
        raise InputError(f"the input {x.shape[1:3]} is smaller than the pooling window {pool}")
    out = np.empty((x.shape[0], oh, ow, x.shape[3]), xpad.dtype)
    (kh, _), (sh, _) = pool, strides

    def rows(r0, r1):  # output rows r0:r1 read input rows r0*sh : (r1-1)*sh + kh
        out[:, r0:r1] = _pool_reduce(xpad[:, r0 * sh:(r1 - 1) * sh + kh], pool, strides, (r1 - r0, ow),
                                     np.maximum if mode == "max" else np.add)

    parallel_chunks(rows, oh, xpad.nbytes)
    if mode == "avg":
        out /= window_counts(x.shape[1:3], pool, strides, pads).astype(out.dtype)
    return out


def window_counts(hw, pool, strides, pads):
    """How many real (unpadded) pixels each pooling window covers: (oh, ow, 1)."""
    (pt, pb), (pl, pr) = pads
    ones = np.zeros((1, hw[0] + pt + pb, hw[1] + pl + pr, 1))
    ones[:, pt:pt + hw[0], pl:pl + hw[1]] = 1.0
    oh, ow = _out_hw(ones.shape[1], ones.shape[2], pool, strides, (1, 1))
    return _pool_reduce(ones, pool, strides, (oh, ow), np.add)[0]


def pool2d_argmax(x, out, pool, strides, pads):
    """Which tap of each window holds its first maximum (row-major in the window, as TensorFlow):
    x (N, H, W, C), out = pool2d(x, ..., "max") -> (N, oh, ow, C) uint8 tap indices a*kw + b."""
    winner = np.zeros(out.shape, dtype=np.uint8)
    taken = np.zeros(out.shape, dtype=bool)
    hit = np.empty(out.shape, dtype=bool)
    for (a, b), xtap in _taps(_pad(x, pads, -np.inf), pool, strides, (1, 1), out.shape[1:3]):
        np.equal(xtap, out, out=hit)
        hit &= ~taken
        taken |= hit
        np.copyto(winner, a * pool[1] + b, where=hit)
    return winner


def _route_max(dout, out, taps, disjoint):
    """Route each window's gradient to its first maximum, tap by tap (row-major in the window).

    taps: (x_tap, dx_tap) pairs, views shaped like ``out`` (N, oh, ow, C) of the input and of dx, one per
    window offset. Per tap: hit = (x_tap == out) and no earlier tap won (the first maximum wins ties, as
    TensorFlow); dx_tap gets dout where hit. When windows do not overlap (``disjoint``) every dx number
    belongs to one tap, so the product is written, not added (dx_tap may then be x_tap's own memory:
    hit is taken before it is overwritten).
    """
    taken = np.zeros(out.shape, dtype=bool)
    hit = np.empty(out.shape, dtype=bool)
    taps = list(taps)
    for k, (xtap, dtap) in enumerate(taps):
        np.equal(xtap, out, out=hit)
        np.greater(hit, taken, out=hit)  # hit and not taken
        if k < len(taps) - 1:
            taken |= hit
        if disjoint:
            np.multiply(dout, hit, out=dtap)
        else:
            dtap += dout * hit


def _max_pool_backward(dout, xpad, out, pool, strides, dtaps):
    """dx of a max pool straight from its input, without building the winner indices first: the tap
    loop of :func:`_route_max` on strided views of xpad (N, Hp, Wp, C, padded with -inf) and of dx
    (dtaps: :func:`_taps` of dx); dout, out (N, oh, ow, C)."""
    xtaps = (view for _, view in _taps(xpad, pool, strides, (1, 1), out.shape[1:3]))
    disjoint = strides[0] >= pool[0] and strides[1] >= pool[1]
    _route_max(dout, out, zip(xtaps, (view for _, view in dtaps)), disjoint)


def _as_pixels(a):
    """(..., C) with C contiguous -> (...): a view whose elements are whole pixels, opaque blocks of
    C*itemsize bytes. A copy between strided views moves each pixel as one element (NumPy copies a
    strided float view C numbers at a time: 2x slower for C = 16)."""
    return a.view(np.dtype((np.void, a.shape[-1] * a.itemsize)))[..., 0]


def _max_pool_backward_tiled(dout, xc, out, pool, dxc):
    """dx of a max pool whose windows tile the input (strides == pool), on contiguous arrays.

    The windows' pixels are gathered tap-major, (kh, kw, N, oh, ow, C), by one copy of whole pixels
    (:func:`_as_pixels`); the tap loop (:func:`_route_max`) then runs on contiguous arrays, writing each
    tap's gradient over its gathered numbers, and one copy scatters them back into dx. On strided views the
    same loop moves C numbers at a time (150x150x16: 0.50 vs 0.74 ms, 37x37x64 0.13 vs 0.24, one thread).
    xc, dxc: (N, oh*kh, ow*kw, C) views of the input and of dx (C contiguous); out, dout: (N, oh, ow, C).
    """
    (kh, kw), (n, oh, ow, c) = pool, out.shape
    if xc.dtype != dxc.dtype or xc.strides[-1] != xc.itemsize:  # pixels are copied as bytes: same dtype
        xc = np.ascontiguousarray(xc, dtype=dxc.dtype)
    taps = _workspace("pool_taps", (kh, kw, n, oh, ow, c), dxc.dtype)
    windows_of = lambda a: _as_pixels(a).reshape(n, oh, kh, ow, kw).transpose(2, 4, 0, 1, 3)
    np.copyto(_as_pixels(taps), windows_of(xc))
    _route_max(dout, out, ((taps[a, b], taps[a, b]) for a in range(kh) for b in range(kw)), disjoint=True)
    np.copyto(windows_of(dxc), _as_pixels(taps))


def pool2d_backward(dout, x, out, pool, strides, pads, mode, winner=None):
    """dx of :func:`pool2d`. Max routes each window's gradient to its first maximum (as TensorFlow).

    x: the input (N, H, W, C), or only its shape when ``winner`` (from :func:`pool2d_argmax`) is given.
    Windows that tile x (strides == pool, the usual 2x2/2) go along whole rows
    (:func:`_max_pool_backward_tiled`); others loop over the kh*kw taps only, each a vectorised masked add
    into a strided view of dx.
    """
    n, h, wd, c = x if isinstance(x, tuple) else x.shape
    (pt, pb), (pl, pr) = pads
    oh, ow = dout.shape[1:3]
    pool, strides = tuple(pool), tuple(strides)
    (kh, kw), (sh, _) = pool, strides
    tiled = mode == "max" and winner is None and pool == strides  # windows tile x: dx written, not added to
    dxpad = (np.empty if tiled else np.zeros)((n, h + pt + pb, wd + pl + pr, c), dtype=dout.dtype)
    dtaps = _taps(dxpad, pool, strides, (1, 1), (oh, ow))
    if tiled:
        xpad = _pad(x, pads, -np.inf)
        dxpad[:, oh * kh:] = 0  # the rows and columns no window covers
        dxpad[:, :, ow * kw:] = 0

        def rows(r0, r1):
            a0, a1 = r0 * kh, r1 * kh
            _max_pool_backward_tiled(dout[:, r0:r1], xpad[:, a0:a1, :ow * kw], out[:, r0:r1], pool,
                                     dxpad[:, a0:a1, :ow * kw])

        parallel_chunks(rows, oh, dxpad.nbytes)
    elif mode == "max" and winner is None:
        xpad = _pad(x, pads, -np.inf)

        def rows(r0, r1):  # output rows r0:r1 and the input rows they read (disjoint when sh >= kh)
            a0, a1 = r0 * sh, (r1 - 1) * sh + kh
            _max_pool_backward(dout[:, r0:r1], xpad[:, a0:a1], out[:, r0:r1], pool, strides,
                               _taps(dxpad[:, a0:a1], pool, strides, (1, 1), (r1 - r0, ow)))

        if sh >= kh:
            parallel_chunks(rows, oh, dxpad.nbytes)
        else:  # overlapping windows: neighbouring row blocks would add into the same dx rows
            rows(0, oh)
    elif mode == "max":
        zero = dout.dtype.type(0)
        for (a, b), dtap in dtaps:
            dtap += np.where(winner == a * pool[1] + b, dout, zero)
    else:
        dout = dout / window_counts((h, wd), pool, strides, pads).astype(dout.dtype)
        for _, dtap in dtaps:
            dtap += dout
    return dxpad[:, pt:pt + h, pl:pl + wd]
