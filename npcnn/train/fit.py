"""The training loop: ``compile``, ``fit`` and ``evaluate`` as Keras's, over npcnn's own forward/backward.

One training step is four lines (:func:`_part_gradients` and :func:`train_step`), the whole of what a
framework does:

    trace = model.trace(x, training=True)           # forward; Dropout drops, BatchNorm uses batch statistics
    loss, dloss = model.loss.from_targets(t, trace.outputs[0])    # the loss and d loss / d predictions
    grads = trace.param_gradients(cotangent=dloss)  # backward: d loss / d every trainable weight
    model.optimizer.apply(grads, weights)           # update the weights in place

Everything else here is bookkeeping: batches, running means for the progress bar, validation, callbacks,
and checks that stop a bad call (labels that do not fit the model and the loss) before any epoch starts.
"""
import math

import numpy as np

from .. import blas, initializers
from ..errors import InputError, UnsupportedError
from . import callbacks as callbacks_module
from . import losses, optimizers
from .data import ArrayBatches, Batches


class Accuracy:
    """Fraction of right answers. ``kind`` "categorical": argmax(pred) == argmax(label) (sparse labels
    arrive one-hot from the loss); "binary": (pred > threshold) == (label > 0.5), averaged over units."""

    def __init__(self, name, kind, threshold=0.5):
        self.name, self.kind, self.threshold = name, kind, threshold

    def __call__(self, t, p):
        """targets t and predictions p (N, C) -> (N,) per-sample accuracy."""
        if self.kind == "binary":
            return ((p > self.threshold) == (t > 0.5)).mean(axis=-1)
        return (p.argmax(axis=-1) == t.argmax(axis=-1)).astype(np.float64)


def _metric(spec, loss, units):
    """Keras's rule for "accuracy": binary for binary cross-entropy or one output unit, else categorical."""
    name = str(spec).lower()
    binary_threshold = 0.0 if loss.from_logits else 0.5  # a logit of 0 is a probability of 1/2
    if name in ("accuracy", "acc"):
        binary = isinstance(loss, losses.BinaryCrossentropy) or units == 1
        return Accuracy("accuracy", "binary" if binary else "categorical", binary_threshold)
    if name == "binary_accuracy":
        return Accuracy(name, "binary", binary_threshold)
    if name in ("categorical_accuracy", "sparse_categorical_accuracy"):
        return Accuracy(name, "categorical")
    raise InputError(f"unknown metric {spec!r}; npcnn knows 'accuracy', 'binary_accuracy', "
                     "'categorical_accuracy', 'sparse_categorical_accuracy'")


# ------------------------------------------------------------------ compile
def compile(model, optimizer="rmsprop", loss=None, metrics=None):
    """Attach an optimiser, a loss and metrics to ``model`` (Keras's defaults: RMSprop, no metrics)."""
    if loss is None:
        raise InputError("compile needs a loss, e.g. loss='sparse_categorical_crossentropy'")
    if len(getattr(model, "_outputs", [None])) > 1:
        raise UnsupportedError(f"model {model.name!r} has several outputs; npcnn trains single-output models")
    model.optimizer, model.loss = optimizers.get(optimizer), losses.get(loss)
    model.metric_names = [str(m) for m in (metrics or [])]
    for name in model.metric_names:  # unknown names fail here, not at fit
        _metric(name, model.loss, None)
    model.stop_training = False
    return model


def _compiled(model):
    if getattr(model, "loss", None) is None or getattr(model, "optimizer", None) is None:
        raise InputError(f"model {model.name!r} is not compiled: call model.compile(optimizer='adam', "
                         "loss=..., metrics=['accuracy']) before fit or evaluate")


def _metrics(model, units):
    return [_metric(m, model.loss, units) for m in model.metric_names]


# ------------------------------------------------------------------ data
def _batches(x, y, batch_size, shuffle, what):
    """Arrays (x, y) or a batch source -> a batch source."""
    if isinstance(x, Batches):
        if y is not None:
            raise InputError(f"{what}: y must be None when x is a batch source (it yields the labels)")
        return x
    if x is None or y is None:
        raise InputError(f"{what}: needs inputs x and labels y (or a batch source such as "
                         "ImageDataGenerator().flow_from_directory(...))")
    if len(x) != len(y):
        raise InputError(f"{what}: x has {len(x)} samples but y has {len(y)} labels; they must match")
    return ArrayBatches(x, y, batch_size or 32, shuffle)


