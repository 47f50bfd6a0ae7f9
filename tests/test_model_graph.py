"""Whole small graphs in float64: branches, merges, nested models, shared layers, several inputs/outputs.

Every gradient the model API returns (input_gradient, param_gradients, Trace.gradient, layer=) is checked
against central differences of the scalar ``sum(cot * out)`` computed with ``model.predict`` /
``model.activations`` alone; then the bookkeeping: activation keys, weights order, summary totals,
backward rules, float32 against float64.
"""
import io

import numpy as np
import pytest

import npcnn
from npcnn import layers as L
from conftest import check_gradient, check_model_gradients, randomize_weights, rel_error


def prepared(model, rng):
    """Cast to float64 and give every weight a random value (in place)."""
    model.astype("float64")
    randomize_weights(model.named_weights(), rng, scale=0.5)
    return model


def trainable_keys(model):
    """The names param_gradients must return: every weight but the non-trainable statistics."""
    return sorted(k for k in model.named_weights()
                  if k.rsplit("/", 1)[1] not in ("moving_mean", "moving_variance", "mean", "variance", "count"))


# --------------------------------------------------------------------------- the graphs
def branchy_model():
    """Input -> conv -> two branches (1x1 conv | maxpool + conv) -> Add; a 3rd branch concatenated; BN, GAP, Dense."""
    x = npcnn.Input((7, 6, 3), name="image")
    h = L.Conv2D(4, 3, padding="same", activation="tanh", name="stem")(x)
    a = L.Conv2D(4, 1, name="branch_a")(h)
    b = L.MaxPooling2D(3, strides=1, padding="same", name="pool_b")(h)
    b = L.Conv2D(4, 3, padding="same", activation="swish", name="branch_b")(b)
    s = L.Add(name="add")([a, b, h])
    c = L.DepthwiseConv2D(3, padding="same", name="branch_c")(x)
    cat = L.Concatenate(name="concat")([s, c])
    cat = L.BatchNormalization(name="bn")(cat)
    g = L.GlobalAveragePooling2D(name="gap")(cat)
    return npcnn.Model(x, L.Dense(3, activation="softmax", name="head")(g), name="branchy")


def nested_functional():
    """A functional model used as a layer inside another functional model, plus a side branch."""
    i = npcnn.Input((5, 6, 2), name="inner_in")
    h = L.Conv2D(3, 3, strides=2, padding="same", activation="elu", name="conv")(i)
    h = L.BatchNormalization(name="bn")(h)
    inner = npcnn.Model(i, h, name="inner")
    x = npcnn.Input((5, 6, 2), name="x")
    side = L.Conv2D(3, 2, strides=2, padding="same", name="side")(x)
    s = L.Multiply(name="mul")([inner(x), side])
    out = L.Dense(2, name="head")(L.Flatten(name="flat")(s))
    return npcnn.Model(x, out, name="outer")


def nested_sequential():
    inner = npcnn.Sequential([L.Conv2D(3, 3, input_shape=(6, 5, 2), name="c1"), L.Activation("tanh", name="t1"),
                              L.AveragePooling2D(2, padding="same", name="p1")], name="inner_seq")
    return npcnn.Sequential([inner, L.Flatten(name="flat"), L.Dense(3, activation="gelu", name="d")],
                            name="outer_seq")


def shared_layer_model():
    """One Conv2D called on two inputs (shared weights), one inner model called twice."""
    x1, x2 = npcnn.Input((5, 5, 2), name="left"), npcnn.Input((5, 5, 2), name="right")
    conv = L.Conv2D(3, 3, activation="tanh", name="shared_conv")
    i = npcnn.Input((3, 3, 3), name="t_in")
    tower = npcnn.Model(i, L.Dense(2, activation="sigmoid", name="proj")(i), name="tower")
    a, b = tower(conv(x1)), tower(conv(x2))
    out = L.Subtract(name="diff")([a, b])
    return npcnn.Model([x1, x2], out, name="siamese")


