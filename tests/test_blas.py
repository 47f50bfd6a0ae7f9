"""npcnn.blas: the BLAS thread limit and the GEMM split over npcnn's own threads."""
import threading

import numpy as np
import pytest

from npcnn import blas
from npcnn import conv as core
from tests.test_conv_core import direct_conv


@pytest.fixture
def split_everything(monkeypatch):
    """Split every product over three parts, however small (the defaults would run small ones inline)."""
    monkeypatch.setattr(blas, "SMALL_PRODUCT", 0)
    monkeypatch.setattr(blas, "THREADS", 3)


@pytest.mark.parametrize("a_shape,b_shape", [
    ((50, 7), (7, 9)),          # split over rows
    ((2, 7), (7, 40)),          # few rows: split over columns
    ((2, 70), (70, 4)),         # few long rows: split over the sum
    ((4, 30, 6), (4, 6, 5)),    # a stack, split over each matrix's rows
    ((3, 1, 30, 6), (2, 6, 5)),  # broadcast stacks
    ((1, 6), (6, 1)),           # fewer columns than parts
    ((27, 4), (4, 300)),        # more columns than rows: split over columns
    ((30, 200), (200, 40)),     # the sum much the longest: split over it, however many rows
])
def test_matmul_equals_numpy(rng, split_everything, a_shape, b_shape):
    a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    np.testing.assert_allclose(blas.matmul(a, b), np.matmul(a, b), rtol=1e-13, atol=1e-13)
    out = np.full(np.matmul(a, b).shape, np.nan)
    assert blas.matmul(a, b, out=out) is out
    np.testing.assert_allclose(out, np.matmul(a, b), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("k,n", [(1000, 7), (1023, 12), (100, 3)])  # whole chunks, a remainder, fewer rows than one
def test_one_row_times_a_streamed_matrix(rng, monkeypatch, k, n):
    """A Dense layer at batch 1 over a big narrow kernel: forward x @ w by partial sums over STREAM_ROWS rows,
    backward dy @ w.T by one dot product per output; both equal NumPy's product, in every dtype, whatever the
    number of threads, and only where the rule says (one row, a big matrix, a narrow side)."""
    monkeypatch.setattr(blas, "STREAM_MIN_BYTES", 0)
    monkeypatch.setattr(blas, "STREAM_ROWS", 64)
    calls = []
    inner = blas._row_times_matrix
    monkeypatch.setattr(blas, "_row_times_matrix", lambda *args: calls.append(args[1].shape) or inner(*args))
    for threads in (1, 3):
        monkeypatch.setattr(blas, "THREADS", threads)
        for dtype, tol in ((np.float64, 1e-12), (np.float32, 1e-5)):
            x, w = rng.standard_normal((1, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
            dy = rng.standard_normal((1, n)).astype(dtype)
            y, dx = blas.matmul(x, w), blas.matmul(dy, w.T)
            assert y.dtype == dx.dtype == dtype and y.shape == (1, n) and dx.shape == (1, k)
            np.testing.assert_allclose(y, x.astype(float) @ w.astype(float), rtol=tol, atol=tol * np.sqrt(k))
            np.testing.assert_allclose(dx, dy.astype(float) @ w.T.astype(float), rtol=tol, atol=tol * np.sqrt(n))
    assert calls == [(k, n), (n, k)] * 4
    monkeypatch.setattr(blas, "STREAM_MAX_WIDTH", n - 1)  # too wide: the BLAS
    x, w = rng.standard_normal((2, k)), rng.standard_normal((k, n))
    blas.matmul(x[:1], w), blas.matmul(x, w)  # and two rows: the BLAS too
    assert len(calls) == 8


def test_streamed_partial_sums_are_more_accurate_than_one_running_sum(rng, monkeypatch):
    """float32 over K = 20736 (the cats-vs-dogs Dense layer): the partial sums stay within ~3e-7 of float64,
    where one running sum over K (einsum alone) is 5-10x further off (and OpenBLAS's gemv 3-8x, seen here)."""
    monkeypatch.setattr(blas, "STREAM_MIN_BYTES", 0)
    k, n = 20736, 16
    x = np.maximum(rng.standard_normal((1, k)), 0).astype(np.float32)
    w = (rng.standard_normal((k, n)) * 0.01).astype(np.float32)
    exact = x.astype(np.float64) @ w.astype(np.float64)
    error = lambda y: np.abs(y - exact).max() / np.abs(exact).max()
    assert error(blas.matmul(x, w)) < 1e-6
    assert error(blas.matmul(x, w)) < error(np.einsum("k,kn->n", x[0], w)[None]) / 3


def test_matmul_inside_a_part_runs_inline_and_still_right(rng, split_everything):
    """Within a part (a training shard), matmul does not split again: every partial sum is there."""
    a, b = rng.standard_normal((30, 200)), rng.standard_normal((200, 40))
    got = [None]

    def part(i0, i1):
        if i0 == 0:
            got[0] = blas.matmul(a, b)

    blas.parallel(part, 3, parts=3)
    np.testing.assert_allclose(got[0], a @ b, rtol=1e-13, atol=1e-13)


@pytest.mark.skipif(not blas.available(), reason="NumPy's BLAS is not an OpenBLAS npcnn can control")
def test_blas_runs_on_one_thread_inside_parts(monkeypatch):
    """Parts already keep every core busy: a BLAS call inside one (a training shard's matmul) must not
    start threads of its own (that oversubscribed the cores: a training epoch took 1.6x as long)."""
    monkeypatch.setattr(blas, "THREADS", 2)
    seen = []
    blas.parallel(lambda i0, i1: seen.append(blas.threads()), 2, parts=2)
    assert seen == [1, 1]


def test_matmul_of_transposed_views_and_mixed_dtypes(rng, split_everything):
    a = rng.standard_normal((20, 33)).astype(np.float32)
    b = rng.standard_normal((20, 8))
    np.testing.assert_allclose(blas.matmul(a.T, b), a.T.astype(np.float64) @ b, rtol=1e-6)
    assert blas.matmul(a.T, b).dtype == np.float64


@pytest.mark.skipif(not blas.available(), reason="NumPy's BLAS is not an OpenBLAS npcnn can control")
def test_limited_restores_the_thread_count_after_overlapping_blocks():
    before = blas.threads()
    with blas.limited(1):
        assert blas.threads() == 1
        with blas.limited(1):
            assert blas.threads() == 1
        assert blas.threads() == 1  # the inner block's end does not restore yet
    assert blas.threads() == before
    with pytest.raises(ZeroDivisionError):
        with blas.limited(1):
            1 / 0
    assert blas.threads() == before


def test_parallel_covers_every_index_once_and_runs_nested_calls_inline(monkeypatch):
    monkeypatch.setattr(blas, "THREADS", 3)
    seen, names = [], set()

    def part(i0, i1):
        names.add(threading.current_thread().name)
        inner = []
        blas.parallel(lambda j0, j1: inner.append((j0, j1)), 10, parts=3)  # within a part: inline
        assert inner == [(0, 10)]
        seen.extend(range(i0, i1))

    blas.parallel(part, 11, parts=3)
    assert sorted(seen) == list(range(11))
    assert len(names) >= 2  # the caller ran one part, pool threads the others


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("budget", [core.MEMORY_BUDGET, 3000])
@pytest.mark.parametrize("hw", [(31, 29), (13, 9)])  # parts of tile rows, or (few tiles) of output channels
def test_winograd_split_over_threads_matches_plain_im2col(rng, monkeypatch, budget, hw, tile):
    """Winograd runs in parts on separate threads (here three, blocks within them small)."""
    monkeypatch.setattr(blas, "THREADS", 3)
    monkeypatch.setattr(core, "MEMORY_BUDGET", budget)
    x = rng.standard_normal((2, *hw, 5))
    w = rng.standard_normal((3, 3, 5, 4))
    b = rng.standard_normal(4)
    pads = ((1, 1), (1, 1))
    monkeypatch.setattr(core, "WINOGRAD", tile)
    fast = core.conv2d(x, w, b, (1, 1), pads)
    np.testing.assert_allclose(fast, direct_conv(x, w, (1, 1), pads, (1, 1)) + b, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(fast.shape)
    dx = core.conv2d_input_grad(dy, w, x.shape, (1, 1), pads)
    monkeypatch.setattr(core, "WINOGRAD", False)
    np.testing.assert_allclose(dx, core.conv2d_input_grad(dy, w, x.shape, (1, 1), pads), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("pool,strides,padding", [((2, 2), (2, 2), "valid"), ((3, 3), (2, 2), "same"),
                                                  ((2, 3), (3, 2), "same")])
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pooling_in_row_blocks_on_threads_changes_nothing(rng, monkeypatch, pool, strides, padding, mode):
    x = rng.standard_normal((2, 11, 10, 3))
    x[:, :4, :4] = 1.0  # ties: the first maximum must win in every block as in the whole
    pads = core.resolve_padding(padding, x.shape[1:3], pool, strides)
    out = core.pool2d(x, pool, strides, pads, mode)
    dy = rng.standard_normal(out.shape)
    dx = core.pool2d_backward(dy, x, out, pool, strides, pads, mode)
    monkeypatch.setattr(blas, "THREADS", 3)
    monkeypatch.setattr(blas, "MIN_PARALLEL_BYTES", 0)
    monkeypatch.setattr(blas, "CHUNK_BYTES", 500)  # several pieces per part
    np.testing.assert_array_equal(core.pool2d(x, pool, strides, pads, mode), out)
    np.testing.assert_array_equal(core.pool2d_backward(dy, x, out, pool, strides, pads, mode), dx)


@pytest.mark.parametrize("name", ["relu", "softmax", "gelu", "glu"])
@pytest.mark.parametrize("rule", [None, "guided"])
def test_activations_in_row_blocks_on_threads_change_nothing(rng, monkeypatch, name, rule):
    from npcnn import layers as L
    layer = L.Conv2D(6, 1, activation=name)
    x = rng.standard_normal((2, 7, 5, 3))
    layer.build(x.shape, dtype="float64")
    y, cache = layer.apply(x)
    dy = rng.standard_normal(y.shape)
    dx, _ = layer.apply_backward(dy, cache, rule)
    monkeypatch.setattr(blas, "THREADS", 3)
    monkeypatch.setattr(blas, "MIN_PARALLEL_BYTES", 0)
    monkeypatch.setattr(blas, "CHUNK_BYTES", 500)  # several pieces per part
    y3, cache3 = layer.apply(x)
    np.testing.assert_array_equal(y3, y)
    np.testing.assert_array_equal(layer.apply_backward(dy, cache3, rule)[0], dx)


@pytest.mark.parametrize("n", [1, 2, 5])  # parts of rows (fewer images than parts), or of images
@pytest.mark.parametrize("budget", [core.MEMORY_BUDGET, 2000])
@pytest.mark.parametrize("hw,cout", [((9, 8), 5), ((3, 3), 20)])  # more pixels than channels, or fewer
def test_im2col_convolution_in_parts_on_threads_matches_the_direct_loop(rng, monkeypatch, n, budget, hw, cout):
    """Split over parts of images, of output rows, or (fewer pixels than output channels, one im2col
    matrix that fits the budget) of output channels: the same numbers as the direct loop every way."""
    monkeypatch.setattr(blas, "THREADS", 3)
    monkeypatch.setattr(blas, "MIN_PARALLEL_BYTES", 0)
    monkeypatch.setattr(blas, "SMALL_PRODUCT", 0)
    monkeypatch.setattr(core, "MEMORY_BUDGET", budget)
    monkeypatch.setattr(core, "WINOGRAD", False)
    x = rng.standard_normal((n, *hw, 4))
    w = rng.standard_normal((3, 2, 4, cout))
    b = rng.standard_normal(cout)
    for strides in [(1, 1), (2, 1)]:
        pads = core.resolve_padding("same", x.shape[1:3], (3, 2), strides)
        got = core.conv2d(x, w, b, strides, pads, epilogue=lambda z: np.maximum(z, 0, out=z))
        np.testing.assert_allclose(got, np.maximum(direct_conv(x, w, strides, pads, (1, 1)) + b, 0),
                                   rtol=1e-12, atol=1e-12)


def test_without_a_controllable_blas_everything_falls_back_to_numpy(rng, monkeypatch):
    """NumPy on Accelerate or MKL: no OpenBLAS to limit, so no GEMM is split and Winograd stays off by
    default (its 16 small GEMMs would each pay the BLAS's own thread barrier); results are unchanged."""
    monkeypatch.setattr(blas, "_functions", None)
    assert not blas.available() and blas.threads() == 1
    a, b = rng.standard_normal((40, 30)), rng.standard_normal((30, 20))
    np.testing.assert_allclose(blas.matmul(a, b), a @ b, rtol=1e-13)
    with blas.limited(1):  # a no-op
        pass
    assert not core.winograd_pays(128, 128, (1, 56, 56)) or core._ONE_BLAS_THREAD
    x, w = rng.standard_normal((1, 30, 30, 64)), rng.standard_normal((3, 3, 64, 64))
    pads = ((1, 1), (1, 1))
    np.testing.assert_allclose(core.conv2d(x, w, None, (1, 1), pads),
                               direct_conv(x, w, (1, 1), pads, (1, 1)), rtol=1e-10, atol=1e-10)


@pytest.fixture
def small_kernels(monkeypatch):
    """Cut products as on a BLAS with small-matrix kernels (whatever this machine's BLAS is), with a
    small bound so that small test matrices are cut into several blocks and a remainder."""
    monkeypatch.setattr(blas, "SMALL_KERNELS", True)
    monkeypatch.setattr(blas, "SMALL_GEMM", 600)


@pytest.mark.parametrize("a_shape,b_shape,cut", [
    ((97, 6), (6, 8), "rows"),              # 12 rows a block, one short block left
    ((96, 6), (6, 8), "rows"),              # blocks exactly
    ((97, 6), (6, 4), None),                # narrower than SMALL_GEMM_MIN_WIDTH
    ((5, 6), (6, 203), None),               # more columns than rows: never cut into blocks of columns
    ((3, 41, 4), (2, 3, 4, 9), "rows"),     # stacks broadcast: (G, M, K) @ (taps, G, K, N)
    ((8, 10), (10, 7), None),               # within the bound: one call
    ((400, 60), (60, 40), None),            # a block would have fewer than SMALL_GEMM_MIN_SIDE rows
    ((3000, 1), (1, 130), None),            # the narrow side wider than SMALL_GEMM_MAX_WIDTH
])
@pytest.mark.parametrize("order", ["C", "F"])
def test_gemm_in_small_blocks_equals_matmul(rng, small_kernels, monkeypatch, a_shape, b_shape, cut, order):
    a = rng.standard_normal(a_shape).astype(np.float32)
    if order == "F":  # the planar im2col matrix is the transposed view of a (K, M) array
        a = np.asfortranarray(a) if a.ndim == 2 else a.transpose(0, 2, 1).copy().transpose(0, 2, 1)
    b = rng.standard_normal(b_shape).astype(np.float32)
    want = np.matmul(a.astype(np.float64), b)
    wide = np.full(want.shape[:-1] + (want.shape[-1] + 3,), np.nan, np.float32)
    out = wide[..., 1:-2]  # rows of the output not contiguous with each other
    calls = []
    matmul = np.matmul
    monkeypatch.setattr(blas.np, "matmul", lambda x, y, out=None: calls.append((x.shape, y.shape)) or matmul(x, y, out=out))
    assert blas.gemm(a, b, out) is out
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    assert np.isnan(wide[..., 0]).all() and np.isnan(wide[..., -2:]).all()  # nothing written outside
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    if cut is None:
        assert len(calls) == 1 and calls[0] == (a.shape, b.shape)
    else:
        block = calls[0][0][-2]
        assert block * k * n <= blas.SMALL_GEMM
        assert len(calls) == 1 + (m % block > 0)


def test_gemm_keeps_float64_and_other_blas_whole(rng, monkeypatch):
    """Only float32 products on a BLAS with small-matrix kernels are cut."""
    calls = []
    matmul = np.matmul
    monkeypatch.setattr(blas.np, "matmul", lambda x, y, out=None: calls.append(x.shape) or matmul(x, y, out=out))
    monkeypatch.setattr(blas, "SMALL_GEMM", 600)
    a, b = rng.standard_normal((97, 6)), rng.standard_normal((6, 8))
    for kernels, dtype in [(True, np.float64), (False, np.float32)]:
        monkeypatch.setattr(blas, "SMALL_KERNELS", kernels)
        calls.clear()
        blas.gemm(a.astype(dtype), b.astype(dtype), np.empty((97, 8), dtype))
        assert calls == [(97, 6)]
