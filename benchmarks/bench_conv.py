"""Convolution speed and memory: npcnn side by side with TensorFlow and PyTorch, in one run.

    python benchmarks/bench_conv.py                  # everything that is installed; writes benchmarks/RESULTS.md
    python benchmarks/bench_conv.py --only vgg,layers --repeats 5 --out /tmp/r.md

Sections (each framework skipped with a note when it is not installed):
  vgg      VGG16 224x224 forward and forward + input gradient, batch 1 and 8 (npcnn, TF, PyTorch)
  cats     the cats-vs-dogs tutorial CNN at 150x150, forward and forward + input gradient
  apps     ResNet50 and MobileNetV2 forward (Keras applications saved to .keras, opened by npcnn.load_model)
  layers   GFLOP/s of every 3x3 conv of VGG16 (batch 1) against np.matmul on the same matrix sizes
  profile  npcnn's VGG16 time per kind of layer, forward and input-gradient backward
  memory   peak resident memory of a 2048x2048 VGG16 convolutional base, forward + input gradient
  peer     numpy-ml's Conv2D (a pure-NumPy peer) per VGG16 layer, forward and backward, against npcnn

Method: every contender of a row gets a warm-up call, then ``--repeats`` rounds; a round calls each
contender once (the order rotates between rounds, with a 0.25 s spinning pause between calls so one
framework's spinning worker threads do not steal from the next, see ``settle``). Medians, and ratios of medians, from that one run;
the load average is printed with every section because the machine may be shared. Timed processes run
without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (old workarounds that slow current NumPy ~1.8x): the script
re-executes itself without them.
"""
import argparse
import collections
import collections.abc
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np


def _clean_environment():
    """Re-execute without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, and with OPENBLAS_NUM_THREADS=N when
    ``--blas-threads N`` is given (NumPy's BLAS only: TensorFlow and PyTorch do not read it)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    if "--blas-threads" in sys.argv:
        env["OPENBLAS_NUM_THREADS"] = sys.argv[sys.argv.index("--blas-threads") + 1]
    if env != dict(os.environ):
        os.execve(sys.executable, [sys.executable, *sys.argv], env)


_clean_environment()

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import npcnn  # noqa: E402
from npcnn import conv as core  # noqa: E402
from npcnn import layers as L  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

# ------------------------------------------------------------------ models, one spec for every framework
VGG16 = [("conv", 64), ("conv", 64), ("pool",), ("conv", 128), ("conv", 128), ("pool",),
         ("conv", 256), ("conv", 256), ("conv", 256), ("pool",), ("conv", 512), ("conv", 512), ("conv", 512),
         ("pool",), ("conv", 512), ("conv", 512), ("conv", 512), ("pool",)]
VGG16_TOP = VGG16 + [("flatten",), ("dense", 4096, "relu"), ("dense", 4096, "relu"), ("dense", 1000, "softmax")]
CATS_DOGS = [("conv", 16), ("pool",), ("drop",), ("conv", 32), ("pool",), ("conv", 64), ("pool",), ("drop",),
             ("flatten",), ("dense", 512, "relu"), ("dense", 1, "sigmoid")]


def spec_layers(spec, lib):
    """The spec's layers from one library's classes (``npcnn.layers`` or ``keras.layers``, same names):
    3x3 'same' ReLU convs, 2x2 max pools, Dropout(0.2), Flatten, dense layers."""
    makers = {"conv": lambda n: lib.Conv2D(n, 3, padding="same", activation="relu"),
              "pool": lambda: lib.MaxPooling2D(2), "drop": lambda: lib.Dropout(0.2), "flatten": lambda: lib.Flatten(),
              "dense": lambda n, act: lib.Dense(n, activation=act)}
    return [makers[kind](*args) for kind, *args in spec]


def npcnn_model(spec, hw, seed=0):
    npcnn.set_seed(seed)
    model = npcnn.Sequential([L.InputLayer(input_shape=(*hw, 3))] + spec_layers(spec, L))
    model.predict(np.zeros((1, *hw, 3), np.float32))  # builds the weights
    return model


def keras_model(keras, spec, hw):
    return keras.Sequential([keras.Input((*hw, 3))] + spec_layers(spec, keras.layers))


def torch_model(torch, spec, weights):
    """The same network in PyTorch, weights taken from the Keras list (kernels transposed to OIHW);
    the feature map is permuted to NHWC before Flatten so the first dense layer reads Keras's order."""
    nn = torch.nn
    ws = iter(weights)

    class NHWCFlatten(nn.Module):
        def forward(self, x):
            return x.permute(0, 2, 3, 1).flatten(1)

    mods = []
    for item in spec:
        kind = item[0]
        if kind in ("conv", "dense"):
            w, b = next(ws), next(ws)
            if kind == "conv":
                m = nn.Conv2d(w.shape[2], w.shape[3], 3, padding=1)
                m.weight.data = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))
            else:
                m = nn.Linear(*w.shape)
                m.weight.data = torch.from_numpy(np.ascontiguousarray(w.T))
            m.bias.data = torch.from_numpy(b.copy())
            mods.append(m)
            act = "relu" if kind == "conv" else item[-1]
            mods += {"relu": [nn.ReLU()], "softmax": [nn.Softmax(-1)], "sigmoid": [nn.Sigmoid()]}[act]
        else:
            mods.append({"pool": lambda: nn.MaxPool2d(2), "drop": lambda: nn.Dropout(0.2),
                         "flatten": lambda: NHWCFlatten()}[kind]())
    model = nn.Sequential(*mods).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(memory_format=torch.channels_last)


