"""Untrusted model files: a model or npcnn's own error; never a hang, never memory taken on a file's word.

Each test builds one kind of hostile file (zip bomb, deep JSON, graph cycle, self reference, duplicate
names, absurd shapes, non-numeric weights, links to other files, a libhdf5 infinite loop) and checks the
error npcnn gives; the last ones check that normal files still load with the same numbers as h5py reads.
"""
import importlib.util
import json
import os
import shutil
import sys
import time
import tracemalloc
import zipfile
import zlib

import h5py
import numpy as np
import pytest

import npcnn
from npcnn import layers as L
from npcnn.errors import FormatError
from npcnn.io import guard, hdf5
from npcnn.io.writer import model_config

HERE = os.path.dirname(os.path.abspath(__file__))
KERAS = os.path.join(HERE, "fixtures", "keras")
HANG = os.path.join(HERE, "fixtures", "untrusted", "hdf5_hang.h5")
TFJS = os.path.join(HERE, "fixtures", "tfjs", "nsfwjs_mobilenet_v2")


def fuzz_tool():
    """tools/fuzz_models.py as a module (its zip-entry writer makes the bombs here too)."""
    spec = importlib.util.spec_from_file_location("fuzz_models", os.path.join(os.path.dirname(HERE), "tools",
                                                                              "fuzz_models.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def refused(path, *words, config=None):
    """load_model(path) raises a FormatError naming the file and every word; returns the message."""
    with pytest.raises(FormatError) as e:
        npcnn.load_model(path, config=config)
    message = str(e.value)
    for w in (os.path.basename(str(path)), *words):
        assert w in message, f"{w!r} not in: {message}"
    return message


def small_functional():
    """Input(8, 8, 3) -> conv_a -> conv_b -> flatten -> dense_c, and its Keras 3 config (dict)."""
    x = inp = npcnn.Input(shape=(8, 8, 3), name="image")
    x = L.Conv2D(4, 3, name="conv_a")(x)
    x = L.Conv2D(4, 3, name="conv_b")(x)
    x = L.Dense(2, name="dense_c")(L.Flatten(name="flat")(x))
    model = npcnn.Model(inp, x, name="small")
    return model, model_config(model, 3)


def entry(cfg, name):
    return next(e for e in cfg["config"]["layers"] if e["name"] == name)


def feed(cfg, layer, source):
    """Make ``layer`` take its input from ``source`` (Keras 3 keras_history)."""
    entry(cfg, layer)["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = [source, 0, 0]


# ---------------------------------------------------------------------------------------------- zip archives
def _bomb_archive(tmp_path, honest_header):
    """cats_dogs.k3.keras with model.weights.h5 replaced by 64 MiB of zeros deflated to ~64 KB; the header
    declares the true size, or (honest_header=False) a harmless 1 KB."""
    src = os.path.join(KERAS, "cats_dogs.k3.keras")
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for name in z.namelist():
            if name != "model.weights.h5":
                out.writestr(name, z.read(name))
    size = 64 << 20
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = b"".join(comp.compress(bytes(1 << 20)) for _ in range(64)) + comp.flush()
    fuzz_tool().append_raw_deflated(path, "model.weights.h5", body, size if honest_header else 1024,
                                    zlib.crc32(bytes(size)))
    return path


@pytest.mark.parametrize("honest_header", [True, False])
def test_zip_bomb_refused_with_bounded_memory(tmp_path, honest_header):
    path = _bomb_archive(tmp_path, honest_header)
    budget = guard.byte_budget(os.path.getsize(path))
    assert budget < 64 << 20  # the bomb really is over the archive's budget
    tracemalloc.start()
    try:
        message = refused(path, "model.weights.h5")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    if honest_header:
        assert "zip bomb" in message and "67,108,864" in message
    assert peak < budget + (8 << 20), f"peak {peak:,} bytes while refusing a zip bomb"


def test_zip_member_reader_caps(tmp_path):
    """read_zip_member returns an entry's exact bytes, and refuses one over the cap it is given."""
    path = tmp_path / "a.zip"
    data = np.random.default_rng(0).integers(0, 4, 3 << 20, dtype=np.uint8).tobytes()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("big", data)
    with zipfile.ZipFile(path) as z:
        assert guard.read_zip_member(z, "big", "a.zip", os.path.getsize(path)) == data
        with pytest.raises(FormatError, match="3,145,728 bytes.*limit 1,048,576.*zip bomb"):
            guard.read_zip_member(z, "big", "a.zip", os.path.getsize(path), limit=1 << 20)


# ---------------------------------------------------------------------------------------------- configs
def test_deep_json_nesting_refused_before_parsing(tmp_path):
    cfg = json.load(open(os.path.join(KERAS, "cats_dogs.k3.json")))
    text = json.dumps(cfg).replace('"trainable": true', '"trainable": ' + "[" * 5000 + "]" * 5000, 1)
    path = tmp_path / "deep.json"
    path.write_text(text)
    message = refused(path, "5002 levels", config=None)
    assert str(guard.MAX_JSON_DEPTH) in message
    assert guard.json_depth('{"a": "[[[[{{{", "b": [[1], {"c": []}]}') == 4  # brackets in strings don't count


def test_oversized_json_refused_unread(monkeypatch, tmp_path):
    path = os.path.join(KERAS, "cats_dogs.k3.json")
    monkeypatch.setattr(npcnn.io.load, "MAX_JSON_BYTES", 1000)
    refused(path, f"{os.path.getsize(path):,}-byte JSON file")
    monkeypatch.setattr(guard, "MAX_JSON_BYTES", 1000)  # JSON text from elsewhere (an archive, an attribute)
    with pytest.raises(FormatError, match="npcnn reads configs up to 1,000 bytes"):
        npcnn.io.model_from_config(open(path).read())


def test_deep_config_dict_in_code_is_a_format_error():
    """A config dict given in code never went through the JSON checks: its depth ends as a FormatError."""
    _, cfg = small_functional()
    deep = node = {}
    for _ in range(5000):
        node["a"] = {}
        node = node["a"]
    entry(cfg, "conv_a")["config"]["extra"] = deep
    with pytest.raises(FormatError, match="RecursionError"):
        npcnn.io.model_from_config(cfg)


def test_graph_cycle_self_reference_and_duplicate_names():
    _, cfg = small_functional()
    feed(cfg, "conv_a", "conv_b")  # conv_a <- conv_b <- conv_a
    with pytest.raises(FormatError, match="wait on each other.*cycle"):
        npcnn.io.model_from_config(cfg)
    _, cfg = small_functional()
    feed(cfg, "conv_b", "conv_b")
    with pytest.raises(FormatError, match="conv_b"):
        npcnn.io.model_from_config(cfg)
    _, cfg = small_functional()
    dense = entry(cfg, "dense_c")
    dense["name"] = dense["config"]["name"] = "conv_a"
    with pytest.raises(FormatError, match="two layers named 'conv_a'"):
        npcnn.io.model_from_config(cfg)


def test_backwards_config_builds_in_linear_time():
    """A long chain listed output-first (each layer fed by the next entry) builds, in the chain's order."""
    x = inp = npcnn.Input(shape=(4,), name="x")
    for i in range(300):
        x = L.Activation("relu", name=f"act{i}")(x)
    cfg = model_config(npcnn.Model(inp, x, name="chain"), 3)
    layers = cfg["config"]["layers"]
    cfg["config"]["layers"] = layers[:1] + layers[1:][::-1]
    model = npcnn.io.model_from_config(cfg)
    assert [s[0] for s in model._steps][-1] == "act299"
    np.testing.assert_array_equal(model.predict(np.array([[-1.0, 2.0, -3.0, 4.0]], np.float32)),
                                  [[0.0, 2.0, 0.0, 4.0]])


def test_too_many_layers(monkeypatch):
    monkeypatch.setattr(npcnn.io.config, "MAX_LAYERS", 3)
    _, cfg = small_functional()
    with pytest.raises(FormatError, match="5 layer entries"):
        npcnn.io.model_from_config(cfg)


@pytest.mark.parametrize("key, value, words", [
    ("units", 10 ** 12, "would hold more than"),
    ("units", -4, "units must be positive"),
    ("batch_shape", [None, 8, -8, 3], "input layer 'image' has the shape"),
    ("batch_shape", [None, 2 ** 40, 8, 3], "input layer 'image' has the shape"),
])
def test_huge_and_negative_shapes(key, value, words):
    _, cfg = small_functional()
    target = entry(cfg, "dense_c" if key == "units" else "image")
    target["config"][key] = value
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match=words):
            npcnn.io.model_from_config(cfg)
        assert tracemalloc.get_traced_memory()[1] < 64 << 20
    finally:
        tracemalloc.stop()


# ---------------------------------------------------------------------------------------------- weights
@pytest.mark.parametrize("kind", ["bytes", "complex", "vlen_str"])
def test_weights_of_the_wrong_dtype(tmp_path, kind):
    path = tmp_path / "w.weights.h5"
    shutil.copy(os.path.join(KERAS, "cats_dogs.k3.weights.h5"), path)
    with h5py.File(path, "r+") as f:
        shape = f["layers/conv2d/vars/0"].shape
        del f["layers/conv2d/vars/0"]
        if kind == "bytes":
            f["layers/conv2d/vars/0"] = np.full(shape, b"w", "S1")
        elif kind == "complex":
            f["layers/conv2d/vars/0"] = np.ones(shape, np.complex64)
        else:
            f.create_dataset("layers/conv2d/vars/0", shape, h5py.string_dtype())
    refused(path, "conv1", config=os.path.join(KERAS, "cats_dogs.k3.json"))


def test_dataset_declaring_more_bytes_than_the_file_is_not_read(tmp_path):
    """An unallocated 40 GB dataset in a tiny file: refused from its declared size, nothing read."""
    path = tmp_path / "huge.weights.h5"
    shutil.copy(os.path.join(KERAS, "cats_dogs.k3.weights.h5"), path)
    with h5py.File(path, "r+") as f:
        f.create_dataset("layers/extra/vars/0", (100_000, 100_000), "f4")
    refused(path, "declare over", "refused before reading", config=os.path.join(KERAS, "cats_dogs.k3.json"))


def test_links_to_other_files_are_never_followed(tmp_path):
    """A layer's weights behind an external (or soft) link: not followed, so the layer has no weights."""
    outside = tmp_path / "outside.h5"
    with h5py.File(outside, "w") as f:
        f["vars/0"] = np.zeros((3, 3, 3, 16), np.float32)
    for link in ("external", "soft"):
        path = tmp_path / f"{link}.weights.h5"
        shutil.copy(os.path.join(KERAS, "cats_dogs.k3.weights.h5"), path)
        with h5py.File(path, "r+") as f:
            del f["layers/conv2d"]
            f["layers/conv2d"] = (h5py.ExternalLink(str(outside), "/") if link == "external"
                                  else h5py.SoftLink("/layers/conv2d_1"))
        refused(path, "no weights for layer 'conv1'", config=os.path.join(KERAS, "cats_dogs.k3.json"))


def test_tfjs_shards_checked_against_the_manifest_before_reading(tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(TFJS, folder)
    doc = json.load(open(folder / "model.json"))
    doc["weightsManifest"][0]["weights"][0]["shape"] = [2 ** 24, 2 ** 24]
    (folder / "model.json").write_text(json.dumps(doc))
    refused(folder / "model.json", "holds over")
    doc["weightsManifest"][0]["weights"][0]["shape"] = [3, -1]
    (folder / "model.json").write_text(json.dumps(doc))
    refused(folder / "model.json", "expected a list of sizes")


# ---------------------------------------------------------------------------------------------- HDF5 deadline
def test_libhdf5_infinite_loop_is_stopped_at_the_deadline(monkeypatch):
    """The fixture makes libhdf5 loop forever in C (reading model_weights.attrs['backend']); npcnn's
    reader runs in a child process, which is killed at the deadline."""
    monkeypatch.setattr(hdf5, "HDF5_SECONDS", 1.0)
    start = time.monotonic()
    refused(HANG, "did not finish within 1 s", "corrupt or malicious")
    assert time.monotonic() - start < 30  # bounded: without the child it never returns


def test_slow_reader_hits_the_deadline_and_the_child_is_reaped(monkeypatch):
    pids = []

    def slow(source, size, out):
        time.sleep(120)

    real_fork = os.fork

    def fork():
        pid = real_fork()
        pids.append(pid)
        return pid

    monkeypatch.setattr(hdf5, "_snapshot", slow)
    monkeypatch.setattr(os, "fork", fork)
    with pytest.raises(FormatError, match="within 0.3 s"):
        hdf5.open_hdf5(os.path.join(KERAS, "conv2d.k3.h5"), "conv2d.k3.h5", seconds=0.3)
    with pytest.raises(ChildProcessError):  # killed and waited for: no zombie left
        os.waitpid(pids[0], os.WNOHANG)


def test_unreadable_dataset_is_named(tmp_path):
    """A gzip chunk overwritten with junk: libhdf5 fails reading it; the error names the dataset."""
    path = tmp_path / "bad_chunk.h5"
    with h5py.File(path, "w") as f:
        f["a"] = np.arange(10.0)
        chunk = f.create_dataset("b", data=np.arange(5000.0), chunks=(5000,), compression="gzip").id.get_chunk_info(0)
    data = bytearray(path.read_bytes())
    data[chunk.byte_offset:chunk.byte_offset + chunk.size] = b"\xff" * chunk.size
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="dataset '/b'.*filter"):
        hdf5.open_hdf5(str(path), "bad_chunk.h5")


def test_reader_crash_is_a_format_error(monkeypatch):
    """The forked reader dies, then the fresh-interpreter reader dies too: one FormatError saying so."""
    monkeypatch.setattr(hdf5, "_snapshot", lambda source, size, out: os._exit(3))
    monkeypatch.setattr(sys, "executable", shutil.which("false"))  # the spawned child exits with no answer
    with pytest.raises(FormatError, match="crashed"):
        hdf5.open_hdf5(os.path.join(KERAS, "conv2d.k3.h5"), "conv2d.k3.h5")


def test_forked_reader_crash_falls_back_to_a_fresh_interpreter(monkeypatch):
    """A forked child can die for reasons of the parent's (a lock another thread held at the fork, as with
    TensorFlow loaded): the file is then read by a fresh interpreter, and the model opens."""
    path = os.path.join(KERAS, "conv2d.k3.h5")
    expected = hdf5.open_hdf5(path, path)
    monkeypatch.setattr(hdf5, "_snapshot", lambda source, size, out: os._exit(3))
    spawned = []
    real_spawned = hdf5._read_spawned
    monkeypatch.setattr(hdf5, "_read_spawned", lambda *a: spawned.append(a) or real_spawned(*a))
    got = hdf5.open_hdf5(path, path)
    assert len(spawned) == 1
    names, got_names = [], []
    expected.visititems(lambda n, o: names.append(n))
    got.visititems(lambda n, o: got_names.append(n))
    assert got_names == names and got.attrs["model_config"] == expected.attrs["model_config"]


# ---------------------------------------------------------------------------------------------- normal files
def test_snapshot_matches_h5py():
    """The child's snapshot holds the same tree, attributes and arrays as h5py reading the file directly."""
    path = os.path.join(KERAS, "branches.k2.h5")
    snap = hdf5.open_hdf5(path, path)
    with h5py.File(path, "r") as f:
        names = []
        f.visititems(lambda n, o: names.append(n))
        got = []
        snap.visititems(lambda n, o: got.append(n))
        assert sorted(got) == sorted(names)
        for n in names:
            assert dict(snap[n].attrs).keys() == dict(f[n].attrs).keys()
            if isinstance(f[n], h5py.Dataset):
                assert snap[n].shape == f[n].shape and snap[n].dtype == f[n].dtype
                np.testing.assert_array_equal(np.asarray(snap[n]), f[n][()])
        assert snap.attrs["model_config"] == f.attrs["model_config"]
        assert list(snap["model_weights"].attrs["layer_names"]) == list(f["model_weights"].attrs["layer_names"])
        assert "model_weights/" + names[-1].split("/", 1)[-1] in snap or names[-1] in snap


def test_spawned_reader_equals_forked():
    """The reader used where fork is unavailable (a fresh interpreter) gives the same snapshot, from a
    path and from bytes (an archive's model.weights.h5)."""
    path = os.path.join(KERAS, "conv2d.k3.weights.h5")
    size = os.path.getsize(path)
    forked = hdf5._unpack(*hdf5._read_forked(path, size, 30, path), path)
    for source in (path, open(path, "rb").read()):
        spawned = hdf5._unpack(*hdf5._read_spawned(source, size, 60, path), path)
        names = []
        forked.visititems(lambda n, o: names.append(n))
        assert names
        for n in names:
            assert spawned[n].attrs.keys() == forked[n].attrs.keys()
            if isinstance(forked[n], hdf5.Dataset):
                np.testing.assert_array_equal(np.asarray(spawned[n]), np.asarray(forked[n]))


@pytest.mark.parametrize("name", ["cats_dogs.k2.h5", "cats_dogs.k3.h5", "cats_dogs.k3.keras"])
def test_normal_files_load_with_the_stored_weights(name):
    model = npcnn.load_model(os.path.join(KERAS, name))
    with h5py.File(os.path.join(KERAS, "cats_dogs.k2.h5"), "r") as f:
        for layer in ("conv1", "conv2", "fc"):
            np.testing.assert_array_equal(model.get_layer(layer).params["kernel"],
                                          f[f"model_weights/{layer}/{layer}/kernel:0"][()])
    ref = np.load(os.path.join(KERAS, "cats_dogs.ref.npz"))
    x = ref[sorted(k for k in ref.files if k.startswith("x"))[0]]
    assert np.isfinite(model.predict(x)).all()
