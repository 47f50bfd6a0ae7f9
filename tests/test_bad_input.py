"""Bad input gives npcnn's own error (InputError, a NpcnnError) with a message naming the layer and shapes.

Covers issue 3's list: wrong rank, wrong channel count, dtypes (ints converted; complex, object and strings
refused), NaN/inf, a cotangent of the wrong shape, an unknown layer name (close names suggested), plus
graphs wired from incompatible layers and bad arguments.
"""
import numpy as np
import pytest

import npcnn
from npcnn import layers as L
from npcnn.errors import InputError, NpcnnError


@pytest.fixture
def net():
    """img (8, 8, 3) -> conv1 (6, 6, 4) -> gap (4) -> logits (2)."""
    x = npcnn.Input((8, 8, 3), name="img")
    h = L.Conv2D(4, 3, activation="relu", name="conv1")(x)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    return npcnn.Model(x, L.Dense(2, name="logits")(h), name="net")


GOOD = np.linspace(-1, 1, 2 * 8 * 8 * 3).reshape(2, 8, 8, 3)


def test_input_error_is_the_projects_own_type():
    assert issubclass(InputError, NpcnnError) and issubclass(InputError, ValueError)
    assert npcnn.InputError is InputError and npcnn.NpcnnError is NpcnnError


@pytest.mark.parametrize("shape,expected", [
    ((8, 8, 3), r"'img' expects shape \(None, 8, 8, 3\) \(rank 4\), got \(8, 8, 3\) \(add a batch axis"),
    ((1, 2, 8, 8, 3), r"'img' expects shape \(None, 8, 8, 3\) \(rank 4\), got \(1, 2, 8, 8, 3\)"),
    ((2, 8, 8, 1), r"'img' expects shape \(None, 8, 8, 3\), got \(2, 8, 8, 1\)"),
    ((2, 9, 8, 3), r"'img' expects shape \(None, 8, 8, 3\), got \(2, 9, 8, 3\)"),
], ids=["rank3", "rank5", "channels", "height"])
def test_wrong_rank_or_size_names_the_input_and_both_shapes(net, shape, expected):
    for call in (net.predict, net.input_gradient, net.param_gradients, net.activations, net.trace):
        with pytest.raises(InputError, match=expected):
            call(np.zeros(shape))


def test_integer_and_bool_inputs_are_converted(net):
    ints = np.arange(2 * 8 * 8 * 3).reshape(2, 8, 8, 3) % 7
    out = net.predict(ints.astype(np.uint8))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, net.predict(ints.astype(np.float32)), rtol=1e-6)
    assert net.input_gradient(ints).dtype == np.float32
    np.testing.assert_array_equal(net.predict(ints > 3), net.predict((ints > 3).astype(np.float32)))
    # a nested Python list is one array-like for a one-input model
    np.testing.assert_allclose(net.predict(GOOD.tolist()), net.predict(GOOD), rtol=1e-6)


@pytest.mark.parametrize("bad,dtype", [
    (GOOD.astype(complex), "complex128"), (GOOD.astype(object), "object"),
    (np.full((2, 8, 8, 3), "a"), "<U1"), (None, "object")], ids=["complex", "object", "strings", "none"])
def test_non_real_dtypes_are_refused(net, bad, dtype):
    with pytest.raises(InputError, match=f"'img': expected a real numeric array, got dtype {dtype}"):
        net.predict(bad)


def test_ragged_lists_are_refused(net):
    with pytest.raises(InputError, match="'img': cannot be read as one array"):
        net.predict([[1.0, 2.0], [3.0]])


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_refused(net, value):
    x = GOOD.copy()
    x[1, 4, 2, 0] = value
    for call in (net.predict, net.input_gradient):
        with pytest.raises(InputError, match="'img' contains NaN or infinite values"):
            call(x)


def test_cotangent_of_the_wrong_shape(net):
    with pytest.raises(InputError, match=r"cotangent for the model output has shape \(2, 3\), but the output "
                                         r"has shape \(2, 2\)"):
        net.input_gradient(GOOD, cotangent=np.ones((2, 3)))
    with pytest.raises(InputError, match=r"cotangent for layer 'conv1' has shape \(2, 2\), but the output has "
                                         r"shape \(2, 6, 6, 4\)"):
        net.input_gradient(GOOD, layer="conv1", cotangent=np.ones((2, 2)))
    with pytest.raises(InputError, match=r"has shape \(2, 3\)"):
        net.param_gradients(GOOD, cotangent=np.ones((2, 3)))
    with pytest.raises(InputError, match=r"cotangent for layer 'gap' has shape \(1, 4\)"):
        net.trace(GOOD).gradient(of="gap", cotangent=np.ones((1, 4)), wrt="conv1")


