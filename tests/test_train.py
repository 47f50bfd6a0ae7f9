"""Training: losses and optimisers against Keras 3 references, loss gradients against float64 finite
differences, the fit loop (learning, determinism, callbacks) and its input checks."""
import importlib
import json
import os

import numpy as np
import pytest

import npcnn
from npcnn import layers as L
from npcnn import train
from npcnn.errors import InputError
from npcnn.train import losses, optimizers

HERE = os.path.dirname(__file__)
OPTIM_REF = os.path.join(HERE, "fixtures", "keras", "optim.ref.npz")
SUBSET = os.path.join(HERE, "fixtures", "fashion_mnist", "subset.npz")

LOSS_CASES = {  # fixture name -> the npcnn loss that must reproduce it
    "bce_logits": lambda: losses.BinaryCrossentropy(from_logits=True),
    "bce_probs": lambda: losses.BinaryCrossentropy(),
    "cce_probs": lambda: losses.CategoricalCrossentropy(),
    "cce_logits": lambda: losses.CategoricalCrossentropy(from_logits=True),
    "scce_probs": lambda: losses.SparseCategoricalCrossentropy(),
    "scce_logits": lambda: losses.SparseCategoricalCrossentropy(from_logits=True),
    "mse": lambda: losses.get("mse"),
}


@pytest.fixture(scope="module")
def ref():
    return np.load(OPTIM_REF)


@pytest.fixture(scope="module")
def subset():
    d = np.load(SUBSET)
    return d["x_train"][..., None], d["y_train"].astype(np.int64), d["x_test"][..., None], d["y_test"]


# ------------------------------------------------------------------ losses
@pytest.mark.parametrize("case", sorted(LOSS_CASES))
def test_loss_value_and_gradient_match_keras(ref, case):
    loss = LOSS_CASES[case]()
    config = json.loads(str(ref[f"loss/{case}/config"]))
    assert loss.from_logits == config.get("from_logits", False)
    value, grad = loss.value_and_grad(ref[f"loss/{case}/y_true"], ref[f"loss/{case}/y_pred"])
    np.testing.assert_allclose(value, ref[f"loss/{case}/value"], rtol=2e-6)
    np.testing.assert_allclose(grad, ref[f"loss/{case}/grad"], rtol=2e-5, atol=1e-7)
    assert grad.dtype == np.float32


def _fd_cases():
    r = np.random.default_rng(3)
    logits = r.standard_normal((5, 4)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    sig = 1 / (1 + np.exp(-logits))
    onehot = np.eye(4)[[0, 3, 1, 2, 3]]
    soft = r.dirichlet(np.ones(4), 5)  # soft labels exercise every term of the categorical gradient
    return [
        ("bce_logits", losses.BinaryCrossentropy(from_logits=True), (r.random((5, 4)) > 0.5) * 1.0, logits),
        ("bce_probs", losses.BinaryCrossentropy(), r.random((5, 4)), sig),
        ("cce_probs", losses.CategoricalCrossentropy(), soft, probs * r.uniform(0.5, 2, (5, 1))),  # unnormalised
        ("cce_logits", losses.CategoricalCrossentropy(from_logits=True), soft, logits),
        ("scce_probs", losses.SparseCategoricalCrossentropy(), np.array([0, 3, 1, 2, 3]), probs),
        ("scce_logits", losses.SparseCategoricalCrossentropy(from_logits=True), onehot.argmax(-1), logits),
        ("mse", losses.MeanSquaredError(), r.standard_normal((5, 4)), logits),
    ]


@pytest.mark.parametrize("name,loss,y,p", _fd_cases(), ids=[c[0] for c in _fd_cases()])
def test_loss_gradient_matches_finite_differences(name, loss, y, p):
    value, grad = loss.value_and_grad(y, p)
    fd = np.zeros_like(p)
    for i in np.ndindex(p.shape):
        h = 1e-6 * max(abs(p[i]), 1e-2)  # a relative step: some probabilities are ~1e-4
        up, down = p.copy(), p.copy()
        up[i] += h
        down[i] -= h
        fd[i] = (loss(y, up) - loss(y, down)) / (2 * h)
    assert grad.dtype == np.float64
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)
    assert np.isclose(value, loss(y, p))


