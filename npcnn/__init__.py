"""npcnn: a from-scratch, pure-NumPy CNN engine that opens Keras model files and shows what CNNs see."""
from . import heap, layers
from .errors import FormatError, InputError, NpcnnError, UnsafeModelError, UnsupportedError
from .initializers import set_seed
from .model import Input, Model, Sequential, Trace

__version__ = "0.1.0"

heap.keep_freed_memory()


def load_model(path, config=None):
    """Open any Keras model file (format picked from its content); ``config`` for weights-only files."""
    from .io import load_model as _load
    return _load(path, config=config)


_SUBMODULES = ("attribution", "features", "images", "plot", "train", "verify", "io", "report", "gallery")


def __getattr__(name):
    """``npcnn.attribution``, ``npcnn.features``... are imported on first use (keeps ``import npcnn`` light)."""
    if name in _SUBMODULES:
        import importlib
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'npcnn' has no attribute {name!r}")


__all__ = ["layers", "Model", "Sequential", "Input", "Trace", "load_model", "set_seed", "NpcnnError",
           "InputError", "FormatError", "UnsafeModelError", "UnsupportedError"]
