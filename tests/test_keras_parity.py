"""Parity with real Keras: every format of every small model, against references written by Keras itself.

tests/fixtures/keras/ (tools/make_keras_fixtures.py, Keras 3.15 and tf_keras 2.21): per model NAME,
NAME.k3.keras / .k3.h5 / .k3.weights.h5 + .k3.json / .k2.h5 / .k2.weights.h5 + .k2.json and
NAME.ref.npz (inputs, outputs, every layer's activation, input gradients, parameter gradients).
npcnn must reproduce all of it from every file: predictions and activations within 1e-5 relative,
input gradients within 1e-4, parameter gradients within 1e-4 (all float32).
"""
import json
import os

import h5py
import numpy as np
import pytest

import npcnn
from npcnn import activations

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures", "keras")
MODELS = sorted(n for n in json.load(open(os.path.join(FIX, "index.json")))["models"]) if os.path.exists(
    os.path.join(FIX, "index.json")) else []
K3_ONLY = {"activations_k3"}

# (label, weights file suffix, config suffix or None, dialect of the maths: which reference applies)
FORMATS = [
    ("k3.keras", ".k3.keras", None, 3),
    ("k3.h5", ".k3.h5", None, 3),
    ("k3.weights+json", ".k3.weights.h5", ".k3.json", 3),
    ("k2.h5", ".k2.h5", None, 2),
    ("k2.weights+json", ".k2.weights.h5", ".k2.json", 2),
    ("k2.legacy_weights+json", "legacy", ".k2.json", 2),   # tf_keras save_weights("w.h5") layout, see below
    ("k2.h5+k3.json", ".k2.h5", ".k3.json", 3),            # cross dialect, matched by layer name
    ("k3.weights+k2.json", ".k3.weights.h5", ".k2.json", 2),
]


