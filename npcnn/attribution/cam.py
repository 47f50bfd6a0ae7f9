"""The class activation map family: which positions of a feature map A (N, h, w, K) matter for the score.

Every method is ``method(model, x, target=None, layer=None, upsample=True) -> (N, H, W)``: the map at the
input size (bilinear, as tf.image.resize), or at the layer's size (N, h, w) with ``upsample=False``.
``layer`` is any key of :meth:`npcnn.Model.layer_keys` (nested: "inner/conv"); by default the last layer
with a spatial (rank-4) output. Maps are ReLU-ed but not normalised (the plots scale them).

With G = d score / dA (one forward, one backward through :meth:`npcnn.Model.trace`):

  Grad-CAM     relu(sum_k w_k A_k),  w_k = mean_ij G_ijk                       (Selvaraju et al. 2017)
  Grad-CAM++   w_k = sum_ij a_ijk relu(G_ijk),  a = G² / (2 G² + sum_ij A_k G³)  (Chattopadhyay et al. 2018)
  XGrad-CAM    w_k = sum_ij G_ijk A_ijk / sum_ij A_ijk                          (Fu et al. 2020)
  HiResCAM     relu(sum_k G_k * A_k), elementwise                               (Draelos & Carin 2020)
  Layer-CAM    relu(sum_k relu(G_k) * A_k)                                      (Jiang et al. 2021)
  Score-CAM    w = softmax_k(score(x * norm(up(A_k))))    no gradient          (Wang et al. 2020)
  Ablation-CAM w_k = (score - score with A_k = 0) / score                      (Desai & Ramaswamy 2020)
  Eigen-CAM    projection of A on its first principal component                (Muhammad & Yeasin 2020)
  Guided Grad-CAM  guided backprop * upsampled Grad-CAM                         (N, H, W, C)
"""
import numpy as np

from ..errors import InputError
from . import _common, targets
from .rules import guided_backprop

EPS = 1e-7


def default_layer(model, trace):
    """The key of the last layer whose output is spatial (N, h, w, K)."""
    for key in reversed(model.layer_keys()):
        if np.ndim(trace[key]) == 4:
            return key
    raise InputError(f"model {model.name!r} has no layer with a spatial (N, h, w, channels) output; "
                     "pass layer= explicitly")


def _forward(model, x, target, layer, need_grad=True):
    """One forward: (trace, layer key, A (N, h, w, K), G = d score / dA or None, cotangent)."""
    x = _common.as_batch(model, x)
    tr = model.trace(x)
    cot = targets.cotangent(target, targets.single_output(model, tr.outputs))
    key = default_layer(model, tr) if layer is None else layer
    a = tr[key]
    if np.ndim(a) != 4:
        raise InputError(f"layer {key!r} has output shape {np.shape(a)}; CAM methods need a spatial layer "
                         "(N, h, w, channels)")
    g = tr.gradient(cotangent=cot, wrt=key) if need_grad else None
    return tr, key, a.astype(np.float64), None if g is None else g.astype(np.float64), cot


def _finish(cam, model, x, upsample):
    """relu, then bilinear resize of (N, h, w) to the input's (H, W) when ``upsample``."""
    cam = np.maximum(cam, 0)
    cam = _common.resize(cam, np.shape(x)[1:3]) if upsample else cam
    return cam.astype(model.dtype)


def _weighted(a, w):
    return np.einsum("nhwk,nk->nhw", a, w)


# -------------------------------------------------------------- gradient-weighted maps: (A, G) -> (N, h, w)
def _gradcam(a, g):
    return _weighted(a, g.mean(axis=(1, 2)))


def _gradcampp(a, g):
    g2, g3 = g ** 2, g ** 3
    denom = 2 * g2 + a.sum(axis=(1, 2), keepdims=True) * g3
    alpha = g2 / np.where(denom != 0, denom, 1)
    return _weighted(a, (alpha * np.maximum(g, 0)).sum(axis=(1, 2)))


def _xgradcam(a, g):
    return _weighted(a, (g * a).sum(axis=(1, 2)) / (a.sum(axis=(1, 2)) + EPS))


def _hirescam(a, g):
    return (g * a).sum(axis=-1)


def _layercam(a, g):
    return (np.maximum(g, 0) * a).sum(axis=-1)


def _gradient_cam(combine):
    def method(model, x, target=None, layer=None, upsample=True):
        _, _, a, g, _ = _forward(model, x, target, layer)
        return _finish(combine(a, g), model, x, upsample)
    method.__doc__ = (f"{combine.__name__[1:]}: x (N, H, W, C) -> (N, H, W) map (upsample=False: (N, h, w) at "
                      "the layer's size). See the module docstring for the formula.")
    return method


