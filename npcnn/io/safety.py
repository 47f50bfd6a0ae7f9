"""Refuse model configs that would need code from the file to be imported or run.

A Keras config is untrusted input. Keras itself can execute it: a Lambda layer carries marshalled
Python bytecode, a custom object names a Python class to import, ``module`` names a module. npcnn never
imports or runs anything named in a file; this walk finds every such request *before* a single layer is
built, and raises :class:`UnsafeModelError` naming the layer and the reason.
"""
from ..errors import UnsafeModelError

# Layers whose whole purpose is to run Python code from the file.
CODE_LAYERS = {"Lambda": "a Lambda layer carries marshalled Python bytecode",
               "__lambda__": "a serialized Python lambda carries marshalled bytecode"}

# Parts of a config npcnn never reads (optimizer, loss, metrics): whatever they name is never touched, so a
# custom loss does not make a model unloadable.
UNUSED = ("compile_config", "training_config")

# Modules Keras's own serialisation writes (Keras 3 "keras.layers", "keras.src.models.functional",
# tf_keras "tf_keras.src.engine.functional", initializers, activations...). Anything else is a user module.
_KERAS_MODULES = ("keras", "tf_keras", "keras_core", "tensorflow.keras", "tensorflow.python.keras")


def keras_module(module):
    """True when ``module`` is Keras's own (``keras``, ``keras.layers``, ``tf_keras.src....``)."""
    return module is None or any(module == m or module.startswith(m + ".") for m in _KERAS_MODULES)


def check_config(config, where):
    """Walk a whole config (dicts and lists at any depth); raise UnsafeModelError on code requests.

    config: the parsed JSON (dict or list). where: the file name, for messages.
    """
    _walk(config, where, layer="(model)")


def _walk(node, where, layer):
    if isinstance(node, list):
        for item in node:
            _walk(item, where, layer)
        return
    if not isinstance(node, dict):
        return
    inner = node.get("config")
    if isinstance(inner, dict) and isinstance(inner.get("name"), str):
        layer = inner["name"]
    elif isinstance(node.get("name"), str) and "class_name" in node:
        layer = node["name"]
    _check_object(node, where, layer)
    for key, value in node.items():
        if key not in UNUSED:
            _walk(value, where, layer)


def _refuse(where, layer, why):
    raise UnsafeModelError(f"{where}: layer {layer!r} refused: {why}. npcnn never imports or runs code "
                           "named in a model file; rebuild the model without it (or re-save it with standard "
                           "Keras layers only)")


def _check_object(node, where, layer):
    """One serialized object: {"class_name", "config", "module", "registered_name"} or a layer config."""
    cls = node.get("class_name")
    if isinstance(cls, str) and cls in CODE_LAYERS:
        _refuse(where, layer, CODE_LAYERS[cls])
    module = node.get("module")
    if isinstance(module, str) and not keras_module(module):
        _refuse(where, layer, f"it names the Python module {module!r} (class {cls!r}), outside Keras")
    reg = node.get("registered_name")
    if isinstance(reg, str) and ">" in reg:
        _refuse(where, layer, f"it is a custom object registered as {reg!r} (its code is not in the file "
                              "and would have to be imported)")
    fn = node.get("function")
    if fn is not None and not isinstance(fn, str):
        _refuse(where, layer, "its 'function' entry is serialized Python code")
    if node.get("function_type") == "lambda" or "__lambda__" in (node.get("function_type"), cls):
        _refuse(where, layer, "it holds a Python lambda")
