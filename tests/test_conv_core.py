"""The convolution core (npcnn/conv.py) against references, in float64.

- a direct loop over output pixels (tiny sizes) for the forward of every geometry: strides, paddings,
  dilations, groups, depthwise multipliers, pooling windows;
- the plain im2col path for every fast path (Winograd F(2x2,3x3), 1x1 matmul, row chunking, batching);
- adjoint identities for the backward passes: for the linear map x -> conv(x, w),
  <conv(x, w), dy> == <x, conv_input_grad(dy, w)> == <w, conv_weight_grad(x, dy)> exactly (to round-off).
"""
import itertools

import numpy as np
import pytest

from npcnn import conv as core
from npcnn.errors import InputError, NpcnnError


# ------------------------------------------------------------------ references
def direct_conv(x, w, strides, pads, dilation, groups=1):
    """The definition, one output pixel at a time: x (N,H,W,Cin), w (kh,kw,Cin/G,Cout)."""
    (pt, pb), (pl, pr) = pads
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    kh, kw, cin_g, cout = w.shape
    (sh, sw), (dh, dw) = strides, dilation
    oh = (xp.shape[1] - (kh - 1) * dh - 1) // sh + 1
    ow = (xp.shape[2] - (kw - 1) * dw - 1) // sw + 1
    cout_g = cout // groups
    out = np.zeros((x.shape[0], oh, ow, cout))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, i * sh:i * sh + (kh - 1) * dh + 1:dh, j * sw:j * sw + (kw - 1) * dw + 1:dw]
            for g in range(groups):
                out[:, i, j, g * cout_g:(g + 1) * cout_g] = np.einsum(
                    "nabc,abco->no", patch[..., g * cin_g:(g + 1) * cin_g], w[..., g * cout_g:(g + 1) * cout_g])
    return out


def direct_pool(x, pool, strides, pads, mode):
    """Pooling by the definition; padding never wins a max and never counts in an average."""
    (pt, pb), (pl, pr) = pads
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=np.nan)
    oh = (xp.shape[1] - pool[0]) // strides[0] + 1
    ow = (xp.shape[2] - pool[1]) // strides[1] + 1
    out = np.zeros((x.shape[0], oh, ow, x.shape[3]))
    for i in range(oh):
        for j in range(ow):
            win = xp[:, i * strides[0]:i * strides[0] + pool[0], j * strides[1]:j * strides[1] + pool[1]]
            out[:, i, j] = np.nanmax(win, axis=(1, 2)) if mode == "max" else np.nanmean(win, axis=(1, 2))
    return out


def _on_parts(monkeypatch, count):
    """Split every layer, however small, into ``count`` parts (threads), as a large layer on that many cores."""
    from npcnn import blas
    monkeypatch.setattr(blas, "THREADS", count)
    monkeypatch.setattr(blas, "SMALL_PRODUCT", 0)


@pytest.fixture
def plain(monkeypatch):
    """Run the core with every fast path off: the plain im2col path (the reference for fast paths)."""
    def run(fn, *args, **kw):
        with monkeypatch.context() as m:
            m.setattr(core, "WINOGRAD", False)
            return fn(*args, **kw)
    return run


GEOMETRIES = [  # (kernel, strides, dilation, groups, padding)
    ((3, 3), (1, 1), (1, 1), 1, "same"), ((3, 3), (2, 2), (1, 1), 1, "same"), ((3, 3), (1, 1), (2, 2), 1, "same"),
    ((3, 2), (2, 1), (1, 1), 1, "valid"), ((1, 1), (1, 1), (1, 1), 1, "valid"), ((1, 1), (2, 2), (1, 1), 1, "same"),
    ((5, 5), (1, 1), (1, 1), 1, "same"), ((3, 3), (1, 1), (1, 1), 2, "same"), ((2, 3), (3, 2), (2, 1), 2, "valid"),
    ((4, 4), (2, 2), (1, 1), 1, "same"), ((7, 7), (2, 2), (1, 1), 1, "same"),
]


