"""Keras's losses, each as a value and its gradient with respect to the predictions, side by side.

Every loss here is computed the way Keras 3 (TensorFlow backend) computes it:

    per_sample[n] = loss of one sample        (BCE and MSE average over the last axis, CE sums over it)
    loss = mean over samples                  (Keras's default reduction "sum_over_batch_size")

and ``value_and_grad(y_true, y_pred) -> (loss, dloss/dy_pred)`` returns the cotangent that the fit loop
seeds the backward pass with. Probabilities are clipped to ``[EPSILON, 1 - EPSILON]`` before any log, as
Keras does; where the clip is active the gradient is zero (the clip's own derivative), exactly as in
TensorFlow. With ``from_logits=True`` the sigmoid/softmax is folded into the loss, which is both exact and
numerically stable: d(softmax cross-entropy)/dlogits = softmax(logits) - y_true.

One difference from Keras on TensorFlow: inside ``fit``, when the model's output comes straight from a
softmax/sigmoid op, TensorFlow quietly takes the loss from that op's logits. npcnn computes what is written,
from the probabilities with the clip; the two agree except where a probability is within 1e-7 of 0 or 1
(there npcnn's gradient is zero, TensorFlow's tiny).
"""
import numpy as np

from .. import activations
from ..errors import InputError

EPSILON = 1e-7
"""Keras's ``backend.epsilon()``: the clip that keeps log() finite."""


class Loss:
    """Base class: ``loss(y_true, y_pred) -> float``; ``value_and_grad`` adds d loss / d y_pred."""

    name = "loss"
    from_logits = False

    def __init__(self, from_logits=False, name=None):
        self.from_logits = bool(from_logits)
        self.name = name or self.name

    def __call__(self, y_true, y_pred):
        return self.value_and_grad(y_true, y_pred, need_grad=False)[0]

    def value_and_grad(self, y_true, y_pred, need_grad=True):
        """y_true as :meth:`targets` wants it, y_pred (N, ..., C) -> (mean loss, dloss/dy_pred or None)."""
        y_pred = np.asarray(y_pred)
        return self.from_targets(self.targets(np.asarray(y_true), y_pred), y_pred, need_grad)

    def from_targets(self, t, y_pred, need_grad=True):
        """:meth:`value_and_grad` for targets already through :meth:`targets` (the fit loop shares them
        with the metrics)."""
        per_sample, dper = self.per_sample(t, y_pred, need_grad)
        count = per_sample.size
        value = float(per_sample.sum(dtype=np.float64) / max(count, 1))
        grad = None if dper is None else (dper / count).astype(y_pred.dtype, copy=False)
        return value, grad

    def targets(self, y_true, y_pred):
        """Labels in the shape the loss needs; a (N,) label vector for a (N, 1) output is accepted."""
        if y_true.ndim == y_pred.ndim - 1:
            y_true = y_true[..., None]
        if y_true.shape != y_pred.shape:
            raise InputError(f"{self.name}: labels of shape {y_true.shape} do not match the model output "
                             f"of shape {y_pred.shape}{self.shape_hint(y_pred)}")
        return y_true.astype(y_pred.dtype, copy=False)

    def shape_hint(self, y_pred):
        return ""

    def per_sample(self, t, p, need_grad):
        """(per-sample losses, d(sum of them)/dp or None)."""
        raise NotImplementedError

    def get_config(self):
        return {"name": self.name, "from_logits": self.from_logits}


def _clipped(p):
    """p clipped to [EPSILON, 1 - EPSILON], and where the clip let p through (where the gradient flows)."""
    lo, hi = np.asarray(EPSILON, p.dtype), np.asarray(1 - EPSILON, p.dtype)
    return np.clip(p, lo, hi), (p >= lo) & (p <= hi)


class BinaryCrossentropy(Loss):
    """Independent yes/no per output unit.

    value:  probs:  l = -mean_last[ y log(pc) + (1 - y) log(1 - pc) ],  pc = clip(p)
            logits: l = mean_last[ max(z, 0) - z y + log(1 + exp(-|z|)) ]     (TF's stable form)
    grad:   probs:  dl/dp = (-(y / pc) + (1 - y) / (1 - pc)) / C   where unclipped, else 0
            logits: dl/dz = (sigmoid(z) - y) / C                              (C = last-axis size)
    """

    name = "binary_crossentropy"

    def shape_hint(self, y_pred):
        if y_pred.shape[-1] > 1:
            return (f"; binary cross-entropy needs one output unit per yes/no label, and this model has "
                    f"{y_pred.shape[-1]} units: for {y_pred.shape[-1]} exclusive classes use "
                    "sparse_categorical_crossentropy (integer labels) or categorical_crossentropy (one-hot)")
        return ""

    def targets(self, y_true, y_pred):
        t = super().targets(y_true, y_pred)
        if t.size and (t.min() < 0 or t.max() > 1):
            raise InputError(f"{self.name}: labels must lie in [0, 1], got values from {t.min()} to {t.max()}")
        return t

    def per_sample(self, t, p, need_grad):
        c = p.shape[-1]
        if self.from_logits:
            per = np.maximum(p, 0) - p * t + np.log1p(np.exp(-np.abs(p)))
            grad = (activations.get("sigmoid").forward(p) - t) / c if need_grad else None
        else:
            pc, inside = _clipped(p)
            per = -(t * np.log(pc) + (1 - t) * np.log(1 - pc))
            grad = np.where(inside, (-t / pc + (1 - t) / (1 - pc)) / c, 0) if need_grad else None
        return per.mean(axis=-1), grad


