"""One place that turns low-level failures (h5py, zipfile, json, a malformed value deep in a config)
into npcnn's FormatError naming the file and the step, so no raw traceback reaches the user; and the
size limits every reader checks *before* it allocates (a file is untrusted input: it may lie about sizes).

    MAX_EXPANSION      a zip entry or HDF5 dataset may hold at most this many times the file's own bytes
    MAX_MEMBER_BYTES   ... and never more than this in absolute terms (8 GiB: npcnn's largest weight)
    MAX_JSON_BYTES     a config / metadata JSON text (the largest Keras application config is ~1 MB)
    MAX_JSON_DEPTH     nesting of JSON containers (Keras configs nest ~20 deep; json recursion stays far off)
    MAX_LAYERS         layer entries in one model file, nested models included
"""
import contextlib
import re
import zipfile
import zlib

import numpy as np

from ..errors import FormatError, NpcnnError

MAX_EXPANSION = 64
MAX_MEMBER_BYTES = 8 << 30
MAX_JSON_BYTES = 64 << 20
MAX_JSON_DEPTH = 200
MAX_LAYERS = 20000


@contextlib.contextmanager
def reading(where, what):
    """Within the block, any non-npcnn failure becomes ``FormatError("<where>: <what> failed (...)")``.

    ArithmeticError / RecursionError / MemoryError come from values in the file (a zero stride, nesting,
    a size) that slipped past a check; they are the file's fault too, so they get the same treatment."""
    try:
        yield
    except NpcnnError:
        raise
    except (OSError, KeyError, ValueError, TypeError, IndexError, AttributeError, RuntimeError, EOFError,
            zipfile.BadZipFile, zlib.error, UnicodeDecodeError, ArithmeticError, MemoryError) as e:
        # RecursionError is a RuntimeError, OverflowError / ZeroDivisionError are ArithmeticErrors
        raise FormatError(f"{where}: {what} failed ({type(e).__name__}: {str(e)[:300]}); the file may be "
                          "truncated, corrupt, or not what its name says") from None


def byte_budget(file_bytes):
    """How many bytes a file of ``file_bytes`` may expand to (zip entries, HDF5 datasets): at most
    MAX_EXPANSION times itself plus 1 MiB of slack for tiny files, and never over MAX_MEMBER_BYTES."""
    return min(MAX_MEMBER_BYTES, MAX_EXPANSION * int(file_bytes) + (1 << 20))


def read_zip_member(zf, name, where, archive_bytes, limit=None):
    """The bytes of one zip entry, refusing zip bombs (see :func:`copy_zip_member`)."""
    chunks = []
    copy_zip_member(zf, name, where, archive_bytes, chunks.append, limit)
    return b"".join(chunks)


def copy_zip_member(zf, name, where, archive_bytes, write, limit=None):
    """Decompress one zip entry in 1 MiB chunks into ``write(chunk)``, refusing zip bombs: the size the
    header declares is checked first, then the bytes as they come, against the same cap (headers can lie).

    zf: an open ZipFile. archive_bytes: the archive's size on disk. limit: a tighter cap (e.g. JSON).
    """
    cap = byte_budget(archive_bytes) if limit is None else min(limit, byte_budget(archive_bytes))
    info = zf.getinfo(name)
    if info.file_size > cap:
        raise FormatError(f"{where}: the archive entry {name!r} says it decompresses to {info.file_size:,} bytes "
                          f"from a {archive_bytes:,}-byte archive (limit {cap:,}); refused as a zip bomb")
    total = 0
    with zf.open(info) as member:
        while True:
            chunk = member.read(1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > cap:
                raise FormatError(f"{where}: the archive entry {name!r} decompresses to more than {cap:,} bytes "
                                  f"(its header said {info.file_size:,}); refused as a zip bomb")
            write(chunk)


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)


def json_depth(text):
    """The deepest nesting of ``[``/``{`` in JSON text (strings skipped), without parsing it: Python's
    json parser recurses per level, so depth is checked before it runs."""
    data = text.encode("utf8", "replace") if isinstance(text, str) else bytes(text)
    codes = np.frombuffer(_JSON_STRING.sub(b"", data), np.uint8)
    step = np.isin(codes, (ord("["), ord("{"))).astype(np.int64) - np.isin(codes, (ord("]"), ord("}")))
    return int(np.cumsum(step).max()) if step.size else 0


def check_json_text(text, where):
    """Refuse JSON text that is too big or too deeply nested, before parsing it."""
    if len(text) > MAX_JSON_BYTES:
        raise FormatError(f"{where}: the JSON text is {len(text):,} bytes; npcnn reads configs up to "
                          f"{MAX_JSON_BYTES:,} bytes (a Keras config is rarely over 1 MB)")
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise FormatError(f"{where}: the JSON nests {depth} levels deep; npcnn reads configs up to "
                          f"{MAX_JSON_DEPTH} levels (a Keras config nests about 20)")
