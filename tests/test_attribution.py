"""npcnn.attribution on small models built in code (float64): every method against a hand computation, a
brute-force loop, or a property it must have. The trained-model and TensorFlow-fixture checks are in
tests/test_attribution_models.py."""
import numpy as np
import pytest

import npcnn
from npcnn import attribution as A
from npcnn import layers as L
from npcnn.errors import InputError, UnsupportedError


def _cnn(seed=0, head="dense", activation=None, bias=True):
    """16x16x2 -> conv(relu) -> maxpool -> conv+BN+relu with an Add skip -> GAP -> Dense(5)."""
    npcnn.set_seed(seed)
    inp = npcnn.Input((16, 16, 2))
    h = L.Conv2D(4, 3, activation="relu", use_bias=bias, name="c1")(inp)
    h = L.MaxPooling2D(name="pool")(h)
    b = L.Conv2D(4, 3, padding="same", use_bias=bias, name="c2")(h)
    b = L.BatchNormalization(name="bn")(b)
    b = L.Activation("relu", name="relu")(b)
    h = L.Add(name="add")([h, b])
    h = L.GlobalAveragePooling2D(name="gap")(h)
    out = L.Dense(5, activation=activation, use_bias=bias, name="dense")(h)
    model = npcnn.Model(inp, out, name="cnn")
    rng = np.random.default_rng(seed)
    bn = model.get_layer("bn")
    bn.params.update(gamma=rng.uniform(0.5, 2, 4), beta=rng.normal(0, 0.1, 4) if bias else np.zeros(4),
                     moving_mean=rng.normal(0, 0.1, 4) if bias else np.zeros(4), moving_variance=rng.uniform(0.5, 2, 4))
    return model.astype("float64")


@pytest.fixture(scope="module")
def cnn():
    return _cnn()


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).normal(size=(3, 16, 16, 2))


# ------------------------------------------------------------------------------------------ targets
def test_targets_index_list_none_and_function(cnn, images):
    out = cnn.predict(images)
    g_int = A.saliency(cnn, images, target=2, absolute=False)
    g_list = A.saliency(cnn, images, target=[2, 2, 2], absolute=False)
    np.testing.assert_array_equal(g_int, g_list)
    g_none = A.saliency(cnn, images, target=None, absolute=False)
    g_pred = A.saliency(cnn, images, target=list(out.argmax(axis=1)), absolute=False)
    np.testing.assert_array_equal(g_none, g_pred)
    g_fn = A.saliency(cnn, images, target=lambda y: -2.0 * np.eye(5)[[2, 2, 2]], absolute=False)
    np.testing.assert_allclose(g_fn, -2 * g_int, rtol=1e-12)


def test_target_errors_name_the_problem(cnn, images):
    with pytest.raises(InputError, match="out of range"):
        A.saliency(cnn, images, target=7)
    with pytest.raises(InputError, match="one per image"):
        A.saliency(cnn, images, target=[1, 2])
    with pytest.raises(InputError, match="cotangent"):
        A.saliency(cnn, images, target=lambda y: y[:, 0])


def test_multi_output_models_are_refused_with_a_hint():
    inp = npcnn.Input((4,))
    model = npcnn.Model(inp, [L.Dense(2)(inp), L.Dense(3)(inp)])
    with pytest.raises(InputError, match="model.outputs"):
        A.saliency(model, np.ones((1, 4)))


def test_one_logit_head_binary_target():
    """A cats-vs-dogs style head (one logit): target None explains the logit, -1 its negation."""
    npcnn.set_seed(3)
    model = npcnn.Sequential([L.Conv2D(3, 3, activation="relu", input_shape=(8, 8, 1)), L.Flatten(), L.Dense(1)])
    model.astype("float64")
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 1))
    dog = A.saliency(model, x, absolute=False)
    cat = A.saliency(model, x, target=lambda y: -np.ones_like(y), absolute=False)
    np.testing.assert_allclose(cat, -dog)
    assert np.abs(dog).max() > 0