@pytest.mark.parametrize("cot,expected", [
    (np.full((2, 2), np.nan), "the cotangent for the model output contains NaN or infinite values"),
    (np.ones((2, 2), complex), "the cotangent for the model output: expected a real numeric array, got dtype complex"),
])
def test_cotangent_must_be_real_and_finite(net, cot, expected):
    with pytest.raises(InputError, match=expected):
        net.input_gradient(GOOD, cotangent=cot)


def test_multi_output_needs_one_cotangent_per_output():
    x = npcnn.Input((3,))
    model = npcnn.Model(x, [L.Dense(2, name="a")(x), L.Dense(1, name="b")(x)], name="two")
    with pytest.raises(InputError, match="model 'two': 2 outputs but 1 cotangents"):
        model.input_gradient(np.ones((4, 3)), cotangent=[np.ones((4, 2))])


@pytest.mark.parametrize("call", [
    lambda m: m.activations(GOOD, layers="conv"),
    lambda m: m.input_gradient(GOOD, layer="conv"),
    lambda m: m.param_gradients(GOOD, layer="conv"),
    lambda m: m.get_layer("conv"),
    lambda m: m.trace(GOOD)["conv"],
    lambda m: m.trace(GOOD).gradient(wrt="conv"),
], ids=["activations", "input_gradient", "param_gradients", "get_layer", "trace_item", "trace_wrt"])
def test_unknown_layer_name_suggests_close_names(net, call):
    with pytest.raises(InputError, match=r"model 'net' has no layer 'conv'; did you mean 'conv1'\?"):
        call(net)


def test_unknown_nested_layer_name():
    x = npcnn.Input((4,))
    inner = npcnn.Model(x, L.Dense(3, name="dense_a")(x), name="inner")
    y = npcnn.Input((4,))
    outer = npcnn.Model(y, L.Dense(1, name="top")(inner(y)), name="outer")
    with pytest.raises(InputError, match=r"has no layer 'inner/dense_b'; did you mean 'inner/dense_a'\?"):
        outer.activations(np.ones((1, 4)), layers="inner/dense_b")
    with pytest.raises(InputError, match=r"model 'inner' has no layer 'dense_b'; did you mean 'dense_a'\?"):
        outer.get_layer("inner/dense_b")


def test_wrong_number_of_inputs_and_batch_mismatch():
    a, b = npcnn.Input((3,), name="a"), npcnn.Input((2,), name="b")
    model = npcnn.Model([a, b], L.Concatenate(name="cat")([a, b]), name="two_in")
    with pytest.raises(InputError, match="model 'two_in' has 2 inputs, got 1 arrays"):
        model.predict(np.ones((1, 3)))
    with pytest.raises(InputError, match=r"different batch sizes \[2, 3\]"):
        model.predict([np.ones((2, 3)), np.ones((3, 2))])
    with pytest.raises(InputError, match=r"'b' expects shape \(None, 2\), got \(2, 3\)"):
        model.predict([np.ones((2, 3)), np.ones((2, 3))])


def test_layer_failures_at_run_time_name_the_layer_and_shapes():
    """Sizes only known at run time (None dims): the failing layer and the shapes it got are named."""
    x = npcnn.Input((None, None, 3), name="any_size")
    model = npcnn.Model(x, L.Conv2D(2, 5, name="big_kernel")(x), name="m")
    with pytest.raises(InputError, match=r"layer 'big_kernel' \(Conv2D\) on input shape\(s\) \(1, 3, 3, 3\): .*"
                                         r"smaller than the kernel \(5, 5\)"):
        model.predict(np.zeros((1, 3, 3, 3)))
    bn = L.BatchNormalization(name="bn")
    bn(np.zeros((1, 4, 4, 3)))
    with pytest.raises(InputError, match=r"layer 'bn' \(BatchNormalization\) failed on input shape\(s\) "
                                         r"\(1, 4, 4, 2\)"):
        bn(np.zeros((1, 4, 4, 2)))
    conv = L.Conv2D(2, 3, name="eager_conv")
    conv(np.zeros((1, 5, 5, 3)))
    with pytest.raises(InputError, match=r"layer 'eager_conv' \(Conv2D\).*\(1, 5, 5, 1\).*expects 3 input channels"):
        conv(np.zeros((1, 5, 5, 1)))
    with pytest.raises(InputError, match=r"layer 'eager_conv' \(Conv2D\) expects a rank 4 input, got shape \(5, 5, 3\)"):
        conv(np.zeros((5, 5, 3)))
    with pytest.raises(InputError, match=r"layer 'dense' \(Dense\) expects 4 input features on the last axis, "
                                         r"got input shape \(2, 5\)"):
        layer = L.Dense(2, name="dense")
        layer(np.zeros((2, 4)))
        layer(np.zeros((2, 5)))


