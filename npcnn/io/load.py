"""``load_model``: pick the format from the file's content (never its name), then config -> model -> weights.

    directory, or JSON with "modelTopology"    TF.js layers model (model.json + binary shards)
    zip ("PK\\x03\\x04") with config.json        Keras 3 .keras archive (object-path weights)
    HDF5 with a model_config attribute          full model: Keras 2 model.save(".h5") or Keras 3 legacy .h5
    HDF5 with layer_names (no config)           Keras 2 save_weights(".h5"): needs config=
    HDF5 with layers/ or vars/ groups           Keras 3 .weights.h5: needs config=
    other JSON with class_name                  architecture only (model.to_json()): fresh weights

Every h5py / zipfile / json failure becomes a :class:`FormatError` naming the file and what was expected.
"""
import os
import tempfile
import zipfile

from ..errors import FormatError, InputError, UnsupportedError
from . import config as cfgmod
from . import weights as wmod
from .hdf5 import open_hdf5
from .guard import MAX_JSON_BYTES, copy_zip_member, read_zip_member, reading

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def load_model(path, config=None):
    """Open any Keras model file; ``config`` (a JSON path, JSON text or dict) for weights-only files,
    or to read weights against another architecture JSON (matched by layer name)."""
    try:
        path = os.fspath(path)
    except TypeError:
        raise InputError(f"load_model expects a file path, got {type(path).__name__}") from None
    if os.path.isdir(path):
        path = os.path.join(path, "model.json")
        if not os.path.isfile(path):
            raise FormatError(f"{os.path.dirname(path)}: a folder, but not a TF.js model (no model.json in it)")
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    with reading(path, "reading the first bytes"):
        with open(path, "rb") as f:
            head = f.read(8)
    if not head:
        raise FormatError(f"{path}: the file is empty")
    if head.startswith(b"PK"):
        return _load_keras_archive(path, config)
    if head == HDF5_SIGNATURE or _is_hdf5(path):
        return _load_hdf5(path, config)
    if head.lstrip()[:1] in (b"{", b"["):
        return _load_json(path, config)
    raise FormatError(f"{path}: not a Keras model file: expected an HDF5 file (.h5), a zip archive (.keras), or "
                      f"a JSON file (TF.js model.json / model config); it starts with {head!r}")


def _is_hdf5(path):
    """HDF5's signature at offset 0, 512, 1024, 2048... (where a user block may push the superblock),
    looked for in Python: libhdf5 never touches a file before the child process of :mod:`.hdf5` does."""
    with open(path, "rb") as f:
        size, offset = os.path.getsize(path), 512
        while offset + 8 <= size:
            f.seek(offset)
            if f.read(8) == HDF5_SIGNATURE:
                return True
            offset *= 2
    return False


def config_argument(config, where):
    """config= as given: a dict, JSON text, or a path to a JSON file -> the config dict."""
    if isinstance(config, dict):
        return cfgmod.unwrap(config)
    if isinstance(config, bytes):
        config = config.decode("utf8", "replace")
    if isinstance(config, os.PathLike) or (isinstance(config, str) and not config.lstrip().startswith("{")):
        cpath = os.fspath(config)
        if not os.path.isfile(cpath):
            raise InputError(f"{where}: config={cpath!r} is neither JSON text nor an existing file")
        config, where = _json_file(cpath), cpath
    if not isinstance(config, (str, bytes)):
        raise InputError(f"{where}: config= must be a dict, JSON text or a path, got {type(config).__name__}")
    return cfgmod.unwrap(cfgmod.loads(config, where))


def _vet(config, where, version, backend=None):
    """Parse the config and resolve every class name: unsafe or unknown layers are refused here, before
    any weight is read or any layer built. version / backend: the file's keras_version and backend
    attributes (Keras 1 files need them). Returns (spec, dialect)."""
    with reading(where, "reading the model config"):
        dialect = cfgmod.detect_dialect(config, version)
    spec = cfgmod.parse(config, where, dialect, version, backend)
    cfgmod.check_classes(spec, where)
    return spec, dialect


def _build(vetted, where, fill):
    """Build the vetted spec (zero weights), then ``fill(spec)`` puts the file's weights in."""
    spec, dialect = vetted
    model = cfgmod.build(spec, where, dialect)
    fill(spec)
    return model


