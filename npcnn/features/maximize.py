"""Activation maximization: gradient ascent on the input image (Erhan et al. 2009; Graetz 2019; Olah
et al. 2017). One step is ONE forward and ONE backward pass through the model::

    u_small = param.image(theta)               the image in 0..1 at the octave's size (parameterization.py)
    u       = resize(u_small)                  bilinear to the model's input size: u = A_h u_small A_w^T
    x       = lo + (hi - lo) * u               into the model's input range
    x_t     = transforms(x)                    random jitter / scale / rotation (transforms.py)
    value, seeds = objective(model.trace(x_t))
    dx_t    = trace.backward(seeds)            then back through every adjoint in reverse:
    du_small = A_h^T (transform adjoints(dx_t) * (hi - lo)) A_w  -  d penalties / du_small
    theta  += optimiser(param vjp(du_small))   Adam or normalised gradient ascent

Octaves (Graetz 2019): optimise a small image first, upscale it (bilinear) and blur it, continue; the
coarse structure comes first and the detail after. Any model works, as the small image is resized to
the model's input size before the forward pass.
"""
import numpy as np

from ..errors import InputError
from ..initializers import rng as shared_rng
from ..layers.reshaping import bilinear_matrix
from .objectives import Objective, trace_for
from .parameterization import ImageParam
from .regularizers import Penalty, gaussian_blur
from .transforms import standard_transforms


