"""The figure-making ``npcnn`` commands: featuremaps, filters, explain, maximize, report, demo.
Argument parsing and file naming only; the work is in npcnn.features / attribution / gallery / plot."""
import os

import numpy as np

from . import features, gallery
from .cli import _channels, _class_names, _images, _load, _out_path, _save, _target
from .errors import InputError


def _case(args):
    info = gallery.model_info(args.model)
    model = _load(args)
    return gallery.ModelCase(args.model, model, _class_names(args, info),
                             gallery.preprocess_mode(model, info, getattr(args, "preprocess", None)),
                             os.path.basename(args.model), info)


def _layer(model, name, default):
    """A layer key given on the command line, checked (an unknown name suggests close ones)."""
    if name is None:
        return default
    model._tensor(name)
    return name


def cmd_featuremaps(args):
    from .plot import features as fplot
    case = _case(args)
    x = _images(args, case.model, case.info, [args.image])
    if args.layer:
        layer = _layer(case.model, args.layer, None)
        maps = features.feature_maps(case.model, x, layer)
        if np.ndim(maps) != 4:
            raise InputError(f"layer {layer!r} has output shape {np.shape(maps)}: not spatial feature maps; "
                             f"try one of {', '.join(features.layers_of_kind(case.model)[:8])}")
        fig = (fplot.plot_feature_strip if args.layout == "strip" else fplot.plot_feature_grid)(
            maps, layer=layer, cmap=args.cmap, max_channels=args.max_channels, page=args.page)
    else:
        fig = fplot.plot_layer_strips(features.all_feature_maps(case.model, x), cmap=args.cmap,
                                      max_channels=min(args.max_channels, 32))
    _save(fig, _out_path(args, f"featuremaps_{(args.layer or 'all').replace('/', '_')}.png"))


def cmd_filters(args):
    from .plot import features as fplot
    model = _load(args)
    convs = features.conv_layers(model)
    if not convs:
        raise InputError(f"model {model.name!r} has no convolution layers")
    layer = _layer(model, args.layer, convs[0])
    if args.histogram:
        fig = fplot.plot_weight_histograms(features.layer_weights(model))
    else:
        fig = fplot.plot_filters(features.filters(model, layer), layer=layer, max_filters=args.max_filters)
    _save(fig, _out_path(args, f"filters_{layer.replace('/', '_')}.png"))


def cmd_explain(args):
    from .plot import attribution as aplot
    case = _case(args)
    x = _images(args, case.model, case.info, [args.image])
    methods = list(gallery.METHODS) if args.method == ["all"] else args.method
    probs = np.asarray(case.model.predict(x)).reshape(-1)
    target = _target(args, probs.size)
    shown = int(np.argmax(probs)) if target is None else target
    layer = _layer(case.model, args.layer, None) if args.layer else None
    maps = gallery.explain(case.model, x, methods, target=target, layer=layer)
    title = f"{os.path.basename(args.image)}: explaining '{case.label(shown)}' (p = {probs[shown]:.2f})"
    if len(maps) == 1:
        (name, m), = maps.items()
        fig = aplot.plot_overlay(x[0], m[0], alpha=args.alpha, title=f"{name}: {title}", input_range=case.range)
    else:
        fig = aplot.plot_attributions(x[0], {k: v[0] for k, v in maps.items()}, alpha=args.alpha, title=title,
                                      input_range=case.range)
    _save(fig, _out_path(args, f"explain_{'_'.join(methods) if len(methods) < 4 else 'methods'}.png"))


def cmd_maximize(args):
    from .plot import features as fplot
    case = _case(args)
    if args.layer is None and not args.classes_to_show:
        raise InputError("say what to maximize: --layer L --channels 0-7, and/or --class C")
    images_, titles = [], []
    if args.layer:
        layer = _layer(case.model, args.layer, None)
        for c in _channels(args.channels):
            images_.append(features.maximize(case.model, features.channel(layer, c), steps=args.steps, seed=c,
                                             input_range=case.range)[0])
            titles.append(f"{layer} ch {c}")
    for c in args.classes_to_show or []:
        images_.append(features.maximize(case.model, features.class_logit(c), steps=args.steps, seed=c,
                                         input_range=case.range)[0])
        titles.append(f"class '{case.label(c)}'")
    fig = fplot.plot_gallery(np.stack(images_), titles=titles, title="Activation maximization")
    _save(fig, _out_path(args, f"maximize_{(args.layer or 'classes').replace('/', '_')}.png"))


