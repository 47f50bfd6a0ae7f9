#!/usr/bin/env python
"""Regenerate npcnn's Keras reference fixtures under tests/fixtures/keras/.

Needs TensorFlow, Keras 3 and tf_keras (Keras 2), so it runs in its own venv, never in npcnn's:

    python3 -m venv /work/venv-tf && /work/venv-tf/bin/pip install tensorflow-cpu tf-keras h5py
    /work/venv-tf/bin/python tools/make_keras_fixtures.py            # everything
    /work/venv-tf/bin/python tools/make_keras_fixtures.py --parts models --models conv2d,merge

Everything is seeded; tests/fixtures/keras/README.md documents the files and the npz keys.
npcnn never imports this file, and its tests never need it.
"""
import argparse
import json
import math
import os
import sys
import tempfile
import warnings
import zipfile
import zlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
os.environ["KERAS_BACKEND"] = "tensorflow"
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(1)
tf.get_logger().setLevel("ERROR")
import absl.logging  # noqa: E402

absl.logging.set_verbosity("error")

import keras  # noqa: E402  (Keras 3)
import tf_keras  # noqa: E402  (Keras 2)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "tests", "fixtures", "keras")
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))  # the one copy, shared with the tests
from seeded_weights import seeded_weight  # noqa: E402

F32 = np.float32
MARKER = "/tmp/npcnn_pwned_marker"
K2_TOL = 1e-6          # tf_keras vs Keras 3, relative to max(1, max |reference|)
RELOAD_TOL = 1e-5      # a saved file reloaded by Keras vs the in-memory model
LOG = []


def log(*a):
    s = " ".join(str(x) for x in a)
    LOG.append(s)
    print(s, flush=True)


def rng_for(*parts):
    return np.random.default_rng(zlib.crc32("/".join(str(p) for p in parts).encode()))


def short(v):
    """Short weight name: Keras 3 'kernel', tf_keras 'conv/kernel:0' -> 'kernel'."""
    return v.name.split("/")[-1].split(":")[0]


def k3_name(layer, v):
    """Keras 3's short name of weight v of layer (tf_keras DepthwiseConv2D says depthwise_kernel,
    Keras 3 says kernel)."""
    n = short(v)
    if type(layer).__name__ == "DepthwiseConv2D" and n == "depthwise_kernel":
        return "kernel"
    return n


def seed_name(layer, v):
    """Weight name given to seeded_weight: Keras 3's, except a DepthwiseConv2D's kernel is
    'depthwise_kernel' so that seeded_weight takes its fan-in as kh * kw."""
    n = k3_name(layer, v)
    if type(layer).__name__ == "DepthwiseConv2D" and n == "kernel":
        return "depthwise_kernel"
    return n


def leaf_layers(model, K, prefix=""):
    """(path, layer) for every non-model layer, nested models flattened as 'inner/layer'."""
    for layer in model.layers:
        if isinstance(layer, K.Model):
            yield from leaf_layers(layer, K, prefix + layer.name + "/")
        elif not isinstance(layer, K.layers.InputLayer):
            yield prefix + layer.name, layer


def var_names(model, K):
    """id(variable) -> 'layer/weight' ('inner/layer/weight' when nested)."""
    names = {}
    for path, layer in leaf_layers(model, K):
        for v in layer.weights:
            names.setdefault(id(v), path + "/" + k3_name(layer, v))
    return names


def finalize_normalization(model, K):
    for _, layer in leaf_layers(model, K):
        if isinstance(layer, K.layers.Normalization) and hasattr(layer, "finalize_state"):
            layer.finalize_state()


# --------------------------------------------------------------------------------------------
# hand-built models: each builder takes (K, k3) with K = keras (Keras 3) or tf_keras (Keras 2)
# and returns (model, skipped) where skipped lists what the Keras 2 build had to leave out.
# --------------------------------------------------------------------------------------------

def leaky(K, k3, slope, name):
    return K.layers.LeakyReLU(**({"negative_slope": slope} if k3 else {"alpha": slope}), name=name)


def flat_concat(K, tensors, prefix="flat"):
    L = K.layers
    flats = [L.Flatten(name=f"{prefix}_{i}")(t) for i, t in enumerate(tensors)]
    return L.Concatenate(name="out_concat")(flats)


def m_conv2d(K, k3):
    L = K.layers
    x = K.Input((13, 15, 4), name="x")
    h = L.Conv2D(8, 3, padding="same", activation="relu", name="conv_same_relu")(x)
    h = L.Conv2D(8, 3, padding="same", groups=2, activation="tanh", name="conv_groups2")(h)
    h = L.Conv2D(6, 3, dilation_rate=2, padding="valid", name="conv_dil2_valid")(h)
    h = L.Conv2D(6, 3, dilation_rate=2, padding="same", activation="elu", name="conv_dil2_same")(h)
    a = L.Conv2D(6, (2, 3), strides=(2, 1), padding="same", use_bias=False,
                 name="conv_even_s21_nobias")(h)
    a = L.Conv2D(5, 3, strides=2, padding="same", activation="sigmoid", name="conv_s2_same")(a)
    b = L.Conv2D(4, 3, strides=2, padding="valid", activation="selu", name="conv_s2_valid")(h)
    b = L.Conv2D(3, 4, strides=2, padding="same", name="conv_k4_s2_same")(b)
    c = L.Conv2D(4, (1, 5), padding="valid", strides=(1, 3), activation="softplus",
                 name="conv_1x5_s13_valid")(x)
    out = flat_concat(K, [a, b, c])
    return K.Model(x, out, name="conv2d"), []


def m_depthwise(K, k3):
    L = K.layers
    x = K.Input((12, 13, 4), name="x")
    d1 = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu", name="dw_m2_same")(x)
    d2 = L.DepthwiseConv2D(3, strides=2, padding="valid", name="dw_s2_valid")(d1)
    d3 = L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, use_bias=False,
                           name="dw_m2_s2_same_nobias")(d1)
    d4 = L.DepthwiseConv2D(4, strides=2, padding="same", name="dw_k4_s2_same")(x)
    d5 = L.DepthwiseConv2D(3, dilation_rate=2, padding="valid", name="dw_dil2_valid")(x)
    s1 = L.SeparableConv2D(6, 3, padding="same", activation="relu", name="sep_same_relu")(d2)
    s2 = L.SeparableConv2D(5, 3, strides=2, padding="valid", depth_multiplier=2, name="sep_m2_s2_valid")(d3)
    s3 = L.SeparableConv2D(3, 2, padding="same", use_bias=False, name="sep_k2_same_nobias")(d4)
    out = flat_concat(K, [s1, s2, s3, d5])
    return K.Model(x, out, name="depthwise"), []