class Adam:
    """Adam (Kingma & Ba 2015) for ascent: m, v running moments; theta += lr * m_hat / (sqrt(v_hat) + eps)."""

    def __init__(self, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr, self.b1, self.b2, self.eps = lr, beta1, beta2, eps
        self.m = self.v = None
        self.t = 0

    def step(self, theta, g):
        if self.m is None:
            self.m, self.v = np.zeros_like(g), np.zeros_like(g)
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * g
        self.v = self.b2 * self.v + (1 - self.b2) * g * g
        m_hat = self.m / (1 - self.b1 ** self.t)
        v_hat = self.v / (1 - self.b2 ** self.t)
        return theta + self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


class NormalizedAscent:
    """Plain gradient ascent with each image's gradient scaled to unit RMS (Erhan 2009; Keras's
    classic filter-visualisation loop): theta += lr * g / rms(g)."""

    def __init__(self, lr):
        self.lr = lr

    def step(self, theta, g):
        axes = tuple(range(1, g.ndim))
        rms = np.sqrt((g * g).mean(axis=axes, keepdims=True)) + 1e-12
        return theta + self.lr * g / rms


OPTIMIZERS = {"adam": Adam, "normalized": NormalizedAscent}


def _input_hw(model, size):
    if len(model._inputs) != 1:
        raise InputError(f"model {model.name!r} has {len(model._inputs)} inputs; maximize needs one image input")
    shape = model._inputs[0].shape
    if len(shape) != 4:
        raise InputError(f"maximize needs an image input (N, H, W, C); model {model.name!r} takes {shape}")
    h, w, c = shape[1:]
    if size is not None:
        h, w = size
    if h is None or w is None or c is None:
        raise InputError(f"model {model.name!r} accepts any image size {shape}; pass size=(H, W)")
    return int(h), int(w), int(c)


class _Resize:
    """Bilinear resize (N, h, w, C) -> (N, H, W, C) as two matrices; adjoint: their transposes."""

    def __init__(self, small_hw, big_hw):
        self.same = tuple(small_hw) == tuple(big_hw)
        self.ah = bilinear_matrix(small_hw[0], big_hw[0], "float64")
        self.aw = bilinear_matrix(small_hw[1], big_hw[1], "float64")

    def __call__(self, u):
        return u if self.same else _sandwich(self.ah, u, self.aw)

    def adjoint(self, g):
        return g if self.same else _sandwich(self.ah.T, g, self.aw.T)


def _sandwich(a, u, b):
    """a @ u @ b.T over the spatial axes of u (N, h, w, C) -> (N, H, W, C), as two batched matmuls
    (a three-operand einsum here ran ~100x slower)."""
    return np.matmul(np.matmul(a, u.transpose(0, 3, 1, 2)), b.T).transpose(0, 2, 3, 1)


def octave_sizes(hw, octaves, scale):
    """Image sizes of the octaves, smallest first, the last one ``hw``: hw / scale**k (at least 8 pixels)."""
    return [tuple(max(8, int(round(s / scale ** k))) for s in hw) for k in range(octaves - 1, -1, -1)]


def maximize(model, objective, steps=256, seed=0, lr=0.05, optimizer="adam", param="pixel", decorrelate=True,
             transforms="standard", regularizers=(), octaves=1, octave_scale=1.4, octave_blur=0.5, batch=None,
             input_range=(0.0, 1.0), size=None, sd=None, progress=True, return_history=False):
    """An image that maximizes ``objective``: (N, H, W, C) in the model's input range ``input_range``.

    objective: from :mod:`npcnn.features.objectives` (channel, neuron, class_logit, ... and sums).
    steps: optimisation steps per octave; octaves: how many sizes (Graetz: optimise small, upscale by
    ``octave_scale``, blur by ``octave_blur`` pixels, continue); steps=0 returns the starting noise.
    optimizer: "adam" or "normalized" (gradient scaled to unit RMS per image); lr in parameter units.
    param: "pixel" or "fourier" (1/f-scaled spectrum, Lucid); decorrelate: colour decorrelation (RGB only).
    transforms: list of transforms (``jitter``, ``random_scale``, ``random_rotate``), "standard", or None.
    regularizers: penalties ``l1``, ``l2``, ``tv`` and image operations ``blur_every``.
    batch: number of images (default: what the objective asks for, else 1).
    input_range: (lo, hi) the model's input range, scalars or one per channel (fer: (-1, 1); VGG's
    "caffe" BGR input: (-mean_bgr, 255 - mean_bgr)).
    seed: makes the run reproducible (None: npcnn's shared generator, see npcnn.set_seed).
    return_history: also return the objective values (steps * octaves, N) seen during the run.
    """
    if not isinstance(objective, Objective):
        raise InputError(f"objective must be built with features.channel/neuron/class_logit/..., got "
                         f"{type(objective).__name__}")
    if optimizer not in OPTIMIZERS:
        raise InputError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
    h, w, c = _input_hw(model, size)
    n = batch or objective.batch or 1
    if objective.batch is not None and n != objective.batch:
        raise InputError(f"batch={batch} but the objective {objective!r} is for {objective.batch} images")
    lo, hi = (np.asarray(v, dtype=np.float64) for v in input_range)  # scalars or per channel (C,)
    if transforms == "standard":
        transforms = standard_transforms(max(1, min(h, w) // 16))
    transforms = [t() if isinstance(t, type) else t for t in (transforms or [])]  # [jitter, ...] as classes too
    regularizers = [r() if isinstance(r, type) else r for r in (regularizers or [])]
    operations = [r for r in regularizers if type(r).operate is not Penalty.operate]
    rng = np.random.default_rng(seed) if seed is not None else shared_rng()
    sizes = octave_sizes((h, w), max(1, int(octaves)), octave_scale)
    history = []

    from tqdm.auto import tqdm
    bar = tqdm(total=steps * len(sizes), desc=f"maximize {objective!r}"[:60], disable=not progress, leave=False)
    u_small, theta, pm = None, None, None
    for k, hw in enumerate(sizes):
        pm = ImageParam((n, *hw, c), param, decorrelate, sd)
        if u_small is None:
            theta = pm.init(rng)
        else:  # next octave: upscale the last image, blur it, and continue from its parameters
            theta = pm.from_image(gaussian_blur(_Resize(u_small.shape[1:3], hw)(u_small), octave_blur))
        resize = _Resize(hw, (h, w))
        opt = OPTIMIZERS[optimizer](lr)
        for i in range(steps):
            u_small, vjp = pm.image(theta)
            x = lo + (hi - lo) * resize(u_small)
            adjoints = []
            for t in transforms:
                x, adj = t(x, rng)
                adjoints.append(adj)
            tr = trace_for(model, objective, x.astype(model.dtype))
            values, seeds = objective(tr)
            g = tr.backward(seeds, want_inputs=True)[0][0].astype(np.float64)
            for adj in reversed(adjoints):
                g = adj(g)
            du = resize.adjoint(g * (hi - lo))
            for reg in regularizers:
                _, dpen = reg.penalty(u_small)
                du = du - dpen
            theta = opt.step(theta, vjp(du))
            for op in operations:  # e.g. blur every few steps: on the image after this step
                new = op.operate(pm.image(theta)[0], i)
                if new is not None:
                    theta = pm.from_image(new)
            history.append(np.asarray(values, dtype=np.float64))
            bar.update(1)
            if i % 16 == 0:
                bar.set_postfix(value=f"{float(np.mean(values)):.3g}")
        u_small, _ = pm.image(theta)
    bar.close()
    image = (lo + (hi - lo) * _Resize(u_small.shape[1:3], (h, w))(u_small)).astype(model.dtype)
    if return_history:
        return image, np.array(history).reshape(-1, n)
    return image