# ------------------------------------------------------------------ frameworks
def try_import(name):
    try:
        if name == "tensorflow":
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
            import tensorflow as tf
            return tf
        if name == "torch":
            import torch
            torch.set_num_threads(os.cpu_count())
            return torch
        if name == "numpy_ml":
            for n in ("Hashable", "Iterable", "Mapping", "MutableMapping", "Sequence"):  # numpy-ml predates 3.10
                if not hasattr(collections, n):
                    setattr(collections, n, getattr(collections.abc, n))
            import warnings
            warnings.filterwarnings("ignore")
            from numpy_ml.neural_nets.layers import Conv2D
            return Conv2D
    except Exception as e:  # noqa: BLE001 -- any failure means "not available", reported as a note
        NOTES.append(f"{name} not available: {type(e).__name__}: {e}")
    return None


NOTES = []


def contenders(spec, hw, batch, tf, torch, need_grad_index=0):
    """{name: (forward, forward+input gradient)} callables on one shared random batch and shared weights."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (batch, *hw, 3)).astype(np.float32)
    model = npcnn_model(spec, hw)
    out_shape = model.predict(x[:1]).shape
    cot = np.zeros((batch, *out_shape[1:]), np.float32)
    cot[:, need_grad_index] = 1.0  # gradient of one class score (sum over the batch)
    runs = {"npcnn": (lambda: model.predict(x), lambda: model.input_gradient(x, cotangent=cot))}
    results = {"npcnn": (model.predict(x), model.input_gradient(x, cotangent=cot))}
    if tf is not None:
        km = keras_model(tf.keras, spec, hw)
        km.set_weights(model.get_weights())
        xt = tf.constant(x)

        def tf_grad():
            with tf.GradientTape() as tape:
                tape.watch(xt)
                s = tf.reduce_sum(km(xt, training=False)[:, need_grad_index])
            return tape.gradient(s, xt).numpy()

        runs["TF"] = (lambda: km.predict_on_batch(x), tf_grad)
        results["TF"] = (np.asarray(km.predict_on_batch(x)), tf_grad())
    if torch is not None:
        tm = torch_model(torch, spec, model.get_weights())
        xc = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).contiguous(memory_format=torch.channels_last)

        def torch_fwd():
            with torch.no_grad():
                return tm(xc)

        def torch_grad():
            xg = xc.detach().clone().requires_grad_(True)
            tm(xg)[:, need_grad_index].sum().backward()
            return xg.grad

        runs["PyTorch"] = (torch_fwd, torch_grad)
        results["PyTorch"] = (torch_fwd().numpy(), torch_grad().numpy().transpose(0, 2, 3, 1))
    return runs, results


def settle(seconds):
    """Wait by spinning, not sleeping: a thread pool that spins after its work (OpenBLAS's for up to
    ~0.2 s, measured) goes quiet meanwhile, and the machine does not go idle (on these VMs a call made
    after both cores slept ran up to 1.6x slower, whichever framework made it)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def timed(cases, repeats, pause=0.25, burst=1):
    """{name: callable} -> {name: median seconds per call}: warm-up, then interleaved rounds (rotating
    order), with a :func:`settle` pause before every call (``burst`` > 1: before every run of ``burst``
    calls back to back, timed together)."""
    for f in cases.values():
        f()
    names = list(cases)
    times = {k: [] for k in names}
    for r in range(repeats):
        for k in names[r % len(names):] + names[:r % len(names)]:
            settle(pause)
            t0 = time.perf_counter()
            for _ in range(burst):
                cases[k]()
            times[k].append((time.perf_counter() - t0) / burst)
    return {k: float(np.median(v)) for k, v in times.items()}


