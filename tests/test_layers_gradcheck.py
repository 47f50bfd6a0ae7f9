"""Float64 finite-difference checks of every layer's backward, across its options.

For each case: a layer, inputs of odd sizes with batch > 1, random weights and a random cotangent ``cot``.
The scalar checked is ``f = sum(cot * layer(x))``:
  * layer level: ``apply_backward(cot)`` against central differences of f for every input and every
    trainable weight (:func:`conftest.check_gradient`, relative error < 1e-6);
  * model level: the same layer wired into ``Model(Input, layer(Input))``; ``model.input_gradient`` and
    ``model.param_gradients`` (or a training-mode ``trace``) must equal the layer's gradients;
  * shape inference: ``layer.output_shape`` agrees with the forward's output shape.
"""
import numpy as np
import pytest

import npcnn
from npcnn import activations as A
from npcnn import layers as L
from conftest import away_from, check_gradient, randomize_weights, rel_error

MODEL_TOL = 1e-10  # model-level gradients are the same arithmetic as the layer's: equal up to round-off


# --------------------------------------------------------------------------- helpers
def forward(layer, xs, training, seed):
    """One forward of the layer (fused activation included); the seed fixes a training-mode noise mask."""
    if seed is not None:
        npcnn.set_seed(seed)
    return layer.apply(xs if layer.multi_input else xs[0], training)


def trainable_names(layer):
    return [n for n in layer.weight_names if n in layer.params and n not in layer.non_trainable_names]


def gradcheck_layer(layer, xs, rng, training=False, seed=None, n_coords=40):
    """Check one layer on inputs ``xs`` (a list of float64 arrays); returns the gradients it checked."""
    xs = [np.array(x, dtype=np.float64) for x in xs]
    layer(xs if layer.multi_input else xs[0])  # eager call: builds the weights for these shapes
    layer.astype("float64")
    randomize_weights(layer.params, rng)

    y, cache = forward(layer, xs, training, seed)
    assert y.dtype == np.float64, f"{layer.name}: float64 in, {y.dtype} out"
    in_shapes = [(None, *x.shape[1:]) for x in xs]
    assert tuple(layer.output_shape(in_shapes if layer.multi_input else in_shapes[0])) == (None, *y.shape[1:])

    cot = rng.normal(size=y.shape)
    dx, grads = layer.apply_backward(cot, cache, need_dx=True, need_params=True)
    dxs = dx if layer.multi_input else [dx]
    assert sorted(grads) == sorted(trainable_names(layer)), f"{layer.name}: weight gradients {sorted(grads)}"

    def f():
        return float((cot * forward(layer, xs, training, seed)[0]).sum())

    for i, (x, d) in enumerate(zip(xs, dxs)):
        check_gradient(f, x, d, rng, n_coords, what=f"{layer.name} input {i}")
    for name in trainable_names(layer):
        check_gradient(f, layer.params[name], grads[name], rng, n_coords, what=f"{layer.name}/{name}")
    check_through_model(layer, xs, cot, dxs, grads, training, seed)
    return dxs, grads


def check_through_model(layer, xs, cot, dxs, grads, training, seed):
    """The layer inside a Model: its input and weight gradients equal the layer's own."""
    inputs = [npcnn.Input(x.shape[1:]) for x in xs]
    model = npcnn.Model(inputs, layer(inputs if layer.multi_input else inputs[0]))
    model.astype("float64")
    arg = xs if len(xs) > 1 else xs[0]
    if training:
        if seed is not None:
            npcnn.set_seed(seed)
        tr = model.trace(arg, training=True)
        ig, pg = tr.input_gradient(cotangent=cot), tr.param_gradients(cotangent=cot)
    else:
        ig, pg = model.input_gradient(arg, cotangent=cot), model.param_gradients(arg, cotangent=cot)
    for a, b in zip(ig if len(xs) > 1 else [ig], dxs):
        assert rel_error(a, b) < MODEL_TOL
    assert sorted(pg) == sorted(f"{layer.name}/{n}" for n in grads)
    for n, g in grads.items():
        assert rel_error(pg[f"{layer.name}/{n}"], g) < MODEL_TOL