def multi_io_model():
    """Two inputs of different shapes, two outputs (a map and a vector)."""
    img, vec = npcnn.Input((6, 5, 2), name="img"), npcnn.Input((4,), name="vec")
    h = L.Conv2D(3, 3, padding="same", activation="softplus", name="conv")(img)
    v = L.Dense(3, name="vec_proj")(vec)
    v = L.Reshape((1, 1, 3), name="vec_map")(v)
    mixed = L.Add(name="mix")([h, L.UpSampling2D((6, 5), name="tile")(v)])
    out_map = L.Conv2D(2, 1, name="out_map")(mixed)
    out_vec = L.Dense(2, name="out_vec")(L.GlobalMaxPooling2D(name="gmp")(mixed))
    return npcnn.Model([img, vec], [out_map, out_vec], name="multi")


GRAPHS = {"branchy": (branchy_model, [(2, 7, 6, 3)]), "nested_functional": (nested_functional, [(2, 5, 6, 2)]),
          "nested_sequential": (nested_sequential, [(3, 6, 5, 2)]),
          "shared": (shared_layer_model, [(2, 5, 5, 2), (2, 5, 5, 2)]),
          "multi_io": (multi_io_model, [(2, 6, 5, 2), (2, 4)])}


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_graph_gradients_match_finite_differences(name, rng):
    make, shapes = GRAPHS[name]
    model = prepared(make(), rng)
    pgrads = check_model_gradients(model, [rng.normal(size=s) for s in shapes], rng)
    assert sorted(pgrads) == trainable_keys(model)


def test_shared_weights_accumulate_over_calls(rng):
    """A layer called twice gets the sum of both calls' gradients (not only the last one's)."""
    model = prepared(shared_layer_model(), rng)
    xs = [rng.normal(size=(2, 5, 5, 2)), rng.normal(size=(2, 5, 5, 2))]
    cot = rng.normal(size=(2, 3, 3, 2))
    tr = model.trace(xs)
    full = tr.param_gradients(cotangent=cot)["shared_conv/kernel"]
    # the gradient arriving at each call's output, then each call's own share of the kernel gradient
    d_calls = tr.gradient(cotangent=cot, wrt=["shared_conv", "shared_conv:1"])
    shares = [tr.param_gradients(layer=k, cotangent=d)["shared_conv/kernel"]
              for k, d in zip(["shared_conv", "shared_conv:1"], d_calls)]
    assert rel_error(shares[0], shares[1]) > 1e-3  # two different calls, two different contributions
    assert rel_error(full, shares[0] + shares[1]) < 1e-12


def test_trace_gradient_wrt_intermediate_key(rng):
    """d sum(cot * out) / d activation[key]: finite differences through the tail of the network."""
    model = prepared(nested_sequential(), rng)
    x = rng.normal(size=(3, 6, 5, 2))
    tr = model.trace(x)
    cot = rng.normal(size=tr.outputs[0].shape)
    g = tr.gradient(cotangent=cot, wrt="inner_seq/t1")
    # the tail (pool, flatten, dense) rewired on a new input made of the same layer objects
    inner = model.get_layer("inner_seq")
    t_in = npcnn.Input(tr["inner_seq/t1"].shape[1:])
    tail = npcnn.Model(t_in, model.get_layer("d")(model.get_layer("flat")(inner.get_layer("p1")(t_in))))
    tail.astype("float64")
    h = tr["inner_seq/t1"].copy()
    check_gradient(lambda: float((cot * tail.predict(h)).sum()), h, g, rng, 40, what="wrt inner_seq/t1")
    # chain rule: pulling g back through the head gives the input gradient
    back = tr.input_gradient(layer="inner_seq/t1", cotangent=g)
    assert rel_error(back, tr.input_gradient(cotangent=cot)) < 1e-10
    # a list of keys gives a list; the nested model's own key is its last layer's output
    g_list = tr.gradient(cotangent=cot, wrt=["inner_seq/p1", "inner_seq"])
    assert rel_error(g_list[0], g_list[1]) == 0.0