def load():
    return "load %.2f %.2f %.2f" % os.getloadavg()


def agreement(results):
    """max |other - npcnn| / max |npcnn| for the outputs and gradients (a sanity check, not a timing)."""
    ref = results["npcnn"]
    out = {}
    for k, v in results.items():
        if k != "npcnn":
            out[k] = [float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-30)) for a, b in zip(v, ref)]
    return out


# ------------------------------------------------------------------ sections
def section_models(args, tf, torch, rows, lines):
    cases = []
    for b in args.batches:
        if "vgg" in args.only:
            cases.append((f"VGG16 224² b{b}", VGG16_TOP, (224, 224), b))
        if "cats" in args.only:
            cases.append((f"cats-vs-dogs 150² b{b}", CATS_DOGS, (150, 150), b))
    for title, spec, hw, batch in cases:
        runs, results = contenders(spec, hw, batch, tf, torch)
        agree = agreement(results)
        for j, what in enumerate(("forward", "forward + input gradient")):
            med = timed({k: v[j] for k, v in runs.items()}, args.repeats)
            rows.append(dict(case=f"{title} {what}", **{k: v * 1e3 for k, v in med.items()}, load=load()))
            print(fmt_row(rows[-1]), flush=True)
        lines.append(f"- {title}: largest difference to npcnn (output, input gradient), relative to npcnn's max: "
                     + ", ".join(f"{k} {a[0]:.1e}, {a[1]:.1e}" for k, a in agree.items()))
        del runs, results


def section_apps(args, tf, rows, lines):
    if tf is None:
        lines.append("- ResNet50 / MobileNetV2: skipped (TensorFlow not installed)")
        return
    keras = tf.keras
    for name, ctor in (("ResNet50", keras.applications.ResNet50), ("MobileNetV2", keras.applications.MobileNetV2)):
        km = ctor(weights=None, input_shape=(224, 224, 3))
        rng = np.random.default_rng(0)
        for w in km.weights:  # non-trivial BatchNorm statistics, so every layer does real work
            if "moving_variance" in w.path:
                w.assign(rng.uniform(0.5, 1.5, w.shape).astype(np.float32))
            elif "moving_mean" in w.path or "beta" in w.path:
                w.assign(rng.normal(0, 0.1, w.shape).astype(np.float32))
        x = rng.uniform(0, 1, (1, 224, 224, 3)).astype(np.float32)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, f"{name}.keras")
            km.save(path)
            try:
                model = npcnn.load_model(path)
            except Exception as e:  # noqa: BLE001 -- report, don't crash the whole benchmark
                lines.append(f"- {name}: npcnn.load_model failed ({type(e).__name__}: {e}); timed TF only")
                model = None
        cases = {"TF": lambda: km.predict_on_batch(x)}
        if model is not None:
            cases["npcnn"] = lambda: model.predict(x)
            ref = np.asarray(km.predict_on_batch(x))
            diff = np.abs(model.predict(x) - ref).max() / np.abs(ref).max()
            lines.append(f"- {name}: npcnn vs TF output difference {diff:.1e} (relative to max); PyTorch not run "
                         "(no torchvision here; the Keras graph is the reference)")
        med = timed(cases, args.repeats)
        rows.append(dict(case=f"{name} 224² b1 forward", **{k: v * 1e3 for k, v in med.items()}, load=load()))
        print(fmt_row(rows[-1]), flush=True)