def test_probability_losses_clip_like_keras():
    """Outside [1e-7, 1 - 1e-7] the loss is flat (the clip), so confident mistakes cost log(1e7), not inf."""
    bce = losses.BinaryCrossentropy()
    value, grad = bce.value_and_grad(np.array([[1.0]]), np.array([[0.0]]))
    assert np.isclose(value, -np.log(1e-7)) and grad[0, 0] == 0
    value, _ = losses.SparseCategoricalCrossentropy().value_and_grad(np.array([1]), np.array([[1.0, 0.0]]))
    assert np.isclose(value, -np.log(1e-7 / (1 + 1e-7)), rtol=1e-6)


# ------------------------------------------------------------------ optimisers
def _optim_model(ref):
    x = npcnn.Input((6, 6, 2), name="x")
    h = L.Flatten(name="flatten")(L.Conv2D(4, 3, name="conv")(x))
    model = npcnn.Model(x, L.Dense(3, name="dense")(h), name="optim_tiny")
    model.set_weights([ref[f"init/{n}"] for n in json.loads(str(ref["weight_names"]))])
    return model


OPTIMIZER_CASES = {
    "sgd": lambda: optimizers.get("sgd"),
    "sgd_momentum": lambda: optimizers.SGD(momentum=0.9),
    "sgd_nesterov": lambda: optimizers.SGD(momentum=0.9, nesterov=True),
    "adam": lambda: optimizers.get("adam"),
    "rmsprop": lambda: optimizers.get("rmsprop"),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZER_CASES))
def test_optimizer_steps_match_keras(ref, name):
    opt = OPTIMIZER_CASES[name]()
    config = json.loads(str(ref[f"{name}/config"]))
    for key, value in opt.get_config().items():  # the defaults are Keras's
        if key != "name":
            assert np.isclose(value, config[key], rtol=1e-7), key
    model = _optim_model(ref)
    model.compile(optimizer=opt, loss=losses.SparseCategoricalCrossentropy(from_logits=True))
    names = json.loads(str(ref["weight_names"]))
    seen = []
    for step in (1, 2, 3):
        if step == 1:
            trace = model.trace(ref["x"], training=True)
            _, dloss = model.loss.value_and_grad(ref["y"], trace.outputs[0])
            grads = trace.param_gradients(cotangent=dloss)
            for n in names:
                np.testing.assert_allclose(grads[n], ref[f"grads/{n}"], rtol=1e-5, atol=1e-7)
        loss, _, _ = train.train_step(model, ref["x"], ref["y"])
        seen.append(loss)
        if step in (1, 3):
            weights = model.named_weights()
            for n in names:
                np.testing.assert_allclose(weights[n], ref[f"{name}/step{step}/{n}"], rtol=1e-5, atol=1e-7,
                                           err_msg=f"{name} step {step} {n}")
    np.testing.assert_allclose(seen, ref[f"{name}/loss"], rtol=1e-5)
    np.testing.assert_allclose(model.evaluate(ref["x"], ref["y"]), ref[f"{name}/loss_after3"], rtol=1e-5)


def test_rmsprop_centered_and_momentum_formula():
    """Keras's centred RMSprop with momentum, written out by hand for two steps of one weight."""
    w, g1, g2 = np.array([1.0, -2.0]), np.array([0.5, 0.1]), np.array([-0.3, 0.2])
    opt = optimizers.RMSprop(learning_rate=0.1, rho=0.8, momentum=0.5, epsilon=1e-3, centered=True)
    got = w.copy()
    v = a = m = 0
    want = w.copy()
    for g in (g1, g2):
        opt.apply({"w": g}, {"w": got})
        v = 0.8 * v + 0.2 * g * g
        a = 0.8 * a + 0.2 * g
        m = 0.5 * m + 0.1 * g / np.sqrt(v - a * a + 1e-3)
        want = want - m
    np.testing.assert_allclose(got, want, rtol=1e-12)


