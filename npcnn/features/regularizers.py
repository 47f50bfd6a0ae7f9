"""Regularisers for activation maximization, each a separate piece acting on the image u in 0..1.

Penalties are subtracted from the objective; each returns its value per image and its gradient::

    l2       w * mean(u - 0.5)^2                      grad  2 w (u - 0.5) / P
    l1       w * mean|u - 0.5|                        grad  w sign(u - 0.5) / P
    tv       w * mean (dy^2 + dx^2)^(beta/2)          (total variation, Mahendran & Vedaldi 2015)
             dy = u[i+1, j] - u[i, j], dx = u[i, j+1] - u[i, j]; the gradient scatters back through both

(P = pixels x channels, so weights do not depend on the image size; 0.5 is mid-grey, the prior.)
``blur_every`` is not a penalty but an operation on the image every few steps (Yosinski et al. 2015).
"""
import numpy as np

from ..errors import InputError


class Penalty:
    """value, grad = penalty(u): value (N,), grad like u."""

    def __init__(self, weight=1.0):
        self.weight = float(weight)

    def penalty(self, u):
        raise NotImplementedError

    def operate(self, u, step):
        return None  # penalties do not change the image directly


class l2(Penalty):
    def penalty(self, u):
        d = u - 0.5
        per = d[0].size
        return self.weight * (d * d).reshape(len(u), -1).sum(1) / per, 2 * self.weight * d / per

    def __repr__(self):
        return f"l2({self.weight:g})"


class l1(Penalty):
    def penalty(self, u):
        d = u - 0.5
        per = d[0].size
        return self.weight * np.abs(d).reshape(len(u), -1).sum(1) / per, self.weight * np.sign(d) / per

    def __repr__(self):
        return f"l1({self.weight:g})"


class tv(Penalty):
    """Total variation with exponent ``beta`` (2: squared differences; 1: the classic TV)."""

    def __init__(self, weight=1.0, beta=2.0):
        super().__init__(weight)
        self.beta = float(beta)

    def penalty(self, u):
        dy = u[:, 1:, :-1] - u[:, :-1, :-1]
        dx = u[:, :-1, 1:] - u[:, :-1, :-1]
        s = dy * dy + dx * dx + 1e-8
        per = u[0].size
        value = self.weight * (s ** (self.beta / 2)).reshape(len(u), -1).sum(1) / per
        ds = self.weight * (self.beta / 2) * s ** (self.beta / 2 - 1) / per
        gy, gx = 2 * ds * dy, 2 * ds * dx
        grad = np.zeros_like(u)
        grad[:, 1:, :-1] += gy
        grad[:, :-1, 1:] += gx
        grad[:, :-1, :-1] -= gy + gx
        return value, grad

    def __repr__(self):
        return f"tv({self.weight:g}, beta={self.beta:g})"


def gaussian_kernel(sigma):
    """A 1-D normalised Gaussian, radius ceil(3 sigma)."""
    radius = max(1, int(np.ceil(3 * sigma)))
    t = np.arange(-radius, radius + 1)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(u, sigma):
    """Separable Gaussian blur of (N, H, W, C) images, edges extended (the image keeps its size)."""
    if sigma <= 0:
        return u
    k = gaussian_kernel(sigma)
    r = len(k) // 2
    out = u
    for axis in (1, 2):
        pad = [(0, 0)] * 4
        pad[axis] = (r, r)
        p = np.pad(out, pad, mode="edge")
        n = out.shape[axis]
        out = sum(kk * np.take(p, np.arange(i, i + n), axis=axis) for i, kk in enumerate(k))
    return out


class blur_every(Penalty):
    """Every ``every`` steps, blur the image with a Gaussian of ``sigma`` pixels (Yosinski 2015)."""

    def __init__(self, every=4, sigma=0.5):
        super().__init__(0.0)
        if every < 1:
            raise InputError(f"blur_every needs every >= 1, got {every}")
        self.every, self.sigma = int(every), float(sigma)

    def penalty(self, u):
        return np.zeros(len(u)), 0.0

    def operate(self, u, step):
        return gaussian_blur(u, self.sigma) if (step + 1) % self.every == 0 else None

    def __repr__(self):
        return f"blur_every({self.every}, sigma={self.sigma:g})"
