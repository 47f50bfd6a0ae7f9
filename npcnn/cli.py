"""The ``npcnn`` command: an argparse front end over the public API, with no logic of its own.

Every failure the user can fix prints one line ``npcnn: error: ...`` and exits with status 2;
outputs are written atomically.
"""
import argparse
import json
import os
import sys

from . import gallery
from .errors import InputError, NpcnnError

_EPILOG = "Run 'npcnn demo' to see every method on the shipped models."


# ---------------------------------------------------------------- shared helpers
def _load(args):
    from . import load_model
    return load_model(args.model, config=getattr(args, "config", None))


def _images(args, model, info, paths):
    from .images import image_batch
    box = tuple(int(v) for v in args.box.split(",")) if getattr(args, "box", None) else None
    size = tuple(int(v) for v in args.size.split("x")) if getattr(args, "size", None) else None
    mode = gallery.preprocess_mode(model, info, getattr(args, "preprocess", None))
    return image_batch(list(paths), model, mode, size=size, box=box)


def _class_names(args, info):
    if getattr(args, "classes", None):
        try:
            with open(args.classes) as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            raise InputError(f"--classes {args.classes}: not a readable JSON list ({e})") from None
        return data["classes"] if isinstance(data, dict) else list(data)
    return info.get("classes")


def _out_path(args, default_name):
    out = args.output or default_name
    fmt = getattr(args, "format", None)
    if fmt and not out.lower().endswith("." + fmt):
        out = os.path.splitext(out)[0] + "." + fmt
    return out


def _save(fig, path):
    from .atomic import save_figure
    save_figure(fig, path)
    print(f"wrote {path}")


def _target(args, n_out):
    if args.target is None:
        return None
    try:
        t = int(args.target)
    except ValueError:
        raise InputError(f"--target must be a class index, got {args.target!r}") from None
    if not 0 <= t < n_out:
        raise InputError(f"--target {t} is out of range: the model has {n_out} outputs")
    return t


def _channels(spec):
    """"0-7,12" -> [0, 1, ..., 7, 12]."""
    out = []
    try:
        for part in spec.split(","):
            a, _, b = part.partition("-")
            out += list(range(int(a), int(b) + 1)) if b else [int(a)]
    except ValueError:
        raise InputError(f"--channels takes indices like '0-7' or '0,3,5', got {spec!r}") from None
    return out


# ---------------------------------------------------------------- commands
def cmd_summary(args):
    _load(args).summary()


def cmd_predict(args):
    import numpy as np
    model = _load(args)
    info = gallery.model_info(args.model)
    names = _class_names(args, info)
    probs = np.asarray(model.predict(_images(args, model, info, args.images)))
    for path, p in zip(args.images, probs.reshape(len(args.images), -1)):
        print(path)
        order = np.argsort(-p)[:args.top]
        for rank, c in enumerate(order, 1):
            label = names[c] if names and c < len(names) else f"class {c}"
            print(f"  {rank}. {label:<20} {p[c]:.4f}")


def cmd_verify(args):
    import numpy as np

    from .atomic import atomic_open
    from .verify import compare
    model = _load(args)
    try:
        x = np.load(args.inputs, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(f"--inputs {args.inputs}: not a readable .npy array ({e})") from None
    result = compare(model, x, args.reference, rtol=args.rtol, atol=args.atol, gradients=args.gradients)
    print(result.table(color=sys.stdout.isatty()))
    if args.json:
        with atomic_open(args.json, "w") as f:
            f.write(result.to_json())
        print(f"wrote {args.json}")
    if args.plot:
        from .plot.verify import verify_errors
        _save(verify_errors(result), args.plot)
    return 0 if result.passed else 1


def build_parser():
    p = argparse.ArgumentParser(prog="npcnn", description="See inside convolutional networks, in pure NumPy.",
                                epilog=_EPILOG)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def command(name, func, help_text, model=True, images=None):
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if model:
            sp.add_argument("model", help="a Keras model file (.h5, .hdf5, .keras, TF.js model.json)")
            sp.add_argument("--config", help="the architecture JSON, for weights-only files")
        if images == "many":
            sp.add_argument("images", nargs="+", help="image files")
        elif images == "one":
            sp.add_argument("image", help="an image file")
        if images:
            sp.add_argument("--preprocess", choices=["none", "unit", "tf", "torch", "caffe"],
                            help="input preprocessing (default: from <model>.classes.json, else unit = x/255)")
            sp.add_argument("--size", help="resize images to HxW (default: the model's input size)")
            sp.add_argument("--box", help="crop images to x0,y0,x1,y1 first")
        sp.set_defaults(func=func)
        return sp

    command("summary", cmd_summary, "print the model's layers, shapes and parameter counts")
    sp = command("predict", cmd_predict, "top-k predictions for images", images="many")
    sp.add_argument("--top", type=int, default=5)
    sp.add_argument("--classes", help="JSON file with the class names")
    sp = command("verify", cmd_verify, "compare every layer's output with a reference dump; exit 1 on a mismatch")
    sp.add_argument("--inputs", required=True, help=".npy file with the input batch the dump was made from")
    sp.add_argument("--reference", required=True, help=".npz dump: layer name -> output (tools/dump_keras.py)")
    sp.add_argument("--rtol", type=float, default=1e-4)
    sp.add_argument("--atol", type=float, default=1e-5)
    sp.add_argument("--gradients", action="store_true", help="also compare the input gradient (key grad:input)")
    sp.add_argument("--json", help="write the table as JSON here")
    sp.add_argument("--plot", help="write a PNG of the error per layer here")
    _register_visual_commands(command)
    return p


def _register_visual_commands(command):
    """Commands that render figures (defined in npcnn.cli_figures to keep this module small)."""
    from . import cli_figures
    cli_figures.register(command)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        status = args.func(args)
    except NpcnnError as e:
        print(f"npcnn: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("npcnn: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        print(f"npcnn: error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    return status or 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
