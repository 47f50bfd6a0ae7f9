"""Keras 3's optimisers: the same default hyper-parameters and the same update formulas, step for step.

An optimiser keeps its state (momenta, moving averages) per weight, keyed by the weight's name in the
model ("conv2d/kernel"), and updates the arrays *in place*:

    opt.apply(grads, weights)       grads, weights: {"layer/kernel": array}; one step for every weight

Update rules (g the gradient, w the weight, lr the learning rate, t = 1, 2, ... the step number):

    SGD        w -= lr g                                    (momentum = 0)
               m = momentum m - lr g;  w += m               (momentum > 0)
               m = momentum m - lr g;  w += momentum m - lr g        (nesterov=True)
    Adam       m += (g - m)(1 - beta_1);  v += (g^2 - v)(1 - beta_2)
               w -= lr sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon)
               (Keras folds the bias corrections into the step size, so epsilon is added to the
               *uncorrected* sqrt(v): a slightly different number than the Adam paper's formula)
    RMSprop    v = rho v + (1 - rho) g^2;  w -= lr g / sqrt(v + epsilon)   (epsilon inside the root)
               centered: a = rho a + (1 - rho) g;  w -= lr g / sqrt(v - a^2 + epsilon)
               momentum > 0: m = momentum m + lr g / sqrt(...);  w -= m
"""
import numpy as np

from ..errors import InputError


class Optimizer:
    """Base class: the learning rate, the step counter and per-weight state."""

    def __init__(self, learning_rate=0.001, name=None):
        self.learning_rate = float(learning_rate)
        self.iterations = 0
        self.name = name or type(self).__name__.lower()
        self._state = {}

    def slot(self, key, slot, like):
        """Zeros like ``like`` the first time a state array ``slot`` of weight ``key`` is asked for."""
        per_weight = self._state.setdefault(key, {})
        if slot not in per_weight:
            per_weight[slot] = np.zeros_like(like)
        return per_weight[slot]

    def apply(self, grads, weights):
        """One step: every array in ``weights`` {key: array} updated in place from ``grads`` {key: array}."""
        self.iterations += 1
        for key, w in weights.items():
            g = np.asarray(grads[key], dtype=w.dtype)
            self.update(key, w, g, w.dtype.type(self.learning_rate))

    def update(self, key, w, g, lr):
        """Update the array ``w`` in place from its gradient ``g``."""
        raise NotImplementedError

    def get_config(self):
        return {"name": self.name, "learning_rate": self.learning_rate}


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum. Keras defaults: lr 0.01."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, name=None):
        super().__init__(learning_rate, name)
        if not 0 <= momentum <= 1:
            raise InputError(f"SGD momentum must be in [0, 1], got {momentum}")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def update(self, key, w, g, lr):
        if self.momentum == 0:
            w -= lr * g
            return
        mu = w.dtype.type(self.momentum)
        m = self.slot(key, "momentum", w)
        m *= mu
        m -= lr * g
        w += mu * m - lr * g if self.nesterov else m

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam (Kingma & Ba 2014) as Keras writes it. Keras defaults: lr 0.001, 0.9, 0.999, epsilon 1e-7."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, name=None):
        super().__init__(learning_rate, name)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def update(self, key, w, g, lr):
        f = w.dtype.type
        t = f(self.iterations)
        alpha = lr * np.sqrt(1 - f(self.beta_2) ** t) / (1 - f(self.beta_1) ** t)
        m, v = self.slot(key, "m", w), self.slot(key, "v", w)
        m += (g - m) * f(1 - self.beta_1)
        v += (g * g - v) * f(1 - self.beta_2)
        w -= m * alpha / (np.sqrt(v) + f(self.epsilon))

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}


class RMSprop(Optimizer):
    """RMSprop (Hinton's lecture 6e) as Keras writes it. Keras defaults: lr 0.001, rho 0.9, epsilon 1e-7."""

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, name=None):
        super().__init__(learning_rate, name)
        self.rho, self.momentum, self.epsilon, self.centered = float(rho), float(momentum), float(epsilon), centered

    def update(self, key, w, g, lr):
        f = w.dtype.type
        rho = f(self.rho)
        v = self.slot(key, "velocity", w)
        v[...] = rho * v + (1 - rho) * g * g
        denominator = v + f(self.epsilon)
        if self.centered:
            a = self.slot(key, "average_gradient", w)
            a[...] = rho * a + (1 - rho) * g
            denominator -= a * a
        increment = lr * g / np.sqrt(denominator)
        if self.momentum > 0:
            m = self.slot(key, "momentum", w)
            m[...] = f(self.momentum) * m + increment
            increment = m
        w -= increment

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon,
                "centered": self.centered}


ALIASES = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop}


def get(optimizer):
    """An :class:`Optimizer` from a Keras name ("adam", "sgd", "rmsprop") or an Optimizer instance."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    key = str(optimizer).lower()
    if key not in ALIASES:
        raise InputError(f"unknown optimizer {optimizer!r}; known: {', '.join(sorted(ALIASES))} "
                         "(or a npcnn.train Optimizer)")
    return ALIASES[key]()