def m_conv_transpose(K, k3):
    L = K.layers
    x = K.Input((5, 6, 3), name="x")
    t1 = L.Conv2DTranspose(4, 3, strides=2, padding="same", name="ct_s2_same")(x)
    t2 = L.Conv2DTranspose(4, 3, strides=2, padding="valid", activation="relu", name="ct_s2_valid")(x)
    t3 = L.Conv2DTranspose(3, 3, strides=2, padding="valid", output_padding=1, name="ct_s2_valid_op1")(x)
    t4 = L.Conv2DTranspose(3, 4, strides=2, padding="same", use_bias=False, name="ct_k4_s2_same_nobias")(x)
    t5 = L.Conv2DTranspose(3, 3, strides=2, padding="same", output_padding=(1, 0), name="ct_s2_same_op10")(x)
    t6 = L.Conv2DTranspose(2, (2, 3), strides=(1, 2), padding="valid", name="ct_k23_s12_valid")(x)
    # (dilation_rate > 1 is left out: TensorFlow's CPU conv_transpose refuses it)
    out = flat_concat(K, [t1, t2, t3, t4, t5, t6])
    return K.Model(x, out, name="conv_transpose"), []


def m_conv1d(K, k3):
    L = K.layers
    x = K.Input((17, 3), name="x")
    c1 = L.Conv1D(4, 3, padding="same", activation="relu", name="c1d_same_relu")(x)
    c2 = L.Conv1D(4, 3, padding="causal", dilation_rate=2, name="c1d_causal_dil2")(x)
    c3 = L.Conv1D(5, 3, strides=2, padding="valid", name="c1d_s2_valid")(c1)
    c4 = L.Conv1D(5, 2, strides=2, padding="same", use_bias=False, name="c1d_k2_s2_same_nobias")(c2)
    c5 = L.Conv1D(4, 3, padding="causal", activation="tanh", name="c1d_causal")(c1)
    c6 = L.Conv1D(3, 3, dilation_rate=2, padding="valid", name="c1d_dil2_valid")(c5)
    p1 = L.MaxPooling1D(2, name="mp1d_2_valid")(c5)
    p2 = L.MaxPooling1D(3, strides=2, padding="same", name="mp1d_3s2_same")(c2)
    p3 = L.AveragePooling1D(2, name="ap1d_2_valid")(c6)
    p4 = L.AveragePooling1D(3, strides=2, padding="same", name="ap1d_3s2_same")(c1)
    g1 = L.GlobalAveragePooling1D(name="gap1d")(c3)
    g2 = L.GlobalMaxPooling1D(keepdims=True, name="gmp1d_keep")(c4)
    g3 = L.GlobalAveragePooling1D(keepdims=True, name="gap1d_keep")(c6)
    g4 = L.GlobalMaxPooling1D(name="gmp1d")(c6)
    out = flat_concat(K, [p1, p2, p3, p4, g1, g2, g3, g4])
    return K.Model(x, out, name="conv1d"), []


def m_pooling2d(K, k3):
    L = K.layers
    x = K.Input((11, 13, 3), name="x")
    c = L.Conv2D(4, 3, padding="same", name="conv")(x)
    ps = [
        L.MaxPooling2D(2, name="mp_2_valid")(c),
        L.MaxPooling2D(3, strides=2, name="mp_3s2_valid")(c),
        L.MaxPooling2D(3, strides=2, padding="same", name="mp_3s2_same")(c),
        L.MaxPooling2D(2, padding="same", name="mp_2_same")(c),
        L.MaxPooling2D((2, 3), strides=(1, 2), name="mp_23_s12_valid")(c),
        L.AveragePooling2D(2, name="ap_2_valid")(c),
        L.AveragePooling2D(3, strides=2, padding="same", name="ap_3s2_same")(c),
        L.AveragePooling2D(2, padding="same", name="ap_2_same")(c),
        L.AveragePooling2D(3, strides=1, padding="same", name="ap_3s1_same")(c),
        L.AveragePooling2D((3, 2), strides=(2, 3), padding="valid", name="ap_32_s23_valid")(c),
        L.GlobalAveragePooling2D(name="gap2d")(c),
        L.GlobalAveragePooling2D(keepdims=True, name="gap2d_keep")(c),
        L.GlobalMaxPooling2D(name="gmp2d")(c),
        L.GlobalMaxPooling2D(keepdims=True, name="gmp2d_keep")(c),
    ]
    out = flat_concat(K, ps)
    return K.Model(x, out, name="pooling2d"), []


def m_normalization(K, k3):
    L = K.layers
    x = K.Input((7, 9, 6), name="x")
    h = L.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(x)
    h = L.Rescaling([0.5, 2.0, 1.5, 1.0, 0.8, 1.2], name="rescale_per_channel")(h)
    h = L.Normalization(mean=[0.1, -0.2, 0.3, 0.0, 0.5, -0.4],
                        variance=[0.5, 1.5, 2.0, 0.8, 1.0, 1.2], name="norm_config")(h)
    h = L.Normalization(axis=-1, name="norm_weights")(h)  # adapt-state weights, as EfficientNet
    h = L.Conv2D(6, 3, padding="same", name="conv")(h)
    h = L.BatchNormalization(name="bn_default")(h)
    h = L.BatchNormalization(center=False, name="bn_nocenter")(h)
    h = L.BatchNormalization(scale=False, epsilon=1.001e-5, name="bn_noscale_eps1001e5")(h)
    h = L.BatchNormalization(axis=1, name="bn_axis1")(h)
    h = L.Activation("relu", name="relu")(h)
    h = L.LayerNormalization(name="ln")(h)
    h = L.LayerNormalization(axis=[1, 2, 3], epsilon=1e-5, name="ln_hwc")(h)
    h = L.LayerNormalization(center=False, scale=False, name="ln_plain")(h)
    return K.Model(x, h, name="normalization"), []


ACTS_COMMON = ["relu", "relu6", "sigmoid", "tanh", "softmax", "log_softmax", "elu", "selu", "gelu",
               "swish", "silu", "softplus", "softsign", "leaky_relu", "exponential", "linear", "mish"]
ACTS_K3_ONLY = ["hard_sigmoid", "hard_silu", "hard_swish", "celu", "glu", "hard_shrink", "hard_tanh",
                "log_sigmoid", "soft_shrink", "sparse_plus", "sparse_sigmoid", "sparsemax",
                "squareplus", "tanh_shrink"]


def m_activations(K, k3):
    L = K.layers
    x = K.Input((12,), name="x")
    pre = L.Dense(16, name="pre")(x)
    outs = [L.Activation(a, name=f"act_{a}")(pre) for a in ACTS_COMMON]
    outs += [
        L.ReLU(name="relu_layer")(pre),
        L.ReLU(max_value=6.0, name="relu_max6")(pre),
        L.ReLU(max_value=1.5, negative_slope=0.1, threshold=0.3, name="relu_max_slope_thr")(pre),
        leaky(K, k3, 0.2, "leaky_0p2")(pre),
        L.ELU(alpha=0.7, name="elu_0p7")(pre),
        L.Softmax(name="softmax_layer")(pre),
        L.Dense(5, activation="tanh", name="dense_tanh")(pre),
    ]
    out = L.Concatenate(name="out_concat")(outs)
    return K.Model(x, out, name="activations"), []


def m_activations_k3(K, k3):
    L = K.layers
    x = K.Input((12,), name="x")
    pre = L.Dense(16, name="pre")(x)
    outs = [L.Activation(a, name=f"act_{a}")(pre) for a in ACTS_K3_ONLY]
    out = L.Concatenate(name="out_concat")(outs)
    return K.Model(x, out, name="activations_k3"), []