class CategoricalCrossentropy(Loss):
    """One of C exclusive classes, one-hot (or soft) labels y (N, C).

    value:  probs:  q = p / sum_last(p); l = -sum_last(y log(clip(q)))        (Keras renormalises p)
            logits: l = -sum_last(y log_softmax(z))
    grad:   probs:  g_q = -y / clip(q) (0 where clipped); dl/dp = (g_q - sum_last(g_q q)) / sum_last(p)
            logits: dl/dz = softmax(z) sum_last(y) - y
    """

    name = "categorical_crossentropy"

    def per_sample(self, t, p, need_grad):
        if self.from_logits:
            return _softmax_xent_logits(t, p, need_grad)
        s = p.sum(axis=-1, keepdims=True)
        q = p / s
        qc, inside = _clipped(q)
        per = -(t * np.log(qc)).sum(axis=-1)
        if not need_grad:
            return per, None
        g_q = np.where(inside, -t / qc, 0)
        return per, (g_q - (g_q * q).sum(axis=-1, keepdims=True)) / s  # the quotient rule of q = p / s


def _softmax_xent_logits(t, z, need_grad):
    """Cross-entropy of softmax(z) against labels t (N, C): the per-sample loss and d/dz."""
    shifted = z - z.max(axis=-1, keepdims=True)
    log_sum = np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    log_probs = shifted - log_sum
    per = -(t * log_probs).sum(axis=-1)
    grad = np.exp(log_probs) * t.sum(axis=-1, keepdims=True) - t if need_grad else None
    return per, grad


class SparseCategoricalCrossentropy(Loss):
    """One of C exclusive classes, integer labels y (N,) or (N, 1) in [0, C).

    value:  the categorical cross-entropy against one_hot(y). With probabilities Keras clips p and takes
            log(clip(p)) as logits, so l = -log(clip(p)_y / sum_last(clip(p)))
    grad:   logits: dl/dz = softmax(z) - one_hot(y)
            probs:  dl/dp = (softmax(log pc) - one_hot(y)) / pc  where unclipped, else 0
    """

    name = "sparse_categorical_crossentropy"

    def targets(self, y_true, y_pred):
        n_classes = y_pred.shape[-1]
        if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
            y_true = y_true[..., 0]
        if y_true.shape != y_pred.shape[:-1]:
            hint = (" (these look one-hot: use categorical_crossentropy)"
                    if y_true.shape == y_pred.shape else "")
            raise InputError(f"{self.name}: expects integer labels of shape {y_pred.shape[:-1]} for a model "
                             f"output of shape {y_pred.shape}, got labels of shape {y_true.shape}{hint}")
        if y_true.size:
            if y_true.dtype.kind not in "biuf" or not np.all(np.equal(np.mod(y_true, 1), 0)):
                raise InputError(f"{self.name}: labels must be whole class numbers, got dtype {y_true.dtype} "
                                 f"with values such as {y_true.ravel()[:3]}")
            if y_true.min() < 0 or y_true.max() >= n_classes:
                raise InputError(f"{self.name}: labels must lie in [0, {n_classes - 1}] for a model with "
                                 f"{n_classes} outputs, got values from {y_true.min()} to {y_true.max()}")
        return np.eye(n_classes, dtype=y_pred.dtype)[y_true.astype(np.int64)]

    def per_sample(self, t, p, need_grad):
        if self.from_logits:
            return _softmax_xent_logits(t, p, need_grad)
        pc, inside = _clipped(p)
        per, g_log = _softmax_xent_logits(t, np.log(pc), need_grad)
        return per, (np.where(inside, g_log / pc, 0) if need_grad else None)


class MeanSquaredError(Loss):
    """value: l = mean_last((p - y)^2);  grad: dl/dp = 2 (p - y) / C."""

    name = "mean_squared_error"

    def per_sample(self, t, p, need_grad):
        diff = p - t
        return (diff * diff).mean(axis=-1), (2 * diff / p.shape[-1] if need_grad else None)


ALIASES = {
    "binary_crossentropy": BinaryCrossentropy, "bce": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy, "cce": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
}


def get(loss):
    """A :class:`Loss` from a Keras name ("binary_crossentropy", "mse", ...) or a Loss instance."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, type) and issubclass(loss, Loss):
        return loss()
    key = str(loss).lower()
    if key not in ALIASES:
        raise InputError(f"unknown loss {loss!r}; known: {', '.join(sorted(ALIASES))} (or a npcnn.train Loss)")
    return ALIASES[key]()