def test_without_softmax_gives_logits_and_shares_weights():
    soft = _cnn(activation="softmax")
    logits = A.targets.without_softmax(soft)
    plain = _cnn()
    x = np.random.default_rng(2).normal(size=(2, 16, 16, 2))
    np.testing.assert_allclose(logits.predict(x), plain.predict(x), rtol=1e-12)
    assert logits.get_layer("dense").params is soft.get_layer("dense").params
    assert A.targets.without_softmax(plain) is plain


# ------------------------------------------------------------------------------------------ gradients
def test_saliency_is_the_gradient_by_finite_differences(cnn, images):
    g = A.saliency(cnn, images[:1], target=1, absolute=False)
    rng = np.random.default_rng(0)
    for _ in range(5):
        i = tuple(rng.integers(0, s) for s in images[:1].shape)
        up, dn = images[:1].copy(), images[:1].copy()
        up[i] += 1e-6
        dn[i] -= 1e-6
        num = (cnn.predict(up)[0, 1] - cnn.predict(dn)[0, 1]) / 2e-6
        assert abs(num - g[i]) <= 1e-6 * max(1.0, abs(num))
    np.testing.assert_array_equal(A.saliency(cnn, images[:1], target=1), np.abs(g).max(axis=-1))


def test_input_x_gradient(cnn, images):
    np.testing.assert_allclose(A.input_x_gradient(cnn, images, 0), images * A.saliency(cnn, images, 0, absolute=False))


def test_smoothgrad_zero_noise_is_vanilla(cnn, images):
    g = A.saliency(cnn, images, target=3, absolute=False)
    np.testing.assert_allclose(A.smoothgrad(cnn, images, 3, samples=4, noise=0.0, progress=False), g, rtol=1e-12)
    np.testing.assert_allclose(A.smoothgrad(cnn, images, 3, samples=4, noise=0.0, kind="squared", progress=False),
                               g * g, rtol=1e-12)
    assert np.abs(A.smoothgrad(cnn, images, 3, samples=4, noise=0.0, kind="vargrad", progress=False)).max() < 1e-18


def test_smoothgrad_noise_is_a_fraction_of_the_range_and_seeded(cnn, images):
    a = A.smoothgrad(cnn, images, 3, samples=6, noise=0.2, seed=5, batch_size=4, progress=False)
    b = A.smoothgrad(cnn, images, 3, samples=6, noise=0.2, seed=5, batch_size=7, progress=False)
    np.testing.assert_allclose(a, b, rtol=1e-12)  # same noise whatever the batching
    assert not np.allclose(a, A.saliency(cnn, images, 3, absolute=False))


def _smooth_model():
    """A smooth (tanh/softplus) net: the IG integrand is smooth, so quadrature converges fast."""
    npcnn.set_seed(7)
    model = npcnn.Sequential([L.Conv2D(4, 3, activation="tanh", input_shape=(8, 8, 1)), L.Flatten(),
                              L.Dense(6, activation="softplus"), L.Dense(3)])
    return model.astype("float64")


@pytest.mark.parametrize("method,steps,tol", [("riemann", 64, 1e-3), ("trapezoid", 64, 1e-3),
                                              ("gauss_legendre", 16, 1e-9)])
def test_integrated_gradients_completeness_smooth_model(method, steps, tol):
    model = _smooth_model()
    x = np.random.default_rng(3).normal(size=(2, 8, 8, 1))
    ig, err = A.integrated_gradients(model, x, target=[0, 2], steps=steps, method=method, baseline="black",
                                     return_error=True, progress=False, batch_size=9)
    out = model.predict(x)
    base = model.predict(A.baseline_for(x, "black"))
    delta = np.array([out[0, 0] - base[0, 0], out[1, 2] - base[1, 2]])
    np.testing.assert_allclose(ig.reshape(2, -1).sum(axis=1) - delta, err, atol=1e-12)
    assert np.all(np.abs(err) <= tol * np.abs(delta))


