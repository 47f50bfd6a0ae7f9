"""npcnn's threads and NumPy's BLAS: every core busy, one BLAS thread per call.

OpenBLAS (NumPy's wheels bundle it) runs every GEMM on all cores, and its threads meet at a barrier
after each call. That suits one large GEMM; it wastes time on many small ones (Winograd's 16 or 36 per block),
and NumPy's copies and ufuncs between the GEMMs run on one core anyway. Worse, after a call its worker
threads keep spinning for a while, so any work npcnn then runs on its own threads shares the cores with
them (measured: Winograd layers 1.7-2x slower right after a multi-threaded GEMM). So npcnn never lets
the BLAS thread: it splits work into parts on its own threads (:func:`parallel`), and each part's GEMMs
run on one BLAS thread (:func:`limited`); :func:`matmul` is a GEMM split that way, and :func:`gemm` one
product on the calling thread, cut into blocks for OpenBLAS's small-matrix kernels where those pay.

OpenBLAS has no Python interface: its ``set_num_threads`` / ``get_num_threads`` functions are called
through ctypes on the library NumPy already loaded (found next to NumPy, or in this process's memory
map on Linux). Where no OpenBLAS is found (NumPy built on Accelerate or MKL), :func:`available` is False
and the callers keep the BLAS's own threading.
"""
import ctypes
import glob
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
from numpy.lib.stride_tricks import as_strided

_SYMBOL_PREFIXES = ("scipy_openblas_", "openblas_")  # NumPy >= 2 wheels rename OpenBLAS's symbols
_SYMBOL_SUFFIXES = ("64_", "", "_64_")  # 64-bit-integer builds add a suffix
_lock = threading.Lock()
_depth = [0, None]  # open limited() blocks, and the thread count to restore when the last one closes


def _numpy_blas_name():
    """The BLAS NumPy was built with, as its build configuration names it ("" when it cannot say)."""
    try:
        return str(np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]).lower()
    except Exception:  # older NumPy: no mode="dicts"
        return ""


def _candidate_paths():
    """Files that may be the OpenBLAS NumPy uses: its bundled copy first, then (only when NumPy says it
    was built on OpenBLAS, so another package's copy is not mistaken for it) any OpenBLAS loaded."""
    root = os.path.dirname(np.__file__)
    for folder in (os.path.join(root, os.pardir, "numpy.libs"), os.path.join(root, ".dylibs"), root):
        yield from sorted(glob.glob(os.path.join(folder, "*openblas*")))
    if "openblas" not in _numpy_blas_name():
        return
    try:
        with open("/proc/self/maps") as maps:
            yield from sorted({line.split()[-1] for line in maps if "openblas" in line.lower()})
    except OSError:
        pass


def _find():
    """(set_num_threads, get_num_threads, core name) of NumPy's OpenBLAS (the first two as ctypes functions,
    the name of the kernels it chose for this CPU, e.g. "SkylakeX", or ""), or None."""
    for path in _candidate_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in _SYMBOL_PREFIXES:
            for suffix in _SYMBOL_SUFFIXES:
                setter = getattr(lib, f"{prefix}set_num_threads{suffix}", None)
                getter = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
                if setter is not None and getter is not None:
                    setter.argtypes, setter.restype = [ctypes.c_int], None
                    getter.argtypes, getter.restype = [], ctypes.c_int
                    corename = getattr(lib, f"{prefix}get_corename{suffix}", None)
                    name = ""
                    if corename is not None:
                        corename.argtypes, corename.restype = [], ctypes.c_char_p
                        name = (corename() or b"").decode("ascii", "replace")
                    return setter, getter, name
    return None


_functions = _find()


def available():
    """Whether the BLAS's thread count can be read and set (NumPy's OpenBLAS was found)."""
    return _functions is not None


def threads():
    """The number of threads the BLAS runs a call on now (1 when it cannot be told)."""
    return max(1, int(_functions[1]())) if _functions is not None else 1


@contextmanager
def limited(count=1):
    """Within the block, every BLAS call (from any thread) runs on at most ``count`` threads.

    Blocks may overlap (from several threads); the thread count from before the first one is restored
    when the last one closes. Does nothing where the BLAS cannot be controlled.
    """
    if _functions is None:
        yield
        return
    setter, getter, _ = _functions
    with _lock:
        if _depth[0] == 0:
            _depth[1] = getter()
        _depth[0] += 1
        setter(min(count, _depth[1]))
    try:
        yield
    finally:
        with _lock:
            _depth[0] -= 1
            if _depth[0] == 0:
                setter(_depth[1])