# ------------------------------------------------------------------ the loop
def _small_model(dropout=0.0, seed=0):
    npcnn.set_seed(seed)
    return npcnn.Sequential([
        L.Rescaling(1 / 255, input_shape=(28, 28, 1)),
        L.Conv2D(8, 3, strides=2, activation="relu", name="conv"),
        L.MaxPooling2D(name="pool"),
        L.Flatten(),
        L.Dropout(dropout),
        L.Dense(10, activation="softmax", name="out"),
    ])


def test_fit_lowers_the_loss_and_fits_a_tiny_subset(subset):
    x, y = subset[0][:100], subset[1][:100]
    model = _small_model()
    model.compile(optimizer=optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    before = model.evaluate(x, y)
    history = model.fit(x, y, epochs=40, batch_size=20, verbose=0)
    h = history.history
    assert sorted(h) == ["accuracy", "loss"] and len(h["loss"]) == 40
    assert h["loss"][-1] < 0.25 * h["loss"][0]
    assert np.isclose(h["loss"][0], before[0], rtol=0.2)  # the first epoch starts where evaluate says
    loss, acc = model.evaluate(x, y)
    assert acc >= 0.97 and loss < before[0] / 4
    assert np.isclose(acc, (model.predict(x).argmax(-1) == y).mean())


def test_fit_with_validation_split_and_one_hot_labels(subset):
    x, y = subset[0][:60], subset[1][:60]
    model = _small_model()
    model.compile(optimizer=optimizers.SGD(0.05, momentum=0.9), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, np.eye(10)[y], epochs=2, batch_size=16, validation_split=0.25, verbose=0)
    assert sorted(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    # Keras's split: the last quarter, never trained on
    val_loss, val_acc = model.evaluate(x[45:], np.eye(10)[y[45:]])
    assert np.isclose(history.history["val_loss"][-1], val_loss)
    assert np.isclose(history.history["val_accuracy"][-1], val_acc)


def _train_once(subset, seed):
    model = _small_model(dropout=0.3, seed=seed)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(subset[0][:64], subset[1][:64], epochs=2, batch_size=32, verbose=0)
    return model.get_weights()


@pytest.mark.parametrize("threads", [1, 2])  # Dropout in a batch split over threads: each part has its own RNG
def test_same_seed_gives_identical_weights(subset, monkeypatch, threads):
    from npcnn import blas
    monkeypatch.setattr(blas, "THREADS", threads)
    a, b, c = _train_once(subset, 7), _train_once(subset, 7), _train_once(subset, 8)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not all(np.array_equal(u, v) for u, v in zip(a, c))


@pytest.mark.skipif(not npcnn.blas.available(), reason="batches are split only where the BLAS can be limited")
def test_a_batch_split_over_cores_takes_the_whole_batch_step(subset, monkeypatch):
    """train_step runs parts of a batch on separate threads and sums their gradients: the step equals the
    whole batch's (float64, no randomness), loss and predictions included."""
    from npcnn import blas
    fit_module = importlib.import_module("npcnn.train.fit")  # (npcnn.train.fit is also the function)
    x, y = subset[0][:50].astype(np.float64), subset[1][:50]
    results = []
    for threads in (1, 3):
        monkeypatch.setattr(blas, "THREADS", threads)
        monkeypatch.setattr(fit_module, "MIN_SHARD", 4)
        model = _small_model().astype("float64")
        model.compile(optimizer=optimizers.SGD(0.1, momentum=0.9), loss="sparse_categorical_crossentropy")
        assert len(fit_module.shards(model, 50)) == threads
        loss, t, pred = fit_module.train_step(model, x, y)
        fit_module.train_step(model, x, y)
        results.append((loss, t, pred, model.get_weights()))
    (l1, t1, p1, w1), (l3, t3, p3, w3) = results
    np.testing.assert_allclose(l3, l1, rtol=1e-13)
    np.testing.assert_array_equal(t3, t1)
    np.testing.assert_allclose(p3, p1, rtol=1e-12, atol=1e-15)
    for a, b in zip(w3, w1):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-14)


@pytest.mark.skipif(not npcnn.blas.available(), reason="batches are split only where the BLAS can be limited")
def test_batch_statistics_keep_a_batch_whole(monkeypatch):
    from npcnn import blas
    fit_module = importlib.import_module("npcnn.train.fit")  # (npcnn.train.fit is also the function)
    monkeypatch.setattr(blas, "THREADS", 2)
    plain = npcnn.Sequential([L.Dense(4, input_shape=(3,)), L.Dense(1)])
    with_bn = npcnn.Sequential([L.Dense(4, input_shape=(3,)), L.BatchNormalization(), L.Dense(1)])
    assert fit_module.shards(plain, 64) == [(0, 32), (32, 64)]
    assert fit_module.shards(with_bn, 64) == [(0, 64)]
    assert fit_module.shards(plain, 20) == [(0, 20)]  # parts of fewer than MIN_SHARD samples do not pay


def test_batchnorm_trains_in_training_mode_and_moving_stats_follow():
    npcnn.set_seed(0)
    model = npcnn.Sequential([L.Dense(4, input_shape=(3,), name="d"), L.BatchNormalization(name="bn"),
                              L.Dense(1, name="o")])
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).normal(5.0, 2.0, (32, 3))
    y = x.sum(1, keepdims=True)
    weights = train.trainable_weights(model)
    assert sorted(weights) == ["bn/beta", "bn/gamma", "d/bias", "d/kernel", "o/bias", "o/kernel"]
    model.fit(x, y, epochs=30, batch_size=32, verbose=0, shuffle=False)
    bn = model.get_layer("bn")
    h = x.astype(np.float32) @ model.get_layer("d").params["kernel"] + model.get_layer("d").params["bias"]
    # after 30 updates with momentum 0.99 the moving mean has moved 1 - 0.99^30 = 26 % toward the batch mean
    assert np.all(np.abs(bn.params["moving_mean"]) > 0.1 * np.abs(h.mean(0)))