def normal(*shape):
    return ("normal", shape)


def smooth(*shape, kinks=(0.0,), low=-3.0, high=3.0):
    """An input drawn uniformly from [low, high] and moved away from the given kinks."""
    return ("smooth", shape, kinks, low, high)


def make_input(spec, rng):
    if spec[0] == "normal":
        return rng.normal(size=spec[1])
    _, shape, kinks, low, high = spec
    return away_from(rng.uniform(low, high, shape), kinks, margin=0.05)


# --------------------------------------------------------------------------- the cases
X4 = normal(2, 7, 6, 3)    # odd sizes, batch 2
X3 = normal(2, 9, 3)       # sequences
CASES = {
    # convolutions
    "conv2d_s1_valid": (lambda: L.Conv2D(3, 3), [X4]),
    "conv2d_s2_same": (lambda: L.Conv2D(4, 3, strides=2, padding="same"), [X4]),
    "conv2d_s21_valid_rect": (lambda: L.Conv2D(2, (3, 2), strides=(2, 1)), [X4]),
    "conv2d_s21_same": (lambda: L.Conv2D(2, 3, strides=(2, 1), padding="same"), [X4]),
    "conv2d_s3_k2_gaps": (lambda: L.Conv2D(2, 2, strides=3), [normal(2, 8, 7, 2)]),
    "conv2d_k4_same_asym": (lambda: L.Conv2D(2, 4, padding="same"), [X4]),
    "conv2d_k5_same_small": (lambda: L.Conv2D(2, 5, padding="same"), [normal(2, 3, 3, 2)]),
    "conv2d_dilation2_same": (lambda: L.Conv2D(3, 3, dilation_rate=2, padding="same"), [normal(2, 7, 8, 2)]),
    "conv2d_dilation2_valid": (lambda: L.Conv2D(3, 3, dilation_rate=(2, 1)), [normal(2, 7, 8, 2)]),
    "conv2d_groups2": (lambda: L.Conv2D(4, 3, groups=2, padding="same"), [normal(2, 5, 6, 4)]),
    "conv2d_groups2_s2": (lambda: L.Conv2D(6, 3, strides=2, groups=2), [normal(2, 7, 7, 4)]),
    "conv2d_no_bias": (lambda: L.Conv2D(3, 3, use_bias=False, padding="same"), [X4]),
    "conv2d_1x1": (lambda: L.Conv2D(4, 1), [X4]),
    "conv2d_1x1_s2": (lambda: L.Conv2D(4, 1, strides=2), [X4]),
    "conv2d_fused_relu": (lambda: L.Conv2D(3, 3, activation="relu"), [X4]),
    "conv2d_fused_tanh": (lambda: L.Conv2D(3, 3, strides=2, padding="same", activation="tanh"), [X4]),
    "conv1d_valid": (lambda: L.Conv1D(4, 3), [X3]),
    "conv1d_same_s2": (lambda: L.Conv1D(4, 3, strides=2, padding="same"), [X3]),
    "conv1d_causal_d2": (lambda: L.Conv1D(2, 3, padding="causal", dilation_rate=2), [X3]),
    "conv1d_causal_s2": (lambda: L.Conv1D(2, 2, padding="causal", strides=2), [X3]),
    "conv1d_groups2": (lambda: L.Conv1D(4, 3, groups=2, padding="same"), [normal(2, 7, 4)]),
    "depthwise_m2_s2_same": (lambda: L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2), [X4]),
    "depthwise_valid_d2": (lambda: L.DepthwiseConv2D(3, dilation_rate=2, use_bias=False), [normal(2, 7, 8, 2)]),
    "depthwise_fused_relu6": (lambda: L.DepthwiseConv2D(3, padding="same", activation="relu6"), [X4]),
    "separable_same": (lambda: L.SeparableConv2D(4, 3, padding="same", depth_multiplier=2), [X4]),
    "separable_s2_valid": (lambda: L.SeparableConv2D(3, 3, strides=2, use_bias=False), [X4]),
    "transpose_s2_same": (lambda: L.Conv2DTranspose(3, 3, strides=2, padding="same"), [normal(2, 4, 5, 2)]),
    "transpose_s2_valid": (lambda: L.Conv2DTranspose(3, 3, strides=2), [normal(2, 4, 5, 2)]),
    "transpose_k4_s2_same": (lambda: L.Conv2DTranspose(2, 4, strides=2, padding="same"), [normal(2, 3, 4, 2)]),
    "transpose_s1_same": (lambda: L.Conv2DTranspose(2, 3, padding="same"), [normal(2, 5, 4, 3)]),
    "transpose_outpad_same": (lambda: L.Conv2DTranspose(2, 3, strides=2, padding="same", output_padding=1),
                              [normal(2, 4, 3, 2)]),
    "transpose_outpad_valid": (lambda: L.Conv2DTranspose(2, 3, strides=3, output_padding=(1, 2)),
                               [normal(2, 3, 4, 2)]),
    "transpose_dilation2_same": (lambda: L.Conv2DTranspose(2, 3, padding="same", dilation_rate=2), [normal(2, 5, 4, 2)]),
    "transpose_dilation2_valid": (lambda: L.Conv2DTranspose(2, 3, dilation_rate=(2, 1)), [normal(2, 4, 3, 2)]),
    "transpose_s2_k2_valid": (lambda: L.Conv2DTranspose(2, 2, strides=2, activation="sigmoid"), [normal(2, 3, 3, 2)]),
    # dense
    "dense_rank2": (lambda: L.Dense(4), [normal(3, 5)]),
    "dense_rank4": (lambda: L.Dense(4, activation="softmax"), [normal(2, 3, 4, 5)]),
    "dense_no_bias": (lambda: L.Dense(3, use_bias=False), [normal(3, 5)]),
    # pooling
    "maxpool_3s2_valid": (lambda: L.MaxPooling2D(3, strides=2), [normal(2, 7, 9, 3)]),
    "maxpool_3s2_same": (lambda: L.MaxPooling2D(3, strides=2, padding="same"), [normal(2, 7, 9, 3)]),
    "maxpool_2_same_odd": (lambda: L.MaxPooling2D(2, padding="same"), [normal(2, 7, 5, 2)]),
    "avgpool_3s2_valid": (lambda: L.AveragePooling2D(3, strides=2), [normal(2, 7, 9, 3)]),
    "avgpool_3s2_same": (lambda: L.AveragePooling2D(3, strides=2, padding="same"), [normal(2, 7, 9, 3)]),
    "avgpool_2_same_odd": (lambda: L.AveragePooling2D((2, 3), padding="same"), [normal(2, 7, 5, 2)]),
    "maxpool1d_3s2_same": (lambda: L.MaxPooling1D(3, strides=2, padding="same"), [X3]),
    "maxpool1d_valid": (lambda: L.MaxPooling1D(2), [X3]),
    "avgpool1d_3s2_same": (lambda: L.AveragePooling1D(3, strides=2, padding="same"), [X3]),
    "avgpool1d_valid": (lambda: L.AveragePooling1D(3, strides=2), [X3]),
    "gap2d": (lambda: L.GlobalAveragePooling2D(), [X4]),
    "gap2d_keepdims": (lambda: L.GlobalAveragePooling2D(keepdims=True), [X4]),
    "gmp2d": (lambda: L.GlobalMaxPooling2D(), [X4]),
    "gmp2d_keepdims": (lambda: L.GlobalMaxPooling2D(keepdims=True), [X4]),
    "gap1d": (lambda: L.GlobalAveragePooling1D(), [X3]),
    "gmp1d_keepdims": (lambda: L.GlobalMaxPooling1D(keepdims=True), [X3]),
    # normalization
    "bn_inference": (lambda: L.BatchNormalization(), [X4]),
    "bn_inference_axis1": (lambda: L.BatchNormalization(axis=1), [X4]),
    "bn_inference_no_center_scale": (lambda: L.BatchNormalization(center=False, scale=False), [X4]),
    "bn_inference_rank2": (lambda: L.BatchNormalization(epsilon=1e-5), [normal(4, 5)]),
    "ln_default": (lambda: L.LayerNormalization(), [X4]),
    "ln_axes123": (lambda: L.LayerNormalization(axis=[1, 2, 3]), [normal(2, 3, 4, 2)]),
    "ln_no_center": (lambda: L.LayerNormalization(center=False), [normal(3, 6)]),
    "ln_no_scale": (lambda: L.LayerNormalization(scale=False, axis=1), [normal(3, 4, 5)]),
    "normalization_weights": (lambda: L.Normalization(), [X4]),
    "normalization_config": (lambda: L.Normalization(mean=[0.1, -0.2, 0.3], variance=[0.5, 2.0, 1.5]), [X4]),
    "normalization_invert": (lambda: L.Normalization(mean=[0.1, -0.2, 0.3], variance=[0.5, 2.0, 1.5],
                                                     invert=True), [X4]),
    "normalization_axis_none": (lambda: L.Normalization(axis=None, mean=0.5, variance=4.0), [X4]),
    # activation layers with options (inputs kept away from every kink)
    "relu_plain": (lambda: L.ReLU(), [smooth(2, 5, 3)]),
    "relu_all_options": (lambda: L.ReLU(max_value=2.0, negative_slope=0.1, threshold=0.5),
                         [smooth(2, 5, 4, 3, kinks=(0.5, 2.0))]),
    "relu_max_value": (lambda: L.ReLU(max_value=1.0), [smooth(2, 5, 3, kinks=(0.0, 1.0))]),
    "relu_threshold_only": (lambda: L.ReLU(threshold=-0.5), [smooth(2, 5, 3, kinks=(-0.5,))]),
    "leaky_relu": (lambda: L.LeakyReLU(negative_slope=0.2), [smooth(2, 5, 3)]),
    "leaky_relu_k2_alpha": (lambda: L.LeakyReLU(alpha=0.05), [smooth(2, 5, 3)]),
    "prelu": (lambda: L.PReLU(), [smooth(2, 3, 5, 2)]),
    "prelu_shared_12": (lambda: L.PReLU(shared_axes=[1, 2]), [smooth(2, 3, 5, 2)]),
    "prelu_shared_1": (lambda: L.PReLU(shared_axes=1), [smooth(2, 3, 5, 2)]),
    "elu_layer": (lambda: L.ELU(alpha=0.7), [smooth(2, 5, 3)]),
    "softmax_axis_last": (lambda: L.Softmax(), [X4]),
    "softmax_axis1": (lambda: L.Softmax(axis=1), [X4]),
    # merges (three inputs where Keras allows it)
    "add3": (lambda: L.Add(), [X4, X4, X4]),
    "subtract": (lambda: L.Subtract(), [X4, X4]),
    "multiply3": (lambda: L.Multiply(), [X4, X4, X4]),
    "multiply_broadcast_se": (lambda: L.Multiply(), [X4, normal(2, 1, 1, 3)]),  # EfficientNet's squeeze-excite
    "multiply_broadcast_first": (lambda: L.Multiply(), [normal(2, 1, 1, 3), X4]),
    "add_broadcast_first": (lambda: L.Add(), [normal(2, 1, 6, 1), X4]),
    "average": (lambda: L.Average(), [X4, X4, X4]),
    "maximum": (lambda: L.Maximum(), [X4, X4, X4]),
    "minimum": (lambda: L.Minimum(), [X4, X4]),
    "concat_last": (lambda: L.Concatenate(), [X4, normal(2, 7, 6, 2)]),
    "concat_axis1": (lambda: L.Concatenate(axis=1), [X4, normal(2, 2, 6, 3), X4]),
    # reshaping
    "flatten": (lambda: L.Flatten(), [X4]),
    "reshape": (lambda: L.Reshape((-1, 6)), [X4]),
    "permute_213": (lambda: L.Permute((2, 1, 3)), [X4]),
    "permute_312": (lambda: L.Permute((3, 1, 2)), [X4]),
    "zeropad_asym": (lambda: L.ZeroPadding2D(((1, 2), (0, 3))), [X4]),
    "zeropad_int": (lambda: L.ZeroPadding2D(1), [X4]),
    "crop_asym": (lambda: L.Cropping2D(((1, 0), (2, 1))), [X4]),
    "upsample_nearest_23": (lambda: L.UpSampling2D((2, 3)), [normal(2, 3, 4, 2)]),
    "upsample_bilinear_23": (lambda: L.UpSampling2D((2, 3), interpolation="bilinear"), [normal(2, 3, 4, 2)]),
    "rescaling": (lambda: L.Rescaling(1 / 127.5, offset=-1), [X4]),
    "rescaling_per_channel": (lambda: L.Rescaling([0.5, 2.0, -1.0], offset=[0.0, 1.0, 2.0]), [X4]),
    # identity at inference
    "dropout_inference": (lambda: L.Dropout(0.5), [X4]),
    "spatial_dropout2d_inference": (lambda: L.SpatialDropout2D(0.5), [X4]),
    "spatial_dropout1d_inference": (lambda: L.SpatialDropout1D(0.5), [X3]),
    "gaussian_noise_inference": (lambda: L.GaussianNoise(0.3), [X4]),
    "gaussian_dropout_inference": (lambda: L.GaussianDropout(0.3), [X4]),
    "activity_regularization": (lambda: L.ActivityRegularization(l1=0.1), [X4]),
}
TRAINING_CASES = {
    "bn_train": (lambda: L.BatchNormalization(), [X4]),
    "bn_train_axis1": (lambda: L.BatchNormalization(axis=1), [X4]),
    "bn_train_no_center_scale": (lambda: L.BatchNormalization(center=False, scale=False), [X4]),
    "bn_train_rank2": (lambda: L.BatchNormalization(), [normal(5, 3)]),
    "dropout_train": (lambda: L.Dropout(0.4), [X4]),
    "dropout_train_noise_shape": (lambda: L.Dropout(0.4, noise_shape=(None, 1, 1, 3)), [X4]),
    "spatial_dropout2d_train": (lambda: L.SpatialDropout2D(0.5), [X4]),
    "spatial_dropout1d_train": (lambda: L.SpatialDropout1D(0.5), [X3]),
    "gaussian_noise_train": (lambda: L.GaussianNoise(0.3), [X4]),
    "gaussian_dropout_train": (lambda: L.GaussianDropout(0.3), [X4]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_layer_gradients_inference(case, rng):
    make, specs = CASES[case]
    gradcheck_layer(make(), [make_input(s, rng) for s in specs], rng)


@pytest.mark.parametrize("case", sorted(TRAINING_CASES))
def test_layer_gradients_training(case, rng):
    make, specs = TRAINING_CASES[case]
    gradcheck_layer(make(), [make_input(s, rng) for s in specs], rng, training=True, seed=7)


# every Keras activation by name, through an Activation layer; kinks of each function avoided
KINKS = {"relu": (0.0,), "relu6": (0.0, 6.0), "leaky_relu": (0.0,), "hard_sigmoid": (-3.0, 3.0),
         "hard_swish": (-3.0, 3.0), "elu": (0.0,), "selu": (0.0,)}
ACTIVATION_OPTIONS = [(name, {}) for name in sorted(A.ACTIVATIONS)] + [
    ("gelu", {"approximate": True}), ("hard_sigmoid", {"slope": 0.2}), ("leaky_relu", {"negative_slope": 0.1}),
    ("elu", {"alpha": 0.5}), ("softmax", {"axis": 1}), ("log_softmax", {"axis": 2})]


@pytest.mark.parametrize("name,params", ACTIVATION_OPTIONS,
                         ids=[n + "".join(f"-{k}={v}" for k, v in p.items()) for n, p in ACTIVATION_OPTIONS])
def test_activation_gradients(name, params, rng):
    layer = L.Activation(name)
    layer.set_activation(name, **params)
    kinks = (-2.5, 2.5) if params.get("slope") == 0.2 else KINKS.get(name, ())
    x = away_from(rng.uniform(-7.5, 7.5, (2, 3, 4, 3)), kinks, margin=0.05)
    gradcheck_layer(layer, [x], rng)


def test_every_layer_class_and_activation_is_checked():
    """No layer in CLASSES (nor activation in ACTIVATIONS) escapes the finite-difference check."""
    checked = {type(make()).__name__ for make, _ in [*CASES.values(), *TRAINING_CASES.values()]}
    checked |= {"Activation"}  # test_activation_gradients
    missing = {cls.__name__ for cls in L.CLASSES.values()} - checked - {"InputLayer"}
    assert missing == set()
    assert set(A.ACTIVATIONS) <= {name for name, _ in ACTIVATION_OPTIONS}


@pytest.mark.parametrize("make", [lambda: L.Dropout(0.4), lambda: L.SpatialDropout2D(0.5),
                                  lambda: L.GaussianDropout(0.3)], ids=["dropout", "spatial2d", "gaussian"])
def test_training_noise_backward_is_the_mask(make, rng):
    """Training mode with a fixed seed: y = x * mask, and the backward is exactly dy * mask."""
    layer = make()
    x = away_from(rng.normal(size=(3, 5, 4, 6)), (0.0,), margin=0.05)
    npcnn.set_seed(3)
    y, cache = layer.apply(x, training=True)
    mask = y / x
    if isinstance(layer, L.Dropout):  # kept units scaled by 1/(1-rate), dropped ones zero
        assert set(np.round(np.unique(mask), 12)) <= {0.0, round(1 / (1 - layer.rate), 12)}
        assert 0 < (mask == 0).mean() < 1
    cot = rng.normal(size=y.shape)
    dx, _ = layer.apply_backward(cot, cache)
    np.testing.assert_allclose(dx, cot * mask, rtol=1e-12, atol=0)
    npcnn.set_seed(3)  # the same seed gives the same mask
    np.testing.assert_array_equal(layer.apply(x, training=True)[0], y)
    np.testing.assert_array_equal(layer.apply(x, training=False)[0], x)  # and inference is the identity


def test_batchnorm_training_updates_moving_statistics(rng):
    """Training mode normalises with the batch's statistics and moves the moving ones towards them."""
    layer = L.BatchNormalization(momentum=0.9, center=False, scale=False)
    x = rng.normal(2.0, 3.0, size=(8, 3, 3, 2))
    layer(x)
    y, _ = layer.apply(x, training=True)
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0, atol=1e-6)
    np.testing.assert_allclose(y.var(axis=(0, 1, 2)), x.var(axis=(0, 1, 2)) / (x.var(axis=(0, 1, 2)) + 1e-3),
                               rtol=1e-6)
    np.testing.assert_allclose(layer.params["moving_mean"], 0.1 * x.mean(axis=(0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(layer.params["moving_variance"], 0.9 + 0.1 * x.var(axis=(0, 1, 2)), rtol=1e-6)


@pytest.fixture(params=["im2col", "winograd2", "winograd4"])
def conv_path(request, monkeypatch):
    """Run a test with Winograd forced off, F(2x2) and F(4x4) (transformed kernels are cached per kernel)."""
    from npcnn import conv
    monkeypatch.setattr(conv, "WINOGRAD", {"im2col": False, "winograd2": 2, "winograd4": 4}[request.param])
    return request.param


def test_wide_3x3_convolution_gradients(rng, conv_path):
    """3x3 stride-1 convolutions take the conv core's Winograd path when it is on (forced here); its forward,
    input and weight gradients are checked like every other case, and so is the plain im2col path."""
    gradcheck_layer(L.Conv2D(16, 3, padding="same", activation="tanh"), [rng.normal(size=(2, 5, 4, 16))], rng,
                    n_coords=10)


@pytest.mark.parametrize("case", ["conv2d_s2_same", "conv2d_groups2_s2", "conv2d_k4_same_asym", "depthwise_m2_s2_same",
                                  "transpose_s2_same", "maxpool_3s2_same", "avgpool_3s2_same", "conv1d_causal_d2"])
def test_blocked_im2col_gives_the_same_gradients(case, rng, monkeypatch):
    """With a tiny MEMORY_BUDGET the conv core works block by block (per image, a few rows at a time);
    outputs and gradients must equal the one-block run's, and still pass the finite-difference check."""
    make, specs = CASES[case]
    xs = [make_input(s, rng) for s in specs]
    seed = int(rng.integers(1 << 30))
    whole = gradcheck_layer(make(), [x.copy() for x in xs], np.random.default_rng(seed))
    monkeypatch.setattr(npcnn.conv, "MEMORY_BUDGET", 64)
    blocked = gradcheck_layer(make(), [x.copy() for x in xs], np.random.default_rng(seed))
    for a, b in zip(whole[0], blocked[0]):
        assert rel_error(a, b) < 1e-12
    for k in whole[1]:
        assert rel_error(whole[1][k], blocked[1][k]) < 1e-12


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_round_trip_gives_the_same_layer(case, rng):
    """from_config(get_config()) rebuilds a layer that computes the same function (files are written and
    read through these configs)."""
    make, specs = CASES[case]
    xs = [make_input(s, rng) for s in specs]
    arg = xs if len(xs) > 1 else xs[0]
    layer = make()
    layer(arg)
    randomize_weights(layer.params, rng)
    config = layer.get_config()
    twin = type(layer).from_config(config)
    twin(arg)
    twin.set_weights(layer.get_weights())
    assert twin.get_config() == config
    np.testing.assert_array_equal(twin(arg), layer(arg))


def _in_place_edits_agree_with_a_fresh_copy(layer, x, rng, low, high, step, trials=8):
    """Edit one kernel entry in place (as an optimiser or a weight-ablation experiment does) and compare the
    layer's output with the same layer on a fresh copy of the weights (no cached kernel transform)."""
    layer(x)
    w = layer.params["kernel"]
    w[...] = rng.uniform(low, high, w.shape)
    layer(x)  # fills any cache keyed on this kernel array
    for _ in range(trials):
        w.flat[rng.integers(w.size)] += step
        edited = layer(x)
        twin = type(layer).from_config(layer.get_config())
        twin(x)
        twin.set_weights([p.copy() for p in layer.get_weights()])
        np.testing.assert_array_equal(edited, twin(x))


@pytest.mark.parametrize("channels", [4, 128])
def test_in_place_weight_edits_take_effect(channels, rng, conv_path):
    x = rng.normal(size=(1, 8, 8, channels)).astype(np.float32)
    _in_place_edits_agree_with_a_fresh_copy(L.Conv2D(channels, 3, padding="same"), x, rng, -0.05, 0.05,
                                            np.float32(1e-3))


def test_in_place_edits_of_large_float32_kernels_take_effect(rng, conv_path):
    # large values, a small edit: a checksum-style cache key would miss it; the exact compare does not
    x = rng.normal(size=(1, 8, 8, 128)).astype(np.float32)
    _in_place_edits_agree_with_a_fresh_copy(L.Conv2D(128, 3, padding="same", use_bias=False), x, rng, 10, 20,
                                            np.float32(0.01))