def test_integrated_gradients_batched_equals_one_by_one(cnn, images):
    both = A.integrated_gradients(cnn, images[:2], target=[1, 4], steps=8, baseline=0.5, progress=False,
                                  batch_size=5)
    for n, t in enumerate([1, 4]):
        one = A.integrated_gradients(cnn, images[n:n + 1], target=t, steps=8, baseline=0.5, progress=False)
        np.testing.assert_allclose(both[n:n + 1], one, rtol=1e-10, atol=1e-14)


def test_baselines():
    x = np.random.default_rng(0).uniform(-1, 1, (2, 12, 12, 1))
    black = A.baseline_for(x, "black", value_range=(-1, 1))
    assert np.all(black == -1)
    per_image = A.baseline_for(x, "black")
    np.testing.assert_array_equal(per_image[:, 0, 0, 0], x.min(axis=(1, 2, 3)))
    blurred = A.baseline_for(x, "blurred", blur_sigma=2)
    assert blurred.std() < x.std() / 2 and abs(blurred.mean() - x.mean()) < 0.05
    noise = A.baseline_for(x, "uniform", value_range=(-1, 1), seed=0)
    assert noise.min() >= -1 and noise.max() <= 1 and noise.std() > 0.4
    with pytest.raises(InputError, match="baseline"):
        A.baseline_for(x, "grey")


# ------------------------------------------------------------------------------------------ rules
def test_guided_backprop_and_deconvnet_by_hand():
    """x -> Dense(4, relu) -> Dense(3, relu) -> Dense(2): the rules applied by hand, layer by layer."""
    npcnn.set_seed(11)
    model = npcnn.Sequential([L.Dense(4, activation="relu", input_shape=(5,)), L.Dense(3, activation="relu"),
                              L.Dense(2)])
    model.astype("float64")
    (w1, b1), (w2, b2), (w3, _) = [(layer.params["kernel"], layer.params["bias"]) for layer in model.layers]
    rng = np.random.default_rng(4)
    b1[:] = rng.normal(0, 0.5, 4)
    b2[:] = rng.normal(0, 0.5, 3)
    x = rng.normal(size=(3, 5))
    z1 = x @ w1 + b1
    z2 = np.maximum(z1, 0) @ w2 + b2
    d2 = np.tile(w3[:, 1], (3, 1))                        # d score / d relu2 output
    guided = ((z1 > 0) * np.maximum(((z2 > 0) * np.maximum(d2, 0)) @ w2.T, 0)) @ w1.T
    deconv = np.maximum(np.maximum(d2, 0) @ w2.T, 0) @ w1.T
    vanilla = ((z1 > 0) * (((z2 > 0) * d2) @ w2.T)) @ w1.T
    np.testing.assert_allclose(A.guided_backprop(model, x, target=1), guided, rtol=1e-12)
    np.testing.assert_allclose(A.deconvnet(model, x, target=1), deconv, rtol=1e-12)
    np.testing.assert_allclose(A.saliency(model, x, target=1, absolute=False), vanilla, rtol=1e-12)
    assert not np.allclose(guided, vanilla)
    assert model._rule is None  # the rule is undone after the call


# ------------------------------------------------------------------------------------------ CAM family
def _gap_model():
    """conv (relu) -> GAP -> Dense(3) without bias: class score = sum_k w_ck mean(A_k) (a CAM model)."""
    npcnn.set_seed(5)
    inp = npcnn.Input((10, 10, 1))
    a = L.Conv2D(6, 3, activation="relu", name="feat")(inp)
    out = L.Dense(3, use_bias=False, name="fc")(L.GlobalAveragePooling2D()(a))
    return npcnn.Model(inp, out).astype("float64")


