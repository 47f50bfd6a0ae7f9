"""npcnn's exceptions: one base class, so callers can catch everything npcnn raises on purpose."""


class NpcnnError(Exception):
    """Base class of every error npcnn raises on purpose."""


class InputError(NpcnnError, ValueError):
    """An array, argument or name given by the caller is wrong (shape, dtype, NaN, unknown layer...)."""


class FormatError(NpcnnError):
    """A model file (or its config) is malformed, truncated, or disagrees with itself."""


class UnsupportedError(FormatError):
    """A legitimate Keras feature that npcnn does not implement (names the missing piece)."""


class UnsafeModelError(FormatError):
    """A model file asks for code to be run or imported (Lambda layers, custom objects, modules)."""