def test_frozen_layers_do_not_change(subset):
    model = _small_model()
    model.get_layer("conv").trainable = False
    before = model.get_layer("conv").params["kernel"].copy()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(subset[0][:32], subset[1][:32], epochs=1, batch_size=16, verbose=0)
    assert np.array_equal(model.get_layer("conv").params["kernel"], before)
    assert "conv/kernel" not in train.trainable_weights(model)


# ------------------------------------------------------------------ callbacks
class _Recorder(train.Callback):
    def __init__(self):
        self.begun, self.weights = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.begun.append(epoch)

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(train.callbacks.snapshot(self.model))


def test_early_stopping_stops_and_restores_best_weights():
    model = _small_model()
    stop = train.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    stop.set_model(model)
    stop.on_train_begin()
    snapshots = []
    for epoch, val_loss in enumerate([1.0, 0.7, 0.8, 0.75, 0.6]):
        model.set_weights([w + epoch for w in model.get_weights()])
        snapshots.append(train.callbacks.snapshot(model))
        stop.on_epoch_end(epoch, {"val_loss": val_loss})
        if getattr(model, "stop_training", False):
            break
    assert epoch == 3 and stop.stopped_epoch == 3 and stop.best_epoch == 1
    stop.on_train_end()
    assert all(np.array_equal(u, v) for u, v in zip(model.get_weights(), snapshots[1]))