def test_gradient_cams_equal_cam_on_a_gap_model():
    """With score = sum_k w_ck mean(A_k), G = w_ck / (h w) everywhere, so Grad-CAM, XGrad-CAM and HiResCAM
    all equal CAM (Zhou et al. 2016) relu(sum_k w_ck A_k) / (h w), and Ablation-CAM weighs by
    w_ck mean(A_k) / score."""
    model = _gap_model()
    x = np.random.default_rng(0).normal(size=(2, 10, 10, 1))
    acts = model.activations(x, "feat")["feat"]
    w = model.get_layer("fc").params["kernel"][:, 2]
    cam = np.maximum(acts @ w, 0) / 64
    for method, rtol in ((A.gradcam, 1e-12), (A.xgradcam, 1e-6), (A.hirescam, 1e-12)):  # XGrad-CAM: +1e-7 in a sum
        np.testing.assert_allclose(method(model, x, 2, upsample=False), cam, rtol=rtol, atol=1e-15)
    assert A.gradcam(model, x, 2).shape == (2, 10, 10)
    score = model.predict(x)[:, 2]
    wk = w * acts.mean(axis=(1, 2)) / score[:, None]
    np.testing.assert_allclose(A.ablationcam(model, x, 2, upsample=False, batch_size=4, progress=False),
                               np.maximum(np.einsum("nhwk,nk->nhw", acts, wk), 0), rtol=1e-9, atol=1e-15)
    layer_cam = np.maximum(np.einsum("nhwk,k->nhw", acts, np.maximum(w, 0)), 0) / 64
    np.testing.assert_allclose(A.layercam(model, x, 2, upsample=False), layer_cam, rtol=1e-9, atol=1e-15)


def test_gradcam_plus_plus_formula(cnn, images):
    tr = cnn.trace(images)
    a, g = tr["c2"], tr.gradient(cotangent=np.eye(5)[[1, 1, 1]], wrt="c2")
    g2, g3 = g ** 2, g ** 3
    den = 2 * g2 + a.sum(axis=(1, 2), keepdims=True) * g3
    alpha = np.where(den != 0, g2 / np.where(den != 0, den, 1), 0)
    want = np.maximum(np.einsum("nhwk,nk->nhw", a, (alpha * np.maximum(g, 0)).sum(axis=(1, 2))), 0)
    np.testing.assert_allclose(A.gradcam_plus_plus(cnn, images, 1, layer="c2", upsample=False), want, rtol=1e-10)


def test_default_layer_is_last_spatial_and_upsampling_is_bilinear(cnn, images):
    at_layer = A.gradcam(cnn, images, 1, upsample=False)
    assert at_layer.shape == (3, 7, 7)                      # "add", the last rank-4 output
    np.testing.assert_array_equal(at_layer, A.gradcam(cnn, images, 1, layer="add", upsample=False))
    up = A.gradcam(cnn, images, 1)
    assert up.shape == (3, 16, 16)
    assert up.max() <= at_layer.max() + 1e-12 and up.min() >= 0   # bilinear: a convex combination
    with pytest.raises(InputError, match="spatial"):
        A.gradcam(cnn, images, 1, layer="gap")
    with pytest.raises(InputError, match="no layer"):
        A.gradcam(cnn, images, 1, layer="c3")


def test_cam_on_a_nested_layer():
    npcnn.set_seed(2)
    inner_in = npcnn.Input((12, 12, 1))
    inner = npcnn.Model(inner_in, L.Conv2D(3, 3, activation="relu", name="conv")(inner_in), name="backbone")
    inp = npcnn.Input((12, 12, 1))
    out = L.Dense(2)(L.GlobalAveragePooling2D()(inner(inp)))
    model = npcnn.Model(inp, out).astype("float64")
    x = np.random.default_rng(0).normal(size=(2, 12, 12, 1))
    cam = A.gradcam(model, x, 0, layer="backbone/conv", upsample=False)
    tr = model.trace(x)
    a, g = tr["backbone/conv"], tr.gradient(cotangent=np.eye(2)[[0, 0]], wrt="backbone/conv")
    np.testing.assert_allclose(cam, np.maximum(np.einsum("nhwk,nk->nhw", a, g.mean(axis=(1, 2))), 0))


def test_scorecam_brute_force(cnn, images):
    got = A.scorecam(cnn, images[:2], target=0, layer="c2", upsample=False, batch_size=3, progress=False)
    acts = cnn.activations(images[:2], "c2")["c2"]
    from npcnn.attribution._common import resize
    for n in range(2):
        scores = []
        for k in range(acts.shape[-1]):
            m = resize(acts[n:n + 1, :, :, k], (16, 16))[0]
            m = (m - m.min()) / (m.max() - m.min()) if m.max() > m.min() else 0 * m
            scores.append(cnn.predict(images[n:n + 1] * m[None, :, :, None])[0, 0])
        w = np.exp(scores - np.max(scores))
        want = np.maximum(acts[n] @ (w / w.sum()), 0)
        np.testing.assert_allclose(got[n], want, rtol=1e-9)