def test_input_gradient_of_a_named_layer(rng):
    """layer= on input_gradient: d sum(cot * activation[key]) / dx, for a branch and for a nested layer."""
    model = prepared(branchy_model(), rng)
    x = rng.normal(size=(2, 7, 6, 3))
    for key in ("branch_b", "concat", "bn"):
        act = model.activations(x, layers=key)[key]
        cot = rng.normal(size=act.shape)
        g = model.input_gradient(x, layer=key, cotangent=cot)
        check_gradient(lambda: float((cot * model.activations(x, layers=[key])[key]).sum()), x, g, rng, 30,
                       what=f"input gradient of {key}")
    nested = prepared(nested_functional(), rng)
    xn = rng.normal(size=(2, 5, 6, 2))
    cot = rng.normal(size=nested.activations(xn, "inner/conv")["inner/conv"].shape)
    g = nested.input_gradient(xn, layer="inner/conv", cotangent=cot)
    check_gradient(lambda: float((cot * nested.activations(xn, "inner/conv")["inner/conv"]).sum()), xn, g, rng, 30)
    # only the layers upstream of the key have weight gradients that are not zero
    pg = nested.param_gradients(xn, cotangent=cot, layer="inner/conv")
    assert np.abs(pg["inner/conv/kernel"]).max() > 0 and np.abs(pg["head/kernel"]).max() == 0


def test_activation_keys_and_nested_names(rng):
    model = nested_functional()
    keys = model.layer_keys()
    assert keys == ["inner/conv", "inner/bn", "inner", "side", "mul", "flat", "head"]
    acts = model.activations(rng.normal(size=(2, 5, 6, 2)))
    assert list(acts) == keys
    np.testing.assert_array_equal(acts["inner"], acts["inner/bn"])
    assert acts["inner/conv"].shape == (2, 3, 3, 3) and acts["head"].shape == (2, 2)
    assert model.get_layer("inner/conv") is model.get_layer("inner").get_layer("conv")
    seq = nested_sequential()
    assert seq.layer_keys() == ["inner_seq/c1", "inner_seq/t1", "inner_seq/p1", "inner_seq", "flat", "d"]
    shared = shared_layer_model()
    # a second call is keyed "name:1"; a nested model's input layer is no activation of its own
    assert shared.layer_keys() == ["shared_conv", "tower/proj", "tower", "shared_conv:1", "tower:1/proj",
                                   "tower:1", "diff"]
    # two levels of nesting: the deepest key first, then each enclosing model's
    i = npcnn.Input((3,))
    mid = npcnn.Model(i, npcnn.Model(i, L.Dense(2, name="d")(i), name="core")(i), name="mid")
    j = npcnn.Input((3,))
    top = npcnn.Model(j, L.Dense(1, name="out")(mid(L.Dense(3, name="pre")(j))))
    assert top.layer_keys() == ["pre", "mid/core/d", "mid/core", "mid", "out"]
    acts = top.activations(rng.normal(size=(2, 3)))
    np.testing.assert_array_equal(acts["mid"], acts["mid/core/d"])
    assert top.get_layer("mid/core/d") is mid.get_layer("core").get_layer("d")


