"""Keep freed memory for the next layer: two glibc malloc settings, made once when npcnn is imported.

Every layer makes fresh arrays of a few MB. By default glibc serves such arrays with fresh mappings or
hands freed heap memory back to the system at once, so the next layer's arrays arrive as new pages, each
zero-filled by the kernel on first touch: measured 1,000-1,700 page faults and 2.5-5 ms of system time per
call of the cats-vs-dogs CNN's first layer / input gradient (0 with the settings below; 17 -> 13 ms for the
whole input gradient). Frameworks keep a cache of freed blocks for this; npcnn asks glibc to serve arrays
under MMAP_THRESHOLD from its heap and to keep TOP_PAD bytes of freed heap for reuse (mallopt). Larger
arrays are mapped and unmapped as before. Skipped where the C library is not glibc, when the user set
one of glibc's own MALLOC_*_ variables, or with NPCNN_KEEP_HEAP=0.
"""
import ctypes
import ctypes.util
import os
import sys

MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit systems
TOP_PAD = 32 << 20
_M_TOP_PAD, _M_MMAP_THRESHOLD = -2, -3  # glibc's mallopt parameter numbers
_USER_SETTINGS = ("MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_MAX_")


def keep_freed_memory():
    """Make the two settings (see the module docstring). Returns True if glibc took them."""
    if not sys.platform.startswith("linux") or os.environ.get("NPCNN_KEEP_HEAP") == "0" \
            or any(name in os.environ for name in _USER_SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TOP_PAD, TOP_PAD) == 1