def test_eigencam_on_rank_one_activations():
    """A_k(i, j) = u(i, j) v_k (a 1-channel conv, then a 1x1 conv): the first principal component of the
    centred A is v/|v|, so Eigen-CAM = relu((u - mean u) |v|), whatever the target."""
    npcnn.set_seed(4)
    inp = npcnn.Input((8, 8, 1))
    u = L.Conv2D(1, 3, name="u")(inp)
    a = L.Conv2D(4, 1, use_bias=False, name="a")(u)
    model = npcnn.Model(inp, L.Dense(2)(L.GlobalAveragePooling2D()(a))).astype("float64")
    v = np.array([0.5, 1.0, 2.0, 0.25])
    model.get_layer("a").params["kernel"] = v.reshape(1, 1, 1, 4)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 1))
    uu = model.activations(x, "u")["u"][..., 0]
    want = np.maximum((uu - uu.mean(axis=(1, 2), keepdims=True)) * np.linalg.norm(v), 0)
    np.testing.assert_allclose(A.eigencam(model, x, 0, layer="a", upsample=False), want, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(A.eigencam(model, x, 0, layer="a"), A.eigencam(model, x, 1, layer="a"))


def test_guided_gradcam(cnn, images):
    np.testing.assert_allclose(A.guided_gradcam(cnn, images, 2),
                               A.guided_backprop(cnn, images, 2) * A.gradcam(cnn, images, 2)[..., None])


@pytest.mark.parametrize("name", ["gradcam", "gradcam_plus_plus", "xgradcam", "hirescam", "layercam", "eigencam",
                                  "scorecam", "ablationcam"])
def test_cams_on_a_batch_equal_one_by_one(cnn, images, name):
    method = getattr(A, name)
    kw = {"progress": False, "batch_size": 3} if name in ("scorecam", "ablationcam") else {}
    batch = method(cnn, images, target=[0, 3, 1], **kw)
    for n, t in enumerate([0, 3, 1]):
        np.testing.assert_allclose(batch[n], method(cnn, images[n:n + 1], target=t, **kw)[0], rtol=1e-9, atol=1e-14)


# ------------------------------------------------------------------------------------------ occlusion
def test_occlusion_equals_brute_force(cnn, images):
    got = A.occlusion(cnn, images[:2], target=[1, 2], patch=(4, 3), stride=(3, 2), fill=0.25, batch_size=7,
                      progress=False)
    total, count = np.zeros((2, 16, 16)), np.zeros((16, 16))
    for n, t in enumerate([1, 2]):
        base = cnn.predict(images[n:n + 1])[0, t]
        for top in range(0, 16 - 4 + 1, 3):
            for left in range(0, 16 - 3 + 1, 2):
                occluded = images[n:n + 1].copy()
                occluded[:, top:top + 4, left:left + 3] = 0.25
                total[n, top:top + 4, left:left + 3] += base - cnn.predict(occluded)[0, t]
                if n == 0:
                    count[top:top + 4, left:left + 3] += 1
    np.testing.assert_allclose(got, total / np.maximum(count, 1), rtol=1e-10, atol=1e-14)
    with pytest.raises(InputError, match="larger"):
        A.occlusion(cnn, images, patch=20, progress=False)


# ------------------------------------------------------------------------------------------ LRP
def _relu_graph(softmax=False):
    """Bias-free ReLU graph with every generic LRP case: SeparableConv2D + BatchNormalization (folded, no
    shift), Add, MaxPooling, DepthwiseConv2D, Concatenate, ZeroPadding, Flatten, Dense."""
    npcnn.set_seed(1)
    inp = npcnn.Input((12, 12, 2))
    h = L.Conv2D(4, 3, use_bias=False, activation="relu")(inp)
    a = L.SeparableConv2D(4, 3, padding="same", use_bias=False)(h)
    a = L.BatchNormalization(center=False, name="bn")(a)
    a = L.ReLU()(a)
    h = L.MaxPooling2D()(L.Add()([h, a]))
    c = L.Activation("relu")(L.DepthwiseConv2D(3, padding="same", use_bias=False, depth_multiplier=2)(h))
    h = L.ZeroPadding2D(1)(L.Concatenate()([h, c]))
    h = L.Flatten()(L.Conv2D(3, 2, use_bias=False, activation="relu")(h))
    out = L.Dense(4, use_bias=False, activation="softmax" if softmax else None, name="out")(h)
    model = npcnn.Model(inp, out)
    rng = np.random.default_rng(0)
    model.get_layer("bn").params.update(gamma=rng.uniform(0.5, 2, 4), moving_variance=rng.uniform(0.5, 2, 4))
    return model.astype("float64")


def test_lrp0_on_bias_free_relu_net_is_input_x_gradient_and_conserves():
    model = _relu_graph()
    x = np.random.default_rng(0).normal(size=(2, 12, 12, 2))
    r, err = A.lrp(model, x, target=[1, 3], rule="0", return_error=True)
    np.testing.assert_allclose(r, A.input_x_gradient(model, x, target=[1, 3]), rtol=1e-9, atol=1e-13)
    out = model.predict(x)
    np.testing.assert_allclose(r.reshape(2, -1).sum(axis=1), [out[0, 1], out[1, 3]], rtol=1e-10)
    assert np.abs(err).max() < 1e-10


@pytest.mark.parametrize("make", [lambda: L.DepthwiseConv2D(3, depth_multiplier=2), lambda: L.Conv2DTranspose(3, 3),
                                  lambda: L.SeparableConv2D(3, 3, depth_multiplier=2), lambda: L.Conv2D(4, 3, strides=2)],
                         ids=["depthwise", "transposed", "separable", "conv"])
def test_lrp0_with_batchnorm_folded_into_each_kind_of_layer(make):
    """layer -> BatchNormalization (folded: kernel scaled per output channel) -> ReLU -> Flatten -> Dense(3),
    with biases: LRP-0 equals Input x Gradient, so the folding is exact."""
    npcnn.set_seed(0)
    inp = npcnn.Input((6, 6, 2))
    h = L.Activation("relu")(L.BatchNormalization(name="bn")(make()(inp)))
    model = npcnn.Model(inp, L.Dense(3)(L.Flatten()(h)))
    rng = np.random.default_rng(1)
    c = model.get_layer("bn").params["gamma"].shape
    model.get_layer("bn").params.update(gamma=rng.uniform(0.5, 2, c), beta=rng.normal(0, 0.3, c),
                                        moving_mean=rng.normal(0, 0.3, c), moving_variance=rng.uniform(0.5, 2, c))
    model.astype("float64")
    x = rng.normal(size=(2, 6, 6, 2))
    np.testing.assert_allclose(A.lrp(model, x, 1, rule="0"), A.input_x_gradient(model, x, 1), rtol=1e-9, atol=1e-13)


def test_lrp_folds_batchnorm_into_the_convolution():
    """Under alpha2beta1 (sensitive to how z is split into parts), depthwise conv -> BN gives the same relevance
    as one depthwise conv with the folded kernel w * gamma / std and bias (b - mean) * gamma / std + beta."""
    def net(folded):
        npcnn.set_seed(0)
        inp = npcnn.Input((6, 6, 2))
        h = L.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(inp)
        if not folded:
            h = L.BatchNormalization(name="bn")(h)
        return npcnn.Model(inp, L.Dense(3)(L.Flatten()(L.Activation("relu")(h)))).astype("float64")

    two, one = net(False), net(True)
    rng = np.random.default_rng(1)
    gamma, beta, mean, var = rng.uniform(0.5, 2, 4), rng.normal(0, 0.3, 4), rng.normal(0, 0.3, 4), rng.uniform(0.5, 2, 4)
    two.get_layer("bn").params.update(gamma=gamma, beta=beta, moving_mean=mean, moving_variance=var)
    scale = gamma / np.sqrt(var + 1e-3)
    dw = one.get_layer("dw").params
    dw["bias"] = (dw["bias"] - mean) * scale + beta
    dw["depthwise_kernel"] = dw["depthwise_kernel"] * scale.reshape(2, 2)
    x = rng.normal(size=(2, 6, 6, 2))
    np.testing.assert_allclose(two.predict(x), one.predict(x), rtol=1e-12)
    np.testing.assert_allclose(A.lrp(two, x, 1, rule="alpha2beta1"), A.lrp(one, x, 1, rule="alpha2beta1"), rtol=1e-10)


def test_lrp_starts_from_the_logit_of_a_softmax_model():
    x = np.random.default_rng(0).normal(size=(2, 12, 12, 2))
    soft, plain = _relu_graph(softmax=True), _relu_graph()
    np.testing.assert_allclose(A.lrp(soft, x, 1, rule="epsilon"), A.lrp(plain, x, 1, rule="epsilon"), rtol=1e-10)


@pytest.mark.parametrize("rule,input_rule", [("alpha1beta0", None), ("z_plus", None), ("0", "z_b"), ("0", "flat"),
                                             ("0", "w_square"), ("composite", None)])
def test_lrp_rules_conserve_relevance_without_biases(rule, input_rule):
    """Without biases (and epsilon = 0) these rules conserve: each layer's relevance sums to its output's.
    (alpha2beta1 does not in general: a neuron without negative contributions drops its beta share.)"""
    model = _relu_graph()
    x = np.random.default_rng(0).normal(size=(2, 12, 12, 2))
    r, err = A.lrp(model, x, target=2, rule=rule, input_rule=input_rule, epsilon=0.0, return_error=True)
    total = r.reshape(2, -1).sum(axis=1) - err
    assert np.abs(err).max() < 1e-9 * np.abs(total).max()
    assert np.isfinite(r).all() and np.abs(r).max() > 0


def test_lrp_rules_by_hand_on_one_dense_layer():
    """x -> Dense(3) with bias: each rule's formula written out."""
    npcnn.set_seed(0)
    model = npcnn.Sequential([L.Dense(3, input_shape=(4,))]).astype("float64")
    w, b = model.layers[0].params["kernel"], model.layers[0].params["bias"]
    b[:] = [0.3, -0.2, 0.1]
    x = np.array([[0.5, -1.0, 2.0, 0.25]])
    z = x[0] @ w + b
    r_out = np.array([0.0, z[1], 0.0])                          # target 1: R = z_1
    contrib = x[0][:, None] * w                                  # z_ij
    eps = 0.1
    want = {"0": contrib[:, 1] / z[1] * r_out[1],
            "epsilon": contrib[:, 1] / (z[1] + eps * np.sign(z[1])) * r_out[1]}
    pos, neg = np.maximum(contrib, 0), np.minimum(contrib, 0)
    want["alpha2beta1"] = (2 * pos[:, 1] / (pos[:, 1].sum() + max(b[1], 0))
                           - neg[:, 1] / (neg[:, 1].sum() + min(b[1], 0))) * r_out[1]
    wsq = w[:, 1] ** 2
    want["w_square"] = wsq / wsq.sum() * r_out[1]
    lo, hi = -1.0, 2.0
    zb = contrib[:, 1] - lo * np.maximum(w[:, 1], 0) - hi * np.minimum(w[:, 1], 0)
    want["z_b"] = zb / zb.sum() * r_out[1]
    for rule, expect in want.items():
        kw = {"input_rule": rule, "bounds": (lo, hi)} if rule in ("w_square", "z_b") else {"rule": rule}
        np.testing.assert_allclose(A.lrp(model, x, 1, epsilon=eps, **kw)[0], expect, rtol=1e-10, err_msg=rule)


def test_lrp_generic_layers_conserve():
    """Transposed convolution (linear), LayerNormalization (passed through), Maximum (winner takes all),
    Multiply (all to the feature map, none to the gate) on a bias-free net: LRP-0 conserves exactly."""
    npcnn.set_seed(0)
    inp = npcnn.Input((4, 4, 1))
    h = L.Conv2DTranspose(2, 3, use_bias=False, activation="relu")(inp)
    gate = L.Dense(2, use_bias=False, activation="sigmoid")(L.GlobalAveragePooling2D(keepdims=True)(h))
    h = L.Multiply()([h, gate])
    h = L.Maximum()([h, L.Conv2D(2, 1, use_bias=False)(h)])
    out = L.Dense(2, use_bias=False)(L.Flatten()(L.LayerNormalization(center=False, scale=False)(h)))
    model = npcnn.Model(inp, out).astype("float64")
    x = np.random.default_rng(0).uniform(0, 1, (2, 4, 4, 1))
    r, err = A.lrp(model, x, 0, rule="0", return_error=True)
    assert np.abs(err).max() < 1e-10 and np.abs(r).max() > 0


def test_lrp_errors():
    model = _relu_graph()
    x = np.zeros((1, 12, 12, 2))
    with pytest.raises(InputError, match="input_rule"):
        A.lrp(model, x, 0, rule="z_b")
    with pytest.raises(InputError, match="unknown LRP rule"):
        A.lrp(model, x, 0, rule="gamma")
    with pytest.raises(UnsupportedError, match="input"):
        a, b = npcnn.Input((3,)), npcnn.Input((3,))
        A.lrp(npcnn.Model([a, b], L.Add()([a, b])), [np.ones((1, 3))] * 2, 0)

    class Twice(L.Layer):
        def forward(self, x, training=False):
            return 2 * x, None

    inp = npcnn.Input((3,))
    with pytest.raises(UnsupportedError, match="twice.*Twice"):
        A.lrp(npcnn.Model(inp, L.Dense(2)(Twice(name="twice")(inp))), np.ones((1, 3)), 0)


# ------------------------------------------------------------------------------------------ metrics
def test_deletion_insertion_curves(cnn, images):
    cam = A.gradcam(cnn, images, 0)
    d = A.deletion(cnn, images, cam, target=0, steps=8, progress=False, batch_size=5)
    assert d.scores.shape == (3, 9) and d.fractions[0] == 0 and d.fractions[-1] == 1
    np.testing.assert_allclose(d.scores[:, 0], cnn.predict(images)[:, 0])
    np.testing.assert_allclose(d.scores[:, -1], cnn.predict(A.baseline_for(images, "black"))[:, 0])
    # step 3: exactly the top counts[3] pixels of the map replaced (all channels)
    k = int(round(3 / 8 * 256))
    order = np.argsort(-cam[1].ravel(), kind="stable")[:k]
    x = images[1:2].copy().reshape(1, 256, 2)
    x[0, order] = images[1].min()
    np.testing.assert_allclose(d.scores[1, 3], cnn.predict(x.reshape(1, 16, 16, 2))[0, 0])
    ins = A.insertion(cnn, images, cam, target=0, steps=8, progress=False)
    np.testing.assert_allclose(ins.scores[:, -1], cnn.predict(images)[:, 0])
    np.testing.assert_allclose(A.metrics.auc(np.array([0, 0.5, 1]), np.array([[1.0, 1.0, 0.0]])), [0.75])


def test_randomization_check_changes_the_map_and_restores_weights(cnn, images):
    before = cnn.predict(images)
    res = A.randomization_check(cnn, images, A.gradcam, target=0)
    assert res.layers == ["original", "dense", "bn", "c2", "c1"]
    np.testing.assert_allclose(res.similarity[0], 1.0)
    assert res.similarity[-1].mean() < 0.9
    np.testing.assert_array_equal(cnn.predict(images), before)


def test_spearman():
    a = np.array([[1.0, 2.0, 3.0, 4.0]])
    np.testing.assert_allclose(A.metrics.spearman(a, a ** 3), [1.0])
    np.testing.assert_allclose(A.metrics.spearman(a, -a), [-1.0])