def test_multi_output_predict_and_cotangents(rng):
    model = prepared(multi_io_model(), rng)
    xs = [rng.normal(size=(2, 6, 5, 2)), rng.normal(size=(2, 4))]
    outs = model.predict(xs)
    assert isinstance(outs, list) and [o.shape for o in outs] == [(2, 6, 5, 2), (2, 2)]
    # the default cotangent is ones on every output: the gradient of the sum of all outputs
    ones = model.input_gradient(xs)
    explicit = model.input_gradient(xs, cotangent=[np.ones_like(o) for o in outs])
    for a, b in zip(ones, explicit):
        assert rel_error(a, b) == 0.0
    # the output's batch is split by predict(batch_size=1) and joined back identically
    for a, b in zip(model.predict(xs, batch_size=1), outs):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_get_set_weights_round_trip_and_order(rng):
    model = branchy_model()
    names = list(model.named_weights())
    # Keras order: layers in graph order, each layer's own weight order (BN: gamma, beta, mean, variance)
    assert names[:2] == ["stem/kernel", "stem/bias"]
    assert names[names.index("bn/gamma"):names.index("bn/gamma") + 4] == [
        "bn/gamma", "bn/beta", "bn/moving_mean", "bn/moving_variance"]
    assert names.index("branch_a/kernel") < names.index("branch_b/kernel") < names.index("head/kernel")
    ws = model.get_weights()
    assert [w.shape for w in ws] == [v.shape for v in model.named_weights().values()]
    new = [rng.uniform(0.5, 1.5, w.shape).astype(w.dtype) for w in ws]
    model.set_weights(new)
    for a, b in zip(model.get_weights(), new):
        np.testing.assert_array_equal(a, b)
    # a nested model's weights come in the nested model's own order at its place
    nested = nested_functional()
    assert list(nested.named_weights())[:2] == ["inner/conv/kernel", "inner/conv/bias"]
    assert len(nested.get_weights()) == len(nested.named_weights())
    with pytest.raises(npcnn.InputError, match="weight arrays"):
        model.set_weights(new[:-1])
    with pytest.raises(npcnn.InputError, match="stem.*kernel.*shape"):
        model.set_weights([np.zeros((1, 1))] + new[1:])


@pytest.mark.parametrize("make", [branchy_model, nested_functional, nested_sequential, shared_layer_model,
                                  multi_io_model])
def test_summary_totals_equal_count_params(make):
    model = make()
    buf = io.StringIO()
    model.summary(print_fn=lambda s: buf.write(s + "\n"))
    text = buf.getvalue()

    def number(label):
        line = next(ln for ln in text.splitlines() if ln.startswith(label))
        return int(line.split(":")[1].replace(",", ""))

    total = sum(w.size for w in model.get_weights())
    stats = sum(v.size for k, v in model.named_weights().items() if k not in trainable_keys(model))
    assert number("Total params") == model.count_params() == total
    assert number("Non-trainable params") == stats
    assert number("Trainable params") == total - stats
    for layer in model.layers:
        assert layer.name in text


# --------------------------------------------------------------------------- backward rules
def tiny_relu_net(relu_layer):
    """x (N, 4) -> Dense(5) -> relu (fused, or a ReLU layer) -> Dense(3)."""
    x = npcnn.Input((4,))
    if relu_layer:
        h = L.ReLU(name="act")(L.Dense(5, name="d1")(x))
    else:
        h = L.Dense(5, activation="relu", name="d1")(x)
    return npcnn.Model(x, L.Dense(3, name="d2")(h))


@pytest.mark.parametrize("relu_layer", [False, True], ids=["fused", "relu_layer"])
def test_guided_and_deconvnet_rules_match_the_hand_formulas(relu_layer, rng):
    model = prepared(tiny_relu_net(relu_layer), rng)
    w1, b1 = model.get_layer("d1").params["kernel"], model.get_layer("d1").params["bias"]
    w2 = model.get_layer("d2").params["kernel"]
    x, cot = rng.normal(size=(6, 4)), rng.normal(size=(6, 3))
    z = x @ w1 + b1
    dy = cot @ w2.T  # the gradient arriving at the ReLU's output
    hand = {None: ((z > 0) * dy) @ w1.T,
            "guided": ((z > 0) * np.maximum(dy, 0)) @ w1.T,
            "deconvnet": np.maximum(dy, 0) @ w1.T}
    for rule, expected in hand.items():
        with model.backward_rule(rule):
            got = model.input_gradient(x, cotangent=cot)
        assert rel_error(got, expected) < 1e-12, rule
        assert rel_error(model.trace(x).input_gradient(cotangent=cot, rule=rule), expected) < 1e-12, rule
    assert rel_error(hand["guided"], hand[None]) > 1e-3 and rel_error(hand["deconvnet"], hand["guided"]) > 1e-3
    # a callable rule gets (dy, saved, normal_backward); after the block the normal rule is back
    with model.backward_rule(lambda g, saved, normal: 2 * normal(g)):
        assert rel_error(model.input_gradient(x, cotangent=cot), 2 * hand[None]) < 1e-12
    assert rel_error(model.input_gradient(x, cotangent=cot), hand[None]) < 1e-12