def _check(model, source, what):
    """Run the model on one sample and the loss on every label, so that any mismatch (input shape, label
    shape or range, loss vs output) is an InputError now rather than a traceback mid-epoch."""
    if source.n == 0:
        raise InputError(f"{what}: no samples")
    labels = source.labels()
    if labels is None:
        raise InputError(f"{what}: the data has no labels (class_mode=None?); training needs labels")
    try:
        out = model.predict(source.first(1))
    except InputError as e:
        raise InputError(f"{what}: the inputs do not fit the model: {e}") from None
    fake = np.zeros((len(labels), *out.shape[1:]), dtype=out.dtype)
    try:
        model.loss.targets(np.asarray(labels), fake)
    except InputError as e:
        raise InputError(f"{what}: {e}") from None
    return out.shape[-1]


def _split(x, y, validation_split):
    """Keras's validation_split: the *last* fraction of the arrays, taken before any shuffling."""
    if not 0 < validation_split < 1:
        raise InputError(f"validation_split must be between 0 and 1, got {validation_split}")
    if isinstance(x, Batches):
        raise InputError("validation_split works on arrays only; give a batch source validation_data instead")
    at = int(math.ceil(len(x) * (1 - validation_split)))
    return (x[:at], y[:at]), (x[at:], y[at:])


# ------------------------------------------------------------------ the loop
def trainable_weights(model):
    """{"layer/weight": array} of every weight the optimiser updates (layer.trainable, not a moving
    statistic, and every enclosing model trainable too), keyed as ``Trace.param_gradients`` keys them."""
    out = {}

    def walk(m):
        for layer in m._unique_layers():
            if not layer.trainable:
                continue
            if hasattr(layer, "_unique_layers"):  # a nested model: its layers are inlined in model's steps
                walk(layer)
                continue
            for name, w in layer.params.items():
                if name not in layer.non_trainable_names:
                    if not w.flags.writeable:  # weights read from a file may be read-only views
                        layer.params[name] = w = w.copy()
                    out[f"{model._owner[id(layer)]}/{name}"] = w
    walk(model)
    return out


MIN_SHARD = 16
"""The fewest samples worth a core of their own in :func:`train_step`."""


