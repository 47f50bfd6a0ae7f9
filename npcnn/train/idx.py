"""The IDX format (MNIST, Fashion-MNIST), plain or gzip'd, and the Fashion-MNIST files themselves.

An IDX file is a 4-byte magic number, then one big-endian uint32 per dimension, then the array in C order:

    magic = 0x00 0x00 <type code> <number of dimensions>
    type codes: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64 (all big-endian)
"""
import gzip
import os

import numpy as np

from ..errors import FormatError, InputError

_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
"""Where Debian's ``dataset-fashion-mnist`` package puts the files."""

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot"]


def read_idx(path):
    """Read one IDX file (gzip'd if it starts with gzip's magic) -> ndarray in native byte order."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as e:
        raise FormatError(f"cannot read IDX file {path!r}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _TYPES:
        raise FormatError(f"{path!r} is not an IDX file (magic bytes {raw[:4].hex()}; expected 0000<type><ndim>)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise FormatError(f"{path!r}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    dtype = np.dtype(_TYPES[raw[2]])
    count = int(np.prod(shape))
    if len(raw) - header != count * dtype.itemsize:
        raise FormatError(f"{path!r}: the header says shape {shape} ({count * dtype.itemsize} bytes of data), "
                          f"the file has {len(raw) - header}")
    return np.frombuffer(raw, dtype, count, header).reshape(shape).astype(dtype.newbyteorder("="))


def load_fashion_mnist(directory=FASHION_MNIST_DIR):
    """(x_train, y_train), (x_test, y_test) as Keras's ``fashion_mnist.load_data()``: uint8 images
    (60000, 28, 28) and (10000, 28, 28), uint8 labels 0..9 (names in :data:`FASHION_MNIST_CLASSES`)."""
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte"]
    arrays = []
    for name in names:
        candidates = [os.path.join(directory, name + ext) for ext in (".gz", "")]
        found = [p for p in candidates if os.path.exists(p)]
        if not found:
            raise InputError(f"Fashion-MNIST file {name}(.gz) not found in {directory!r}; on Debian/Ubuntu "
                             "install it with `apt-get install dataset-fashion-mnist`, or pass directory=")
        arrays.append(read_idx(found[0]))
    x_train, y_train, x_test, y_test = arrays
    return (x_train, y_train), (x_test, y_test)