def test_rules_leave_smooth_activations_alone(rng):
    x_in = npcnn.Input((4,))
    model = prepared(npcnn.Model(x_in, L.Dense(3, activation="tanh")(L.Dense(5, activation="sigmoid")(x_in))), rng)
    x = rng.normal(size=(3, 4))
    plain = model.input_gradient(x)
    for rule in ("guided", "deconvnet"):
        with model.backward_rule(rule):
            assert rel_error(model.input_gradient(x), plain) == 0.0
    with pytest.raises(npcnn.InputError, match="backward rule"):
        with model.backward_rule("nonsense"):
            prepared(tiny_relu_net(False), rng).trace(rng.normal(size=(2, 4))).input_gradient(rule="nonsense")


# --------------------------------------------------------------------------- precision
def wide_model():
    """Two wide 3x3 convolutions (the conv core's fast path for many channels), pooling and a head."""
    x = npcnn.Input((8, 7, 3))
    h = L.Conv2D(128, 3, padding="same", activation="relu", name="wide1")(x)
    h = L.Conv2D(128, 3, padding="same", activation="relu", name="wide2")(h)
    h = L.MaxPooling2D(2, name="pool")(h)
    return npcnn.Model(x, L.Dense(3, name="head")(L.GlobalAveragePooling2D(name="gap")(h)), name="wide")


@pytest.mark.parametrize("make,shape,scale", [(branchy_model, (2, 7, 6, 3), 0.5), (wide_model, (2, 8, 7, 3), 0.1)],
                         ids=["branchy", "wide"])
def test_float32_close_to_float64(make, shape, scale, rng):
    model = make()
    randomize_weights(model.named_weights(), rng, scale=scale)
    x = rng.normal(size=shape).astype(np.float32)
    y32, g32 = model.predict(x), model.input_gradient(x)
    p32 = model.param_gradients(x)
    assert y32.dtype == np.float32 and g32.dtype == np.float32
    model.astype("float64")
    y64, g64, p64 = model.predict(x), model.input_gradient(x), model.param_gradients(x)
    assert y64.dtype == np.float64
    assert rel_error(y32, y64) < 1e-5
    assert rel_error(g32, g64) < 1e-4
    for k in p64:
        assert p32[k].dtype == np.float32 and rel_error(p32[k], p64[k]) < 1e-4, k


def test_same_tensor_twice_into_a_merge_and_frozen_layers(rng):
    """Multiply([h, h]) = h²: both input slots' gradients accumulate. A frozen layer has no weight gradients."""
    x = npcnn.Input((5,))
    h = L.Dense(4, name="h")(x)
    frozen = L.Dense(3, name="frozen", trainable=False)
    model = prepared(npcnn.Model(x, frozen(L.Multiply(name="sq")([h, h]))), rng)
    xv = rng.normal(size=(3, 5))
    cot = rng.normal(size=(3, 3))
    g = model.input_gradient(xv, cotangent=cot)
    check_gradient(lambda: float((cot * model.predict(xv)).sum()), xv, g, rng, None)
    assert sorted(model.param_gradients(xv, cotangent=cot)) == ["h/bias", "h/kernel"]