def shards(model, batch):
    """How :func:`train_step` splits a batch of ``batch`` samples over the cores: [(start, stop), ...].

    One part per core (npcnn.blas.gemm_parts: none where the BLAS's own threads cannot be limited), each at
    least MIN_SHARD samples, unless a layer couples the samples of a batch in training (BatchNormalization's
    batch statistics): then the batch stays whole.
    """
    parts = min(blas.gemm_parts(), batch // MIN_SHARD)
    if parts <= 1 or any(step.layer.couples_batch for step in model._steps):
        return [(0, batch)]
    return [(batch * k // parts, batch * (k + 1) // parts) for k in range(parts)]


def _part_gradients(model, x, y, share):
    """Loss and gradients of one part of a batch, both weighted by ``share`` (its fraction of the batch),
    so that the parts' sums are the whole batch's mean loss and its gradients."""
    trace = model.trace(x, training=True)
    pred = trace.outputs[0]
    t = model.loss.targets(np.asarray(y), pred)
    loss, dloss = model.loss.from_targets(t, pred)
    return loss * share, trace.param_gradients(cotangent=dloss * share), t, pred


def train_step(model, x, y):
    """One step of gradient descent on the batch x (B, H, W, C), y (B,) class numbers or (B, C).

    The batch is split into parts (:func:`shards`) that run forward and backward at the same time, one per
    core, each with its own random generator (seeded from npcnn's, so a seeded run repeats); the parts'
    gradients are summed. Returns (mean loss before the step, targets (B, C) as the loss sees them,
    predictions (B, C))."""
    bounds = shards(model, len(x))
    if len(bounds) == 1:
        loss, grads, t, pred = _part_gradients(model, x, y, 1.0)
    else:
        seeds = initializers.rng().integers(1 << 62, size=len(bounds))
        parts = [None] * len(bounds)

        def run(k0, k1):
            for k in range(k0, k1):
                (a, b), share = bounds[k], (bounds[k][1] - bounds[k][0]) / len(x)
                with initializers.own_generator(seeds[k]):
                    parts[k] = _part_gradients(model, x[a:b], y[a:b], share)

        blas.parallel(run, len(bounds), parts=len(bounds))
        loss = sum(p[0] for p in parts)
        grads = {key: sum(p[1][key] for p in parts) for key in parts[0][1]}
        t, pred = (np.concatenate([p[i] for p in parts]) for i in (2, 3))
    model.optimizer.apply(grads, trainable_weights(model))
    return loss, t, pred


class _Means:
    """Running means over an epoch, each batch weighted by its size (what Keras's progress bar shows)."""

    def __init__(self):
        self.sums, self.count = {}, 0

    def add(self, n, values):
        self.count += n
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v) * n

    def result(self, prefix=""):
        return {prefix + k: s / max(self.count, 1) for k, s in self.sums.items()}


def _batch_logs(metrics, loss, t, pred):
    return {"loss": loss, **{m.name: m(t, pred).mean() for m in metrics}}


def fit(model, x=None, y=None, batch_size=None, epochs=1, verbose=1, callbacks=None, validation_split=0.0,
        validation_data=None, shuffle=True, initial_epoch=0, steps_per_epoch=None):
    """Train ``model`` (compiled) on arrays (x, y) or a batch source x. Returns a History whose
    ``.history`` is {"loss": [...], "accuracy": [...], "val_loss": [...], ...} as Keras's.

    x: (N, H, W, C) inputs (raw: the model's own Rescaling layer, if any, scales them); y: labels as the
    loss wants them (class numbers for sparse_categorical_crossentropy, one-hot for categorical, 0/1 for
    binary). Randomness (shuffling, Dropout) comes from npcnn's RNG: ``npcnn.set_seed`` makes a run repeat.
    """
    _compiled(model)
    if validation_split and validation_data is None:
        (x, y), validation_data = _split(x, y, validation_split)
    train = _batches(x, y, batch_size, shuffle, "fit")
    units = _check(model, train, "fit")
    metrics = _metrics(model, units)
    val = None
    if validation_data is not None:
        val = (validation_data if isinstance(validation_data, Batches)
               else _batches(*_validation_pair(validation_data), batch_size, False, "fit validation_data"))
        _check(model, val, "fit validation_data")
    steps = int(steps_per_epoch or len(train))
    logged = ["loss"] + [m.name for m in metrics]
    logged += [f"val_{k}" for k in logged] if val is not None else []
    history = callbacks_module.History()
    cbs = list(callbacks or []) + [history]
    for cb in cbs:
        watched = getattr(cb, "monitor", None)
        if watched is not None and watched not in logged:
            raise InputError(f"{type(cb).__name__} monitors {watched!r}, but fit logs only "
                             f"{', '.join(logged)} (val_* needs validation_data or validation_split)")
    for cb in cbs:
        cb.set_model(model)
    model.stop_training = False
    for cb in cbs:
        cb.on_train_begin()
    stream = _cycle(train)
    for epoch in range(initial_epoch, epochs):
        for cb in cbs:
            cb.on_epoch_begin(epoch)
        means = _Means()
        bar = _progress(verbose, steps, f"Epoch {epoch + 1}/{epochs}")
        for _ in range(steps):
            xb, yb = next(stream)
            loss, t, pred = train_step(model, xb, yb)
            if not math.isfinite(loss):
                raise InputError(f"fit: the loss became {loss} at epoch {epoch + 1}; lower the learning rate "
                                 "or check the inputs' scale (raw pixels need a Rescaling(1/255) layer)")
            means.add(len(xb), _batch_logs(metrics, loss, t, pred))
            if bar is not None:
                bar.set_postfix(_fmt(means.result()), refresh=False)
                bar.update()
        logs = means.result()
        if val is not None:
            logs.update(_evaluate_batches(model, val, metrics).result("val_"))
        if bar is not None:
            bar.set_postfix(_fmt(logs))
            bar.close()
        elif verbose == 2:
            print(f"Epoch {epoch + 1}/{epochs} - " + " - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        for cb in cbs:
            cb.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    for cb in cbs:
        cb.on_train_end()
    return history


def _validation_pair(data):
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise InputError("validation_data must be a pair (x_val, y_val) or a batch source")
    return data


def _cycle(source):
    """Batches forever, one reshuffled epoch of ``source`` after another (steps_per_epoch may cut across)."""
    while True:
        yield from source


def _progress(verbose, total, desc):
    if verbose != 1:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="batch", leave=True, dynamic_ncols=True)


def _fmt(logs):
    return {k: f"{v:.4f}" for k, v in logs.items()}


def _evaluate_batches(model, source, metrics):
    means = _Means()
    for xb, yb in source:
        pred = model.predict(xb)
        t = model.loss.targets(np.asarray(yb), pred)
        means.add(len(xb), _batch_logs(metrics, model.loss.from_targets(t, pred, need_grad=False)[0], t, pred))
    return means


def evaluate(model, x=None, y=None, batch_size=None, verbose=0, return_dict=False):
    """Loss and metrics on (x, y) in inference mode: a float (no metrics), [loss, metric, ...], or a dict."""
    _compiled(model)
    source = _batches(x, y, batch_size, False, "evaluate")
    metrics = _metrics(model, _check(model, source, "evaluate"))
    logs = _evaluate_batches(model, source, metrics).result()
    if verbose:
        print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
    if return_dict:
        return logs
    return logs["loss"] if not metrics else list(logs.values())