def test_model_checkpoint_keeps_best_and_lr_schedule_applies(subset, tmp_path):
    x, y = subset[0][:48], subset[1][:48]
    model = _small_model()
    model.compile(optimizer=optimizers.SGD(0.1), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    keep = train.ModelCheckpoint(str(tmp_path / "best-{epoch}.npz"), monitor="loss", restore=True)
    rec = _Recorder()
    schedule = train.LearningRateScheduler(lambda epoch, lr: 0.1 if epoch < 2 else 0.0)
    history = model.fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=[schedule, keep, rec])
    assert history.history["learning_rate"] == [0.1, 0.1, 0.0, 0.0]
    # a zero learning rate leaves the weights where they were
    assert all(np.array_equal(u, v) for u, v in zip(rec.weights[2], rec.weights[3]))
    best = int(np.argmin(history.history["loss"]))
    assert keep.best_epoch == best
    saved = np.load(tmp_path / f"best-{best + 1}.npz")
    assert all(np.array_equal(saved[f"arr_{i}"], w) for i, w in enumerate(rec.weights[best]))
    assert all(np.array_equal(u, v) for u, v in zip(model.get_weights(), rec.weights[best]))


# ------------------------------------------------------------------ bad input, caught before any epoch
def _compiled(loss="sparse_categorical_crossentropy"):
    model = _small_model()
    model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    return model


@pytest.mark.parametrize("loss,labels,words", [
    ("sparse_categorical_crossentropy", lambda y: y[:, None].repeat(2, 1), "shape"),
    ("sparse_categorical_crossentropy", lambda y: np.where(y == 3, 10, y), "[0, 9]"),
    ("sparse_categorical_crossentropy", lambda y: y - 1, "[0, 9]"),
    ("sparse_categorical_crossentropy", lambda y: y + 0.5, "whole class numbers"),
    ("sparse_categorical_crossentropy", lambda y: np.eye(10)[y], "categorical_crossentropy"),
    ("categorical_crossentropy", lambda y: y, "shape"),
    ("categorical_crossentropy", lambda y: np.eye(5)[y % 5], "shape"),
    ("binary_crossentropy", lambda y: (y > 4) * 1.0, "10 units"),
    ("mse", lambda y: y[:-1], "samples"),
])
def test_bad_labels_raise_before_any_epoch(subset, loss, labels, words):
    x, y = subset[0][:40], subset[1][:40]
    model, rec = _compiled(loss), _Recorder()
    with pytest.raises(InputError) as err:
        model.fit(x, labels(y), epochs=1, verbose=0, callbacks=[rec])
    assert words in str(err.value)
    assert rec.begun == []


def test_bad_validation_and_calls_raise_before_any_epoch(subset):
    x, y = subset[0][:40], subset[1][:40]
    rec = _Recorder()
    with pytest.raises(InputError, match="validation_data.*labels must lie"):
        _compiled().fit(x, y, validation_data=(x, y + 10), verbose=0, callbacks=[rec])
    with pytest.raises(InputError, match="not compiled"):
        _small_model().fit(x, y, verbose=0)
    with pytest.raises(InputError, match="inputs do not fit"):
        _compiled().fit(x[:, :20], y, verbose=0, callbacks=[rec])
    with pytest.raises(InputError, match="unknown loss"):
        _compiled(loss="hinge_of_doom")
    with pytest.raises(InputError, match="monitors 'val_accuracy'"):
        _compiled().fit(x, y, verbose=0, callbacks=[rec, train.EarlyStopping("val_accuracy")])
    with pytest.raises(InputError, match="unknown metric"):
        _small_model().compile(loss="mse", metrics=["f1"])
    assert rec.begun == []


def test_binary_labels_for_a_one_unit_model_are_fine(subset):
    x, y = subset[0][:32], (subset[1][:32] > 4).astype(np.float32)
    npcnn.set_seed(0)
    model = npcnn.Sequential([L.Rescaling(1 / 255, input_shape=(28, 28, 1)), L.Flatten(), L.Dense(1)])
    model.compile(optimizer="adam", loss=losses.BinaryCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    loss, acc = model.evaluate(x, y)
    assert np.isclose(acc, ((model.predict(x)[:, 0] > 0) == (y > 0.5)).mean())  # logit 0 = probability 1/2
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        model.fit(x, y * 2, epochs=1, verbose=0)


def test_progress_bar_shows_loss_and_accuracy_and_verbose_0_is_silent(subset, capsys):
    x, y = subset[0][:40], subset[1][:40]
    model = _compiled()
    model.fit(x, y, epochs=1, batch_size=20, verbose=0)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    model.fit(x, y, epochs=2, batch_size=20, verbose=1)
    err = capsys.readouterr().err
    assert "Epoch 1/2" in err and "Epoch 2/2" in err and "loss=" in err and "accuracy=" in err


@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "categorical_crossentropy",
                                  losses.SparseCategoricalCrossentropy(from_logits=True)])