def cmd_report(args):
    from .report import Report
    case = _case(args)
    x = _images(args, case.model, case.info, args.images)
    page = Report(f"npcnn report: {os.path.basename(args.model)}", f"{len(args.images)} image(s): "
                  + ", ".join(os.path.basename(p) for p in args.images))
    methods = list(gallery.METHODS) if args.method == ["all"] else args.method
    gallery.add_model_views(page, case, x, [os.path.basename(p) for p in args.images], methods=methods,
                            maximize_steps=args.steps)
    print(f"wrote {page.write(args.output)}")


def cmd_demo(args):
    page, written = gallery.demo(args.output, quick=args.quick)
    print(f"wrote {len(written)} figures to {args.output}/")
    print(f"open {os.path.abspath(page)} in a browser")


def register(command):
    """Add the figure commands to the CLI (``command`` is cli.build_parser's factory)."""
    def output_options(sp, default_format="png"):
        sp.add_argument("-o", "--output", help="output file (default: a name from the command)")
        sp.add_argument("--format", choices=["png", "svg", "pdf"], help="image format (default: from -o, else png)")

    sp = command("featuremaps", cmd_featuremaps, "feature maps of one layer (grid) or of every conv/pool layer "
                 "(strips)", images="one")
    sp.add_argument("--layer", help="layer name (nested: outer/inner); default: every conv and pool layer")
    sp.add_argument("--layout", choices=["grid", "strip"], default="grid")
    sp.add_argument("--cmap", default="viridis", help="colormap: viridis, gray, ...")
    sp.add_argument("--max-channels", type=int, default=64)
    sp.add_argument("--page", type=int, default=0, help="which page of channels, for wide layers")
    output_options(sp)

    sp = command("filters", cmd_filters, "the kernels of a convolution layer as images")
    sp.add_argument("--layer", help="conv layer name (default: the first)")
    sp.add_argument("--max-filters", type=int, default=64)
    sp.add_argument("--histogram", action="store_true", help="weight histograms of every layer instead")
    output_options(sp)

    sp = command("explain", cmd_explain, "where the model looks: attribution maps over the image", images="one")
    sp.add_argument("--method", nargs="+", default=["gradcam"],
                    help=f"one or more of: {', '.join(gallery.METHODS)}, or all")
    sp.add_argument("--target", help="class index to explain (default: the predicted class)")
    sp.add_argument("--layer", help="layer for CAM methods (default: the last one with >= 1/8 of the input size)")
    sp.add_argument("--alpha", type=float, default=0.5, help="heatmap opacity 0..1")
    sp.add_argument("--classes", help="JSON file with the class names")
    output_options(sp)

    sp = command("maximize", cmd_maximize, "images that maximize channels or classes (activation maximization)")
    sp.add_argument("--layer", help="layer whose channels to maximize")
    sp.add_argument("--channels", default="0-7", help="channel indices, e.g. 0-7 or 1,5,9")
    sp.add_argument("--class", dest="classes_to_show", type=int, action="append", help="class index (repeatable)")
    sp.add_argument("--steps", type=int, default=128)
    sp.add_argument("--preprocess", choices=["none", "unit", "tf", "torch", "caffe"],
                    help="the model's input range (default: from <model>.classes.json, else unit)")
    sp.add_argument("--classes", help="JSON file with the class names")
    output_options(sp)

    sp = command("report", cmd_report, "one self-contained HTML page: prediction, every method, feature maps, "
                 "filters", images="many")
    sp.add_argument("-o", "--output", default="report.html")
    sp.add_argument("--method", nargs="+", default=gallery.DEMO_METHODS, help="methods to include, or all")
    sp.add_argument("--steps", type=int, default=64, help="activation maximization steps")
    sp.add_argument("--classes", help="JSON file with the class names")

    sp = command("demo", cmd_demo, "run every method on the shipped trained models; writes a gallery and an "
                 "HTML page", model=False)
    sp.add_argument("-o", "--output", default="npcnn-demo", help="output folder (default: ./npcnn-demo)")
    sp.add_argument("--quick", action="store_true", help="fewer optimisation steps")