def m_hard_sigmoid(K, k3):
    # Same config, different maths: Keras 3 relu6(x + 3) / 6, Keras 2 clip(0.2 x + 0.5, 0, 1).
    L = K.layers
    x = K.Input((12,), name="x")
    pre = L.Dense(16, name="pre")(x)
    out = L.Activation("hard_sigmoid", name="act_hard_sigmoid")(pre)
    return K.Model(x, out, name="hard_sigmoid"), []


def m_reshape(K, k3):
    L = K.layers
    x = K.Input((6, 8, 3), name="x")
    c = L.Conv2D(4, 3, padding="same", name="conv")(x)
    zp = L.ZeroPadding2D(((1, 2), (0, 3)), name="zeropad_asym")(c)
    cr = L.Cropping2D(((2, 1), (0, 2)), name="crop_asym")(zp)
    u1 = L.UpSampling2D(2, name="up_nearest_2")(c)
    u2 = L.UpSampling2D((2, 3), interpolation="bilinear", name="up_bilinear_23")(c)
    u3 = L.UpSampling2D(2, interpolation="bilinear", name="up_bilinear_2")(cr)
    u4 = L.UpSampling2D((2, 3), name="up_nearest_23")(cr)
    pm = L.Permute((2, 1, 3), name="permute")(c)
    d4 = L.Dense(5, activation="relu", name="dense_rank4")(pm)
    rs = L.Reshape((12, 16), name="reshape")(c)
    d3 = L.Dense(3, name="dense_rank3")(rs)
    rs2 = L.Reshape((-1, 4), name="reshape_minus1")(d4)
    dr = L.Dropout(0.3, name="dropout")(c)
    sd = L.SpatialDropout2D(0.2, name="spatial_dropout")(dr)
    gn = L.GaussianNoise(0.1, name="gaussian_noise")(sd)
    gd = L.GaussianDropout(0.2, name="gaussian_dropout")(gn)
    ar = L.ActivityRegularization(l1=0.01, l2=0.01, name="activity_reg")(gd)
    pr = L.PReLU(shared_axes=[1, 2], name="prelu_shared12")(ar)
    pf = L.PReLU(name="prelu_full")(cr)
    sm = L.Softmax(axis=1, name="softmax_axis1")(pr)
    out = flat_concat(K, [u1, u2, u3, u4, d3, rs2, sm, pf])
    return K.Model(x, out, name="reshape"), []


def m_merge(K, k3):
    """The two-input model: every merge layer."""
    L = K.layers
    a = K.Input((6, 7, 3), name="x_a")
    b = K.Input((6, 7, 3), name="x_b")
    ca = L.Conv2D(4, 3, padding="same", name="conv_a")(a)
    cb = L.Conv2D(4, 3, padding="same", name="conv_b")(b)
    add = L.Add(name="add")([ca, cb])
    ms = [
        add,
        L.Add(name="add3")([ca, cb, add]),
        L.Subtract(name="subtract")([ca, cb]),
        L.Multiply(name="multiply")([ca, cb]),
        L.Average(name="average")([ca, cb, add]),
        L.Maximum(name="maximum")([ca, cb]),
        L.Minimum(name="minimum")([ca, cb, add]),
        L.Concatenate(name="concat_last")([ca, cb]),
        L.Concatenate(axis=1, name="concat_axis1")([ca, cb, add]),
    ]
    out = flat_concat(K, ms)
    return K.Model([a, b], out, name="merge"), []


def m_cats_dogs(K, k3, classes=1):
    """The seed's Sequential style, at 32x32x3 (binary logit; 10-class softmax for Grad-CAM)."""
    L = K.layers
    layers = [
        K.Input((32, 32, 3), name="image"),
        L.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
        L.MaxPooling2D(name="pool1"),
        L.Conv2D(32, 3, padding="same", activation="relu", name="conv2"),
        L.MaxPooling2D(name="pool2"),
        L.Conv2D(64, 3, padding="same", activation="relu", name="conv3"),
        L.MaxPooling2D(name="pool3"),
        L.Dropout(0.25, name="dropout"),
        L.Flatten(name="flatten"),
        L.Dense(16, activation="relu", name="fc"),
    ]
    if classes == 1:
        layers.append(L.Dense(1, name="logit"))
        return K.Sequential(layers, name="cats_dogs"), []
    layers += [L.Dense(classes, name="logits"), L.Activation("softmax", name="probs")]
    return K.Sequential(layers, name="cats_dogs_10"), []


def m_branches(K, k3):
    """Fan-out / fan-in with a skip: one tensor feeds four consumers."""
    L = K.layers
    x = K.Input((10, 10, 3), name="x")
    stem = L.Conv2D(6, 3, padding="same", activation="relu", name="stem")(x)
    b1 = L.Conv2D(4, 1, name="branch_1x1")(stem)
    b2 = L.Conv2D(4, 3, padding="same", activation="relu", name="branch_3x3")(stem)
    b3 = L.MaxPooling2D(3, strides=1, padding="same", name="branch_pool")(stem)
    cat = L.Concatenate(name="concat")([b1, b2, b3])
    proj = L.Conv2D(6, 1, name="proj")(cat)
    res = L.Add(name="residual")([stem, proj])
    h = L.Activation("relu", name="relu")(res)
    g = L.GlobalAveragePooling2D(name="gap")(h)
    out = L.Dense(3, name="head")(g)
    return K.Model(x, out, name="branches"), []


def m_multi_output(K, k3):
    """Two outputs; the second ('feat') is also consumed by the first head."""
    L = K.layers
    x = K.Input((8, 8, 3), name="x")
    h = L.Conv2D(5, 3, padding="same", activation="relu", name="conv")(x)
    h = L.MaxPooling2D(name="pool")(h)
    feat = L.GlobalAveragePooling2D(name="feat")(h)
    logits = L.Dense(4, name="logits")(feat)
    probs = L.Activation("softmax", name="probs")(logits)
    return K.Model(x, [probs, feat], name="multi_output"), []


def _block(K, name, shape, ch):
    L = K.layers
    i = K.Input(shape, name=f"{name}_in")
    h = L.Conv2D(ch, 3, padding="same", name=f"{name}_conv")(i)
    h = L.BatchNormalization(name=f"{name}_bn")(h)
    h = L.Activation("relu", name=f"{name}_relu")(h)
    h = L.Add(name=f"{name}_add")([i, h])
    return K.Model(i, h, name=name)