def test_training_gradient_of_the_whole_loss_matches_finite_differences(subset, loss):
    """What train_step feeds the optimiser, d loss / d weight through the model (BatchNorm in training
    mode), checked in float64 against central differences of the loss itself."""
    from conftest import check_gradient
    npcnn.set_seed(1)
    last = "linear" if isinstance(loss, losses.Loss) else "softmax"
    model = npcnn.Sequential([
        L.Rescaling(1 / 255, input_shape=(28, 28, 1)), L.Conv2D(3, 3, strides=3, activation="relu", name="c"),
        L.BatchNormalization(name="bn"), L.MaxPooling2D(3, name="p"), L.Flatten(),
        L.Dense(10, activation=last, name="d")]).astype("float64")
    model.compile(optimizer="sgd", loss=loss)
    # zero biases on black background pixels put every ReLU input exactly on the kink, where finite
    # differences see half a slope: move the biases off zero
    r = np.random.default_rng(2)
    for name in ("c", "d"):
        bias = model.get_layer(name).params["bias"]
        bias += r.uniform(0.05, 0.1, bias.shape)
    x, y = subset[0][:6].astype(np.float64), subset[1][:6]
    y = np.eye(10)[y] if loss == "categorical_crossentropy" else y
    bn = model.get_layer("bn")
    moving = {k: bn.params[k].copy() for k in bn.non_trainable_names}

    def value():
        bn.params.update({k: v.copy() for k, v in moving.items()})  # each training-mode forward moves them
        return model.loss(y, model.trace(x, training=True).outputs[0])

    trace = model.trace(x, training=True)
    _, dloss = model.loss.value_and_grad(y, trace.outputs[0])
    grads = trace.param_gradients(cotangent=dloss)
    weights = train.trainable_weights(model)
    assert sorted(grads) == sorted(weights)
    for key, w in weights.items():
        check_gradient(value, w, grads[key], np.random.default_rng(0), n_coords=12, what=key)


def test_nested_base_trains_and_a_frozen_base_stays_put():
    """Transfer learning's shape: a base model inside a bigger one, trained, then frozen as a whole."""
    npcnn.set_seed(0)
    base = npcnn.Sequential([L.Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1), name="bc"),
                             L.GlobalAveragePooling2D(name="gap")], name="base")
    x = npcnn.Input((8, 8, 1))
    model = npcnn.Model(x, L.Dense(3, activation="softmax", name="head")(base(x)))
    model.compile("adam", "sparse_categorical_crossentropy")
    assert sorted(train.trainable_weights(model)) == ["base/bc/bias", "base/bc/kernel", "head/bias", "head/kernel"]
    xs, ys = np.random.default_rng(0).random((24, 8, 8, 1)), np.arange(24) % 3
    kernel = base.get_layer("bc").params["kernel"].copy()
    model.fit(xs, ys, epochs=1, batch_size=8, verbose=0)
    assert not np.array_equal(kernel, base.get_layer("bc").params["kernel"])
    base.trainable = False
    assert sorted(train.trainable_weights(model)) == ["head/bias", "head/kernel"]
    kernel, head = base.get_layer("bc").params["kernel"].copy(), model.get_layer("head").params["kernel"].copy()
    model.fit(xs, ys, epochs=1, batch_size=8, verbose=0)
    assert np.array_equal(kernel, base.get_layer("bc").params["kernel"])
    assert not np.array_equal(head, model.get_layer("head").params["kernel"])
    x2 = npcnn.Input((4,))
    with pytest.raises(npcnn.UnsupportedError, match="several outputs"):
        npcnn.Model(x2, [L.Dense(2)(x2), L.Dense(3)(x2)]).compile("adam", "mse")
