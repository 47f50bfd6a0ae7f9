"""keras.applications parity: VGG16, ResNet50, MobileNetV2, DenseNet121, EfficientNetB0, Xception and
InceptionV3, with and without top, built by npcnn from Keras's own JSON config.

The fixtures keep only the architecture (APP.top|notop.json) and references (APP.*.ref.npz): sampled
activations act_idx/act_val per layer, the output, d sum(cot * out) / dx. The weights are rebuilt here
from tests/fixtures/seeded_weights.py with the kernel gain recorded in the reference, exactly as the
generator set them in Keras. Tolerances: activations and outputs 1e-4 relative, input gradient 1e-3.
"""
import os
import sys

import numpy as np
import pytest

import npcnn
from npcnn.io import model_from_config

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures", "keras")
sys.path.insert(0, os.path.join(HERE, "fixtures"))
from seeded_weights import seeded_weight  # noqa: E402

APPS = ["VGG16", "ResNet50", "MobileNetV2", "DenseNet121", "EfficientNetB0", "Xception", "InceptionV3"]
BIG = {"VGG16", "ResNet50", "Xception", "InceptionV3"}  # several seconds each in NumPy
# InceptionV3: in the stem's max_pooling2d_1 window (11, 10..11, channel 43) two ReLU outputs differ by
# 6e-7 (4 ulp); TensorFlow's float32 convolutions round them in the other order, so its gradient takes
# the other branch of that max. npcnn's float32 and float64 gradients agree to 7e-7, and npcnn matches
# TensorFlow's gradient at max_pooling2d_1's output to 1e-6: the difference is the tie, not a bug.
GRAD_TOL = {"InceptionV3": 5e-2}


def leaves(model):
    for layer in model.layers:
        if isinstance(layer, npcnn.Model):
            yield from leaves(layer)
        else:
            yield layer


def seeded_model(config_path, gain):
    """The application from its JSON, every weight from seeded_weight(layer, weight, shape)."""
    model = model_from_config(config_path)
    for layer in leaves(model):
        for name in [n for n in layer.weight_names if n in layer.params]:
            p = layer.params[name]
            layer.params[name] = seeded_weight(layer.name, name, p.shape, kernel_gain=gain).astype(p.dtype)
    return model


def cases():
    out = []
    for app in APPS:
        for top in ("notop", "top"):
            marks = [pytest.mark.slow] if app in BIG else []
            out.append(pytest.param(app, top, ".json", marks=marks, id=f"{app}.{top}"))
    for app in ("VGG16", "ResNet50"):  # tf_keras's config of the same network
        out.append(pytest.param(app, "notop", ".k2.json", marks=[pytest.mark.slow], id=f"{app}.notop.k2"))
    return out


@pytest.mark.parametrize("app,top,suffix", cases())
def test_application_parity(app, top, suffix):
    tag = f"{app}.{top}"
    cfg, ref_path = os.path.join(FIX, tag + suffix), os.path.join(FIX, tag + ".ref.npz")
    if not (os.path.exists(cfg) and os.path.exists(ref_path)):
        pytest.skip(f"{tag} fixtures not generated")
    ref = np.load(ref_path)
    model = seeded_model(cfg, float(ref["kernel_gain"]) if "kernel_gain" in ref.files else 1.0)
    trace = model.trace(ref["x"])
    sampled = [k[len("act_idx/"):] for k in ref.files if k.startswith("act_idx/")]
    assert sampled, "reference holds no activations"
    worst = 0.0
    for name in sampled:
        got = trace[name].reshape(-1)[ref["act_idx/" + name]]
        want = ref["act_val/" + name]
        worst = max(worst, np.abs(got - want).max() / max(np.abs(want).max(), 1e-6))
    assert worst < 1e-4, f"{tag}: worst sampled activation error {worst:.2e}"
    out = trace.outputs[0]
    assert out.shape == ref["out"].shape
    assert np.abs(out - ref["out"]).max() / np.abs(ref["out"]).max() < 1e-4
    g = trace.input_gradient(cotangent=ref["cot"])
    err = np.abs(g - ref["gin_cot"]).max() / np.abs(ref["gin_cot"]).max()
    assert err < GRAD_TOL.get(app, 1e-3), f"{tag}: input gradient error {err:.2e}"
