"""Putting methods and figures together for a model and its images: what the CLI's ``explain``,
``report`` and ``demo`` show. Computation comes from :mod:`npcnn.features` and :mod:`npcnn.attribution`,
figures from :mod:`npcnn.plot`; this module only chooses, orders and captions them.
"""
import json
import os
import time
from dataclasses import dataclass, field

import numpy as np

from . import attribution, features, images
from .atomic import atomic_open
from .errors import InputError
from .plot import attribution as aplot
from .plot import features as fplot
from .report import Report, figure_png


def model_info(model_path):
    """Class names and preprocessing from a sidecar ``<model>.classes.json`` (a TF.js folder: classes.json)."""
    folder = model_path if os.path.isdir(model_path) else os.path.dirname(model_path)
    stem = os.path.splitext(os.path.normpath(model_path))[0]
    for candidate in (stem + ".classes.json", os.path.join(folder, "classes.json")):
        if os.path.isfile(candidate):
            try:
                with open(candidate) as f:
                    info = json.load(f)
            except (OSError, ValueError) as e:
                raise InputError(f"{candidate}: not a readable JSON file ({e})") from None
            return info if isinstance(info, dict) else {"classes": list(info)}
    return {}


def preprocess_mode(model, info, override=None):
    """How to scale pixels for this model: the user's choice, the sidecar's ``preprocess_mode``, "none" when
    the model starts with its own Rescaling layer (it expects 0..255), else "unit" (x / 255)."""
    if override:
        return override
    if info.get("preprocess_mode"):
        return info["preprocess_mode"]
    first = model._steps[0].layer if model._steps else None
    return "none" if type(first).__name__ in ("Rescaling", "Normalization") else "unit"


def _cam(fn):
    return lambda m, x, t, layer, progress: fn(m, x, target=t, layer=layer)


