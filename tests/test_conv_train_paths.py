"""The training fast paths of npcnn.conv against the plain definitions (float64, a direct loop):

- one-channel inputs: im2col copied tap-major (a transposed view), forward and weight gradient
- conv2d_keep_cols: the forward's im2col matrix reused by conv2d_weight_grad (cols=)
- the tap-major col2im input gradient (cin < cout, any stride) via the adjoint identity <dx, x> = <y, dy>
- the fused max-pool backward (first maximum wins ties) against pool2d_argmax routing
"""
import numpy as np
import pytest

from npcnn import conv as core

GEOMETRIES = [  # kernel, strides, dilation, padding
    ((3, 3), (1, 1), (1, 1), "same"), ((3, 3), (2, 2), (1, 1), "same"), ((2, 3), (1, 2), (1, 1), "valid"),
    ((3, 3), (1, 1), (2, 2), "same"), ((1, 1), (1, 1), (1, 1), "valid")]


def direct_conv(x, w, strides, pads, dilation):
    """out[n, i, j, o] = sum_{a, b, c} xpad[n, i*sh + a*dh, j*sw + b*dw, c] w[a, b, c, o], by loops."""
    (pt, pb), (pl, pr) = pads
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    kh, kw, _, cout = w.shape
    oh = (xp.shape[1] - (kh - 1) * dilation[0] - 1) // strides[0] + 1
    ow = (xp.shape[2] - (kw - 1) * dilation[1] - 1) // strides[1] + 1
    out = np.zeros((x.shape[0], oh, ow, cout))
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                for b in range(kw):
                    out[:, i, j] += xp[:, i * strides[0] + a * dilation[0], j * strides[1] + b * dilation[1]] @ w[a, b]
    return out


@pytest.mark.parametrize("budget", [32 << 20, 700])  # one block, or a few output rows per block
@pytest.mark.parametrize("kernel,strides,dilation,padding", GEOMETRIES)
@pytest.mark.parametrize("cin,cout", [(1, 3), (3, 5), (5, 2)])
def test_forward_weight_and_input_gradients(monkeypatch, budget, kernel, strides, dilation, padding, cin, cout):
    monkeypatch.setattr(core, "MEMORY_BUDGET", budget)
    rng = np.random.default_rng(cin * 10 + cout)
    x = rng.standard_normal((2, 9, 8, cin))
    w = rng.standard_normal((*kernel, cin, cout))
    pads = core.resolve_padding(padding, x.shape[1:3], kernel, strides, dilation)
    want = direct_conv(x, w, strides, pads, dilation)
    y = core.conv2d(x, w, None, strides, pads, dilation)
    y_kept, cols = core.conv2d_keep_cols(x, w, None, strides, pads, dilation)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y_kept, want, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dw = core.conv2d_weight_grad(x, dy, w.shape, strides, pads, dilation)
    np.testing.assert_allclose(np.vdot(dw, w), np.vdot(y, dy), rtol=1e-10)  # y is linear in w
    np.testing.assert_allclose(core.conv2d_weight_grad(x, dy, w.shape, strides, pads, dilation, cols=cols), dw,
                               rtol=1e-12, atol=1e-12)
    dx = core.conv2d_input_grad(dy, w, x.shape, strides, pads, dilation)
    np.testing.assert_allclose(np.vdot(dx, x), np.vdot(y, dy), rtol=1e-10)  # y is linear in x


def test_keep_cols_only_when_it_fits(monkeypatch):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 6, 6, 3)), rng.standard_normal((3, 3, 3, 4))
    assert core.conv2d_keep_cols(x, w, None, (1, 1), ((1, 1), (1, 1)))[1].shape == (2 * 36, 27)
    monkeypatch.setattr(core, "MEMORY_BUDGET", 100)
    y, cols = core.conv2d_keep_cols(x, w, None, (1, 1), ((1, 1), (1, 1)))
    assert cols is None
    np.testing.assert_allclose(y, direct_conv(x, w, (1, 1), ((1, 1), (1, 1)), (1, 1)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("pool,strides,padding", [((2, 2), (2, 2), "valid"), ((3, 3), (2, 2), "same"),
                                                  ((2, 2), (2, 2), "same"), ((3, 2), (3, 2), "valid"),
                                                  ((2, 3), (2, 3), "same"), ((3, 3), (3, 3), "same")])
def test_max_pool_backward_routes_to_first_maximum(pool, strides, padding):
    rng = np.random.default_rng(1)
    x = np.maximum(rng.standard_normal((2, 7, 7, 3)), 0.0)  # ReLU output: many tied zeros
    x[1] = np.round(x[1] * 2) / 2  # and ties between positive values
    x[0, :2, :2, 0] = 1.5
    pads = core.resolve_padding(padding, x.shape[1:3], pool, strides)
    out = core.pool2d(x, pool, strides, pads, "max")
    dy = rng.standard_normal(out.shape)
    fused = core.pool2d_backward(dy, x, out, pool, strides, pads, "max")
    winner = core.pool2d_argmax(x, out, pool, strides, pads)
    routed = core.pool2d_backward(dy, x.shape, out, pool, strides, pads, "max", winner)
    np.testing.assert_array_equal(fused, routed)
    np.testing.assert_allclose(fused.sum(), dy.sum())  # every window's gradient lands exactly once


@pytest.mark.parametrize("channels,dy_dtype", [(1, np.float32), (16, np.float32), (40, np.float32), (16, np.float64)])
def test_tiled_max_pool_backward_on_strided_channels_and_batches(channels, dy_dtype):
    """The tiled max-pool backward gathers whole pixels as opaque blocks: inputs whose channels are not
    contiguous (a channel slice), several images, and odd sizes (the last row/column is no window's) must
    route exactly as the winner indices do, also when the gradient's dtype is not the input's."""
    rng = np.random.default_rng(2)
    wide = np.maximum(rng.standard_normal((3, 9, 11, 2 * channels)), 0.0).astype(np.float32)
    wide[..., ::4] = np.round(wide[..., ::4])  # positive ties too
    x = wide[..., ::2]  # channels at stride 2
    pads = ((0, 0), (0, 0))
    out = core.pool2d(x, (2, 2), (2, 2), pads, "max")
    dy = rng.standard_normal(out.shape).astype(dy_dtype)  # float64: pixels of another size than x's
    got = core.pool2d_backward(dy, x, out, (2, 2), (2, 2), pads, "max")
    winner = core.pool2d_argmax(x, out, (2, 2), (2, 2), pads)
    want = core.pool2d_backward(dy, x.shape, out, (2, 2), (2, 2), pads, "max", winner)
    np.testing.assert_array_equal(got, want)
    assert not got[:, 8:].any() and not got[:, :, 10:].any()