@pytest.mark.parametrize("wire,expected", [
    (lambda: L.Conv2D(2, 3, name="c")(npcnn.Input((4,))), r"'c' \(Conv2D\) expects a rank 4 input, got shape \(None, 4\)"),
    (lambda: L.MaxPooling2D(5, name="p")(npcnn.Input((4, 4, 3))),
     r"'p' \(MaxPooling2D\) on input shape \(None, 4, 4, 3\) would give output shape \(None, 0, 0, 3\)"),
    (lambda: L.Cropping2D(3, name="crop")(npcnn.Input((4, 4, 3))), r"'crop' \(Cropping2D\).*\(None, -2, -2, 3\)"),
    (lambda: L.Add(name="add")([npcnn.Input((4, 4, 3)), npcnn.Input((5, 4, 3))]),
     r"'add' \(Add\) cannot combine inputs of shapes \(None, 4, 4, 3\), \(None, 5, 4, 3\)"),
    (lambda: L.Concatenate(name="cat")([npcnn.Input((4, 4, 3)), npcnn.Input((5, 4, 3))]),
     r"'cat' \(Concatenate, axis=-1\) cannot join inputs of shapes \(None, 4, 4, 3\), \(None, 5, 4, 3\)"),
    (lambda: L.Reshape((5, 5), name="rs")(npcnn.Input((4, 4, 3))), r"'rs' cannot reshape \(None, 4, 4, 3\) \(48 values"),
    (lambda: L.Permute((1, 2), name="perm")(npcnn.Input((4, 4, 3))), r"'perm' \(Permute\): dims \(1, 2\) are not"),
    (lambda: L.BatchNormalization(axis=5, name="bn")(npcnn.Input((4, 4, 3))),
     r"'bn' \(BatchNormalization\) cannot take input shape\(s\) \(None, 4, 4, 3\): axis \[5\] is out of range"),
    (lambda: L.Dense(2, name="head")(L.Flatten()(npcnn.Input((None, None, 3)))),
     r"'head' \(Dense\) cannot size its weight 'kernel' from input shape \(None, None\)"),
    (lambda: L.ZeroPadding2D(name="zp")(npcnn.Input((4,))), r"'zp' \(ZeroPadding2D\) cannot take input shape"),
    (lambda: L.GlobalAveragePooling2D(name="gap")(npcnn.Input((4,))), r"'gap' \(GlobalAveragePooling2D\) expects a rank 3 or 4"),
], ids=["conv_rank", "pool_too_big", "crop_too_much", "add_shapes", "concat_shapes", "reshape_size", "permute_dims",
        "bn_axis", "dense_unknown_features", "zeropad_rank", "gap_rank"])
def test_incompatible_graphs_are_refused_while_wiring(wire, expected):
    with pytest.raises(InputError, match="layer " + expected):
        wire()


def test_bad_arguments(net):
    with pytest.raises(InputError, match="batch_size must be a positive integer, got -1"):
        net.predict(GOOD, batch_size=-1)
    with pytest.raises(InputError, match="model 'net' has 4 layers, no index 7"):
        net.get_layer(index=7)
    with pytest.raises(InputError, match="unknown backward rule 'guide'"):
        with net.backward_rule("guide"):
            pass
    with pytest.raises(InputError, match="unknown backward rule 'guide'"):
        net.trace(GOOD).input_gradient(rule="guide")
    with pytest.raises(InputError, match="unknown activation 'relu7'; known: .*relu6"):
        L.Dense(2, activation="relu7")
    with pytest.raises(InputError, match="unknown padding 'full'"):
        L.Conv2D(2, 3, padding="full")
    with pytest.raises(InputError, match="interpolation 'bicubic' is not supported"):
        L.UpSampling2D(interpolation="bicubic")
    with pytest.raises(InputError, match="Sequential.add expects a layer, got int"):
        npcnn.Sequential([3])
    with pytest.raises(InputError, match="Sequential model 'empty' has no layers"):
        npcnn.Sequential(name="empty").predict(GOOD)
    with pytest.raises(InputError, match="inputs and outputs must be symbolic tensors"):
        npcnn.Model(GOOD, GOOD)