def rel_err(got, want, floor=1e-6):
    """max |got - want| / max(max |want|, floor): relative to the scale of the reference array. The floor
    keeps float noise from counting when the exact answer is 0 (e.g. d sum(LayerNorm) / dx)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    return float(np.abs(got - want).max() / max(np.abs(want).max(), floor)) if want.size else 0.0


def numbered(ref, base):
    """ref["x"] or [ref["x0"], ref["x1"], ...]."""
    if base in ref:
        return [ref[base]]
    out, i = [], 0
    while f"{base}{i}" in ref:
        out.append(ref[f"{base}{i}"])
        i += 1
    return out


def legacy_weights_file(name, tmp_path):
    """A Keras 2 ``save_weights("w.h5")`` file: the ``model_weights`` group of the tf_keras full-model
    file, copied to the root of a new file (tf_keras writes exactly that layout)."""
    path = str(tmp_path / f"{name}.legacy_weights.h5")
    with h5py.File(os.path.join(FIX, f"{name}.k2.h5"), "r") as src, h5py.File(path, "w") as dst:
        group = src["model_weights"]
        for key in group:
            group.copy(key, dst)
        for key, value in group.attrs.items():
            dst.attrs[key] = value
    return path


def load(name, fmt, tmp_path):
    _, suffix, config, _ = fmt
    path = legacy_weights_file(name, tmp_path) if suffix == "legacy" else os.path.join(FIX, name + suffix)
    return npcnn.load_model(path, config=os.path.join(FIX, name + config) if config else None)


def reference(name, dialect):
    k2 = os.path.join(FIX, f"{name}.k2.ref.npz")
    return np.load(k2 if dialect == 2 and os.path.exists(k2) else os.path.join(FIX, f"{name}.ref.npz"))


def check_parity(model, ref):
    """Compare everything in a reference npz with npcnn; returns the worst error per kind."""
    xs = numbered(ref, "x")
    feed = xs if len(xs) > 1 else xs[0]
    outs, cots = numbered(ref, "out"), numbered(ref, "cot")
    errs = {}
    got = model.predict(feed)
    got = got if isinstance(got, list) else [got]
    errs["out"] = max(rel_err(g, w) for g, w in zip(got, outs))
    acts = model.activations(feed)
    act_keys = [k[4:] for k in ref.files if k.startswith("act/")]
    missing = [k for k in act_keys if k not in acts]
    assert not missing, f"npcnn has no activation for {missing}; it has {sorted(acts)[:20]}"
    errs["act"] = max([rel_err(acts[k], ref["act/" + k]) for k in act_keys] or [0.0])
    trace = model.trace(feed)
    grad_scale = max(np.abs(g).max() for g in numbered(ref, "gin_cot"))  # a real gradient's size here
    for label, cot in (("gin_ones", None), ("gin_cot", cots if len(cots) > 1 else cots[0])):
        g = trace.input_gradient(cotangent=cot if cot is not None else (
            [np.ones_like(o) for o in outs] if len(outs) > 1 else None))
        g = g if isinstance(g, list) else [g]
        errs[label] = max(rel_err(a, b, 1e-3 * grad_scale) for a, b in zip(g, numbered(ref, label)))
    pg = trace.param_gradients(cotangent=cots if len(cots) > 1 else cots[0])
    perr = 0.0
    for key in (k for k in ref.files if k.startswith("pgrad/")):
        name = key[6:]
        if name not in pg and name.endswith("/kernel"):  # Keras 3 calls DepthwiseConv2D's kernel "kernel"
            name = name[:-len("kernel")] + "depthwise_kernel"
        assert name in pg, f"no parameter gradient {name!r}; npcnn has {sorted(pg)[:12]}"
        perr = max(perr, rel_err(pg[name], ref[key]))
    errs["pgrad"] = perr
    return errs


TOL = {"out": 1e-5, "act": 1e-5, "gin_ones": 1e-4, "gin_cot": 1e-4, "pgrad": 1e-4}


@pytest.mark.parametrize("fmt", FORMATS, ids=[f[0] for f in FORMATS])
@pytest.mark.parametrize("name", [m for m in MODELS if m not in K3_ONLY])
def test_small_model_parity(name, fmt, tmp_path):
    model = load(name, fmt, tmp_path)
    errs = check_parity(model, reference(name, fmt[3]))
    bad = {k: v for k, v in errs.items() if v > TOL[k]}
    assert not bad, f"{name} from {fmt[0]}: {errs}"


def test_hard_sigmoid_dialects_differ():
    """The same config means clip(0.2x+0.5) under Keras 2 and relu6(x+3)/6 under Keras 3."""
    ref2, ref3 = reference("hard_sigmoid", 2), reference("hard_sigmoid", 3)
    m2 = npcnn.load_model(os.path.join(FIX, "hard_sigmoid.k2.h5"))
    m3 = npcnn.load_model(os.path.join(FIX, "hard_sigmoid.k3.keras"))
    assert rel_err(m2.predict(ref2["x"]), ref2["out"]) < 1e-6
    assert rel_err(m3.predict(ref3["x"]), ref3["out"]) < 1e-6
    assert np.abs(ref2["out"] - ref3["out"]).max() > 1e-2  # the references really do differ


def test_weight_order_matches_keras():
    """get_weights() lists weights in Keras 3's order (the reference's weights/<i>)."""
    for name in ("normalization", "nested_shared", "depthwise"):
        ref = np.load(os.path.join(FIX, f"{name}.ref.npz"))
        ws = npcnn.load_model(os.path.join(FIX, f"{name}.k3.keras")).get_weights()
        n = len([k for k in ref.files if k.startswith("weights/")])
        assert len(ws) == n
        for i, w in enumerate(ws):
            np.testing.assert_array_equal(w.astype(np.float32), ref[f"weights/{i}"].astype(np.float32))


# Keras 3.15's TensorFlow backend computes sparsemax's threshold from the sum of the cumulative sums on
# the support instead of the cumulative sum at its edge, so its "sparsemax" is often all zeros (it is
# here). npcnn computes the published sparsemax (Martins & Astudillo 2016), checked below by its
# definition; every other Keras-3-only activation must match Keras.
KERAS_DIFFERS = {"act_sparsemax", "out_concat"}


@pytest.mark.parametrize("fmt", [f for f in FORMATS if "k2" not in f[0]], ids=lambda f: f[0])
def test_keras3_only_activations(fmt, tmp_path):
    if "activations_k3" not in MODELS:
        pytest.skip("fixture not generated")
    model = load("activations_k3", fmt, tmp_path)
    ref = reference("activations_k3", 3)
    acts = model.activations(ref["x"])
    for key in (k[4:] for k in ref.files if k.startswith("act/")):
        if key not in KERAS_DIFFERS:
            assert rel_err(acts[key], ref["act/" + key]) < 1e-5, key
    y, z = acts["act_sparsemax"], acts["pre"]
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-6)
    for row_y, row_z in zip(y, z):  # y = max(z - tau, 0) with one tau per row: the simplex projection
        t = (row_z - row_y)[row_y > 0]
        assert np.ptp(t) < 1e-5 and np.all(row_z[row_y == 0] <= t[0] + 1e-6)


@pytest.mark.parametrize("name", ["celu", "glu", "hard_shrink", "soft_shrink", "hard_tanh", "log_sigmoid",
                                  "sparse_plus", "sparse_sigmoid", "sparsemax", "squareplus", "tanh_shrink"])
def test_keras3_only_activation_backward(name):
    """Each backward against float64 central differences of its forward (away from the kinks)."""
    act = activations.get(name)
    rng = np.random.default_rng(0)
    z = rng.uniform(-2.5, 2.5, (3, 8))
    z = np.where(np.isclose(np.abs(z), 1, atol=0.05) | np.isclose(np.abs(z), 0.5, atol=0.05), z + 0.2, z)
    y = act.forward(z)
    dy = rng.standard_normal(y.shape)
    got = act.backward(dy, y if act.uses == "y" else z)
    eps, fd = 1e-6, np.zeros_like(z)
    for i in np.ndindex(z.shape):
        zp, zm = z.copy(), z.copy()
        zp[i] += eps
        zm[i] -= eps
        fd[i] = ((act.forward(zp) - act.forward(zm)) * dy).sum() / (2 * eps)
    np.testing.assert_allclose(got, fd, rtol=1e-5, atol=1e-7)
