"""Read an untrusted HDF5 file in a child process under a deadline, and hand the readers a plain snapshot.

Why: a byte-mutated HDF5 file can make libhdf5 loop forever in C (seen with h5py 3.14/3.16 and HDF5
1.14.6 reading a ``model_config`` attribute; tests/fixtures/untrusted/hdf5_hang.h5 loops in HDF5 2.0.0
reading ``model_weights.attrs["backend"]``; the fuzzer finds about one such file per 1,000 mutants). Ctrl-C and Python timeouts never reach code looping in C,
so the only reliable bound is another process that can be killed. So:

    parent                                       child (os.fork on Linux; a fresh interpreter elsewhere)
    open_hdf5(path or bytes, where)      --->     h5py.File(...): walk every group, attribute, dataset
      reads the pipe under a deadline    <---     one JSON header (tree, attributes as str/number/list),
      (HDF5_SECONDS + size / HDF5_RATE)           then each dataset as .npy bytes (np.lib.format)
      kills the child when it is late             exits; never returns into the caller's code
    -> Group: h5py-like, read only (attrs, [path], get, keys, in, visititems; Dataset shape/dtype/[()])

Nothing crosses the pipe as pickle: the header is JSON, the arrays are ``.npy`` read with
``allow_pickle=False``, and the parent re-checks each array against the header. The child also enforces
the limits of :mod:`.guard` before it allocates (declared dataset bytes vs the file's size), never
follows soft or external links, and refuses datasets stored in other files (external / virtual).
"""
import io
import json
import os
import select
import signal
import struct
import subprocess
import sys
import time
import warnings

import numpy as np

from ..errors import FormatError
from .guard import byte_budget, reading

HDF5_SECONDS = 3.0                 # deadline for a small file; generous next to the ~50 ms a load takes
HDF5_RATE = 25e6                   # plus one second per 25 MB (VGG16's 528 MB: 24 s; it reads in ~1 s)
MAX_OBJECTS = 200_000              # groups + datasets (ResNet152's weights: ~2,000)
MAX_HEADER_BYTES = 256 << 20       # the JSON header: attributes (configs) and the tree
SKIPPED = ("/optimizer_weights/", "/optimizer/")   # Keras 2 / Keras 3 optimizer state: never used
_READABLE = "biufcSU"              # dataset kinds sent as arrays; anything else is described, not read


def open_hdf5(source, where, seconds=None):
    """The root :class:`Group` of an HDF5 file read in a child process.

    source: a file path, or the file's bytes (a .keras archive's model.weights.h5).
    seconds: the deadline; default HDF5_SECONDS + size / HDF5_RATE. Raises FormatError when the child
    is late, dies, or reports an error, naming ``where``.
    """
    size = len(source) if isinstance(source, (bytes, bytearray)) else os.path.getsize(source)
    seconds = HDF5_SECONDS + size / HDF5_RATE if seconds is None else seconds
    with reading(where, "reading the HDF5 reader's answer"):
        if not sys.platform.startswith("linux"):
            return _unpack(*_read_spawned(source, size, seconds, where), where)
        try:
            header, arrays = _read_forked(source, size, seconds, where)
        except _ChildDied:
            # A forked copy of a process with other threads (TensorFlow's, say) can die on a lock one of
            # them held at the fork; a fresh interpreter cannot. A file that really crashes libhdf5 crashes
            # it again, and that error is the answer.
            header, arrays = _read_spawned(source, size, seconds, where)
        return _unpack(header, arrays, where)


class _ChildDied(FormatError):
    """The reader process ended without an answer (crashed), as opposed to reporting an error or being late."""


def _late(where, seconds):
    return FormatError(f"{where}: reading the HDF5 metadata did not finish within {seconds:.3g} s; the file is "
                       "corrupt or malicious (libhdf5 can loop forever on such files, so npcnn reads them in a "
                       "separate process and stops it)")


# ---------------------------------------------------------------------------------------------- parent side
class _Pipe:
    """A file-like reader of the child's pipe where every read respects one wall-clock deadline."""

    def __init__(self, fd, seconds, where):
        self.fd, self.seconds, self.where = fd, seconds, where
        self.deadline = time.monotonic() + seconds

    def read(self, n):
        parts, left = [], n
        while left > 0:
            wait = self.deadline - time.monotonic()
            if wait <= 0 or not select.select([self.fd], [], [], wait)[0]:
                raise _late(self.where, self.seconds)
            chunk = os.read(self.fd, min(left, 1 << 20))
            if not chunk:
                break
            parts.append(chunk)
            left -= len(chunk)
        return b"".join(parts)