def _case(rng, kernel, strides, dilation, groups, padding, n=2, hw=(9, 8), cin=4, cout=6):
    x = rng.standard_normal((n, *hw, cin))
    w = rng.standard_normal((*kernel, cin // groups, cout))
    pads = core.resolve_padding(padding, hw, kernel, strides, dilation)
    return x, w, pads


@pytest.mark.parametrize("kernel,strides,dilation,groups,padding", GEOMETRIES)
def test_conv2d_matches_direct_loop(rng, kernel, strides, dilation, groups, padding):
    x, w, pads = _case(rng, kernel, strides, dilation, groups, padding)
    b = rng.standard_normal(w.shape[-1])
    got = core.conv2d(x, w, b, strides, pads, dilation, groups)
    want = direct_conv(x, w, strides, pads, dilation, groups) + b
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel,strides,dilation,groups,padding", [g for g in GEOMETRIES if g[3] == 1])
@pytest.mark.parametrize("cin", [1, 3])
def test_image_channels_as_planes_match_the_direct_loop(rng, kernel, strides, dilation, groups, padding, cin):
    """Inputs of 1-3 channels take the channel-plane im2col and col2im: forward, dx and dw as defined."""
    x, w, pads = _case(rng, kernel, strides, dilation, groups, padding, n=3, cin=cin, cout=5)
    y = core.conv2d(x, w, None, strides, pads, dilation)
    np.testing.assert_allclose(y, direct_conv(x, w, strides, pads, dilation), rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx = core.conv2d_input_grad(dy, w, x.shape, strides, pads, dilation)
    dw = core.conv2d_weight_grad(x, dy, w.shape, strides, pads, dilation)
    np.testing.assert_allclose(np.vdot(x, dx), np.vdot(y, dy), rtol=1e-11)
    np.testing.assert_allclose(np.vdot(w, dw), np.vdot(y, dy), rtol=1e-11)
    e = np.zeros_like(x)
    e.flat[11] = 1.0
    np.testing.assert_allclose(dx.flat[11], np.vdot(direct_conv(e, w, strides, pads, dilation), dy), rtol=1e-11,
                               atol=1e-12)


@pytest.mark.parametrize("kernel,strides,dilation,groups,padding", GEOMETRIES)
# dx by col2im on channel planes (cin <= 3 < cout), tap-major col2im (3 < cin < cout), or the flipped kernel
@pytest.mark.parametrize("cin,cout", [(2, 6), (6, 8), (6, 4)])
def test_conv_backward_adjoint_identities(rng, kernel, strides, dilation, groups, padding, cin, cout):
    x, w, pads = _case(rng, kernel, strides, dilation, groups, padding, cin=cin, cout=cout)
    y = core.conv2d(x, w, None, strides, pads, dilation, groups)
    dy = rng.standard_normal(y.shape)
    dx = core.conv2d_input_grad(dy, w, x.shape, strides, pads, dilation, groups)
    dw = core.conv2d_weight_grad(x, dy, w.shape, strides, pads, dilation, groups)
    assert dx.shape == x.shape and dw.shape == w.shape
    inner = np.vdot(y, dy)
    np.testing.assert_allclose(np.vdot(x, dx), inner, rtol=1e-11)
    np.testing.assert_allclose(np.vdot(w, dw), inner, rtol=1e-11)
    # and element by element against the direct definition (the conv is linear in x and in w)
    e = np.zeros_like(x)
    e.flat[7] = 1.0
    np.testing.assert_allclose(dx.flat[7], np.vdot(direct_conv(e, w, strides, pads, dilation, groups), dy),
                               rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("kernel,strides,dilation,groups,padding", GEOMETRIES)
@pytest.mark.parametrize("cin,cout", [(2, 6), (6, 8)])  # col2im on channel planes, tap-major col2im
@pytest.mark.parametrize("budget", [1, 1 << 20])  # one output row per block, or whole parts
def test_col2im_split_over_parts_equals_one_part(rng, monkeypatch, kernel, strides, dilation, groups, padding, cin,
                                                 cout, budget):
    """The col2im input gradient on three parts (by images, or by padded rows when there are fewer images:
    each part adds only into its own rows, recomputing the output rows at its borders) equals one part,
    and satisfies the adjoint identity."""
    monkeypatch.setattr(core, "MEMORY_BUDGET", budget)
    for n in (1, 2, 4):
        x, w, pads = _case(rng, kernel, strides, dilation, groups, padding, n=n, hw=(11, 10), cin=cin, cout=cout)
        y = core.conv2d(x, w, None, strides, pads, dilation, groups)
        dy = rng.standard_normal(y.shape)
        with monkeypatch.context() as m:
            _on_parts(m, 1)
            one = core.conv2d_input_grad(dy, w, x.shape, strides, pads, dilation, groups)
        with monkeypatch.context() as m:
            _on_parts(m, 3)
            split = core.conv2d_input_grad(dy, w, x.shape, strides, pads, dilation, groups)
        np.testing.assert_allclose(split, one, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(np.vdot(x, split), np.vdot(y, dy), rtol=1e-11)


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("hw,padding,n", [((8, 8), "same", 1), ((7, 9), "same", 2), ((9, 6), "valid", 3),
                                          ((5, 5), "valid", 1), ((3, 3), "same", 2), ((13, 11), "same", 1)])
def test_winograd_matches_plain_im2col(rng, plain, monkeypatch, hw, padding, n, tile):
    monkeypatch.setattr(core, "WINOGRAD", tile)
    x, w, pads = _case(rng, (3, 3), (1, 1), (1, 1), 1, padding, n=n, hw=hw, cin=5, cout=7)
    b = rng.standard_normal(7)
    assert core.use_winograd(w.shape, (1, 1), (1, 1), 1, (n, *hw)) == tile
    fast = core.conv2d(x, w, b, (1, 1), pads)
    slow = plain(core.conv2d, x, w, b, (1, 1), pads)
    np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(fast.shape)  # the input gradient goes through Winograd too (flipped kernel)
    np.testing.assert_allclose(core.conv2d_input_grad(dy, w, x.shape, (1, 1), pads),
                               plain(core.conv2d_input_grad, dy, w, x.shape, (1, 1), pads), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("tile,tolerance", [(2, 2e-6), (4, 5e-6)])
def test_winograd_float32_stays_close(rng, plain, monkeypatch, tile, tolerance):
    """In float32 Winograd's extra additions cost a little precision: F(2x2) ~5e-7 of the largest output,
    F(4x4) ~5e-6 (its output transform multiplies by up to 8); the im2col path ~3e-7."""
    monkeypatch.setattr(core, "WINOGRAD", tile)
    x = np.maximum(rng.standard_normal((1, 14, 14, 128)), 0).astype(np.float32)
    w = (rng.standard_normal((3, 3, 128, 32)) / 34).astype(np.float32)
    fast = core.conv2d(x, w, None, (1, 1), ((1, 1), (1, 1)))
    assert fast.dtype == np.float32
    ref = direct_conv(x.astype(np.float64), w.astype(np.float64), (1, 1), ((1, 1), (1, 1)), (1, 1))
    error = np.abs(fast - ref).max() / np.abs(ref).max()
    assert error < tolerance
    if tile == 4:  # a real loss next to F(2x2), but bounded
        monkeypatch.setattr(core, "WINOGRAD", 2)
        small = core.conv2d(x, w, None, (1, 1), ((1, 1), (1, 1)))
        assert np.abs(small - ref).max() / np.abs(ref).max() < error


@pytest.mark.parametrize("m", sorted(core.WINOGRAD_TILES))
def test_winograd_matrices_compute_a_correlation(rng, m):
    """(B^T, G, A^T) compute a 3-tap correlation: y[i] = sum_k d[i+k] g[k] = A^T [(G g) * (B^T d)], i < m."""
    tile = core.WINOGRAD_TILES[m]
    d, g = rng.standard_normal(tile.a), rng.standard_normal(3)
    direct = np.array([d[i:i + 3] @ g for i in range(m)])
    np.testing.assert_allclose(tile.AT @ ((tile.G @ g) * (tile.BT @ d)), direct, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("m", [m for m, tile in sorted(core.WINOGRAD_TILES.items()) if tile.apply_bt is not None])
def test_winograd_passes_are_their_matrices(rng, m):
    """Where a tile's transforms are hand-written NumPy passes, they apply exactly B^T and A^T."""
    tile = core.WINOGRAD_TILES[m]
    a = tile.a
    d = rng.standard_normal((a, 5, 3))
    out = np.empty((a, 5, 3))
    tile.apply_bt(list(d), out, np.empty((tile.scratch, 5, 3)))
    np.testing.assert_allclose(out, np.einsum("ij,jkl->ikl", tile.BT, d), rtol=1e-13, atol=1e-13)
    prod = rng.standard_normal((a, 5, 3))
    y = np.empty((m, 5, 3))
    tile.apply_at(prod, y, np.empty((tile.scratch, 5, 3)))
    np.testing.assert_allclose(y, np.einsum("ij,jkl->ikl", tile.AT, prod), rtol=1e-13, atol=1e-13)


def test_auto_rule_picks_winograd_by_work(monkeypatch):
    """"auto": the tile WINOGRAD_AUTO_TILE where the narrower channel count is >= WINOGRAD_MIN_CHANNELS, each
    image's output is at least WINOGRAD_MIN_SIDE a side and output pixels x that count >= WINOGRAD_MIN_WORK;
    im2col otherwise; only for 3x3 stride-1 undilated ungrouped kernels."""
    monkeypatch.setattr(core, "WINOGRAD", "auto")
    monkeypatch.setattr(core, "_ONE_BLAS_THREAD", True)  # as if the BLAS could be kept to one thread
    monkeypatch.setattr(core, "WINOGRAD_MIN_CHANNELS", 32)
    monkeypatch.setattr(core, "WINOGRAD_MIN_WORK", 32 * 64 * 64)
    monkeypatch.setattr(core, "WINOGRAD_MIN_SIDE", 8)
    use = lambda cin, cout, out_shape, strides=(1, 1), dilation=(1, 1), k=3: core.use_winograd(
        (k, k, cin, cout), strides, dilation, 1, out_shape)
    assert use(32, 512, (1, 64, 64)) == use(512, 32, (1, 64, 64)) == 4
    assert use(32, 512, (1, 64, 63)) == 0  # too little work
    assert use(128, 512, (1, 32, 32)) == 4  # wider: fewer pixels suffice
    assert use(128, 512, (1, 32, 31)) == 0
    assert use(128, 512, (4, 16, 16)) == 4  # the batch counts
    assert use(31, 512, (9, 100, 100)) == 0  # too narrow
    assert use(512, 512, (64, 7, 7)) == 0 and use(512, 512, (64, 8, 8)) == 4  # maps too small for whole tiles
    assert use(512, 512, (1, 64, 64), strides=(2, 2)) == 0
    assert use(512, 512, (1, 64, 64), dilation=(2, 2)) == 0
    assert use(512, 512, (1, 64, 64), k=5) == 0
    monkeypatch.setattr(core, "WINOGRAD_AUTO_TILE", 2)
    assert use(32, 512, (1, 64, 64)) == 2
    monkeypatch.setattr(core, "WINOGRAD", False)
    assert use(512, 512, (1, 64, 64)) == 0


@pytest.mark.parametrize("kernel,strides,dilation,groups,padding", GEOMETRIES[:4] + [GEOMETRIES[7]])
def test_row_chunking_and_batch_blocks_change_nothing(rng, plain, monkeypatch, kernel, strides, dilation, groups,
                                                      padding):
    x, w, pads = _case(rng, kernel, strides, dilation, groups, padding, n=3, hw=(11, 10))
    y = core.conv2d(x, w, None, strides, pads, dilation, groups)
    dy = rng.standard_normal(y.shape)
    whole = (y, core.conv2d_input_grad(dy, w, x.shape, strides, pads, dilation, groups),
             core.conv2d_weight_grad(x, dy, w.shape, strides, pads, dilation, groups))
    for budget in (1, 700, 5000):  # one output row per block, a few rows, a few images
        monkeypatch.setattr(core, "MEMORY_BUDGET", budget)
        monkeypatch.setattr(core, "WINOGRAD", 4 if budget == 700 else True)  # chunked Winograd too
        got = (core.conv2d(x, w, None, strides, pads, dilation, groups),
               core.conv2d_input_grad(dy, w, x.shape, strides, pads, dilation, groups),
               core.conv2d_weight_grad(x, dy, w.shape, strides, pads, dilation, groups))
        for a, b in zip(got, whole):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel,strides,dilation,groups,padding", [g for g in GEOMETRIES if g[3] == 1])
@pytest.mark.parametrize("block_bytes", [1, 400, 3000])  # one output row per block, a few rows, a few images
def test_image_planes_in_small_blocks_with_the_bias_in_the_gemm(rng, monkeypatch, kernel, strides, dilation, groups,
                                                                padding, block_bytes):
    """An RGB input goes through the planar blocks (bias as a row of ones under the im2col, activation per
    block), on parts split by images and by output rows: the definition, + b, activated once."""
    _on_parts(monkeypatch, 3)
    monkeypatch.setattr(core, "PLANAR_BLOCK_BYTES", block_bytes)
    for n in (1, 2, 4):  # rows split over the parts (n < 3), images split (n >= 3)
        x, w, pads = _case(rng, kernel, strides, dilation, groups, padding, n=n, hw=(11, 10), cin=3, cout=5)
        b = rng.standard_normal(5)
        want = 2 * (direct_conv(x, w, strides, pads, dilation) + b) + 1
        np.testing.assert_allclose(core.conv2d(x, w, b, strides, pads, dilation, epilogue=_affine_in_place), want,
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(core.conv2d(x, w, None, strides, pads, dilation),
                                   direct_conv(x, w, strides, pads, dilation), rtol=1e-12, atol=1e-12)


def test_one_by_one_is_a_matmul(rng):
    x = rng.standard_normal((2, 5, 6, 7))
    w = rng.standard_normal((1, 1, 7, 3))
    np.testing.assert_allclose(core.conv2d(x, w), x @ w[0, 0], rtol=1e-13)


def test_cached_kernel_transforms_follow_in_place_edits(rng, monkeypatch):
    """Winograd and flipped kernels are cached per kernel array; editing the array in place must not
    leave a stale transform (even a permutation of the entries, which keeps their sum)."""
    monkeypatch.setattr(core, "WINOGRAD", True)
    x = rng.standard_normal((1, 6, 6, 3))
    w = rng.standard_normal((3, 3, 3, 4))
    pads = ((1, 1), (1, 1))
    dy = rng.standard_normal((1, 6, 6, 4))
    core.conv2d(x, w, None, (1, 1), pads)
    core.conv2d_input_grad(dy, w, x.shape, (1, 1), pads)
    for edit in (lambda a: a.__imul__(0.5), lambda a: a.__setitem__(Ellipsis, a[::-1, ::-1].copy())):
        edit(w)
        np.testing.assert_allclose(core.conv2d(x, w, None, (1, 1), pads), direct_conv(x, w, (1, 1), pads, (1, 1)),
                                   rtol=1e-12, atol=1e-12)
        y = core.conv2d(x, w, None, (1, 1), pads)
        np.testing.assert_allclose(np.vdot(core.conv2d_input_grad(dy, w, x.shape, (1, 1), pads), x), np.vdot(y, dy),
                                   rtol=1e-11)


def test_results_are_fresh_arrays_not_workspaces(rng):
    """The core reuses scratch buffers between calls; what it returns must never be one of them."""
    x = rng.standard_normal((1, 8, 8, 3))
    w = rng.standard_normal((3, 3, 3, 2))
    first = core.conv2d(x, w, None, (1, 1), ((1, 1), (1, 1)))
    keep = first.copy()
    core.conv2d(rng.standard_normal((1, 8, 8, 3)), w, None, (1, 1), ((1, 1), (1, 1)))
    core.pool2d(rng.standard_normal((1, 8, 8, 2)), (3, 3), (1, 1), ((1, 1), (1, 1)), "max")
    np.testing.assert_array_equal(first, keep)


def test_float32_in_float32_out(rng):
    x = rng.standard_normal((1, 9, 9, 130)).astype(np.float32)
    w = rng.standard_normal((3, 3, 130, 128)).astype(np.float32)
    y = core.conv2d(x, w, np.zeros(128, np.float32), (1, 1), ((1, 1), (1, 1)))
    assert y.dtype == np.float32
    assert core.conv2d_input_grad(y, w, x.shape, (1, 1), ((1, 1), (1, 1))).dtype == np.float32


def test_kernel_larger_than_input_is_an_input_error(rng):
    with pytest.raises(InputError, match="smaller than the kernel"):
        core.conv2d(rng.standard_normal((1, 2, 2, 1)), rng.standard_normal((3, 3, 1, 1)))
    with pytest.raises(InputError, match="input channels"):
        core.conv2d(rng.standard_normal((1, 4, 4, 2)), rng.standard_normal((3, 3, 3, 1)))


# ------------------------------------------------------------------ depthwise
@pytest.mark.parametrize("kernel,strides,dilation,m,padding", [
    ((3, 3), (1, 1), (1, 1), 1, "same"), ((3, 3), (2, 2), (1, 1), 2, "same"), ((3, 3), (1, 1), (2, 2), 1, "valid"),
    ((5, 3), (2, 1), (1, 1), 3, "same")])
def test_depthwise_matches_grouped_conv_and_adjoints(rng, kernel, strides, dilation, m, padding):
    c = 4
    x = rng.standard_normal((2, 9, 8, c))
    w = rng.standard_normal((*kernel, c, m))
    pads = core.resolve_padding(padding, (9, 8), kernel, strides, dilation)
    y = core.depthwise_conv2d(x, w, strides, pads, dilation)
    # depthwise = a grouped conv with groups = C, kernel (kh, kw, 1, C*m), output channel c*m + j
    want = direct_conv(x, w.reshape(*kernel, 1, c * m), strides, pads, dilation, groups=c)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx = core.depthwise_input_grad(dy, w, x.shape, strides, pads, dilation)
    dw = core.depthwise_weight_grad(x, dy, w.shape, strides, pads, dilation)
    np.testing.assert_allclose(np.vdot(x, dx), np.vdot(y, dy), rtol=1e-11)
    np.testing.assert_allclose(np.vdot(w, dw), np.vdot(y, dy), rtol=1e-11)


# ------------------------------------------------------------------ pooling
POOLS = [((2, 2), (2, 2), "valid"), ((2, 2), (2, 2), "same"), ((3, 3), (2, 2), "same"), ((3, 3), (1, 1), "same"),
         ((3, 2), (1, 2), "valid"), ((1, 1), (2, 2), "valid"), ((3, 3), (3, 3), "valid"), ((2, 3), (2, 3), "same"),
         ((1, 2), (1, 2), "valid"), ((3, 1), (3, 1), "same")]


@pytest.mark.parametrize("pool,strides,padding", POOLS)
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pool_matches_direct_loop(rng, pool, strides, padding, mode):
    x = rng.standard_normal((2, 7, 9, 3))
    pads = core.resolve_padding(padding, (7, 9), pool, strides)
    np.testing.assert_allclose(core.pool2d(x, pool, strides, pads, mode), direct_pool(x, pool, strides, pads, mode),
                               rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("pool,strides,padding", POOLS)
def test_pool_backward(rng, pool, strides, padding):
    x = rng.standard_normal((2, 7, 9, 3))
    x[0, :2, :2, 0] = 1.5  # a tie: the first maximum (row-major in the window) takes the gradient
    pads = core.resolve_padding(padding, (7, 9), pool, strides)
    for mode in ("max", "avg"):
        out = core.pool2d(x, pool, strides, pads, mode)
        dy = rng.standard_normal(out.shape)
        dx = core.pool2d_backward(dy, x, out, pool, strides, pads, mode)
        want = np.zeros_like(x)  # the reference: route each window's dy by the definition
        (pt, _), (pl, _) = pads
        for n, i, j, c in itertools.product(*map(range, out.shape)):
            r0, c0 = i * strides[0] - pt, j * strides[1] - pl
            cells = [(r, s) for r in range(r0, r0 + pool[0]) for s in range(c0, c0 + pool[1])
                     if 0 <= r < x.shape[1] and 0 <= s < x.shape[2]]
            if mode == "max":
                r, s = next(rc for rc in cells if x[n, rc[0], rc[1], c] == out[n, i, j, c])
                want[n, r, s, c] += dy[n, i, j, c]
            else:
                for r, s in cells:
                    want[n, r, s, c] += dy[n, i, j, c] / len(cells)
        np.testing.assert_allclose(dx, want, rtol=1e-12, atol=1e-13)


# ------------------------------------------------------------------ lean traces (Model.input_gradient)
def _small_cnn():
    import npcnn
    from npcnn import layers as L
    npcnn.set_seed(3)
    x_in = npcnn.Input((12, 11, 3))
    h = L.Conv2D(4, 3, padding="same", activation="relu")(x_in)
    h = L.MaxPooling2D(3, strides=2, padding="same")(h)  # overlapping windows: ties and routing matter
    h = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu")(h)
    h = L.SeparableConv2D(5, 3, strides=2, padding="same", activation="relu")(h)
    h = L.AveragePooling2D(2, padding="same")(h)
    h = L.Conv2D(3, 2, strides=1, padding="valid", activation="relu")(h)
    out = L.Dense(2)(L.Flatten()(h))
    model = npcnn.Model(x_in, out)
    model.astype("float64")
    return model


def _cache_bytes_of(cache):
    from npcnn.model import _nbytes
    return _nbytes(cache)


def _cache_bytes(trace):
    return sum(map(_cache_bytes_of, trace.caches.values())) + sum(v.nbytes for v in trace.values.values())


@pytest.fixture
def lean_always(monkeypatch):
    """Lean traces cut every cache, however small (by default caches under LEAN_MIN_BYTES stay whole)."""
    import npcnn.model
    monkeypatch.setattr(npcnn.model, "LEAN_MIN_BYTES", 0)


@pytest.mark.parametrize("rule", [None, "guided", "deconvnet"])
def test_lean_input_gradient_equals_full_trace(rng, rule, lean_always):
    from npcnn.model import Trace
    model = _small_cnn()
    x = rng.standard_normal((2, 12, 11, 3))
    x[0, :3, :3, 0] = 2.0  # ties inside pooling windows
    cot = rng.standard_normal((2, 2))
    with model.backward_rule(rule):
        lean = model.input_gradient(x, cotangent=cot)
        full = model.trace(x).input_gradient(cotangent=cot)
        np.testing.assert_allclose(lean, full, rtol=1e-13, atol=1e-14)
        key = model.layer_keys()[3]  # an inner layer: the lean trace stops there
        inner = model.trace(x)[key]
        cot_inner = rng.standard_normal(inner.shape)
        np.testing.assert_allclose(model.input_gradient(x, layer=key, cotangent=cot_inner),
                                   model.trace(x).input_gradient(key, cot_inner), rtol=1e-13, atol=1e-14)
    tr_lean = Trace(model, [x], lean=True)
    assert _cache_bytes(tr_lean) < 0.5 * _cache_bytes(model.trace(x))
    with pytest.raises(NpcnnError, match="weight gradients"):
        tr_lean.param_gradients()


def test_lean_trace_keeps_small_caches_whole(rng):
    from npcnn.model import Trace
    model = _small_cnn()
    x = rng.standard_normal((2, 12, 11, 3))
    lean, full = Trace(model, [x], lean=True), model.trace(x)
    assert sum(map(_cache_bytes_of, lean.caches.values())) == sum(map(_cache_bytes_of, full.caches.values()))
    np.testing.assert_allclose(model.input_gradient(x), full.input_gradient(), rtol=1e-13, atol=1e-14)


def test_lean_input_gradient_is_the_finite_difference_gradient(rng, lean_always):
    from conftest import away_from, check_gradient
    model = _small_cnn()
    x = away_from(rng.standard_normal((1, 12, 11, 3)), [0.0])
    cot = rng.standard_normal((1, 2))
    g = model.input_gradient(x, cotangent=cot)
    check_gradient(lambda: float(np.vdot(model.predict(x), cot)), x, g, rng, n_coords=30, what="dx (lean trace)")


def test_relu_derivative_keeps_the_gradient_dtype(rng):
    """Engine fix: the plain ReLU derivative is a boolean mask, so dy * mask stays float32 (it used to
    build float64 temporaries twice the size of the activation)."""
    from npcnn.activations import ACTIVATIONS, relu_derivative
    z = rng.standard_normal((4, 5)).astype(np.float32)
    dy = rng.standard_normal((4, 5)).astype(np.float32)
    dz = ACTIVATIONS["relu"].backward(dy, z)
    assert dz.dtype == np.float32
    np.testing.assert_array_equal(dz, np.where(z > 0, dy, 0))
    np.testing.assert_array_equal(relu_derivative(z, negative_slope=0.1), np.where(z > 0, 1, 0.1).astype(np.float32))


@pytest.mark.parametrize("shape", [(5,), (1, 150, 150, 16), (16384 * 2,), (7, 5001)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_in_rows_against_zeros_equals_maximum(rng, shape, dtype):
    """relu() (rows against a row of zeros, the remainder apart) equals np.maximum(z, 0) exactly: new
    array, in place, transposed views, NaNs kept, -0.0 and the last partial row included."""
    from npcnn.activations import ACTIVATIONS, relu
    z = rng.standard_normal(shape).astype(dtype)
    flat = z.reshape(-1)
    flat[::997], flat[1::991], flat[-1] = np.nan, -0.0, -3.0
    want = np.maximum(z, 0)
    got = relu(z)
    assert got.dtype == dtype and got is not z
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(relu(z.T), want.T)
    inplace = z.copy()
    ACTIVATIONS["relu"].forward_into(inplace, negative_slope=0.0, max_value=None, threshold=0.0)
    np.testing.assert_array_equal(inplace, want)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_convolution_works_in_a_forked_child(rng):
    """The copy threads do not survive fork(); a child process must start its own instead of hanging."""
    import os
    x = rng.standard_normal((1, 64, 64, 32)).astype(np.float32)  # big enough for the threaded copies
    w = rng.standard_normal((3, 3, 32, 8)).astype(np.float32)
    want = core.conv2d(x, w, None, (1, 1), ((1, 1), (1, 1)))
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if the result is right, and never return into pytest
        ok = False
        try:
            ok = np.allclose(core.conv2d(x, w, None, (1, 1), ((1, 1), (1, 1))), want, rtol=1e-5, atol=1e-4)
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0


def _affine_in_place(z):  # applied twice it would differ from once
    z *= 2
    z += 1


def _softmax_in_place(z):  # along the channels: wrong if applied to a part of them
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    z[...] = e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("kernel,strides,tile", [((3, 3), (1, 1), 0), ((3, 3), (1, 1), 2), ((3, 3), (1, 1), 4),
                                                 ((1, 1), (1, 1), 0), ((3, 3), (2, 2), 0)])
@pytest.mark.parametrize("hw", [(13, 11), (5, 4)])  # many tiles (split by rows), few (split by channels)
@pytest.mark.parametrize("epilogue,reference", [
    (_affine_in_place, lambda z: 2 * z + 1),
    (_softmax_in_place, lambda z: np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True))])
def test_epilogue_runs_once_on_every_whole_block(rng, monkeypatch, kernel, strides, tile, hw, epilogue, reference):
    """A fused activation (the epilogue) sees every output number exactly once, with all its channels,
    on every path: im2col blocks, Winograd split by rows or by channels, 1x1, and the training path."""
    from npcnn import blas
    monkeypatch.setattr(blas, "THREADS", 3)
    monkeypatch.setattr(core, "MEMORY_BUDGET", 2000)  # many small blocks
    monkeypatch.setattr(core, "WINOGRAD", tile or False)
    padding = "same" if kernel != (1, 1) else "valid"
    x, w, pads = _case(rng, kernel, strides, (1, 1), 1, padding, n=2, hw=hw, cin=5, cout=6)
    b = rng.standard_normal(6)
    want = reference(core.conv2d(x, w, b, strides, pads))
    np.testing.assert_allclose(core.conv2d(x, w, b, strides, pads, epilogue=epilogue), want, rtol=1e-12, atol=1e-12)
    monkeypatch.setattr(core, "MEMORY_BUDGET", 1 << 20)  # the training path keeps its im2col matrix
    got, _ = core.conv2d_keep_cols(x, w, b, strides, pads, epilogue=epilogue)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("tile", [2, 4])
def test_winograd_on_many_small_images_goes_a_group_at_a_time(rng, plain, monkeypatch, tile):
    """Many images of a few tiles each: Winograd works through groups of images that fit MEMORY_BUDGET
    (a batch of 4x4 maps once made one array for the whole batch), with the same result."""
    monkeypatch.setattr(core, "WINOGRAD", tile)
    x = rng.standard_normal((23, 4, 5, 6))
    w = rng.standard_normal((3, 3, 6, 7))
    b = rng.standard_normal(7)
    pads = ((1, 1), (1, 1))
    want = plain(core.conv2d, x, w, b, (1, 1), pads)
    monkeypatch.setattr(core, "MEMORY_BUDGET", 20000)  # one tile row of a few images per group
    calls = []
    inner = core._winograd_output
    monkeypatch.setattr(core, "_winograd_output", lambda v, *a, **k: calls.append(v.shape[2]) or inner(v, *a, **k))
    np.testing.assert_allclose(core.conv2d(x, w, b, (1, 1), pads), want, rtol=1e-12, atol=1e-12)
    assert 1 <= max(calls) < 23