def test_training_mode_graph_gradients(rng):
    """BatchNormalization (batch statistics) and Dropout (a seeded mask) in training mode, through trace()."""
    x_in = npcnn.Input((5, 4, 3))
    h = L.Conv2D(4, 3, padding="same", activation="tanh", name="conv")(x_in)
    h = L.BatchNormalization(name="bn")(h)
    h = L.Dropout(0.3, name="drop")(h)
    model = prepared(npcnn.Model(x_in, L.Dense(2, name="head")(L.GlobalAveragePooling2D(name="gap")(h))), rng)
    x = rng.normal(size=(3, 5, 4, 3))

    def run():
        npcnn.set_seed(5)  # the same dropout mask on every forward
        return model.trace(x, training=True)

    tr = run()
    cot = rng.normal(size=tr.outputs[0].shape)

    def f():
        return float((cot * run().outputs[0]).sum())

    check_gradient(f, x, tr.input_gradient(cotangent=cot), rng, 30, what="input (training)")
    weights = model.named_weights()
    for key, g in tr.param_gradients(cotangent=cot).items():
        check_gradient(f, weights[key], g, rng, 15, what=f"{key} (training)")
    # training and inference differ (batch statistics, dropout) but inference is deterministic
    assert rel_error(tr.outputs[0], model.predict(x)) > 1e-3
    np.testing.assert_array_equal(model.predict(x), model.predict(x))


def test_gradient_of_several_keys_at_once(rng):
    """of=[k1, k2] with one cotangent each: the sum of the two single-key gradients."""
    model = prepared(branchy_model(), rng)
    tr = model.trace(rng.normal(size=(2, 7, 6, 3)))
    cots = [rng.normal(size=tr[k].shape) for k in ("branch_a", "branch_c")]
    both = tr.gradient(of=["branch_a", "branch_c"], cotangent=cots, wrt="stem")
    one = tr.gradient(of="branch_a", cotangent=cots[0], wrt="stem")
    assert rel_error(both, one) < 1e-12  # branch_c does not depend on stem
    g_in = tr.gradient(of=["branch_a", "branch_c"], cotangent=cots)
    parts = [tr.input_gradient(layer=k, cotangent=c) for k, c in zip(("branch_a", "branch_c"), cots)]
    assert rel_error(g_in, parts[0] + parts[1]) < 1e-12


def test_gradient_edge_cases(rng):
    """wrt == of gives the cotangent; a key downstream of `of` gets zeros; an input key works as `of`/`wrt`;
    a model output listed twice counts twice; an identity model passes the cotangent through."""
    x = npcnn.Input((4,), name="x")
    out = L.Dense(2, name="o")(L.Dense(3, activation="tanh", name="h")(x))
    model = prepared(npcnn.Model(x, out), rng)
    xv, c = rng.normal(size=(2, 4)), rng.normal(size=(2, 3))
    tr = model.trace(xv)
    assert rel_error(tr.gradient(of="h", cotangent=c, wrt="h"), c) == 0.0
    assert np.abs(tr.gradient(of="h", cotangent=c, wrt="o")).max() == 0.0
    assert rel_error(tr.gradient(of="x", cotangent=2 * xv, wrt="x"), 2 * xv) == 0.0
    assert rel_error(model.input_gradient(xv, layer="x", cotangent=2 * xv), 2 * xv) == 0.0
    g = model.input_gradient(xv)
    assert rel_error(tr.gradient(cotangent=np.ones((2, 2)), wrt="x"), g) < 1e-12
    twice = npcnn.Model(x, [out, out]).astype("float64")
    assert rel_error(twice.input_gradient(xv), 2 * g) < 1e-12
    assert rel_error(npcnn.Model(x, x).astype("float64").input_gradient(xv, cotangent=3 * xv), 3 * xv) == 0.0


def test_predict_applies_activations_in_place_only_on_fresh_outputs(rng, monkeypatch):
    """predict lets an activation overwrite its layer's own fresh output; never the model's input or a
    tensor another layer still reads (an Activation layer's forward returns its input itself)."""
    from npcnn import blas
    monkeypatch.setattr(blas, "MIN_PARALLEL_BYTES", 0)  # the threaded, in-place path even for small arrays
    x_in = npcnn.Input((6, 5, 3))
    a = L.Activation("relu")(x_in)                      # shares memory with the input
    t = L.Conv2D(4, 3, padding="same", name="conv")(a)  # linear: its output is read twice below
    r = L.Activation("tanh")(t)
    out = L.Add()([t, L.Conv2D(4, 1, activation="sigmoid")(r)])
    model = npcnn.Model(x_in, out)
    model.astype("float64")
    x = rng.standard_normal((2, 6, 5, 3))
    kept = x.copy()
    got = model.predict(x)
    np.testing.assert_array_equal(x, kept)
    np.testing.assert_allclose(got, model.trace(x).outputs[0], rtol=1e-14, atol=1e-15)
    acts = model.activations(x)
    np.testing.assert_allclose(acts["conv"], model.trace(x)["conv"], rtol=1e-14)