def _read_header(stream, where):
    """The child's JSON header: 8-byte length, then the text."""
    raw = stream.read(8)
    if len(raw) < 8:
        raise _ChildDied(f"{where}: the HDF5 reader stopped without an answer (it crashed on the file)")
    (length,) = struct.unpack("<Q", raw)
    if length > MAX_HEADER_BYTES:
        raise FormatError(f"{where}: the HDF5 metadata is over {MAX_HEADER_BYTES:,} bytes; refused")
    text = stream.read(length)
    if len(text) < length:
        raise _ChildDied(f"{where}: the HDF5 reader stopped mid-answer (it crashed on the file)")
    try:
        header = json.loads(text)
    except (ValueError, RecursionError):
        raise FormatError(f"{where}: the HDF5 reader's answer is unreadable; the file is corrupt") from None
    if "error" in header:
        raise FormatError(f"{where}: reading as HDF5 failed ({header['error']}); the file may be truncated, "
                          "corrupt, or not what its name says")
    return header


def _read_forked(source, size, seconds, where):
    """Fork a child that writes the snapshot into a pipe; read the header and every array here."""
    rfd, wfd = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork in a threaded process (locks held by other threads). The child only
        # runs h5py and NumPy, and h5py holds its own lock across fork (os.register_at_fork); anything
        # else that blocks it ends at the deadline.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: never returns, never runs the parent's cleanup (os._exit)
        code = 1
        try:
            os.close(rfd)
            _limit_memory(size)
            with os.fdopen(wfd, "wb", buffering=1 << 20) as out:
                _snapshot(source, size, out)
            code = 0
        finally:
            os._exit(code)
    os.close(wfd)
    try:
        stream = _Pipe(rfd, seconds, where)
        header = _read_header(stream, where)
        arrays = [_read_array(stream, d, where) for d in header["datasets"]]
        return header, arrays
    finally:
        os.close(rfd)
        _stop(pid)