# ---------------------------------------------------------------- npcnn's own threads
def _cores():
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may run on (containers, taskset)
    except (AttributeError, OSError):
        return os.cpu_count() or 1


THREADS = min(_cores(), threads() if available() else _cores())
"""Threads npcnn splits its work over: one per core this process may use, fewer if the BLAS was told to
use fewer (OPENBLAS_NUM_THREADS=1 means one). NumPy releases the GIL inside GEMMs, copies and ufunc
loops, so plain Python threads run those parts in parallel."""

MIN_PARALLEL_BYTES = 1 << 20
"""Memory-bound work (copies, elementwise maps) smaller than this runs inline: a hand-off costs ~0.1 ms."""

_executor = []
_part = threading.local()  # .running: this thread is running a part (nested calls then run inline)
if hasattr(os, "register_at_fork"):  # a forked child has none of the parent's threads: start a new pool there
    os.register_at_fork(after_in_child=_executor.clear)


def gemm_parts():
    """How many parts to split work that calls the BLAS into: THREADS, each part's GEMMs then on one BLAS
    thread (under :func:`limited`), or 1 where the BLAS's threads cannot be limited (it threads itself)."""
    return THREADS if available() else 1


def _parts(size, unit):
    """How many parts work of ``size`` is worth: one per ``unit`` of it, at most THREADS."""
    return THREADS if unit <= 0 else max(1, min(THREADS, size // unit))


def parallel(fn, count, nbytes=0, parts=None):
    """fn(i0, i1) over [0, count) split into ``parts`` contiguous parts run in parallel (default: one per
    MIN_PARALLEL_BYTES of the work, ``nbytes`` written, at most THREADS); inline when the work is too
    small to pay for a thread hand-off, or when called from within a part (each core already has its
    part). While the parts run, every BLAS call runs on one thread (:func:`limited`). Parts must write
    disjoint slices."""
    if parts is None:
        parts = _parts(nbytes, MIN_PARALLEL_BYTES)
    parts = min(parts, count)
    if parts <= 1 or getattr(_part, "running", False):
        fn(0, count)
        return
    if not _executor:
        _executor.append(ThreadPoolExecutor(THREADS, thread_name_prefix="npcnn"))

    def run(i0, i1):
        _part.running = True
        try:
            fn(i0, i1)
        finally:
            _part.running = False

    bounds = [count * k // parts for k in range(parts + 1)]
    with limited(1):  # every core has its part: each part's BLAS calls stay on its own thread
        futures = [_executor[0].submit(run, bounds[k], bounds[k + 1]) for k in range(1, parts)]
        run(bounds[0], bounds[1])
        for f in futures:
            f.result()


CHUNK_BYTES = 8 << 20
"""The most a part of :func:`parallel_chunks` hands its function at once."""


def parallel_chunks(fn, count, nbytes):
    """:func:`parallel`, each part calling fn on pieces of its range worth at most CHUNK_BYTES of ``nbytes``
    (the whole work's size): the temporaries fn makes stay small (and in cache)."""
    step = max(1, int(count * CHUNK_BYTES // max(nbytes, 1)))

    def part(i0, i1):
        for j in range(i0, i1, step):
            fn(j, min(i1, j + step))

    parallel(part, count, nbytes)


SMALL_PRODUCT = 1 << 22
"""Multiply-adds worth a thread of their own (a product is split in one part per SMALL_PRODUCT of it, at
most THREADS): a hand-off to the pool costs ~0.1 ms."""


STREAM_MIN_BYTES = 16 << 20
STREAM_MAX_WIDTH = 768
"""One row times a matrix of STREAM_MIN_BYTES or more (a Dense layer at batch 1: its weights stream from
memory) whose shorter side is at most STREAM_MAX_WIDTH goes through :func:`_row_times_matrix`. Measured on one
thread against OpenBLAS's gemv (AVX-512 EPYC, interleaved medians): 20736x512 0.39x the time forward /
0.55x backward, 200000x128 0.38x / 0.71x, 16384x512 0.60x / 0.59x, 8192x512 0.81x / 0.82x; at 1024 outputs
and more, or for matrices that stay in cache, OpenBLAS is faster (20736x1024 1.2x, 4096x1000 1.1-1.4x)."""
STREAM_ROWS = 256
"""Rows of the matrix summed per partial sum in :func:`_row_times_matrix`."""


def _row_times_matrix(a, b, out):
    """a (1, K) @ b (K, N) for a tall, narrow b streamed from memory (see STREAM_MIN_BYTES), on every core.

    b C-contiguous, N narrow: einsum's loop adds a[k] * b[k] to an output row that stays in L1 while b
    streams past once; the sums run over STREAM_ROWS rows at a time, then the partial sums are added
    (K / STREAM_ROWS of them): 5x more accurate than one running sum over K (and than the BLAS, measured
    against float64 for K = 20736).
    b = w.T of a C-contiguous w (N, K) with K narrow (the backward of the same layer): out[n] = w[n] . a[0],
    one dot product of K contiguous numbers per output.
    """
    k, n = b.shape
    row = a[0]
    if b.flags.c_contiguous:
        chunks = k // STREAM_ROWS
        partial = np.empty((chunks + 1, n), out.dtype)
        cut = chunks * STREAM_ROWS

        def sums(p0, p1):
            r0, r1 = p0 * STREAM_ROWS, p1 * STREAM_ROWS
            np.einsum("pk,pkn->pn", row[r0:r1].reshape(p1 - p0, -1), b[r0:r1].reshape(p1 - p0, STREAM_ROWS, n),
                      out=partial[p0:p1])

        parallel(sums, chunks, parts=THREADS)
        np.einsum("k,kn->n", row[cut:], b[cut:], out=partial[chunks])  # the last rows (zeros if none)
        np.sum(partial, axis=0, out=out[0])
    else:
        w = b.T
        parallel(lambda n0, n1: np.einsum("k,nk->n", row, w[n0:n1], out=out[0, n0:n1]), n, parts=THREADS)
    return out


SMALL_KERNEL_CORES = ("skylakex", "cooperlake", "sapphirerapids")
"""OpenBLAS cores (the AVX-512 ones) with small-matrix GEMM kernels: products of at most SMALL_GEMM
multiply-adds skip the packing of both matrices into its buffers."""
SMALL_GEMM = 1_000_000
"""OpenBLAS's bound for its small-matrix kernels: M*N*K <= 100^3 (kernel/x86_64/
sgemm_small_kernel_permit_skylakex.c, which also refuses a transposed b with K < 32 or M*N > 1200)."""
SMALL_GEMM_MIN_SIDE = 4
SMALL_GEMM_MIN_WIDTH = 8
SMALL_GEMM_MAX_WIDTH = 128
"""Products are cut only when N is within these (a (1, K) @ (K, N) or (M, K) @ (K, 1) product is left to
the BLAS's own GEMV) and each block has SMALL_GEMM_MIN_SIDE rows or more. The upper bound, measured on one
thread with stacks of 36 (tiles, C) @ (C, C') GEMMs as Winograd runs them: C -> C' = 64 -> 64 0.78x the
time, 64 -> 128 0.89x, 128 -> 128 even, 128 -> 256 1.24x, 256 -> 256 1.15x, 512 -> 512 1.2x (im2col
products: (M, 576) @ (576, 64) 0.75x, (M, 1152) @ (1152, 128) 0.86x)."""
SMALL_KERNELS = _functions is not None and _functions[2].lower() in SMALL_KERNEL_CORES


def _split_rows(x, size, whole):
    """x (..., M, K) -> its first ``whole`` rows as a stack of blocks of ``size`` rows, (..., whole/size, size,
    K), the block index inserted before the last two axes (a strided view)."""
    *lead, _, c = x.shape
    *lead_strides, sr, sc = x.strides
    return as_strided(x, (*lead, whole // size, size, c), (*lead_strides, size * sr, sr, sc))


def gemm(a, b, out):
    """out = a @ b (NumPy's matmul rules, stacks included) on the calling thread's BLAS.

    Where OpenBLAS has small-matrix kernels (SMALL_KERNELS), a float32 product of many rows and few
    columns (SMALL_GEMM_MIN_WIDTH to SMALL_GEMM_MAX_WIDTH) is cut into blocks of rows within its bound of
    SMALL_GEMM multiply-adds, all handed to one np.matmul call as a stack (no Python loop): the regular
    kernel packs both matrices on every call, which dominates when the product is narrow. Measured on one
    thread (Zen 4, OpenBLAS 0.3.31 SkylakeX kernels): (22500, 27) @ (27, 16) 0.65x the time, (50176, 27) @
    (27, 64) 0.69x, (5625, 144) @ (144, 32) 0.79x, (1369, 288) @ (288, 64) 0.84x, (12544, 576) @ (576, 64)
    0.75x; blocks of twice the bound fall back to the regular kernel and take as long as one call. Only
    rows are cut: blocks of columns of a row-major b are read with a stride (a Dense layer's (1, K) @ (K, N)
    cut into column blocks ran 1.1x slower in VGG16).
    """
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    size = SMALL_GEMM // max(k * n, 1)  # rows per block
    if not SMALL_KERNELS or out.dtype != np.float32 or m <= size or size < SMALL_GEMM_MIN_SIDE \
            or not SMALL_GEMM_MIN_WIDTH <= n <= SMALL_GEMM_MAX_WIDTH:
        return np.matmul(a, b, out=out)
    whole = m - m % size
    np.matmul(_split_rows(a, size, whole), b[..., None, :, :], out=_split_rows(out, size, whole))
    if whole < m:
        np.matmul(a[..., whole:, :], b, out=out[..., whole:, :])
    return out


def matmul(a, b, out=None):
    """``a @ b`` (NumPy's matmul rules, stacks included) on every core, each part's GEMM on one BLAS thread.

    a: (..., M, K), b: (..., K, N) -> (..., M, N). Split along the longer of M and N (a part that gets a
    few rows of a still packs all of b: splitting the 27 rows of a (27, 16) @ (16, 22500) took 2.3x as
    long as splitting its columns, and (49, 4608) @ (4608, 512) 2x); when K is much the longest (a Dense
    layer at batch 1, a weight gradient), the sum over K (partial products added: each thread reads one
    contiguous block of b, 2.4x faster than splitting N for a (1, 20736) @ (20736, 512)). Small products
    run inline. Where the BLAS's threads cannot be limited, this is plain ``np.matmul`` (the BLAS threads
    it itself).
    """
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    if out is None:
        shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (m, n)
        out = np.empty(shape, np.result_type(a.dtype, b.dtype))
    if not available() or getattr(_part, "running", False):  # nested in a part: each core has its own
        return gemm(a, b, out)
    if a.ndim == b.ndim == 2 and m == 1 and b.nbytes >= STREAM_MIN_BYTES and out.flags.c_contiguous \
            and a.dtype == b.dtype == out.dtype and ((b.flags.c_contiguous and n <= STREAM_MAX_WIDTH)
                                                     or (b.flags.f_contiguous and k <= STREAM_MAX_WIDTH)):
        return _row_times_matrix(a, b, out)
    stack = int(np.prod(out.shape[:-2]))
    with limited(1):
        parts = _parts(stack * m * k * n, SMALL_PRODUCT)
        least = 8 * parts  # rows or columns per part worth a GEMM of their own
        if parts > 1 and k >= 4 * max(m, n) and a.ndim == b.ndim == 2:  # split the sum over k
            cut = [k * p // parts for p in range(parts + 1)]
            partial = [out] + [np.empty_like(out) for _ in range(parts - 1)]

            def sums(p0, p1):
                for p in range(p0, p1):
                    gemm(a[:, cut[p]:cut[p + 1]], b[cut[p]:cut[p + 1]], partial[p])

            parallel(sums, parts, parts=parts)
            for extra in partial[1:]:
                out += extra
        elif parts > 1 and m >= least and (m >= n or n < least):
            parallel(lambda i0, i1: gemm(a[..., i0:i1, :], b, out[..., i0:i1, :]), m, parts=parts)
        elif parts > 1 and n >= least:
            parallel(lambda j0, j1: gemm(a, b[..., j0:j1], out[..., j0:j1]), n, parts=parts)
        else:
            gemm(a, b, out)
    return out


def map_rows(fn, *arrays, out=None):
    """``fn(*arrays)`` for same-shaped arrays of rank >= 3 and an ``fn`` that acts along the last axis
    only (an activation), computed in blocks of rows (axis 1, a few MB each) on every core. Returns ``out``
    (may be one of the arrays: each block is read before it is written), by default a new array of the
    first array's shape and dtype."""
    x = arrays[0]
    if x.ndim < 3 or x.nbytes < MIN_PARALLEL_BYTES or THREADS == 1:
        if out is None:
            return fn(*arrays)
        out[...] = fn(*arrays)
        return out
    out = np.empty_like(x) if out is None else out

    def rows(i0, i1):
        out[:, i0:i1] = fn(*(a[:, i0:i1] for a in arrays))

    parallel_chunks(rows, x.shape[1], x.nbytes)
    return out