METHODS = {
    # name: (function(model, x, target, layer, progress) -> map, what it shows)
    "saliency": (lambda m, x, t, layer, p: attribution.saliency(m, x, target=t),
                 "|d score / d pixel|, the largest over colour channels (Simonyan et al. 2013)"),
    "input_x_gradient": (lambda m, x, t, layer, p: attribution.input_x_gradient(m, x, target=t),
                         "pixel value times its gradient: each pixel's first-order contribution"),
    "smoothgrad": (lambda m, x, t, layer, p: attribution.smoothgrad(m, x, target=t, samples=24, noise=0.15, seed=0,
                                                                     progress=p),
                   "gradients averaged over 24 noisy copies of the image (Smilkov et al. 2017)"),
    "integrated_gradients": (lambda m, x, t, layer, p: attribution.integrated_gradients(
        m, x, target=t, steps=32, method="gauss_legendre", progress=p),
        "(x - black) times the gradient averaged along the straight path from a black image (Sundararajan 2017)"),
    "guided_backprop": (lambda m, x, t, layer, p: attribution.guided_backprop(m, x, target=t),
                        "only positive gradients through positive activations (Springenberg et al. 2014)"),
    "deconvnet": (lambda m, x, t, layer, p: attribution.deconvnet(m, x, target=t),
                  "the gradient with ReLUs applied to the signal going back (Zeiler & Fergus 2014)"),
    "lrp": (lambda m, x, t, layer, p: attribution.lrp(m, x, target=t, rule="composite"),
            "relevance redistributed layer by layer, epsilon/alpha-beta composite (Bach et al. 2015)"),
    "gradcam": (_cam(attribution.gradcam), "last conv features weighted by their mean gradient (Selvaraju 2017)"),
    "gradcam++": (_cam(attribution.gradcam_plus_plus), "Grad-CAM with per-position weights (Chattopadhay 2018)"),
    "xgradcam": (_cam(attribution.xgradcam), "Grad-CAM with activation-normalised weights (Fu et al. 2020)"),
    "hirescam": (_cam(attribution.hirescam), "gradient times activation, position by position (Draelos 2020)"),
    "layercam": (_cam(attribution.layercam), "positive gradients times activations (Jiang et al. 2021)"),
    "eigencam": (_cam(attribution.eigencam), "first principal component of the last conv features (Muhammad 2020)"),
    "scorecam": (lambda m, x, t, layer, p: attribution.scorecam(m, x, target=t, layer=layer, progress=p),
                 "each feature map used as a mask, weighted by the score it keeps (Wang et al. 2020)"),
    "ablationcam": (lambda m, x, t, layer, p: attribution.ablationcam(m, x, target=t, layer=layer, progress=p),
                    "feature maps weighted by the score lost when each is zeroed (Desai & Ramaswamy 2020)"),
    "guided_gradcam": (lambda m, x, t, layer, p: attribution.guided_gradcam(m, x, target=t, layer=layer),
                       "guided backprop times the upsampled Grad-CAM (Selvaraju et al. 2017)"),
    "occlusion": (lambda m, x, t, layer, p: attribution.occlusion(
        m, x, target=t, patch=max(2, x.shape[1] // 6), stride=max(1, x.shape[1] // 12), progress=p),
        "score drop when a grey patch hides each region (Zeiler & Fergus 2014)"),
}
DEMO_METHODS = ["saliency", "smoothgrad", "integrated_gradients", "guided_backprop", "lrp", "gradcam", "gradcam++",
                "scorecam", "occlusion"]


def input_range(mode):
    """The value range a preprocessing mode maps pixels 0..255 to (used to display model inputs)."""
    lo, hi = images.preprocess(np.array([0.0, 255.0]).reshape(2, 1, 1, 1), mode).ravel()
    return (float(min(lo, hi)), float(max(lo, hi))) if mode != "caffe" else (-123.68, 151.061)


def cam_layer(model, x, min_size=7):
    """The layer CAM methods look at: the last convolution whose output is at least ``min_size`` pixels high
    (Selvaraju et al. use the last conv layer; below ~7 px the map is a blob), taken after the BatchNorm and
    activation that directly follow it (as Keras's Grad-CAM example takes "block14_sepconv2_act").
    Falls back to the last layer with a spatial output."""
    from .layers.activation import ELU, LeakyReLU, PReLU, ReLU
    from .layers.conv import _ConvBase
    from .layers.core import Activation
    from .layers.normalization import BatchNormalization
    shapes = features.tensor_shapes(model, x.shape[1:])
    steps = model._steps
    spatial = [s for s in steps if len(shapes[s.output]) == 4]
    if not spatial:
        raise InputError(f"model {model.name!r} has no layer with a spatial output: CAM methods need one")
    convs = [i for i, s in enumerate(steps) if isinstance(s.layer, _ConvBase)
             and len(shapes[s.output]) == 4 and shapes[s.output][1] >= min(min_size, x.shape[1])]
    if not convs:
        return spatial[-1].key
    i = convs[-1]
    follows = (BatchNormalization, Activation, ReLU, LeakyReLU, ELU, PReLU)
    while i + 1 < len(steps) and isinstance(steps[i + 1].layer, follows) and steps[i + 1].inputs == [steps[i].output] \
            and sum(steps[i].output in s.inputs for s in steps) == 1:
        i += 1
    return steps[i].key


def explain(model, x, methods, target=None, layer=None, progress=True):
    """{method name: (N, H, W) or (N, H, W, C) map} for the images x. Every method explains the pre-softmax
    score (as iNNvestigate and tf-keras-vis advise: a saturated probability has no gradient, and Score-CAM's
    masked scores would all be 1). CAM methods use ``layer`` (default :func:`cam_layer`)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise InputError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)} or 'all'")
    layer = layer or cam_layer(model, x)
    logits = attribution.targets.without_softmax(model)
    return {name: METHODS[name][0](logits, x, target, layer, progress) for name in methods}


@dataclass
class ModelCase:
    """A model, how to read its images, and names for its outputs."""

    path: str
    model: object = None
    classes: list = None
    preprocess: str = "unit"
    title: str = ""
    info: dict = field(default_factory=dict)

    @classmethod
    def open(cls, path, config=None):
        from . import load_model
        info = model_info(path)
        model = load_model(path, config=config)
        return cls(path, model, info.get("classes"), preprocess_mode(model, info), os.path.basename(path), info)

    @property
    def range(self):
        return input_range(self.preprocess)

    def label(self, c):
        return self.classes[c] if self.classes and c < len(self.classes) else f"class {c}"


def prediction_bars(case, probs, k=5):
    order = np.argsort(-probs)[:k]
    return [(case.label(int(c)), float(probs[c])) for c in order]


def add_model_views(page, case, x, names, methods=DEMO_METHODS, progress=True, maximize_channels=4,
                    maximize_steps=96, out_dir=None):
    """Add to a :class:`npcnn.report.Report` every view of ``case.model`` on the images x (N, H, W, C):
    predictions, each method side by side, feature maps, filters, activation maximization.
    Also writes each figure as a PNG into ``out_dir`` when given. Returns the list of files written."""
    model, written = case.model, []

    def emit(fig, title, caption, stem):
        png = figure_png(fig)  # rendered once: the same bytes go to the file and into the page
        if out_dir:
            path = os.path.join(out_dir, f"{stem}.png")
            with atomic_open(path) as f:
                f.write(png)
            written.append(path)
        page.image(png, title, caption)

    probs = np.asarray(model.predict(x)).reshape(len(x), -1)
    page.section(f"{case.title}: prediction", pre=_summary_text(model))
    for name, p in zip(names, probs):
        page.section(f"{case.title}: {name}", bars=prediction_bars(case, p) if p.size > 1 else
                     [("score", float(p[0]))])
    maps = explain(model, x, methods, progress=progress)
    for i, name in enumerate(names):
        top = int(np.argmax(probs[i]))
        fig = aplot.plot_attributions(x[i], {m: v[i] for m, v in maps.items()}, input_range=case.range,
                                      title=f"{name}: why '{case.label(top)}' ({probs[i][top]:.2f})")
        emit(fig, f"Why '{case.label(top)}'? ({name})",
             "Each panel shows one method's map over the image: red/warm = evidence for the predicted class. "
             + " ".join(f"{m}: {METHODS[m][1]}." for m in methods), f"{_stem(case)}_explain_{i}")
    first_conv = features.conv_layers(model)[0]
    fmaps = features.feature_maps(model, x[:1], first_conv)
    emit(fplot.plot_feature_grid(fmaps, layer=first_conv, max_channels=8),
         f"First-layer feature maps ({first_conv})",
         "What each of the first convolution's filters responds to in this image: bright = strong response.",
         f"{_stem(case)}_first_layer_maps")
    strips = features.all_feature_maps(model, x[:1], kinds=("conv", "pool"))
    keep = dict(list(strips.items())[:: max(1, len(strips) // 8)])
    emit(fplot.plot_layer_strips(keep, max_channels=16),
         "Feature maps layer by layer",
         "Each strip is one layer's channels, standardised to 64·z + 128: early layers keep the image's edges, "
         "deeper ones respond to larger, more abstract patterns at lower resolution.", f"{_stem(case)}_strips")
    emit(fplot.plot_filters(features.filters(model, first_conv), layer=first_conv, max_filters=16),
         f"Filters of {first_conv}", "The learned kernels, normalised to 0..1 over the layer: white = large weight.",
         f"{_stem(case)}_filters")
    convs = features.conv_layers(model)
    mid = convs[len(convs) // 2]
    channels = list(range(maximize_channels))
    classes = _top_classes(probs, 3)
    # one batched optimisation per objective family: image n maximizes channel (or class) n
    ams = np.concatenate([
        features.maximize(model, features.channel(mid, channels), steps=maximize_steps, seed=0,
                          input_range=case.range, progress=progress),
        # classes the Graetz way: optimise small, upscale by 1.3, blur, continue (4 octaves)
        features.maximize(model, features.class_logit(classes), steps=max(1, maximize_steps // 2), seed=1,
                          param="pixel", octaves=4, octave_scale=1.3,
                          regularizers=[features.l2(20.0), features.blur_every(4, 0.7)],
                          input_range=case.range, progress=progress)])
    titles = [f"{mid} ch {c}" for c in channels] + [f"class '{case.label(c)}'" for c in classes]
    emit(fplot.plot_gallery(ams, titles=titles, title="Activation maximization"),
         "Activation maximization",
         "Images grown from noise by gradient ascent to excite one channel (with random jitter, scale and "
         "rotation, Olah et al. 2017), or one class's pre-softmax score (grown over 4 octaves with blur, "
         "Graetz 2019) (Erhan et al. 2009).",
         f"{_stem(case)}_maximize")
    return written


def _top_classes(probs, k):
    mean = probs.mean(axis=0)
    return [int(c) for c in np.argsort(-mean)[:k]] if mean.size > 1 else [0]


def _stem(case):
    return os.path.splitext(os.path.basename(case.path))[0]


def _summary_text(model):
    lines = []
    model.summary(print_fn=lines.append)
    return "\n".join(lines)


# ---------------------------------------------------------------- the demo
def shipped(name=""):
    """Path of a file shipped with npcnn: installed as the data package ``npcnn/shipped/``; in a source
    checkout, the repository's ``weights/`` folder."""
    here = os.path.dirname(os.path.abspath(__file__))
    for root in (os.path.join(here, "shipped"), os.path.join(os.path.dirname(here), "weights")):
        path = os.path.join(root, name)
        if os.path.exists(path):
            return path
    raise InputError(f"the shipped file {name!r} is missing (looked in {here}/shipped and the source tree's "
                     "weights/); reinstall npcnn with 'pip install .'")


def demo(out_dir="npcnn-demo", progress=True, quick=False):
    """Run every method on the shipped trained models and sample images; write PNGs and index.html.

    Returns the path of the HTML page."""
    start = time.time()
    os.makedirs(out_dir, exist_ok=True)
    steps = 24 if quick else 64
    page = Report("What real trained CNNs see", "npcnn demo: a facial-expression CNN (mini-XCEPTION, Keras 2.0.5 "
                  "file) and a Fashion-MNIST CNN trained by npcnn, explained with every method, in pure NumPy.")
    with open(shipped("samples/faces.json")) as f:
        faces = json.load(f)["faces"]
    fer = ModelCase.open(shipped("fer_mini_xception.hdf5"))
    fer.title = "Facial expression (mini-XCEPTION)"
    photos = ["grace_hopper.jpg", "astronaut.png"]
    x = np.concatenate([images.image_batch(shipped(f"samples/{p}"), fer.model, fer.preprocess,
                                           box=faces[p]["box_xyxy"]) for p in photos])
    written = add_model_views(page, fer, x, photos, progress=progress, maximize_steps=steps, out_dir=out_dir)
    fashion_path = shipped("fashion_mnist_cnn.keras")
    fashion = ModelCase.open(fashion_path)
    fashion.title = "Fashion-MNIST CNN (trained by npcnn)"
    samples = sorted(p for p in os.listdir(shipped("samples")) if p.startswith("fashion_"))[:3]
    xf = images.image_batch([shipped(f"samples/{p}") for p in samples], fashion.model, fashion.preprocess)
    written += add_model_views(page, fashion, xf, samples, progress=progress, maximize_steps=steps, out_dir=out_dir)
    page.section("About this page", text=f"Made by npcnn in {time.time() - start:.1f} s with NumPy only. "
                 "Run 'npcnn explain MODEL IMAGE --method all' on your own Keras files.")
    return page.write(os.path.join(out_dir, "index.html")), written