def _stop(pid):
    """Kill the child if it still runs, and reap it (no zombie)."""
    try:
        if os.waitpid(pid, os.WNOHANG) == (0, 0):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _read_spawned(source, size, seconds, where):
    """Without fork: a fresh interpreter runs the child (slower to start, same protocol over stdout)."""
    cmd = [sys.executable, "-c", "import sys; from npcnn.io.hdf5 import _snapshot; "
                                 "_snapshot(sys.stdin.buffer.read() if sys.argv[1] == '-' else sys.argv[1], "
                                 "int(sys.argv[2]), sys.stdout.buffer)"]
    data = bytes(source) if isinstance(source, (bytes, bytearray)) else None
    cmd += ["-" if data is not None else os.fspath(source), str(size)]
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    try:
        out, _ = proc.communicate(input=data, timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise _late(where, seconds) from None
    stream = io.BytesIO(out)
    header = _read_header(stream, where)
    return header, [_read_array(stream, d, where) for d in header["datasets"]]


def _read_array(stream, declared, where):
    """One tagged ``.npy`` array from the child, checked against the header's shape and dtype."""
    tag = stream.read(1)
    if tag == b"E":
        _read_header(stream, where)  # raises the child's error
    if tag != b"A":
        raise _ChildDied(f"{where}: the HDF5 reader stopped mid-answer (it crashed on the file)")
    try:
        array = np.lib.format.read_array(stream, allow_pickle=False)
    except ValueError as e:
        raise FormatError(f"{where}: the HDF5 reader's data is unreadable ({e}); the file is corrupt") from None
    if list(array.shape) != declared["shape"] or array.dtype.str != declared["dtype"]:
        raise FormatError(f"{where}: dataset {declared['name']!r} came back as {array.dtype}{array.shape}, "
                          f"not the declared {declared['dtype']}{tuple(declared['shape'])}")
    return array


# ---------------------------------------------------------------------------------------------- child side
def _limit_memory(size):
    """Cap the child's address space: what it has now plus the file's byte budget and 512 MiB, so a size
    libhdf5 trusts from the file fails as a MemoryError in the child, not an out-of-memory kill."""
    try:
        import resource
        with open("/proc/self/statm") as f:
            now = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        cap = now + byte_budget(size) + (512 << 20)
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard == resource.RLIM_INFINITY or cap < hard:
            resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except (OSError, ValueError, ImportError):
        pass  # no /proc or no resource module: the deadline still bounds the child


def _snapshot(source, size, out):
    """The child's work: walk the file, write the header and the arrays to ``out`` (a binary file)."""
    try:
        import h5py
        handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
        with h5py.File(handle, "r") as f:
            nodes, readable = _walk(f, h5py, byte_budget(size))
            header = {"nodes": nodes, "datasets": [dict(nodes[i]["data"], node=i) for i, _ in readable]}
            _write_header(out, header)
            sink = _Sink(out)
            for i, dset in readable:  # each array after a tag: b"A" and .npy bytes, or b"E" and an error
                try:
                    array = np.asarray(dset[()], order="C")
                except Exception as e:  # noqa: BLE001 - reported to the parent, naming the dataset
                    out.write(b"E")
                    _write_header(out, {"error": f"dataset {nodes[i]['data']['name']!r}: {_describe(e)}"})
                    break
                out.write(b"A")
                np.lib.format.write_array(sink, array, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - every failure is reported to the parent as text
        _write_header(out, {"error": _describe(e)})
    out.flush()


def _describe(e):
    return f"{type(e).__name__}: {str(e)[:300]}"


class _Sink:
    """``out`` seen as a plain writer: np.lib.format would write a real file with ``tofile``, bypassing
    ``out``'s buffer (the header would then arrive after the data)."""

    def __init__(self, out):
        self.write = out.write


def _write_header(out, header):
    text = json.dumps(header).encode()
    out.write(struct.pack("<Q", len(text)) + text)


def _walk(root, h5py, budget):
    """Every object reachable by hard links, once each (a cycle of links is kept as a cycle).

    Returns (nodes, readable): nodes[i] = {"attrs", "links": {name: index}} for groups or
    {"attrs", "shape", "dtype", "data" | "why"} for datasets; readable = [(index, h5py dataset)] in
    the order their arrays follow the header. Declared dataset bytes are summed before any is read."""
    nodes, index, readable, total = [None], {root.id: 0}, [], 0
    stack = [(root, 0, "/")]
    while stack:
        obj, i, path = stack.pop()
        node = {"attrs": {k: _plain(obj.attrs, k) for k in obj.attrs}}
        if isinstance(obj, h5py.Group):
            node["links"] = {}
            for name in obj:
                if not isinstance(obj.get(name, getlink=True), h5py.HardLink):
                    continue  # soft and external links are never followed (they may name other files)
                child = obj[name]
                if child.id not in index:
                    index[child.id] = len(nodes)
                    nodes.append(None)
                    stack.append((child, index[child.id], f"{path}{name}/"))
                    if len(nodes) > MAX_OBJECTS:
                        raise ValueError(f"over {MAX_OBJECTS:,} HDF5 objects")
                node["links"][name] = index[child.id]
        else:
            why = _unreadable(obj, path)
            shape, dtype = obj.shape, obj.dtype
            node.update(shape=None if shape is None else list(shape), dtype=str(dtype))
            if why is None:
                total += int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                if total > budget:
                    raise ValueError(f"datasets declare over {budget:,} bytes in a smaller file ({path[:-1]} "
                                     f"{dtype}{shape}); refused before reading")
                node["data"] = {"name": path[:-1], "shape": list(shape), "dtype": dtype.str}
                readable.append((i, obj))
            else:
                node["why"] = why
        nodes[i] = node
    return nodes, readable


def _unreadable(dset, path):
    """Why a dataset is not read (None: it is read): optimizer state, external or virtual storage, no
    shape, no numbers."""
    if path.startswith(SKIPPED):
        return "optimizer state is not read"
    if dset.shape is None:
        return "it is empty (no shape)"
    if dset.external or dset.is_virtual:
        return "its data is stored in other files; npcnn never opens files named inside a file"
    if dset.dtype.kind not in _READABLE or dset.dtype.fields is not None or dset.dtype.subdtype is not None:
        return f"it holds {dset.dtype}, not numbers"
    return None


def _plain(attrs, name):
    """One attribute as JSON: str, number, bool, list; bytes as {"bytes": latin-1 text}; arrays as
    {"array": flat values, "shape", "dtype"}; anything else (references, empty) as None."""
    value = attrs[name]
    if isinstance(value, np.ndarray):
        return {"array": [_scalar(v) for v in value.ravel().tolist()], "shape": list(value.shape),
                "dtype": value.dtype.str if value.dtype.kind in "biuf" else "O"}
    return _scalar(value.item() if isinstance(value, np.generic) else value)


def _scalar(value):
    if isinstance(value, bytes):
        return {"bytes": value.decode("latin-1")}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return None


# ---------------------------------------------------------------------------------------------- the snapshot
def _unpack(header, arrays, where):
    """The root Group of a received snapshot; arrays are attached to their dataset nodes."""
    nodes = header["nodes"]
    for array, declared in zip(arrays, header["datasets"]):
        nodes[declared["node"]]["array"] = array
    return Group(nodes, 0, "/", where)


def _attr_value(value):
    """Undo :func:`_plain`: bytes back to bytes, arrays back to NumPy arrays (strings as objects)."""
    if isinstance(value, dict) and "bytes" in value:
        return value["bytes"].encode("latin-1")
    if isinstance(value, dict) and "array" in value:
        items = [_attr_value(v) for v in value["array"]]
        if value["dtype"] == "O":
            array = np.empty(len(items), object)
            array[:] = items
            return array.reshape(value["shape"])
        return np.array(items, np.dtype(value["dtype"])).reshape(value["shape"])
    return value


class _Node:
    """What groups and datasets share: a name, read-only attributes."""

    def __init__(self, nodes, i, name, where):
        self._nodes, self._i, self.name, self._where = nodes, i, name, where
        self._node = nodes[i]
        self.attrs = {k: _attr_value(v) for k, v in self._node["attrs"].items()}


class Dataset(_Node):
    """A dataset read by the child: ``shape``, ``dtype``, ``ds[()]`` / ``np.asarray(ds)`` give the array."""

    @property
    def shape(self):
        shape = self._node["shape"]
        return None if shape is None else tuple(shape)

    @property
    def dtype(self):
        try:
            return np.dtype(self._node["dtype"])
        except TypeError:
            return np.dtype(object)

    def _array(self):
        if "array" not in self._node:
            raise FormatError(f"{self._where}: dataset {self.name!r} is not read: {self._node.get('why')}")
        return self._node["array"]

    def __getitem__(self, key):
        return self._array()[key]

    def __array__(self, dtype=None, copy=None):
        array = self._array()
        return array if dtype is None else array.astype(dtype)

    def __len__(self):
        return self.shape[0] if self.shape else 0


class Group(_Node):
    """A group: ``g["a/b"]``, ``g.get(name)``, ``name in g``, keys/values/items, iteration, visititems."""

    def _child(self, name):
        """The object at a relative path ("a/b", "/" for the root), or None."""
        i, node_name = (0, "") if name.startswith("/") else (self._i, self.name.rstrip("/"))
        for part in (p for p in name.split("/") if p):
            links = self._nodes[i].get("links")
            if links is None or part not in links:
                return None
            i, node_name = links[part], f"{node_name}/{part}"
        kind = Group if "links" in self._nodes[i] else Dataset
        return kind(self._nodes, i, node_name or "/", self._where)

    def __getitem__(self, name):
        obj = self._child(str(name))
        if obj is None:
            raise KeyError(f"no object {name!r} in {self.name!r}")
        return obj

    def get(self, name, default=None):
        obj = self._child(str(name))
        return default if obj is None else obj

    def __contains__(self, name):
        return isinstance(name, str) and self._child(name) is not None

    def keys(self):
        return list(self._node["links"])

    def __iter__(self):
        return iter(self.keys())

    def __len__(self):
        return len(self._node["links"])

    def values(self):
        return [self[k] for k in self.keys()]

    def items(self):
        return [(k, self[k]) for k in self.keys()]

    def visititems(self, fn):
        """Call fn(relative path, object) for every object below, once each, as h5py does; stop when fn
        returns something other than None (and return it)."""
        seen, stack = {self._i}, [(self, "")]
        while stack:
            group, prefix = stack.pop(0)
            for name in group.keys():
                obj = group[name]
                if obj._i in seen:
                    continue
                seen.add(obj._i)
                result = fn(prefix + name, obj)
                if result is not None:
                    return result
                if isinstance(obj, Group):
                    stack.append((obj, f"{prefix}{name}/"))
        return None

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