def vgg_conv_shapes(hw=224):
    shapes, s, c = [], hw, 3
    for item in VGG16:
        if item[0] == "conv":
            shapes.append((s, c, item[1]))
            c = item[1]
        else:
            s //= 2
    return shapes


def section_layers(args, lines):
    """Each 3x3 conv of VGG16 (batch 1): npcnn's conv2d (whichever path it takes), the plain im2col path,
    and np.matmul of the same (M, K) @ (K, N) im2col matrices; GFLOP/s counted as 2*M*K*N. Each call
    comes after a quiet 0.25 s (the cores idle but one; on the VMs here a thread woken then runs up to
    ~1.5x slower for its first milliseconds), and again as 5 calls back to back (steady state: "b2b")."""
    rng = np.random.default_rng(0)
    out = ["| layer (H×W×Cin→Cout) | path | npcnn ms | GFLOP/s | plain im2col GFLOP/s | np.matmul GFLOP/s | npcnn / sgemm "
           "| b2b: npcnn ms | sgemm ms | npcnn / sgemm |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    tot = collections.Counter()
    for s, cin, cout in vgg_conv_shapes():
        x = rng.standard_normal((1, s, s, cin), dtype=np.float32)
        w = rng.standard_normal((3, 3, cin, cout), dtype=np.float32)
        a = rng.standard_normal((s * s, 9 * cin), dtype=np.float32)
        b = rng.standard_normal((9 * cin, cout), dtype=np.float32)
        c = np.empty((s * s, cout), np.float32)
        pads = ((1, 1), (1, 1))
        mode = core.WINOGRAD

        def plain():
            core.WINOGRAD = False
            try:
                core.conv2d(x, w, None, (1, 1), pads)
            finally:
                core.WINOGRAD = mode

        cases = {"npcnn": lambda: core.conv2d(x, w, None, (1, 1), pads), "sgemm": lambda: np.matmul(a, b, out=c)}
        med = timed({**cases, "plain": plain}, args.repeats, pause=0.25)
        b2b = timed(cases, max(3, args.repeats // 2), pause=0.25, burst=5)
        flop = 2 * s * s * 9 * cin * cout
        tile = core.use_winograd(w.shape, (1, 1), (1, 1), 1, (1, s, s))
        path = f"Winograd F({tile}×{tile},3×3)" if tile else "im2col + GEMM"
        gf = {k: flop / v / 1e9 for k, v in med.items()}
        tot.update({k: v for k, v in med.items()})
        tot.update({"b2b " + k: v for k, v in b2b.items()})
        out.append(f"| {s}×{s}×{cin}→{cout} | {path} | {med['npcnn'] * 1e3:.2f} | {gf['npcnn']:.0f} | {gf['plain']:.0f} | "
                   f"{gf['sgemm']:.0f} | {gf['npcnn'] / gf['sgemm']:.2f} | {b2b['npcnn'] * 1e3:.2f} | "
                   f"{b2b['sgemm'] * 1e3:.2f} | {b2b['sgemm'] / b2b['npcnn']:.2f} |")
        print(out[-1], flush=True)
    out.append(f"| all 13 | | {tot['npcnn'] * 1e3:.1f} | | (plain {tot['plain'] * 1e3:.1f} ms) | "
               f"(sgemm {tot['sgemm'] * 1e3:.1f} ms) | {tot['sgemm'] / tot['npcnn']:.2f} | {tot['b2b npcnn'] * 1e3:.1f} | "
               f"{tot['b2b sgemm'] * 1e3:.1f} | {tot['b2b sgemm'] / tot['b2b npcnn']:.2f} |")
    print(out[-1], f"({load()})", flush=True)
    lines += ["", "### Per-layer GFLOP/s, VGG16 3×3 convolutions, batch 1", f"({load()})", ""] + out


def section_profile(args, lines):
    """Where npcnn's time goes in VGG16 224² batch 1: each layer's forward (incl. its fused ReLU) and
    input-gradient backward, timed one by one (medians), summed per kind of work."""
    model = npcnn_model(VGG16_TOP, (224, 224))
    x = np.random.default_rng(0).uniform(0, 1, (1, 224, 224, 3)).astype(np.float32)
    fwd, bwd = collections.Counter(), collections.Counter()
    h = x
    for step in model._steps:
        layer = step.layer
        kind = type(layer).__name__
        if kind == "Conv2D":
            tile = core.use_winograd(layer.params["kernel"].shape, layer.strides, layer.dilation_rate, layer.groups,
                                     h.shape[:3])
            kind += f" (Winograd F({tile}×{tile}))" if tile else " (im2col)"
        out, cache = layer.apply(h)
        dy = np.ones_like(out)
        med = timed({"f": lambda: layer.apply(h), "b": lambda: layer.apply_backward(dy, cache, need_params=False)},
                    max(3, args.repeats // 2), pause=0.0)
        fwd[kind] += med["f"]
        bwd[kind] += med["b"]
        h = out
    out = ["| layer kind | forward ms | input-gradient backward ms |", "|---|---:|---:|"]
    for k in fwd:
        out.append(f"| {k} | {fwd[k] * 1e3:.1f} | {bwd[k] * 1e3:.1f} |")
    out.append(f"| total | {sum(fwd.values()) * 1e3:.1f} | {sum(bwd.values()) * 1e3:.1f} |")
    print("\n".join(out), f"({load()})", flush=True)
    lines += ["", "### Where npcnn's time goes: VGG16 224² batch 1, layer by layer (fused ReLU included)",
              f"({load()})", ""] + out


def memory_child(size, budget_mib, dtype):
    """Run in a subprocess: VGG16's conv base on one size x size image, forward + input gradient in ``dtype``,
    with im2col/Winograd blocks of at most ``budget_mib`` MiB. Prints peak RSS and seconds; saves the gradient."""
    core.MEMORY_BUDGET = int(budget_mib * 2**20)
    model = npcnn_model(VGG16, (size, size))
    model.astype(dtype)
    x = np.random.default_rng(1).uniform(0, 1, (1, size, size, 3)).astype(dtype)
    t0 = time.perf_counter()
    g = model.input_gradient(x)
    dt = time.perf_counter() - t0
    np.save(os.environ["NPCNN_BENCH_OUT"], g)
    print(json.dumps({"peak": peak_rss(), "seconds": dt}))


def peak_rss():
    """This process's peak resident memory in bytes: VmHWM of its own address space. (ru_maxrss is not
    used: after fork + exec Linux carries the parent's peak into it, so a child would report the
    benchmark's own TensorFlow-sized footprint.)"""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_memory_child(size, budget_mib, out, dtype="float32"):
    p = subprocess.run([sys.executable, os.path.abspath(__file__), "--memory-child", str(size), str(budget_mib), dtype],
                       capture_output=True, text=True, env=dict(os.environ, NPCNN_BENCH_OUT=out))
    if p.returncode != 0:
        raise RuntimeError(p.stderr.strip().splitlines()[-1:])
    return json.loads(p.stdout.strip().splitlines()[-1]), np.load(out)


def section_memory(args, lines):
    """Peak RSS of the big run (default block budget, float32), and chunked == unchunked on a 512x512 image
    (a budget larger than any layer's whole im2col matrix) in float64: in float32, blocks of other sizes
    round a few sums differently (the BLAS's kernels for a block's last rows add in another order), and an
    input gradient jumps wherever that flips a ReLU or max-pool near-tie (8.5e-2 of its maximum, measured)."""
    size, budget = args.memory_size, core.MEMORY_BUDGET >> 20
    with tempfile.TemporaryDirectory() as d:
        try:
            big, _ = run_memory_child(size, budget, os.path.join(d, "big.npy"))
            (_, chunked), (_, whole) = (run_memory_child(512, b, os.path.join(d, f"{b}.npy"), "float64")
                                         for b in (budget, 4096))
        except RuntimeError as e:
            lines.append(f"- memory: the child process failed: {e}")
            return
    same = float(np.abs(chunked - whole).max() / np.abs(whole).max())
    line = (f"- VGG16 convolutional base, one {size}×{size} image, forward + input gradient (npcnn): peak RSS "
            f"**{big['peak'] / 2**30:.2f} GiB** (target < 4 GiB) in {big['seconds']:.0f} s, with im2col/Winograd "
            f"blocks of ≤ {budget} MiB. Chunked vs unchunked (512×512, blocks ≤ {budget} MiB vs one block per "
            f"layer), in float64: input gradients differ by {same:.1e} relative ({load()})")
    print(line, flush=True)
    lines += ["", "### Memory", "", line]


def section_peer(args, lines):
    Conv2D = try_import("numpy_ml")
    if Conv2D is None:
        lines.append("- numpy-ml: not installed; peer comparison skipped")
        return
    rng = np.random.default_rng(0)
    out = ["| layer | numpy-ml fwd ms | npcnn fwd ms | npcnn/numpy-ml | numpy-ml bwd ms | npcnn bwd ms | npcnn/numpy-ml |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for s, cin, cout in vgg_conv_shapes():
        x = rng.standard_normal((1, s, s, cin), dtype=np.float32)
        w = rng.standard_normal((3, 3, cin, cout), dtype=np.float32) * 0.05
        b = np.zeros((1, 1, 1, cout), np.float32)
        peer = Conv2D(out_ch=cout, kernel_shape=(3, 3), pad="same", stride=1, act_fn=None)
        peer.forward(x[:, :4, :4], retain_derived=False)  # initialise its parameters, then share ours
        peer.parameters["W"], peer.parameters["b"] = w, b
        ours = L.Conv2D(cout, 3, padding="same")
        ours.build(x.shape)
        ours.params["kernel"], ours.params["bias"] = w, b.reshape(-1)
        dy = rng.standard_normal((1, s, s, cout), dtype=np.float32)
        cache = ours.forward(x)[1]

        def peer_bwd():
            peer.X = [x]
            peer.derived_variables["Z"] = [dy]  # its backward reads the pre-activation (identity act)
            return peer.backward(dy, retain_grads=False)

        fwd = timed({"peer": lambda: peer.forward(x, retain_derived=False), "npcnn": lambda: ours.forward(x)},
                    max(3, args.repeats // 2), pause=0.005)
        bwd = timed({"peer": peer_bwd, "npcnn": lambda: ours.backward(dy, cache)}, max(3, args.repeats // 2), pause=0.005)
        out.append(f"| {s}×{s}×{cin}→{cout} | {fwd['peer'] * 1e3:.1f} | {fwd['npcnn'] * 1e3:.1f} | "
                   f"{fwd['npcnn'] / fwd['peer']:.2f} | {bwd['peer'] * 1e3:.1f} | {bwd['npcnn'] * 1e3:.1f} | "
                   f"{bwd['npcnn'] / bwd['peer']:.2f} |")
        print(out[-1], flush=True)
    lines += ["", "### Pure-NumPy peer: numpy-ml 0.1.2 `Conv2D` per VGG16 layer (batch 1; backward = dX and dW)",
              f"({load()})", ""] + out


# ------------------------------------------------------------------ report
TARGETS = {"VGG16 224² b1 forward": ("TF", 0.9), "VGG16 224² b1 forward + input gradient": ("TF", 1.0),
           "cats-vs-dogs 150² b1 forward + input gradient": ("PyTorch", 1.5)}


def fmt_row(r):
    cols = [f"{r['case']:<48}"] + [f"{k} {r[k]:8.1f} ms" for k in ("npcnn", "TF", "PyTorch") if k in r]
    return "  ".join(cols) + f"  ({r['load']})"


def table(rows):
    out = ["| case | npcnn ms | TF ms | PyTorch ms | npcnn / TF | npcnn / PyTorch | target |",
           "|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        def ratio(k):
            return f"{r['npcnn'] / r[k]:.2f}" if k in r and "npcnn" in r else "—"

        def ms(k):
            return f"{r[k]:.1f}" if k in r else "—"

        target = ""
        if r["case"] in TARGETS:
            who, bound = TARGETS[r["case"]]
            if who in r:
                target = f"≤ {bound}× {who}: {'met' if r['npcnn'] / r[who] <= bound else 'missed'}"
        if r["case"] == "VGG16 224² b1 forward" and "PyTorch" in r:
            target += f"; ≤ 1.0× PyTorch: {'met' if r['npcnn'] <= r['PyTorch'] else 'missed'}"
        out.append(f"| {r['case']} | {ms('npcnn')} | {ms('TF')} | {ms('PyTorch')} | {ratio('TF')} | "
                   f"{ratio('PyTorch')} | {target} |")
    return out


def machine():
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            fl = next(line for line in f if line.startswith("flags"))
        flags = "AVX-512" if "avx512f" in fl else "AVX2" if "avx2" in fl else ""
    except (OSError, StopIteration):
        pass
    return f"{cpu} ({flags}), {os.cpu_count()} cores, Python {platform.python_version()}, NumPy {np.__version__}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="vgg,cats,apps,layers,profile,memory,peer")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--memory-size", type=int, default=2048)
    ap.add_argument("--batches", default="1,8", help="batch sizes of the vgg and cats rows")
    ap.add_argument("--blas-threads", help="OPENBLAS_NUM_THREADS for npcnn (default: OpenBLAS's own, every core); "
                    "1 is faster when the machine is oversubscribed (OpenBLAS threads wait for each other)")
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(int(args.memory_child[0]), float(args.memory_child[1]), args.memory_child[2])
        return
    args.only = set(args.only.split(","))
    args.batches = [int(b) for b in args.batches.split(",")]
    tf = try_import("tensorflow") if args.only & {"vgg", "cats", "apps"} else None
    torch = try_import("torch") if args.only & {"vgg", "cats"} else None
    versions = [f"npcnn {getattr(npcnn, '__version__', '')}".strip()
                + f" (OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset: all cores')})"]
    if tf is not None:
        versions.append(f"TensorFlow {tf.__version__}")
    if torch is not None:
        versions.append(f"PyTorch {torch.__version__}")
    print(machine(), "|", ", ".join(versions), "|", load(), flush=True)
    rows, lines = [], []
    start = load()
    section_models(args, tf, torch, rows, lines)
    if "apps" in args.only:
        section_apps(args, tf, rows, lines)
    if "layers" in args.only:
        section_layers(args, lines)
    if "profile" in args.only:
        section_profile(args, lines)
    if "peer" in args.only:
        section_peer(args, lines)
    if "memory" in args.only:
        section_memory(args, lines)
    report = ["# npcnn convolution benchmarks", "",
              f"Generated by `python benchmarks/bench_conv.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
              f"Machine: {machine()}; {', '.join(versions)}.",
              f"Medians of {args.repeats} interleaved rounds after a warm-up; {start} at the start (the machine was "
              "shared; each row records the load after it). Ratios < 1 mean npcnn is faster.", ""]
    if os.getloadavg()[0] > (os.cpu_count() or 1):
        report += [f"**The machine was oversubscribed** ({load()} on {os.cpu_count()} cores): every framework ran "
                   "several times slower than on a quiet machine, and OpenBLAS's multi-threaded GEMM (NumPy, so "
                   "npcnn) suffers most, because its threads wait for each other at every barrier; with "
                   "`--blas-threads 1` npcnn avoids that. Ratios from a quiet machine are the ones to quote.", ""]
    if rows:
        report += table(rows) + [""]
    report += lines + [""] + [f"- {n}" for n in NOTES]
    with open(args.out, "w") as f:
        f.write("\n".join(report) + "\n")
    print("\n".join(report))


if __name__ == "__main__":
    main()