@pytest.mark.parametrize("activation", ["relu", "tanh", "softmax", "elu"])
def test_convolution_fuses_its_activation_without_changing_a_number(rng, monkeypatch, activation):
    """Conv2D applies its activation to each output block as it finishes it (inference, and gradient
    traces where the backward reads y: ReLU, tanh, softmax); outputs and gradients are those of the
    unfused layer, and a ReLU keeps one array (its output), not two."""
    from npcnn import blas
    monkeypatch.setattr(blas, "MIN_PARALLEL_BYTES", 0)
    x_in = npcnn.Input((9, 8, 3))
    h = L.Conv2D(6, 3, padding="same", activation=activation, name="conv")(x_in)
    model = npcnn.Model(x_in, L.Dense(2)(L.Flatten()(h))).astype("float64")
    randomize_weights(model.named_weights(), rng)
    x = rng.standard_normal((2, 9, 8, 3))
    fused = (model.predict(x), model.input_gradient(x), model.param_gradients(x)["conv/kernel"])
    y, cache = model.get_layer("conv").apply(x, keep_cache=True)
    if activation in ("relu", "tanh", "softmax"):
        assert cache[1] is y  # the saved array is the output itself
    monkeypatch.setattr(L.Conv2D, "fuses_activation", False)
    plain = (model.predict(x), model.input_gradient(x), model.param_gradients(x)["conv/kernel"])
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)


def test_relu_saves_its_output_only_where_that_decides_its_derivative():
    from npcnn import activations
    relu = activations.get("relu")
    assert relu.saves() == "y" and relu.saves(negative_slope=0.1) == "y"
    assert relu.saves(threshold=0.5) == "z" and relu.saves(max_value=6.0) == "z"
    assert relu.saves(negative_slope=-0.5) == "z"
    assert activations.get("elu").saves() == "z" and activations.get("sigmoid").saves() == "y"


def test_backward_overwrites_only_its_own_scratch(rng):
    """The activations' backward writes into the incoming gradient where nothing else can see it (saving
    a whole array at the peak); never into the caller's cotangent, a gradient asked for, or a gradient
    passed on to two branches (Add)."""
    x_in = npcnn.Input((7, 6, 3))
    a = L.Conv2D(4, 3, padding="same", activation="relu", name="a")(x_in)
    b = L.Conv2D(4, 3, padding="same", activation="relu", name="b")(a)
    c = L.Conv2D(4, 1, activation="relu", name="c")(a)
    out = L.Conv2D(5, 3, padding="same", activation="relu", name="out")(L.Add()([b, c]))
    model = npcnn.Model(x_in, out).astype("float64")
    randomize_weights(model.named_weights(), rng)
    x = rng.standard_normal((2, 7, 6, 3))
    cot = rng.standard_normal((2, 7, 6, 5))
    kept = cot.copy()
    lean = model.input_gradient(x, cotangent=cot)
    np.testing.assert_array_equal(cot, kept)  # the seed is the caller's
    trace = model.trace(x)
    np.testing.assert_allclose(lean, trace.input_gradient(cotangent=cot), rtol=1e-13, atol=1e-14)
    check_gradient(lambda: np.vdot(model.predict(x), cot), x, lean)
    at_a = trace.gradient(cotangent=cot, wrt="a")  # asked for: handed back as computed
    again = trace.gradient(cotangent=cot, wrt=["a", "b"])
    np.testing.assert_allclose(again[0], at_a, rtol=1e-13, atol=1e-14)
