"""Convolution layers. The arithmetic lives in :mod:`npcnn.conv`; here: shapes, weights, bookkeeping.

Kernel layouts are Keras's, so a Keras weight list maps one to one:
  Conv2D            kernel (kh, kw, cin/groups, filters), bias (filters,)
  Conv1D            kernel (k, cin, filters)                        run as a 1×k Conv2D
  DepthwiseConv2D   depthwise_kernel (kh, kw, cin, multiplier)        output channel c*multiplier + j
  SeparableConv2D   depthwise_kernel (kh, kw, cin, m), pointwise_kernel (1, 1, cin*m, filters)
  Conv2DTranspose   kernel (kh, kw, filters, cin)                     the input-gradient of a Conv2D
"""
import numpy as np

from .. import conv as core
from ..blas import matmul
from ..errors import InputError, NpcnnError, UnsupportedError
from .base import Layer, as_1d_config, check_rank, check_sizes, single_int


def _check_channels_last(layer, data_format):
    if data_format not in (None, "channels_last"):
        raise UnsupportedError(f"layer {layer.name!r}: data_format={data_format!r} is not supported; "
                               "npcnn runs NHWC (channels_last) models")


class _ConvBase(Layer):
    """What every convolution shares: kernel size, strides, padding, dilation, bias, activation."""

    rank = 2
    weight_names = ("kernel", "bias")

    def __init__(self, filters=None, kernel_size=3, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, groups=1, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(activation=activation, **kwargs)
        _check_channels_last(self, data_format)
        as_pair = (lambda v, n: core.pair(v, n)) if self.rank == 2 else (lambda v, n: (1, single_int(self, n, v)))
        self.filters, self.groups, self.use_bias = filters, int(groups), bool(use_bias)
        self.kernel_size = as_pair(kernel_size, "kernel_size")
        self.strides = as_pair(strides, "strides")
        self.dilation_rate = as_pair(dilation_rate, "dilation_rate")
        self.padding = str(padding).lower()
        if self.padding not in ("valid", "same") + (("causal",) if self.rank == 1 else ()):
            raise InputError(f"layer {self.name!r}: unknown padding {padding!r}")
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        for what in ("kernel_size", "strides", "dilation_rate"):
            check_sizes(self, what, getattr(self, what))
        check_sizes(self, "filters and groups", [self.groups] + ([filters] if filters is not None else []))

    def config_keys(self):
        return ("filters", "kernel_size", "strides", "padding", "dilation_rate", "groups", "activation",
                "use_bias")

    def get_config(self):
        cfg = super().get_config()
        return as_1d_config(cfg, ("kernel_size", "strides", "dilation_rate")) if self.rank == 1 else cfg

    def initializer(self, weight_name):
        return self.bias_initializer if weight_name == "bias" else self.kernel_initializer

    def _bias_grad(self, grads, dout):
        """dbias = dout summed over batch and positions (N, oh, ow, filters) -> (filters,)."""
        if self.use_bias:
            grads["bias"] = dout.sum(axis=(0, 1, 2))

    def _pads(self, hw):
        return core.resolve_padding(self.padding, hw, self.kernel_size, self.strides, self.dilation_rate)

    def output_shape(self, input_shape):
        check_rank(self, input_shape, (self.rank + 2,))
        n, *spatial, _ = input_shape
        hw = spatial if self.rank == 2 else [1, *spatial]
        out = [core.output_length(s, k, st, self.padding if (self.rank == 2 or i == 1) else "valid", d)
               for i, (s, k, st, d) in enumerate(zip(hw, self.kernel_size, self.strides, self.dilation_rate))]
        return (n, *(out if self.rank == 2 else out[1:]), self._out_channels(input_shape[-1]))

    def _out_channels(self, cin):
        return self.filters

    def lean_cache(self, cache):
        """The cache an input gradient alone needs: the input arrays replaced by their shapes (dx of a
        convolution depends on the kernel, never on x)."""
        return tuple(_InputShape(c) if isinstance(c, np.ndarray) else c for c in cache)

    # 1-D layers run as 2-D ones on a (N, 1, L, C) view
    def _to2d(self, x):
        check_rank(self, x, (self.rank + 2,))
        return x[:, None] if self.rank == 1 else x

    def _from2d(self, y):
        return y[:, 0] if self.rank == 1 else y

    def _kernel2d(self, name="kernel"):
        w = self.params[name]
        return w[None] if self.rank == 1 else w


class _InputShape:
    """Stands in for a cached input array when only its shape is needed (see :meth:`_ConvBase.lean_cache`)."""

    def __init__(self, x):
        self.shape, self.dtype = x.shape, x.dtype


def _full(layer, x, need_params):
    """Refuse weight gradients from a lean cache (it no longer holds the layer's input)."""
    if need_params and isinstance(x, _InputShape):
        raise NpcnnError(f"layer {layer.name!r}: this trace kept only what the input gradient needs; "
                         "use model.trace(x) for weight gradients")


class Conv2D(_ConvBase):
    """out = conv(x, kernel) + bias, then activation.

    forward:  x (N, H, W, Cin) -> out (N, oh, ow, filters); oh = ceil(H/s) ('same') or
              floor((H - (kh-1)*d - 1)/s) + 1 ('valid')
    backward: dx = conv2d_input_grad(dout, kernel)  (N, H, W, Cin)
              dkernel = im2col(x).T @ dout           (kh, kw, Cin/groups, filters)
              dbias = sum of dout over N, oh, ow     (filters,)
    """

    def weight_shapes(self, input_shape):
        cin = input_shape[-1]
        if cin % self.groups or self.filters % self.groups:
            raise InputError(f"layer {self.name!r}: groups={self.groups} must divide the input channels "
                             f"({cin}) and filters ({self.filters})")
        shapes = {"kernel": (*self.kernel_size[2 - self.rank:], cin // self.groups, self.filters)}
        if self.use_bias:
            shapes["bias"] = (self.filters,)
        return shapes

    fuses_activation = True  # the activation runs on each output block as the convolution finishes it

    def forward(self, x, training=False, epilogue=None):
        x2 = self._to2d(x)
        pads = self._pads(x2.shape[1:3])
        args = (x2, self._kernel2d(), self.params.get("bias"), self.strides, pads, self.dilation_rate, self.groups)
        if training:  # the weight gradient will follow: keep the im2col matrix for it (None if too big)
            out, cols = core.conv2d_keep_cols(*args, epilogue=epilogue)
        else:
            out, cols = core.conv2d(*args, epilogue=epilogue), None
        return self._from2d(out), (x2, pads, cols)

    def backward(self, dout, cache, need_dx=True, need_params=True):
        x2, pads, cols = cache
        _full(self, x2, need_params)
        d2 = self._to2d(dout)
        w = self._kernel2d()
        grads = {}
        if need_params:
            dw = core.conv2d_weight_grad(x2, d2, w.shape, self.strides, pads, self.dilation_rate, self.groups,
                                         cols=cols if isinstance(cols, np.ndarray) else None)
            grads["kernel"] = dw[0] if self.rank == 1 else dw
            self._bias_grad(grads, d2)
        dx = None
        if need_dx:
            dx = self._from2d(core.conv2d_input_grad(d2, w, x2.shape, self.strides, pads, self.dilation_rate,
                                                     self.groups))
        return dx, grads


class Conv1D(Conv2D):
    """Conv2D on sequences: x (N, L, Cin) -> (N, oL, filters); kernel (k, Cin, filters).

    padding 'causal' pads (k-1)*d on the left only. Backward: that of Conv2D on the (N, 1, L, C) view.
    """

    rank = 1


class DepthwiseConv2D(_ConvBase):
    """Each input channel convolved with ``depth_multiplier`` kernels of its own.

    forward:  x (N, H, W, C) -> (N, oh, ow, C*m), out[..., c*m+j] = conv(x[..., c], k[:, :, c, j]) + b
    backward: dx[..., c] = sum_j conv_input_grad(dout[..., c*m+j], k[:, :, c, j])
              dk[a, b, c, j] = sum over positions of x window tap (a, b) * dout
    """

    weight_names = ("depthwise_kernel", "bias")

    def __init__(self, kernel_size=3, strides=1, padding="valid", depth_multiplier=1, data_format=None,
                 dilation_rate=1, activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        kwargs.pop("filters", None)
        super().__init__(None, kernel_size, strides, padding, data_format, dilation_rate, 1, activation, use_bias,
                         depthwise_initializer, bias_initializer, **kwargs)
        self.depth_multiplier = int(check_sizes(self, "depth_multiplier", [depth_multiplier])[0])

    def config_keys(self):
        return ("kernel_size", "strides", "padding", "depth_multiplier", "dilation_rate", "activation",
                "use_bias")

    def _out_channels(self, cin):
        return cin * self.depth_multiplier

    def weight_shapes(self, input_shape):
        cin = input_shape[-1]
        shapes = {"depthwise_kernel": (*self.kernel_size, cin, self.depth_multiplier)}
        if self.use_bias:
            shapes["bias"] = (cin * self.depth_multiplier,)
        return shapes

    def forward(self, x, training=False):
        check_rank(self, x, (4,))
        pads = self._pads(x.shape[1:3])
        out = core.depthwise_conv2d(x, self.params["depthwise_kernel"], self.strides, pads, self.dilation_rate)
        if self.use_bias:
            out += self.params["bias"]
        return out, (x, pads)

    def backward(self, dout, cache, need_dx=True, need_params=True):
        x, pads = cache
        _full(self, x, need_params)
        w = self.params["depthwise_kernel"]
        grads = {}
        if need_params:
            grads["depthwise_kernel"] = core.depthwise_weight_grad(x, dout, w.shape, self.strides, pads,
                                                                   self.dilation_rate)
            self._bias_grad(grads, dout)
        dx = core.depthwise_input_grad(dout, w, x.shape, self.strides, pads, self.dilation_rate) if need_dx else None
        return dx, grads


class SeparableConv2D(_ConvBase):
    """A depthwise convolution followed by a 1×1 convolution (Xception's building block).

    forward:  h = depthwise(x, depthwise_kernel)          (N, oh, ow, C*m)
              out = h @ pointwise_kernel[0, 0] + bias     (N, oh, ow, filters)
    backward: dh = dout @ pointwise_kernel[0, 0].T; dpointwise = h.T @ dout; then depthwise backward
    """

    weight_names = ("depthwise_kernel", "pointwise_kernel", "bias")

    def __init__(self, filters=None, kernel_size=3, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 depth_multiplier=1, activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 pointwise_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate, 1, activation, use_bias,
                         depthwise_initializer, bias_initializer, **kwargs)
        self.depth_multiplier = int(check_sizes(self, "depth_multiplier", [depth_multiplier])[0])
        self.pointwise_initializer = pointwise_initializer

    def config_keys(self):
        return super().config_keys()[:-3] + ("depth_multiplier", "activation", "use_bias")

    def initializer(self, weight_name):
        return self.pointwise_initializer if weight_name == "pointwise_kernel" else super().initializer(weight_name)

    def weight_shapes(self, input_shape):
        cin, m = input_shape[-1], self.depth_multiplier
        shapes = {"depthwise_kernel": (*self.kernel_size, cin, m), "pointwise_kernel": (1, 1, cin * m, self.filters)}
        if self.use_bias:
            shapes["bias"] = (self.filters,)
        return shapes

    def forward(self, x, training=False):
        check_rank(self, x, (4,))
        pads = self._pads(x.shape[1:3])
        h = core.depthwise_conv2d(x, self.params["depthwise_kernel"], self.strides, pads, self.dilation_rate)
        out = matmul(h, self.params["pointwise_kernel"][0, 0])
        if self.use_bias:
            out += self.params["bias"]
        return out, (x, pads, h)

    def backward(self, dout, cache, need_dx=True, need_params=True):
        x, pads, h = cache
        _full(self, x, need_params)
        pw, dwk = self.params["pointwise_kernel"], self.params["depthwise_kernel"]
        dh = matmul(dout, pw[0, 0].T)
        grads = {}
        if need_params:
            grads["depthwise_kernel"] = core.depthwise_weight_grad(x, dh, dwk.shape, self.strides, pads,
                                                                   self.dilation_rate)
            grads["pointwise_kernel"] = matmul(h.reshape(-1, h.shape[-1]).T, dout.reshape(-1, dout.shape[-1]))[None, None]
            self._bias_grad(grads, dout)
        dx = core.depthwise_input_grad(dh, dwk, x.shape, self.strides, pads, self.dilation_rate) if need_dx else None
        # Keras order: depthwise, pointwise, bias
        return dx, grads


class Conv2DTranspose(_ConvBase):
    """The transposed convolution ("deconvolution"): the input-gradient of a Conv2D used as a layer.

    forward:  x (N, H, W, Cin) -> (N, H', W', filters), H' = H*s ('same'), H*s + max(k-s, 0) ('valid'),
              or (H-1)*s + k - 2*pad + output_padding when output_padding is given
              out = conv2d_input_grad(x, kernel)        kernel (kh, kw, filters, Cin)
    backward: dx = conv2d(dout, kernel);  dkernel = conv2d_weight_grad(dout, x)
    """

    def __init__(self, filters=None, kernel_size=3, strides=1, padding="valid", output_padding=None, **kwargs):
        super().__init__(filters, kernel_size, strides, padding, **kwargs)
        self.output_padding = None if output_padding is None else core.pair(output_padding, "output_padding")
        if self.output_padding is not None and any(p >= s for p, s in zip(self.output_padding, self.strides)):
            raise InputError(f"layer {self.name!r} (Conv2DTranspose): output_padding {self.output_padding} must be "
                             f"smaller than the strides {self.strides}")

    def config_keys(self):
        return super().config_keys()[:-4] + ("output_padding", "dilation_rate", "activation", "use_bias")

    def weight_shapes(self, input_shape):
        shapes = {"kernel": (*self.kernel_size, self.filters, input_shape[-1])}
        if self.use_bias:
            shapes["bias"] = (self.filters,)
        return shapes

    def _out_length(self, size, axis):
        if size is None:
            return None
        k, s, d = self.kernel_size[axis], self.strides[axis], self.dilation_rate[axis]
        eff = (k - 1) * d + 1
        if self.output_padding is None:
            return size * s if self.padding == "same" else size * s + max(eff - s, 0)
        pad = eff // 2 if self.padding == "same" else 0
        out = (size - 1) * s + eff - 2 * pad + self.output_padding[axis]
        if self.padding == "same" and -(-out // s) != size:  # TensorFlow refuses this geometry too
            raise InputError(f"layer {self.name!r} (Conv2DTranspose): kernel {k}, stride {s}, 'same' and "
                             f"output_padding {self.output_padding[axis]} give {out} rows from {size}, but a 'same' "
                             f"convolution of {out} rows has {-(-out // s)}: choose another output_padding")
        return out

    def output_shape(self, input_shape):
        check_rank(self, input_shape, (4,))
        n, h, w, _ = input_shape
        return n, self._out_length(h, 0), self._out_length(w, 1), self.filters

    def _geometry(self, x):
        n, h, w, _ = x.shape
        out_hw = (self._out_length(h, 0), self._out_length(w, 1))
        if self.padding == "same":
            pads = tuple(core.same_padding(o, k, s, d) for o, k, s, d in
                         zip(out_hw, self.kernel_size, self.strides, self.dilation_rate))
        else:
            pads = ((0, 0), (0, 0))
        return (n, *out_hw, self.filters), pads

    def forward(self, x, training=False):
        check_rank(self, x, (4,))
        out_shape, pads = self._geometry(x)
        out = core.conv2d_input_grad(x, self.params["kernel"], out_shape, self.strides, pads, self.dilation_rate)
        if self.use_bias:
            out = out + self.params["bias"]
        return out, (x, pads)

    def backward(self, dout, cache, need_dx=True, need_params=True):
        x, pads = cache
        _full(self, x, need_params)
        w = self.params["kernel"]
        grads = {}
        if need_params:
            grads["kernel"] = core.conv2d_weight_grad(dout, x, w.shape, self.strides, pads, self.dilation_rate)
            self._bias_grad(grads, dout)
        dx = core.conv2d(dout, w, None, self.strides, pads, self.dilation_rate) if need_dx else None
        if dx is not None and dx.shape != x.shape:  # rows the forward never reached (output_padding)
            dx = dx[:, :x.shape[1], :x.shape[2]]
        return dx, grads