def m_nested_functional(K, k3):
    L = K.layers
    x = K.Input((8, 9, 3), name="x")
    h = L.Conv2D(4, 3, padding="same", name="stem")(x)
    h = _block(K, "block", (8, 9, 4), 4)(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    out = L.Dense(3, name="head")(h)
    return K.Model(x, out, name="nested_functional"), []


def m_nested_sequential(K, k3):
    L = K.layers
    inner = K.Sequential([K.Input((40,), name="inner_in"),
                          L.Dense(8, activation="relu", name="inner_dense1"),
                          L.Dense(6, activation="tanh", name="inner_dense2")], name="inner_seq")
    outer = K.Sequential([K.Input((4, 5, 2), name="x"),
                          L.Flatten(name="flatten"),
                          inner,
                          L.Dense(3, name="head")], name="nested_sequential")
    return outer, []


def m_nested_shared(K, k3):
    """One inner model called twice (weights shared); references use the FIRST call."""
    L = K.layers
    x = K.Input((7, 8, 3), name="x")
    h = L.Conv2D(4, 3, padding="same", name="stem")(x)
    blk = _block(K, "shared_block", (7, 8, 4), 4)
    a = blk(h)
    b = blk(a)
    h = L.Concatenate(name="concat")([a, b])
    h = L.GlobalAveragePooling2D(name="gap")(h)
    out = L.Dense(3, name="head")(h)
    return K.Model(x, out, name="nested_shared"), []


# name -> (builder, Keras 2 build?, input scale, separate Keras 2 reference?)
MODELS = {
    "conv2d": (m_conv2d, True, 1.0, False),
    "depthwise": (m_depthwise, True, 1.0, False),
    "conv_transpose": (m_conv_transpose, True, 1.0, False),
    "conv1d": (m_conv1d, True, 1.0, False),
    "pooling2d": (m_pooling2d, True, 1.0, False),
    "normalization": (m_normalization, True, 60.0, False),
    "activations": (m_activations, True, 1.5, False),
    "activations_k3": (m_activations_k3, False, 1.5, False),
    "hard_sigmoid": (m_hard_sigmoid, True, 1.5, True),
    "reshape": (m_reshape, True, 1.0, False),
    "merge": (m_merge, True, 1.0, False),
    "cats_dogs": (m_cats_dogs, True, 1.0, False),
    "branches": (m_branches, True, 1.0, False),
    "multi_output": (m_multi_output, True, 1.0, False),
    "nested_functional": (m_nested_functional, True, 1.0, False),
    "nested_sequential": (m_nested_sequential, True, 1.0, False),
    "nested_shared": (m_nested_shared, True, 1.0, False),
}


def hand_init(name, model):
    """Random non-trivial weights, one generator per (model, layer path, weight)."""
    for path, layer in leaf_layers(model, keras):
        vals = []
        for v in layer.weights:
            w, shape = seed_name(layer, v), tuple(v.shape)
            r = rng_for(name, path, w)
            if w in ("kernel", "depthwise_kernel", "pointwise_kernel"):
                fan = np.prod(shape[:-2]) if w == "depthwise_kernel" else np.prod(shape[:-1])
                a = r.standard_normal(shape) * math.sqrt(1.5 / fan)
            elif w in ("bias", "beta"):
                a = r.standard_normal(shape) * 0.2
            elif w in ("gamma", "moving_variance"):
                a = r.uniform(0.5, 1.5, shape)
            elif w == "moving_mean":
                a = r.standard_normal(shape) * 0.3
            elif w == "alpha":
                a = r.uniform(0.05, 0.5, shape)
            elif w == "mean":
                a = r.standard_normal(shape) * 0.3
            elif w == "variance":
                a = r.uniform(0.5, 1.5, shape)
            elif w == "count":
                a = np.full(shape, 100)
            else:
                raise ValueError(f"no init rule for {path}/{w}")
            vals.append(np.asarray(a).astype(v.dtype))
        layer.set_weights(vals)
    finalize_normalization(model, keras)


# --------------------------------------------------------------------------------------------
# references
# --------------------------------------------------------------------------------------------

def _graph_node_ids(model):
    f = model._functional if isinstance(model, keras.Sequential) else model
    return {id(n) for ns in f._nodes_by_depth.values() for n in ns}


def _first_node(layer, ids):
    for n in layer._inbound_nodes:
        if id(n) in ids:
            return n
    raise RuntimeError(f"layer {layer.name} has no node in this graph")


def _feed(xs):
    return xs[0] if len(xs) == 1 else list(xs)


def collect_acts(model, xs, prefix=""):
    """{'layer': array} for every layer of a Keras 3 model in inference mode; nested models add
    'inner/layer' entries (first call of the inner model) and 'inner' for its output."""
    ids = _graph_node_ids(model)
    tensors, plan = [], []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        node = _first_node(layer, ids)
        outs = list(node.output_tensors)
        assert len(outs) == 1, (layer.name, outs)
        item = {"layer": layer, "out": len(tensors)}
        tensors.append(outs[0])
        if isinstance(layer, keras.Model):
            item["ins"] = list(range(len(tensors), len(tensors) + len(node.input_tensors)))
            tensors.extend(node.input_tensors)
        plan.append(item)
    fm = keras.Model(model.inputs, tensors)
    vals = fm(_feed(xs), training=False)
    vals = [np.asarray(v) for v in (vals if isinstance(vals, (list, tuple)) else [vals])]
    acts = {}
    for item in plan:
        layer = item["layer"]
        acts[prefix + layer.name] = vals[item["out"]]
        if "ins" in item:
            inner_x = [vals[i] for i in item["ins"]]
            acts.update(collect_acts(layer, inner_x, prefix + layer.name + "/"))
    return acts


def grads(model, xs, cots, K):
    """gin_ones, gin_cot (lists over inputs) and {name: pgrad} of sum(cot * out), training=False."""
    xt = [tf.constant(x) for x in xs]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(xt)
        outs = model(_feed(xt), training=False)
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        s_ones = tf.add_n([tf.reduce_sum(o) for o in outs])
        s_cot = tf.add_n([tf.reduce_sum(tf.constant(c) * o) for c, o in zip(cots, outs)])
    g1 = [np.asarray(g) for g in tape.gradient(s_ones, xt)]
    g2 = [np.asarray(g) for g in tape.gradient(s_cot, xt)]
    tw = list(model.trainable_weights)
    pg = tape.gradient(s_cot, tw)
    names = var_names(model, K)
    pgrad = {}
    for v, g in zip(tw, pg):
        assert g is not None, names[id(v)]
        pgrad[names[id(v)]] = np.asarray(tf.convert_to_tensor(g))
    del tape
    return [np.asarray(o) for o in outs], g1, g2, pgrad


def _k(base, i, n):
    return base if n == 1 else f"{base}{i}"


def make_inputs(name, model, scale):
    xs = []
    for i, t in enumerate(model.inputs):
        shape = (2,) + tuple(int(d) for d in t.shape[1:])
        xs.append((rng_for(name, "x", i).standard_normal(shape) * scale).astype(F32))
    return xs


def references(name, model, xs):
    n_in = len(xs)
    out = model.predict(_feed(xs), verbose=0)
    outs = [np.asarray(o, F32) for o in (out if isinstance(out, (list, tuple)) else [out])]
    n_out = len(outs)
    cots = [rng_for(name, "cot", i).standard_normal(o.shape).astype(F32) for i, o in enumerate(outs)]
    call_outs, g1, g2, pgrad = grads(model, xs, cots, keras)
    for a, b in zip(outs, call_outs):
        assert np.allclose(a, b, rtol=1e-5, atol=1e-5), "predict differs from call"
    d = {}
    for i, x in enumerate(xs):
        d[_k("x", i, n_in)] = x
        d[_k("gin_ones", i, n_in)] = g1[i]
        d[_k("gin_cot", i, n_in)] = g2[i]
    for i, (o, c) in enumerate(zip(outs, cots)):
        d[_k("out", i, n_out)] = o
        d[_k("cot", i, n_out)] = c
    for k, v in collect_acts(model, xs).items():
        d["act/" + k] = np.asarray(v, F32)
    for k, v in pgrad.items():
        d["pgrad/" + k] = v.astype(F32)
    names = var_names(model, keras)
    ws = model.get_weights()
    assert len(ws) == len(model.weights)
    for i, w in enumerate(ws):
        d[f"weights/{i}"] = w
    d["weight_names"] = np.array(json.dumps([names[id(v)] for v in model.weights]))
    return d


def k2_references(model, xs, cots):
    """The same quantities computed by tf_keras, for the cross-check."""
    outs, g1, g2, pgrad = grads(model, xs, cots, tf_keras)
    acts = {}
    for layer in model.layers:
        if isinstance(layer, (tf_keras.layers.InputLayer, tf_keras.Model)):
            continue
        try:
            t = layer.output
        except Exception:
            continue
        acts[layer.name] = t
    fm = tf_keras.Model(model.inputs, list(acts.values()))
    vals = fm(_feed(xs), training=False)
    vals = vals if isinstance(vals, (list, tuple)) else [vals]
    acts = {k: np.asarray(v) for k, v in zip(acts.keys(), vals)}
    return outs, g1, g2, pgrad, acts


def transfer(m3, m2):
    l3 = dict(leaf_layers(m3, keras))
    for path, layer in leaf_layers(m2, tf_keras):
        src = l3[path]
        n3, n2 = [k3_name(src, v) for v in src.weights], [k3_name(layer, v) for v in layer.weights]
        assert n3 == n2, (path, n3, n2)
        layer.set_weights(src.get_weights())
    finalize_normalization(m2, tf_keras)


def maxdiff(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(1.0, np.max(np.abs(a))))


def savez(path, d):
    np.savez_compressed(path, **d)


def layer_table(model, K, prefix=""):
    rows = []
    for layer in model.layers:
        rows.append([prefix + layer.name, type(layer).__name__])
        if isinstance(layer, K.Model):
            rows += layer_table(layer, K, prefix + layer.name + "/")
    return rows


def reload_check(label, loader, xs, ref_outs):
    try:
        m = loader()
        out = m.predict(_feed(xs), verbose=0)
        outs = out if isinstance(out, (list, tuple)) else [out]
        err = max(maxdiff(r, o) for r, o in zip(ref_outs, outs))
        ok = err <= RELOAD_TOL
        if not ok:
            log(f"  RELOAD MISMATCH {label}: {err:.3g}")
        return {"ok": bool(ok), "maxdiff": err}
    except Exception as e:  # recorded in index.json, reported, not fatal
        log(f"  RELOAD FAILED {label}: {type(e).__name__}: {str(e)[:300]}")
        return {"ok": False, "error": f"{type(e).__name__}: {str(e)[:300]}"}


def build_hand_model(name):
    builder, with_k2, scale, k2_ref = MODELS[name]
    keras.backend.clear_session()
    m3, _ = builder(keras, True)
    hand_init(name, m3)
    xs = make_inputs(name, m3, scale)
    info = {"inputs": [list(x.shape) for x in xs], "layers": layer_table(m3, keras), "files": []}
    d = references(name, m3, xs)
    n_out = len(m3.outputs)
    ref_outs = [d[_k("out", i, n_out)] for i in range(n_out)]
    info["outputs"] = [list(o.shape) for o in ref_outs]
    info["weight_names"] = json.loads(str(d["weight_names"]))
    savez(os.path.join(OUT, f"{name}.ref.npz"), d)
    info["files"].append(f"{name}.ref.npz")

    p = lambda suffix: os.path.join(OUT, name + suffix)  # noqa: E731
    m3.save(p(".k3.keras"))
    m3.save(p(".k3.h5"))
    m3.save_weights(p(".k3.weights.h5"))
    with open(p(".k3.json"), "w") as f:
        f.write(m3.to_json())
    info["files"] += [name + s for s in (".k3.keras", ".k3.h5", ".k3.weights.h5", ".k3.json")]
    rl = {
        "k3.keras": reload_check(f"{name}.k3.keras", lambda: keras.models.load_model(p(".k3.keras")), xs, ref_outs),
        "k3.h5": reload_check(f"{name}.k3.h5", lambda: keras.models.load_model(p(".k3.h5")), xs, ref_outs),
    }

    def from_json3():
        m = keras.models.model_from_json(open(p(".k3.json")).read())
        m.load_weights(p(".k3.weights.h5"))
        return m
    rl["k3.json+weights"] = reload_check(f"{name}.k3.json+weights", from_json3, xs, ref_outs)

    if with_k2:
        tf_keras.backend.clear_session()
        m2, skipped = builder(tf_keras, False)
        info["k2_skipped"] = skipped
        transfer(m3, m2)
        cots = [d[_k("cot", i, n_out)] for i in range(n_out)]
        outs2, g1, g2, pg2, acts2 = k2_references(m2, xs, cots)
        diffs = {"out": max(maxdiff(a, b) for a, b in zip(ref_outs, outs2))}
        n_in = len(xs)
        diffs["gin_ones"] = max(maxdiff(d[_k("gin_ones", i, n_in)], g1[i]) for i in range(n_in))
        diffs["gin_cot"] = max(maxdiff(d[_k("gin_cot", i, n_in)], g2[i]) for i in range(n_in))
        diffs["act"] = max([maxdiff(d["act/" + k], v) for k, v in acts2.items()] or [0.0])
        worst_act = max(acts2, key=lambda k: maxdiff(d["act/" + k], acts2[k])) if acts2 else None
        diffs["pgrad"] = max([maxdiff(d["pgrad/" + k], v) for k, v in pg2.items()] or [0.0])
        missing = sorted(set(k[6:] for k in d if k.startswith("pgrad/")) ^ set(pg2))
        if missing:
            log(f"  pgrad names differ between builds: {missing}")
        names2 = var_names(m2, tf_keras)
        order2 = [names2[id(v)] for v in m2.weights]
        info["weight_names_k2"] = order2
        if order2 != info["weight_names"]:
            log(f"  get_weights order differs k2 vs k3 for {name}")
        info["k2_vs_k3_maxdiff"] = diffs
        flag = "" if max(diffs.values()) <= K2_TOL else "  <-- exceeds 1e-6"
        log(f"  k2 vs k3 {name}: " + ", ".join(f"{k}={v:.2g}" for k, v in diffs.items())
            + (f" (worst act {worst_act})" if worst_act else "") + flag)
        m2.save(p(".k2.h5"))
        m2.save_weights(p(".k2.weights.h5"))
        with open(p(".k2.json"), "w") as f:
            f.write(m2.to_json())
        info["files"] += [name + s for s in (".k2.h5", ".k2.weights.h5", ".k2.json")]
        if k2_ref:
            d2 = dict(d)
            d2 = {k: v for k, v in d.items() if not k.startswith("act/") and not k.startswith("pgrad/")}
            for i in range(n_out):
                d2[_k("out", i, n_out)] = outs2[i]
            for i in range(n_in):
                d2[_k("gin_ones", i, n_in)] = g1[i]
                d2[_k("gin_cot", i, n_in)] = g2[i]
            for k, v in acts2.items():
                d2["act/" + k] = v.astype(F32)
            for k, v in pg2.items():
                d2["pgrad/" + k] = v.astype(F32)
            savez(p(".k2.ref.npz"), d2)
            info["files"].append(name + ".k2.ref.npz")
            k2_outs = outs2
        else:
            k2_outs = ref_outs if max(diffs.values()) <= 1e-4 else outs2
        rl["k2.h5"] = reload_check(f"{name}.k2.h5", lambda: tf_keras.models.load_model(p(".k2.h5")), xs, k2_outs)

        def from_json2():
            m = tf_keras.models.model_from_json(open(p(".k2.json")).read())
            m.load_weights(p(".k2.weights.h5"))
            return m
        rl["k2.json+weights"] = reload_check(f"{name}.k2.json+weights", from_json2, xs, k2_outs)
        # the Keras 3 reader of Keras 2 files, for the record
        rl["k2.h5 via Keras 3"] = reload_check(f"{name}.k2.h5 via Keras 3",
                                               lambda: keras.models.load_model(p(".k2.h5")), xs, k2_outs)
    info["reload"] = rl
    return info


# --------------------------------------------------------------------------------------------
# keras.applications
# --------------------------------------------------------------------------------------------

APPS = [
    # name, constructor, input shape, input range for x
    ("VGG16", "VGG16", (32, 32, 3), "caffe"),
    ("ResNet50", "ResNet50", (32, 32, 3), "caffe"),
    ("MobileNetV2", "MobileNetV2", (32, 32, 3), "tf"),
    ("DenseNet121", "DenseNet121", (32, 32, 3), "torch"),
    ("EfficientNetB0", "EfficientNetB0", (32, 32, 3), "raw"),
    ("Xception", "Xception", (71, 71, 3), "tf"),
    ("InceptionV3", "InceptionV3", (75, 75, 3), "tf"),
]
APP_SAMPLES = 64
# kernel_gain passed to seeded_weight: the largest of {1.0, 0.9, ..., 0.4} (ResNet50 needs 0.4,
# Xception 0.7, VGG16 0.8) that keeps every layer finite and the 10-class softmax of the top
# variant unsaturated (max probability < 0.75), so gradients are not degenerate.
APP_KERNEL_GAIN = {"VGG16": 0.8, "ResNet50": 0.4, "Xception": 0.7}


def app_input(name, shape, mode):
    """Batch of 1 in the range the application's own preprocess_input would produce."""
    r = rng_for(name, "x")
    img = r.uniform(0.0, 255.0, (1,) + shape)
    if mode == "caffe":  # RGB->BGR and ImageNet mean subtraction
        x = img[..., ::-1] - np.array([103.939, 116.779, 123.68])
    elif mode == "torch":
        x = (img / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    elif mode == "tf":
        x = img / 127.5 - 1.0
    else:  # EfficientNet rescales inside the model
        x = img
    return x.astype(F32)


def set_seeded_weights(model, K, seed=0, gain=1.0):
    for layer in model.layers:
        if isinstance(layer, K.layers.InputLayer) or not layer.weights:
            continue
        layer.set_weights([seeded_weight(layer.name, seed_name(layer, v), tuple(v.shape), seed,
                                         kernel_gain=gain).astype(v.dtype)
                           for v in layer.weights])
    finalize_normalization(model, K)


def app_fixture(app, ctor, shape, mode, top, trunk=None):
    """trunk: {layer: act_sum} of the notop model.  The top model's trunk layers have the same
    names, weights and input, so their statistics live only in APP.notop.ref.npz (checked equal
    here); APP.top.ref.npz keeps act_* for the head layers only, to keep the fixtures small."""
    keras.backend.clear_session()
    kw = dict(weights=None, input_shape=shape)
    kw.update(include_top=True, classes=10) if top else kw.update(include_top=False)
    m = getattr(keras.applications, ctor)(**kw)
    gain = APP_KERNEL_GAIN.get(app, 1.0)
    set_seeded_weights(m, keras, gain=gain)
    tag = f"{app}.{'top' if top else 'notop'}"
    x = app_input(app, shape, mode)
    layers = [l for l in m.layers if not isinstance(l, keras.layers.InputLayer)]
    fm = keras.Model(m.inputs, [l.output for l in layers])
    vals = [np.asarray(v) for v in fm(x, training=False)]
    out = np.asarray(m.predict(x, verbose=0), F32)
    cot = rng_for(tag, "cot").standard_normal(out.shape).astype(F32)
    xt = tf.constant(x)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(xt)
        o = m(xt, training=False)
        s1, s2 = tf.reduce_sum(o), tf.reduce_sum(o * cot)
    g1, g2 = np.asarray(tape.gradient(s1, xt)), np.asarray(tape.gradient(s2, xt))
    d = {"x": x, "out": out, "cot": cot, "gin_ones": g1, "gin_cot": g2,
         "kernel_gain": np.float64(gain), "seed": np.int64(0)}
    stats, sums, head = [], {}, []
    for l, v in zip(layers, vals):
        v = v.astype(F32)
        flat = v.reshape(-1)
        sums[l.name] = float(flat.astype(np.float64).sum())
        stats.append((l.name, float(np.sqrt(np.mean(flat.astype(np.float64) ** 2))),
                      float(np.mean(flat != 0)), bool(np.all(np.isfinite(flat)))))
        if trunk is not None and l.name in trunk:
            assert sums[l.name] == trunk[l.name], (tag, l.name, sums[l.name], trunk[l.name])
            continue
        head.append(l.name)
        r = rng_for(tag, "idx", l.name)
        idx = np.sort(r.choice(flat.size, size=min(APP_SAMPLES, flat.size), replace=False)).astype(np.int32)
        d[f"act_idx/{l.name}"] = idx
        d[f"act_val/{l.name}"] = flat[idx]
        d[f"act_sum/{l.name}"] = np.float64(flat.astype(np.float64).sum())
        d[f"act_sumsq/{l.name}"] = np.float64((flat.astype(np.float64) ** 2).sum())
        d[f"act_shape/{l.name}"] = np.array(v.shape, np.int32)
    if trunk is not None:
        d["trunk_ref"] = np.array(f"{app}.notop.ref.npz")
    savez(os.path.join(OUT, f"{tag}.ref.npz"), d)
    cfg = json.loads(m.to_json())
    with open(os.path.join(OUT, f"{tag}.json"), "w") as f:
        json.dump(cfg, f, separators=(",", ":"))
    rms = [s[1] for s in stats]
    log(f"  {tag}: {len(layers)} layers, input {shape}, out {out.shape}, act rms min {min(rms):.3g} "
        f"max {max(rms):.3g} last {rms[-1]:.3g}, finite {all(s[3] for s in stats)}, "
        f"min nonzero frac {min(s[2] for s in stats):.2f}, |gin_cot| max {np.abs(g2).max():.3g}")
    # self-check: the JSON alone plus seeded_weight reproduces the output
    m_re = keras.models.model_from_json(open(os.path.join(OUT, f"{tag}.json")).read())
    set_seeded_weights(m_re, keras, gain=gain)
    err = maxdiff(out, m_re.predict(x, verbose=0))
    if err > RELOAD_TOL:
        log(f"  JSON+seeded_weight rebuild of {tag} differs: {err:.3g}")
    return {"input": list(x.shape), "output": list(out.shape), "layers": len(layers), "kernel_gain": gain,
            "max_prob" if top else "out_rms": float(out.max()) if top else float(np.sqrt(np.mean(out ** 2))),
            "rms_per_layer": {s[0]: s[1] for s in stats}, "json_rebuild_maxdiff": err,
            "files": [f"{tag}.json", f"{tag}.ref.npz"], "act_layers_in_this_npz": len(head),
            "sums": sums}


def make_apps(only=None):
    index = {}
    for app, ctor, shape, mode in APPS:
        if only and app not in only:
            continue
        notop = app_fixture(app, ctor, shape, mode, False)
        index[f"{app}.top"] = app_fixture(app, ctor, shape, mode, True, trunk=notop["sums"])
        index[f"{app}.notop"] = notop
    for v in index.values():
        v.pop("sums", None)
        v.pop("rms_per_layer", None)
    for app, ctor, shape, _ in APPS:
        if app in ("VGG16", "ResNet50") and (not only or app in only):
            tf_keras.backend.clear_session()
            m2 = getattr(tf_keras.applications, ctor)(weights=None, include_top=False, input_shape=shape)
            with open(os.path.join(OUT, f"{app}.notop.k2.json"), "w") as f:
                f.write(m2.to_json())
            index[f"{app}.notop"]["files"].append(f"{app}.notop.k2.json")
    return index


# --------------------------------------------------------------------------------------------
# unsafe files
# --------------------------------------------------------------------------------------------

def _pwn_lambda():
    # A real lambda, so both Keras versions store its bytecode; running it writes the marker.
    return lambda t: (__import__("pathlib").Path("/tmp/npcnn_pwned_marker").write_text("pwned"), t * 2.0)[1]


@keras.saving.register_keras_serializable(package="npcnn_evil", name="EvilLayer")
class EvilLayer(keras.layers.Layer):
    """A custom layer: loading it needs this Python class, which a file must never supply."""

    def call(self, x):
        return x * 3.0


def make_unsafe():
    info = {}
    keras.backend.clear_session()
    L = keras.layers
    x = keras.Input((4,), name="x")
    h = L.Dense(3, name="dense")(x)
    h = L.Lambda(_pwn_lambda(), name="lambda_pwn")(h)
    m = keras.Model(x, L.Dense(2, name="head")(h), name="lambda")
    hand_init("lambda", m)
    m.save(os.path.join(OUT, "lambda.k3.keras"))
    m.save(os.path.join(OUT, "lambda.k3.h5"))
    tf_keras.backend.clear_session()
    L2 = tf_keras.layers
    x2 = tf_keras.Input((4,), name="x")
    h2 = L2.Dense(3, name="dense")(x2)
    h2 = L2.Lambda(_pwn_lambda(), name="lambda_pwn")(h2)
    m2 = tf_keras.Model(x2, L2.Dense(2, name="head")(h2), name="lambda")
    transfer(m, m2)
    m2.save(os.path.join(OUT, "lambda.k2.h5"))
    info["lambda"] = {"files": ["lambda.k3.keras", "lambda.k3.h5", "lambda.k2.h5"]}

    # os.system named as a layer class inside an otherwise valid .keras archive
    keras.backend.clear_session()
    x = keras.Input((4,), name="x")
    h = L.Dense(3, name="dense")(x)
    h = L.Activation("relu", name="evil")(h)
    m = keras.Model(x, L.Dense(2, name="head")(h), name="os_system")
    hand_init("os_system", m)
    with tempfile.TemporaryDirectory() as td:
        src = os.path.join(td, "m.keras")
        m.save(src)
        _rewrite_keras_config(src, os.path.join(OUT, "os_system.k3.keras"), _os_system_edit)

    keras.backend.clear_session()
    x = keras.Input((4,), name="x")
    h = L.Dense(3, name="dense")(x)
    h = EvilLayer(name="evil")(h)
    m = keras.Model(x, L.Dense(2, name="head")(h), name="custom_object")
    hand_init("custom_object", m)
    m.save(os.path.join(OUT, "custom_object.k3.keras"))
    info["os_system"] = {"files": ["os_system.k3.keras"]}
    info["custom_object"] = {"files": ["custom_object.k3.keras"]}
    if os.path.exists(MARKER):
        os.remove(MARKER)  # Keras ran the lambda while tracing/saving; leave no marker behind
    return info


def _os_system_edit(cfg):
    for layer in cfg["config"]["layers"]:
        if layer["config"]["name"] == "evil":
            layer["module"] = "os"
            layer["class_name"] = "system"
            layer["registered_name"] = "system"
            layer["config"] = {"name": "evil", "command": f"touch {MARKER}"}
    return cfg


def _rewrite_keras_config(src, dst, edit):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "config.json":
                data = json.dumps(edit(json.loads(data))).encode()
            zout.writestr(item, data)


def _gradcam_pp(act, g):
    """Grad-CAM++ closed form on float64 (N, h, w, K) arrays; see README for the formula."""
    s = act.sum(axis=(1, 2), keepdims=True)
    g2, g3 = g ** 2, g ** 3
    denom = 2.0 * g2 + s * g3
    alpha = np.where(denom != 0.0, g2 / np.where(denom != 0.0, denom, 1.0), 0.0)
    w = (alpha * np.maximum(g, 0.0)).sum(axis=(1, 2))                  # (N, K)
    return np.maximum(np.einsum("nhwk,nk->nhw", act, w), 0.0), alpha, w


def make_gradcam():
    keras.backend.clear_session()
    m, _ = m_cats_dogs(keras, True, classes=10)
    hand_init("cats_dogs_10", m)
    m.save(os.path.join(OUT, "cats_dogs_10.k3.keras"))
    m.save(os.path.join(OUT, "cats_dogs_10.k3.h5"))
    layer, target = "conv3", 3
    x = rng_for("gradcam", "x").uniform(0.0, 1.0, (2, 32, 32, 3)).astype(F32)
    names = [l.name for l in m.layers]
    cut = names.index(layer)
    h = tf.constant(x)
    for l in m.layers[:cut + 1]:
        h = l(h, training=False)
    act = tf.identity(h)
    with tf.GradientTape() as tape:
        tape.watch(act)
        z = act
        for l in m.layers[cut + 1:names.index("logits") + 1]:
            z = l(z, training=False)
        score = z[:, target]
    g = np.asarray(tape.gradient(score, act), np.float64)
    A = np.asarray(act, np.float64)
    logits = np.asarray(z)
    probs = np.asarray(m.predict(x, verbose=0))
    assert np.allclose(probs, np.asarray(tf.nn.softmax(logits)), atol=1e-6)
    weights = g.mean(axis=(1, 2))                                          # (N, K)
    cam = np.maximum(np.einsum("nhwk,nk->nhw", A, weights), 0.0)
    campp, alpha, wpp = _gradcam_pp(A, g)
    d = {"x": x, "act": A.astype(F32), "grads": g.astype(F32), "logits": logits.astype(F32),
         "probs": probs.astype(F32), "target": np.int64(target), "layer": np.array(layer),
         "gradcam_weights": weights.astype(F32), "gradcam": cam.astype(F32),
         "gradcampp_alpha": alpha.astype(F32), "gradcampp_weights": wpp.astype(F32),
         "gradcampp": campp.astype(F32)}
    savez(os.path.join(OUT, "gradcam.ref.npz"), d)
    log(f"  gradcam: act {A.shape}, cam max {cam.max(axis=(1, 2))}, cam++ max {campp.max(axis=(1, 2))}, "
        f"nonzero frac {np.mean(cam > 0):.2f}/{np.mean(campp > 0):.2f}")
    return {"files": ["gradcam.ref.npz", "cats_dogs_10.k3.keras", "cats_dogs_10.k3.h5"],
            "layer": layer, "target": target}


def _optim_model():
    L = keras.layers
    x = keras.Input((6, 6, 2), name="x")
    h = L.Conv2D(4, 3, name="conv")(x)
    h = L.Flatten(name="flatten")(h)
    return keras.Model(x, L.Dense(3, name="dense")(h), name="optim_tiny")


OPTIMIZERS = {
    "sgd": lambda: keras.optimizers.SGD(learning_rate=0.01),
    "sgd_momentum": lambda: keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
    "sgd_nesterov": lambda: keras.optimizers.SGD(learning_rate=0.01, momentum=0.9, nesterov=True),
    "adam": lambda: keras.optimizers.Adam(),
    "rmsprop": lambda: keras.optimizers.RMSprop(),
}


def _loss_cases():
    r = rng_for("losses")
    logits1 = r.standard_normal((5, 1)) * 2
    probs1 = 1 / (1 + np.exp(-logits1))
    probs1[0, 0], probs1[1, 0] = 1e-9, 1 - 1e-9          # inside Keras' epsilon clipping
    yb = np.array([[0], [1], [1], [0], [1]], np.float64)
    logits3 = r.standard_normal((4, 3)) * 2
    probs3 = np.exp(logits3) / np.exp(logits3).sum(-1, keepdims=True)
    ys = np.array([2, 0, 1, 2])
    yc = np.eye(3)[ys]
    yr = r.standard_normal((4, 3))
    L = keras.losses
    return {
        "bce_logits": (L.BinaryCrossentropy(from_logits=True), yb, logits1),
        "bce_probs": (L.BinaryCrossentropy(from_logits=False), yb, probs1),
        "cce_probs": (L.CategoricalCrossentropy(), yc, probs3),
        "cce_logits": (L.CategoricalCrossentropy(from_logits=True), yc, logits3),
        "scce_probs": (L.SparseCategoricalCrossentropy(), ys, probs3),
        "scce_logits": (L.SparseCategoricalCrossentropy(from_logits=True), ys, logits3),
        "mse": (L.MeanSquaredError(), yr, logits3),
    }


def make_optim():
    keras.backend.clear_session()
    m = _optim_model()
    hand_init("optim_tiny", m)
    init = m.get_weights()
    names = [var_names(m, keras)[id(v)] for v in m.trainable_weights]
    r = rng_for("optim", "batch")
    x = r.standard_normal((4, 6, 6, 2)).astype(F32)
    y = np.array([0, 2, 1, 2], np.int64)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    d = {"x": x, "y": y, "weight_names": np.array(json.dumps(names))}
    for n, w in zip(names, init):
        d[f"init/{n}"] = w
    for oname, make in OPTIMIZERS.items():
        m.set_weights(init)
        opt = make()
        losses = []
        for step in range(1, 4):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, m(x, training=True))
            gs = tape.gradient(loss, m.trainable_weights)
            losses.append(float(loss))
            if step == 1:
                for n, g in zip(names, gs):
                    d[f"grads/{n}"] = np.asarray(g)
            opt.apply_gradients(zip(gs, m.trainable_weights))
            if step in (1, 3):
                for n, v in zip(names, m.trainable_weights):
                    d[f"{oname}/step{step}/{n}"] = np.asarray(v)
        d[f"{oname}/loss"] = np.array(losses, F32)  # before steps 1, 2, 3
        d[f"{oname}/loss_after3"] = np.float32(loss_fn(y, m(x, training=False)))
        cfg = {k: v for k, v in opt.get_config().items() if isinstance(v, (int, float, bool, str, type(None)))}
        d[f"{oname}/config"] = np.array(json.dumps(cfg, sort_keys=True))
        # the same three steps through compile + train_on_batch must agree
        m.set_weights(init)
        m.compile(optimizer=make(), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        for _ in range(3):
            m.train_on_batch(x, y)
        err = max(maxdiff(d[f"{oname}/step3/{n}"], v) for n, v in zip(names, m.get_weights()))
        log(f"  optim {oname}: losses {np.round(losses, 5)}, train_on_batch vs apply_gradients {err:.2g}")
    for cname, (fn, yt, yp) in _loss_cases().items():
        ytt = tf.constant(yt, tf.int64 if yt.dtype.kind == "i" else tf.float32)
        ypt = tf.constant(yp.astype(F32))
        with tf.GradientTape() as tape:
            tape.watch(ypt)
            val = fn(ytt, ypt)
        d[f"loss/{cname}/y_true"] = yt.astype(np.int64 if yt.dtype.kind == "i" else F32)
        d[f"loss/{cname}/y_pred"] = yp.astype(F32)
        d[f"loss/{cname}/value"] = np.float32(val)
        d[f"loss/{cname}/grad"] = np.asarray(tape.gradient(val, ypt))
        d[f"loss/{cname}/config"] = np.array(json.dumps(fn.get_config(), sort_keys=True))
    savez(os.path.join(OUT, "optim.ref.npz"), d)
    return {"files": ["optim.ref.npz"], "optimizers": list(OPTIMIZERS), "losses": list(_loss_cases())}


def make_methods():
    return {"gradcam": make_gradcam(), "optim": make_optim()}


# --------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="models,apps,unsafe,methods")
    ap.add_argument("--models", default="", help="comma-separated subset of hand-built models")
    ap.add_argument("--apps", default="", help="comma-separated subset of applications")
    a = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    parts = set(a.parts.split(","))
    index_path = os.path.join(OUT, "index.json")
    index = json.load(open(index_path)) if os.path.exists(index_path) else {}
    index.setdefault("models", {})
    index.setdefault("applications", {})
    index.setdefault("unsafe", {})
    if "models" in parts:
        names = a.models.split(",") if a.models else list(MODELS)
        for n in names:
            log(f"model {n}")
            index["models"][n] = build_hand_model(n)
    if "apps" in parts:
        index["applications"].update(make_apps(set(a.apps.split(",")) if a.apps else None))
    if "unsafe" in parts:
        index["unsafe"] = make_unsafe()
    if "methods" in parts:
        index["methods"] = make_methods()
    index["versions"] = {"tensorflow": tf.__version__, "keras": keras.__version__,
                         "tf_keras": tf_keras.__version__, "numpy": np.__version__}
    with open(index_path, "w") as f:
        json.dump(index, f, indent=1, sort_keys=True)
    if os.path.exists(MARKER):
        os.remove(MARKER)


if __name__ == "__main__":
    main()