def _load_hdf5(path, config):
    f = open_hdf5(path, path)
    with reading(path, "reading the HDF5 model"):
        version = backend = None
        if config is not None:
            cfg = config_argument(config, path)
        elif "model_config" in f.attrs:
            cfg = cfgmod.unwrap(cfgmod.loads(f.attrs["model_config"], f"{path} (model_config)"))
            version, backend = f.attrs.get("keras_version"), f.attrs.get("backend")
        elif _has_weights(f):
            raise InputError(f"{path}: a weights-only file; pass the architecture as config= (the JSON from "
                             "model.to_json(), as a path or text)")
        else:
            raise FormatError(f"{path}: an HDF5 file, but not a Keras model: no model_config attribute and no "
                              f"Keras weight layout (top-level keys: {sorted(f.keys())[:8]})")
        vetted = _vet(cfg, path, version, backend)
        if "model_weights" in f:
            return _build(vetted, path, lambda spec: wmod.read_legacy(f["model_weights"], spec, path))
        if "layer_names" in f.attrs or "layer_names0" in f.attrs:
            return _build(vetted, path, lambda spec: wmod.read_legacy(f, spec, path))
        if _has_weights(f):
            return _build(vetted, path, lambda spec: wmod.read_object_paths(f, spec, path))
        raise FormatError(f"{path}: has a model config but no weights (no model_weights group, layer_names "
                          "attribute or layers/ group)")


def _has_weights(f):
    return any(k in f for k in ("layers", "vars", "_layer_checkpoint_dependencies")) or \
        "layer_names" in f.attrs or "layer_names0" in f.attrs


def _load_keras_archive(path, config):
    with reading(path, "opening as a zip archive"):
        zf = zipfile.ZipFile(path)
    size = os.path.getsize(path)

    def json_member(name):  # read with the zip-bomb checks of guard.read_zip_member
        return cfgmod.loads(read_zip_member(zf, name, f"{path} ({name})", size, MAX_JSON_BYTES), f"{path} ({name})")

    with zf, reading(path, "reading the .keras archive"):
        names = zf.namelist()
        if "config.json" not in names:
            raise FormatError(f"{path}: a zip file, but not a Keras archive: no config.json (it has "
                              f"{', '.join(names[:6]) or 'nothing'})")
        meta = {}
        if "metadata.json" in names:
            meta = json_member("metadata.json")
        version = meta.get("keras_version") if isinstance(meta, dict) else None
        if config is not None:
            cfg, version = config_argument(config, path), None
        else:
            cfg = json_member("config.json")
        vetted = _vet(cfg, path, version)
        if "model.weights.h5" not in names:
            if "model.weights.npz" in names:
                raise UnsupportedError(f"{path}: weights stored as model.weights.npz, which Keras writes with "
                                       "pickled objects; npcnn never unpickles. Re-save with the default h5 format")
            raise FormatError(f"{path}: the archive has no model.weights.h5")
        # the weights go to a temporary file, read from there by the HDF5 child: never all in memory here
        where = f"{path} (model.weights.h5)"
        fd, tmp = tempfile.mkstemp(suffix=".weights.h5")
        try:
            with os.fdopen(fd, "wb") as out:
                copy_zip_member(zf, "model.weights.h5", where, size, out.write)
            h5 = open_hdf5(tmp, where)
        finally:
            os.unlink(tmp)
    with reading(where, "reading the weights"):
        return _build(vetted, path, lambda spec: wmod.read_object_paths(h5, spec, where))


def _json_file(path):
    """The bytes of a JSON file, refused unread when it is over MAX_JSON_BYTES."""
    with reading(path, "reading JSON"):
        size = os.path.getsize(path)
        if size > MAX_JSON_BYTES:
            raise FormatError(f"{path}: a {size:,}-byte JSON file; npcnn reads configs up to {MAX_JSON_BYTES:,} "
                              "bytes (a Keras config is rarely over 1 MB)")
        with open(path, "rb") as f:
            return f.read()


def _load_json(path, config):
    doc = cfgmod.loads(_json_file(path), path)
    if isinstance(doc, dict) and "modelTopology" in doc:
        return _load_tfjs(path, doc, config)
    if config is not None:
        raise InputError(f"{path}: a model config JSON holds no weights; pass the weights file as the path and "
                         "this JSON as config=")
    model, _ = cfgmod.model_from_config(doc, path)
    return model


def _load_tfjs(path, doc, config):
    """TF.js layers model: modelTopology (a Keras config, maybe under "model_config") + weightsManifest."""
    topology = doc["modelTopology"]
    version = topology.get("keras_version") if isinstance(topology, dict) else None
    cfg = config_argument(config, path) if config is not None else cfgmod.unwrap(topology)
    vetted = _vet(cfg, path, version)
    if "weightsManifest" not in doc:
        raise FormatError(f"{path}: a TF.js model.json without a weightsManifest")
    with reading(path, "reading the TF.js weight shards"):
        tensors = wmod.tfjs_tensors(doc["weightsManifest"], os.path.dirname(os.path.abspath(path)), path)
    return _build(vetted, path, lambda spec: wmod.read_tfjs(tensors, spec, path))


def model_from_config(config):
    """A model from a Keras architecture (dict, JSON text, or a JSON file path), weights freshly
    initialised as Keras's ``model_from_json`` does."""
    where = "config"
    if isinstance(config, (str, os.PathLike)) and not str(config).lstrip().startswith("{"):
        where = os.fspath(config)
    model, _ = cfgmod.model_from_config(config_argument(config, "config"), where)
    return model
