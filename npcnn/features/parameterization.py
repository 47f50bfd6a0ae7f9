"""How the optimised image is written down (Olah et al. 2017, "Feature Visualization", and Lucid).

The optimiser never changes pixels directly; it changes parameters ``theta`` and the image is

    r  = basis(theta)          pixel: r = theta;   fourier: r = irfft2(scale * spectrum)   (N, H, W, C)
    r' = r @ M.T               colour decorrelation (3 channels only; M: sqrt of the colour covariance)
    u  = sigmoid(r')           the image in 0..1, always valid

Each map is linear or elementwise, so the gradient goes back through its adjoint::

    dr' = du * u * (1 - u);    dr = dr' @ M;    pixel: dtheta = dr;
    fourier: dspectrum = scale * w * rfft2(dr)   (w = 2 for the half-spectrum columns that stand for two
                                                  conjugate frequencies, 1 for the DC and Nyquist columns)

The Fourier basis scales frequency f by 1/f: equal steps in theta change low frequencies more, so
gradient ascent stops feeding the high-frequency patterns that plain pixel ascent produces. Decorrelation
lets the optimiser move along the natural directions of colour (brightness, then two opponent axes).
"""
import numpy as np

from ..errors import InputError

# sqrt of the ImageNet RGB covariance (its SVD factor): columns = the luminance and two opponent colour
# axes; the values are the ones published with Lucid (Olah et al. 2017).
COLOR_SQRT_COVARIANCE = np.array([[0.26, 0.09, 0.02],
                                  [0.27, 0.00, -0.05],
                                  [0.27, -0.09, 0.03]])
_COLOR = COLOR_SQRT_COVARIANCE / np.linalg.norm(COLOR_SQRT_COVARIANCE, axis=0).max()


def _sigmoid(r):
    return 0.5 * (1.0 + np.tanh(0.5 * r))  # stable for large |r|


class ImageParam:
    """An image of shape (N, H, W, C) written with ``kind`` "pixel" or "fourier" parameters.

    init(rng) -> theta;  image(theta) -> (u in 0..1, vjp: du -> dtheta);  from_image(u) -> theta.
    """

    def __init__(self, shape, kind="pixel", decorrelate=True, sd=None, decay_power=1.0):
        if kind not in ("pixel", "fourier"):
            raise InputError(f"param must be 'pixel' or 'fourier', got {kind!r}")
        self.shape, self.kind = tuple(shape), kind
        self.decorrelate = bool(decorrelate) and self.shape[-1] == 3
        self.sd = (0.5 if kind == "pixel" else 0.02) if sd is None else float(sd)
        _, h, w, _ = self.shape
        if kind == "fourier":
            fy = np.fft.fftfreq(h)[:, None]
            fx = np.fft.rfftfreq(w)[None, :]
            freq = np.sqrt(fy * fy + fx * fx)
            # 1/f, capped at the lowest frequency: with norm="ortho" a unit of theta at the DC term moves
            # every pixel by max(h, w) / sqrt(h * w) ~ 1, like a unit of theta in the pixel basis
            self.scale = (1.0 / np.maximum(freq, 1.0 / max(h, w)) ** decay_power)[None, :, :, None]
            both = np.full(fx.shape[1], 2.0)  # rfft columns that stand for +f and -f
            both[0] = 1.0
            if w % 2 == 0:
                both[-1] = 1.0
            self.both = both[None, None, :, None]

    def init(self, rng):
        """Random parameters: white noise in pixel space, or noise with a 1/f spectrum (Fourier)."""
        if self.kind == "pixel":
            return rng.normal(0.0, self.sd, self.shape)
        n, h, w, c = self.shape
        spec_shape = (n, h, w // 2 + 1, c, 2)
        return rng.normal(0.0, self.sd, spec_shape)

    def _basis(self, theta):
        if self.kind == "pixel":
            return theta
        spec = (theta[..., 0] + 1j * theta[..., 1]) * self.scale
        return np.fft.irfft2(spec, s=self.shape[1:3], axes=(1, 2), norm="ortho")

    def _basis_adjoint(self, dr):
        if self.kind == "pixel":
            return dr
        ds = np.fft.rfft2(dr, axes=(1, 2), norm="ortho") * self.scale * self.both
        return np.stack([ds.real, ds.imag], axis=-1)

    def image(self, theta):
        """theta -> (u (N, H, W, C) in 0..1, vjp) with vjp(du) = dtheta."""
        r = self._basis(theta)
        rc = r @ _COLOR.T if self.decorrelate else r
        u = _sigmoid(rc)

        def vjp(du):
            drc = du * u * (1.0 - u)
            dr = drc @ _COLOR if self.decorrelate else drc
            return self._basis_adjoint(dr)

        return u, vjp

    def from_image(self, u):
        """The parameters of an image u in 0..1 (inverse of :meth:`image`, up to clipping at 0 and 1)."""
        u = np.clip(np.asarray(u, dtype=np.float64), 1e-4, 1 - 1e-4)
        rc = np.log(u) - np.log1p(-u)
        r = rc @ np.linalg.inv(_COLOR.T) if self.decorrelate else rc
        if self.kind == "pixel":
            return r
        spec = np.fft.rfft2(r, axes=(1, 2), norm="ortho") / self.scale
        return np.stack([spec.real, spec.imag], axis=-1)