def test_set_weights_checks_count_and_shapes(net):
    ws = net.get_weights()
    with pytest.raises(InputError, match="model 'net' has 4 weight arrays, got 3"):
        net.set_weights(ws[:3])
    with pytest.raises(InputError, match=r"layer 'conv1': weight 'kernel' has shape \(3, 3, 3, 4\), got \(3, 3, 4\)"):
        net.set_weights([np.zeros((3, 3, 4)), *ws[1:]])


def test_duplicate_layer_names_are_refused():
    """Keys, weights and gradients are named by layer, so two layers may not share a name (as in Keras)."""
    x = npcnn.Input((3,))
    with pytest.raises(InputError, match="layer names must be unique, 'd' is used by several layers"):
        npcnn.Model(x, L.Dense(2, name="d")(L.Dense(3, name="d")(x)))
    shared = L.Dense(3, name="shared")  # one layer called twice is fine, and its second call's key works too
    model = npcnn.Model(x, L.Add(name="add")([shared(x), shared(x)]))
    assert model.get_layer("shared:1") is shared and model.layer_keys() == ["shared", "shared:1", "add"]


def test_a_shared_layer_must_fit_its_weights():
    dense = L.Dense(2, name="d")
    dense(npcnn.Input((3,)))
    with pytest.raises(InputError, match=r"layer 'd' \(Dense\) cannot take input shape\(s\) \(None, 5\): its weight "
                                         r"'kernel' has shape \(3, 2\), the input needs \(5, 2\)"):
        dense(npcnn.Input((5,)))
    conv = L.Conv2D(2, 3, name="c")
    conv(npcnn.Input((5, 5, 3)))
    assert conv(npcnn.Input((None, None, 3))).shape == (None, None, None, 2)  # any size, same channels
    with pytest.raises(InputError, match=r"'kernel' has shape \(3, 3, 3, 2\), the input needs \(3, 3, 4, 2\)"):
        conv(npcnn.Input((5, 5, 4)))


def test_conv_transpose_geometries_keras_cannot_run():
    """output_padding must be below the stride, and with 'same' must give an output whose 'same' convolution
    has the input's size (TensorFlow aborts otherwise); both refused with the layer named."""
    with pytest.raises(InputError, match=r"'up' \(Conv2DTranspose\): output_padding \(2, 2\) must be smaller than "
                                         r"the strides \(2, 2\)"):
        L.Conv2DTranspose(1, 3, strides=2, output_padding=2, name="up")
    with pytest.raises(InputError, match=r"'up2' \(Conv2DTranspose\): kernel 2, stride 2, 'same' and output_padding 0 "
                                         r"give 4 rows from 3"):
        L.Conv2DTranspose(1, 2, strides=2, padding="same", output_padding=0, name="up2")(npcnn.Input((3, 3, 1)))
    ok = L.Conv2DTranspose(1, 2, strides=2, padding="same", output_padding=1, name="up3")(npcnn.Input((3, 3, 1)))
    assert ok.shape == (None, 5, 5, 1)  # as Keras


def test_empty_batch_is_refused(net):
    for call in (net.predict, net.input_gradient, net.param_gradients, net.activations):
        with pytest.raises(InputError, match=r"model 'net': the batch is empty \(input shape \(0, 8, 8, 3\)\)"):
            call(np.zeros((0, 8, 8, 3)))


@pytest.mark.parametrize("key", [3, 1.5, ("conv1",), None], ids=["int", "float", "tuple_inside_list", "none"])
def test_layer_keys_must_be_strings(net, key):
    with pytest.raises(InputError, match=f"a layer is named by a string .*got {type(key).__name__}"):
        net.activations(GOOD, layers=[key])
    with pytest.raises(InputError, match="a layer is named by a string"):
        net.input_gradient(GOOD, layer=[key])
