"""npcnn verify: the first diverging layer is found, errors grow as they should, bad dumps don't crash."""
import json

import numpy as np
import pytest

import npcnn
from npcnn import layers as L
from npcnn.verify import COTANGENT_KEY, GRADIENT_KEY, compare


def small_model():
    npcnn.set_seed(1)
    i = npcnn.Input((12, 12, 3), name="image")
    h = L.Conv2D(6, 3, padding="same", activation="relu", name="conv_a")(i)
    h = L.BatchNormalization(name="bn_a")(h)
    h = L.MaxPooling2D(name="pool_a")(h)
    b = L.Conv2D(6, 3, padding="same", activation="relu", name="conv_b")(h)
    h = L.Add(name="add")([h, b])
    h = L.Conv2D(8, 3, activation="relu", name="conv_c")(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    out = L.Dense(4, activation="softmax", name="probs")(h)
    model = npcnn.Model(i, out, name="small")
    bn = model.get_layer("bn_a")
    rng = np.random.default_rng(2)
    bn.params["moving_mean"] = rng.normal(0, 0.2, 6).astype("float32")
    bn.params["moving_variance"] = rng.uniform(0.5, 1.5, 6).astype("float32")
    return model


def reference_dump(model, x):
    dump = {k: v.astype(np.float32) for k, v in model.astype("float64").activations(x).items()}
    cot = np.random.default_rng(3).normal(size=(x.shape[0], 4))
    dump[COTANGENT_KEY] = cot
    dump[GRADIENT_KEY] = model.input_gradient(x, cotangent=cot).astype(np.float32)
    model.astype("float32")
    return dump


@pytest.fixture
def setup():
    model = small_model()
    x = np.random.default_rng(0).uniform(0, 1, (2, 12, 12, 3)).astype(np.float32)
    return model, x, reference_dump(model, x)


def test_identical_model_passes(setup):
    model, x, dump = setup
    result = compare(model, x, dump, rtol=1e-5, atol=1e-6, gradients=True)
    assert result.passed and result.first_failure is None
    assert [r.key for r in result.rows] == model.layer_keys() + [GRADIENT_KEY]
    assert max(r.max_rel for r in result.rows) < 1e-6
    assert model.dtype == np.float32  # restored


def test_perturbed_layer_is_the_first_divergence(setup):
    model, x, dump = setup
    w = model.get_layer("conv_b").params["kernel"]
    w[0, 0, 0, 0] += 0.5  # a wrong weight in the middle of the network
    result = compare(model, x, dump)
    assert not result.passed
    assert result.first_failure == "conv_b"
    order = [r.key for r in result.rows]
    assert all(r.passed for r in result.rows[:order.index("conv_b")])


def deep_stack(depth=10):
    npcnn.set_seed(0)
    i = npcnn.Input((16, 16, 4), name="image")
    h = i
    for k in range(depth):
        h = L.Conv2D(8, 3, padding="same", activation="relu", kernel_initializer="he_normal", name=f"conv{k}")(h)
    return npcnn.Model(i, h, name="deep")


def float16_run(model, x):
    """What a float16 backend computes: weights and every layer's output rounded to float16."""
    half = lambda a: a.astype(np.float16).astype(np.float32)  # noqa: E731
    values, dump = {model._input_ids[0]: half(x)}, {}
    for step in model._steps:
        layer = step.layer
        exact = layer.params
        layer.params = {k: half(v) for k, v in exact.items()}
        out, _ = layer.apply(values[step.inputs[0]])
        layer.params = exact
        values[step.output] = dump[step.key] = half(out)
    return dump


def test_float16_dump_shows_growth_and_passes_loosely():
    model = deep_stack()
    x = np.random.default_rng(0).uniform(0, 1, (2, 16, 16, 4)).astype(np.float32)
    dump = float16_run(model, x)
    strict = compare(model, x, dump, rtol=1e-6, atol=1e-7)
    assert strict.first_failure == "conv0"
    rel = [r.max_rel for r in strict.rows]
    assert np.mean(rel[-3:]) > 2 * np.mean(rel[:2])  # rounding errors accumulate with depth
    assert all(2e-4 < r < 1e-2 for r in rel)  # float16 has an 11-bit significand: ~5e-4 per rounding
    assert compare(model, x, dump, rtol=1e-2, atol=5e-3).passed


def test_wrong_shape_missing_and_extra_keys_are_reported(setup):
    model, x, dump = setup
    dump["pool_a"] = dump["pool_a"][:, :3]
    del dump["conv_c"]
    dump["not_a_layer"] = np.zeros(3)
    result = compare(model, x, dump)
    assert result.first_failure == "pool_a"
    row = next(r for r in result.rows if r.key == "pool_a")
    assert "shape differs" in row.note
    assert result.missing == ["conv_c"] and result.extra == ["not_a_layer"]
    assert "conv_c" in result.table() and "not_a_layer" in result.table()
    parsed = json.loads(result.to_json())
    assert parsed["first_failure"] == "pool_a" and parsed["passed"] is False


def test_gradient_mismatch_is_reported(setup):
    model, x, dump = setup
    dump[GRADIENT_KEY] = dump[GRADIENT_KEY] * 1.01
    result = compare(model, x, dump, gradients=True)
    assert result.first_failure == GRADIENT_KEY


def test_unreadable_dump_is_a_clear_error(tmp_path, setup):
    model, x, _ = setup
    bad = tmp_path / "dump.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(npcnn.InputError, match="not a readable"):
        compare(model, x, str(bad))
