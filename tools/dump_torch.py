"""Dump the outputs of a PyTorch port of a Keras model, for ``npcnn verify``. Needs PyTorch (not npcnn).

    python tools/dump_torch.py --module my_port.py:build_model [--weights port.pt] \\
        --map names.json X.npy -o DUMP.npz [--gradients]

``--module FILE.py:NAME`` names a function (or class) that returns the ``torch.nn.Module``; ``--weights``
an optional state_dict to load into it. ``--map`` is a JSON object from PyTorch module names
(``dict(module.named_modules())`` keys, e.g. ``"features.0"``) to the Keras layer names npcnn uses
(``"block1_conv1"``, nested ``"outer/inner"``); every mapped module's output is recorded with a forward
hook. X.npy is NHWC, as for Keras and npcnn; it is fed to the module as NCHW, and 4-D outputs are turned
back to NHWC, so the dump compares directly. With ``--gradients``: ``grad:cotangent`` (seeded, random) and
``grad:input`` (the gradient of sum(cotangent * output) with respect to the input, NHWC).
This runs the Python file you name: use it on your own code.
"""
import argparse
import importlib.util
import json
import os

import numpy as np


def load_factory(spec):
    path, _, name = spec.rpartition(":")
    if not path or not name:
        raise SystemExit(f"--module must look like file.py:function, got {spec!r}")
    module_spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return getattr(module, name)


def to_nhwc(a):
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", help=".npy input batch, NHWC")
    p.add_argument("--module", required=True, help="file.py:function returning the torch.nn.Module")
    p.add_argument("--weights", help="a state_dict (.pt) to load")
    p.add_argument("--map", required=True, help="JSON: torch module name -> Keras layer name")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--gradients", action="store_true")
    args = p.parse_args(argv)

    import torch
    net = load_factory(args.module)()
    if args.weights:
        net.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True))
    net.eval()
    with open(args.map) as f:
        names = json.load(f)
    modules = dict(net.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise SystemExit(f"--map names modules the network does not have: {missing}; it has {list(modules)[:20]}")
    dump = {}
    for torch_name, keras_name in names.items():
        modules[torch_name].register_forward_hook(
            lambda mod, inp, out, key=keras_name: dump.__setitem__(key, to_nhwc(out.detach().cpu().numpy())))
    x = torch.tensor(np.load(args.inputs).astype("float32").transpose(0, 3, 1, 2), requires_grad=args.gradients)
    y = net(x)
    if args.gradients:
        cot = np.random.default_rng(0).normal(size=tuple(y.shape)).astype("float32")
        y.backward(torch.tensor(cot))
        dump["grad:cotangent"] = cot if y.ndim != 4 else to_nhwc(cot)
        dump["grad:input"] = to_nhwc(x.grad.numpy())
    np.savez(args.output, **dump)
    print(f"wrote {args.output}: {len(dump)} arrays")


if __name__ == "__main__":
    main()