gradcam = _gradient_cam(_gradcam)
gradcam_plus_plus = _gradient_cam(_gradcampp)
xgradcam = _gradient_cam(_xgradcam)
hirescam = _gradient_cam(_hirescam)
layercam = _gradient_cam(_layercam)
for _f, _name in [(gradcam, "gradcam"), (gradcam_plus_plus, "gradcam_plus_plus"), (xgradcam, "xgradcam"),
                  (hirescam, "hirescam"), (layercam, "layercam")]:
    _f.__name__ = _f.__qualname__ = _name


def eigencam(model, x, target=None, layer=None, upsample=True):
    """Eigen-CAM: A (h*w, K) centred, projected on its first right singular vector; class independent
    (``target`` is ignored). The sign is chosen so the map correlates positively with sum_k A_k."""
    _, _, a, _, _ = _forward(model, x, target, layer, need_grad=False)
    cams = []
    for act in a:
        m = act.reshape(-1, act.shape[-1])
        centred = m - m.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        proj = centred @ vt[0]
        if np.dot(proj, m.sum(axis=1) - m.sum(axis=1).mean()) < 0:
            proj = -proj
        cams.append(proj.reshape(act.shape[:2]))
    return _finish(np.stack(cams), model, x, upsample)


def scorecam(model, x, target=None, layer=None, upsample=True, batch_size=32, progress=True):
    """Score-CAM: each channel, upsampled and min-max scaled to [0, 1], masks the input; the masked
    input's score, softmax-ed over channels, weighs the channel. K forward passes per image, batched."""
    x = _common.as_batch(model, x)
    _, _, a, _, cot = _forward(model, x, target, layer, need_grad=False)
    k = a.shape[-1]
    image, channel = np.repeat(np.arange(len(x)), k), np.tile(np.arange(k), len(x))
    s = np.empty(len(image))
    for sl in _common.chunks(len(image), batch_size, progress, "score-cam"):
        i = image[sl]
        masks = _common.resize(a[i, :, :, channel[sl]], x.shape[1:3])          # (B, H, W), one chunk at a time
        lo, hi = masks.min(axis=(1, 2), keepdims=True), masks.max(axis=(1, 2), keepdims=True)
        masks = np.where(hi > lo, (masks - lo) / np.where(hi > lo, hi - lo, 1), 0)
        masked = (x[i] * masks[..., None]).astype(x.dtype)
        s[sl] = targets.score(cot[i], targets.single_output(model, model.predict(masked)))
    s = s.reshape(len(x), k)
    w = np.exp(s - s.max(axis=1, keepdims=True))
    return _finish(_weighted(a, w / w.sum(axis=1, keepdims=True)), model, x, upsample)


def forward_from(model, trace, key, image, replacement):
    """The model output when the activation ``key`` of image ``image`` is replaced by each row of
    ``replacement`` (B, h, w, K): runs only the steps after ``key``'s layer, reusing the trace for the rest
    (skip connections included). Returns the output (B, ...)."""
    start = model._producer[model._tensor(key)]
    batch = len(replacement)
    values = {model._tensor(key): replacement}

    def value(t):
        if t not in values:
            values[t] = np.repeat(trace.values[t][image:image + 1], batch, axis=0)
        return values[t]

    for step in model._steps[start + 1:]:
        args = [value(t) for t in step.inputs]
        values[step.output], _ = step.layer.apply(args if step.layer.multi_input else args[0])
    return targets.single_output(model, [value(t) for t in model._output_ids])


def ablationcam(model, x, target=None, layer=None, upsample=True, batch_size=32, progress=True):
    """Ablation-CAM: w_k = (score - score with channel k of A zeroed) / score. K partial forward passes
    per image (from the layer on), batched."""
    tr, key, a, _, cot = _forward(model, x, target, layer, need_grad=False)
    base = targets.score(cot, targets.single_output(model, tr.outputs))
    k = a.shape[-1]
    w = np.empty((len(a), k))
    act = tr[key]
    for n in range(len(a)):
        for sl in _common.chunks(k, batch_size, progress, f"ablation-cam image {n}"):
            channels = np.arange(k)[sl]
            ablated = np.repeat(act[n:n + 1], len(channels), axis=0)
            ablated[np.arange(len(channels)), :, :, channels] = 0
            out = forward_from(model, tr, key, n, ablated)
            w[n, sl] = base[n] - targets.score(np.repeat(cot[n:n + 1], len(channels), axis=0), out)
    w /= np.where(base != 0, base, EPS)[:, None]
    return _finish(_weighted(a, w), model, x, upsample)


def guided_gradcam(model, x, target=None, layer=None, batch_size=None):
    """Guided Grad-CAM: guided backprop (N, H, W, C) times the upsampled Grad-CAM map: (N, H, W, C)."""
    cam = gradcam(model, x, target, layer, upsample=True)
    gb = guided_backprop(model, x, target, batch_size=batch_size)
    return gb * cam[..., None].astype(gb.dtype)
