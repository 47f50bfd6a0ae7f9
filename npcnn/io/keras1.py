"""Keras 1 (2016-2017) configs -> the Keras 2 form npcnn builds. Translation only, no math.

    Keras 1                                           Keras 2
    Convolution2D(nb_filter, nb_row, nb_col,          Conv2D(filters, kernel_size=(nb_row, nb_col),
        border_mode, subsample, bias)                     padding, strides, use_bias)
    AtrousConvolution2D(atrous_rate)                  Conv2D(dilation_rate)
    Convolution1D(filter_length, subsample_length)    Conv1D(kernel_size, strides); kernel (L, 1, in, out) -> (L, in, out)
    Deconvolution2D(output_shape)                     Conv2DTranspose; kernel (h, w, in, out) -> (h, w, out, in)
    Dense(output_dim), Dropout(p)                     Dense(units), Dropout(rate)
    MaxPooling1D(pool_length, stride)                 MaxPooling1D(pool_size, strides)
    BatchNormalization(mode=0): running_std           moving_variance (Keras 1.1+ keeps the variance in it;
                                                      Keras 2's own Keras 1 loader copies it unchanged)
      Keras 1.0.x: running_std is the std s,          moving_variance = (s + eps)^2 - eps
      output gamma (x - m) / (s + eps) + beta
    Merge(mode="sum"|"mul"|"ave"|"max"|"concat")      Add / Multiply / Average / Maximum / Concatenate(axis)
    dim_ordering "tf"                                 data_format "channels_last" ("th" is refused)
    InputLayer(input_dtype)                           InputLayer(dtype)
    inbound_nodes [[["layer", 0, 0]]]                 the same triples (Keras 2 adds a kwargs dict)

Everything here is a table: class renames, argument renames, arguments with no effect on inference,
merge modes, and the weight conversions. :func:`translate` walks a whole model config and returns a
new one in the Keras 2 dialect; :func:`weight_converter` gives a layer's weight conversion.
"""
import json

import numpy as np

from ..errors import UnsupportedError
from .safety import UnsafeModelError

# Keras 1 class -> Keras 2 class (classes not listed kept their name).
CLASS_RENAMES = {
    "Convolution2D": "Conv2D", "AtrousConvolution2D": "Conv2D", "Convolution1D": "Conv1D",
    "AtrousConvolution1D": "Conv1D", "SeparableConvolution2D": "SeparableConv2D",
    "Deconvolution2D": "Conv2DTranspose",
}

# Keras 1 argument -> Keras 2 argument, for every layer (Keras 1 used each name for one meaning only).
ARG_RENAMES = {
    "nb_filter": "filters", "output_dim": "units", "border_mode": "padding", "subsample": "strides",
    "subsample_length": "strides", "filter_length": "kernel_size", "atrous_rate": "dilation_rate",
    "bias": "use_bias", "pool_length": "pool_size", "stride": "strides", "p": "rate", "sigma": "stddev",
    "input_dtype": "dtype", "dim_ordering": "data_format",
}

# Arguments that only matter for training or for building from scratch (initial values, penalties,
# Deconvolution2D's output_shape, which the layer recomputes from its input).
DROPPED = {"init", "inner_init", "weights", "input_dim", "input_length", "output_shape", "W_regularizer",
           "b_regularizer", "activity_regularizer", "W_constraint", "b_constraint", "gamma_init", "beta_init",
           "gamma_regularizer", "beta_regularizer", "depthwise_regularizer", "pointwise_regularizer",
           "depthwise_constraint", "pointwise_constraint", "mode"}

# Merge(mode=...) -> the Keras 2 merge layer; "cos" and "dot" have no npcnn layer.
MERGE_MODES = {"sum": "Add", "mul": "Multiply", "ave": "Average", "max": "Maximum", "concat": "Concatenate"}

DATA_FORMATS = {"tf": "channels_last"}


def _conv1d_weights(arrays, cfg):
    """Keras 1.2 Convolution1D kernel (L, 1, in, out) (a conv2d over a dummy axis); Keras 1.1 wrote
    (out, in, L, 1). Either -> Keras 2's (L, in, out). The bias is unchanged."""
    kernel = np.asarray(arrays[0])
    if kernel.ndim == 4 and kernel.shape[1] != 1 and kernel.shape[3] == 1:
        kernel = kernel.transpose(2, 3, 1, 0)
    return [kernel[:, 0] if kernel.ndim == 4 else kernel, *arrays[1:]]


def _deconv_weights(arrays, cfg):
    """Keras 1 Deconvolution2D (tf) kernel (h, w, in, out) -> Keras 2 Conv2DTranspose's (h, w, out, in)."""
    return [np.asarray(arrays[0]).transpose(0, 1, 3, 2), *arrays[1:]]


def _bn_std_weights(arrays, cfg):
    """Keras 1.0 BatchNormalization kept the running standard deviation s and computed
    gamma (x - mean) / (s + eps) + beta; Keras 1.1+ (and npcnn) compute gamma (x - mean) / sqrt(v + eps) + beta.
    v = (s + eps)^2 - eps gives the same numbers: sqrt(v + eps) = s + eps."""
    gamma, beta, mean, std = arrays
    eps = float(cfg.get("epsilon", 1e-6))  # Keras 1.0's default
    std = np.asarray(std, np.float64)
    return [gamma, beta, mean, ((std + eps) ** 2 - eps).astype(np.float32)]


# (Keras 1 class, Keras 1 minor version or None for all) -> how its stored weights become Keras 2's.
WEIGHT_LAYOUTS = {("Convolution1D", None): _conv1d_weights, ("AtrousConvolution1D", None): _conv1d_weights,
                  ("Deconvolution2D", None): _deconv_weights, ("BatchNormalization", "1.0"): _bn_std_weights}


def _weight_layout(cls, version):
    """The WEIGHT_LAYOUTS key for a Keras 1 class written by Keras ``version`` ("1.2.2"; None: unknown,
    taken as 1.1+, as Keras 2's own loader does), or None when the weights need no change."""
    minor = ".".join(str(version or "").split(".")[:2])
    return next((key for key in ((cls, None), (cls, minor)) if key in WEIGHT_LAYOUTS), None)


# Markers of a Keras 1 config when no keras_version was recorded (Keras 2 wrote none of these).
MARKERS = ('"nb_filter"', '"output_dim"', '"border_mode"', '"dim_ordering"', '"input_dtype"',
           '"class_name": "Merge"', '"subsample_length"', '"pool_length"')


def looks_like_keras1(config):
    """True when a config (dict) uses Keras 1's argument or class names."""
    text = json.dumps(config)
    return any(m in text for m in MARKERS) or any(f'"class_name": "{c}"' in text for c in CLASS_RENAMES)


def translate(entry, where, version=None, backend=None, depth=0):
    """A Keras 1 model or layer entry -> the same entry in the Keras 2 dialect (a new dict; the input
    is not modified). Models are walked recursively; each layer goes through :func:`translate_layer`.
    version / backend: the file's keras_version ("1.0.8") and backend ("tensorflow"), when known.
    depth: 0 for the top model, 1 for its layers, 2+ inside nested models."""
    if not isinstance(entry, dict):
        return entry
    cls, cfg = entry.get("class_name"), entry.get("config")
    if cls in ("Sequential", "Model"):
        layers = cfg if isinstance(cfg, list) else (cfg or {}).get("layers") if isinstance(cfg, dict) else None
        if not isinstance(layers, list):
            return entry
        new_layers = [translate(c, where, version, backend, depth + 1) for c in layers]
        new_cfg = new_layers if isinstance(cfg, list) else dict(cfg, layers=new_layers)
        return dict(entry, config=new_cfg)
    if backend == "theano" and cls in CLASS_RENAMES:
        # Theano's conv2d is a true convolution: its kernels are the spatial flip of TensorFlow's
        raise UnsupportedError(f"{where}: layer {_name(entry)!r} ({cls}) was trained with the Theano backend, whose "
                               "convolution kernels are flipped relative to TensorFlow's; convert them in Keras 1 "
                               "with keras.utils.layer_utils.convert_all_kernels_in_model(model) and save the model "
                               "with the TensorFlow backend")
    layout = _weight_layout(cls, version)
    if layout and depth > 1:
        # a nested model's weights are stored as one list for the whole model; the conversion is per layer
        raise UnsupportedError(f"{where}: layer {_name(entry)!r} is a Keras {version or 1} {cls} inside a nested "
                               f"model; npcnn converts the stored weights of such layers only in the top-level model")
    out = translate_layer(entry, where)
    if layout:
        out["keras1_weights"] = layout
    return out


def _name(entry):
    cfg = entry.get("config")
    return (cfg.get("name") if isinstance(cfg, dict) else None) or entry.get("name") or entry.get("class_name")


def translate_layer(entry, where):
    """One Keras 1 layer entry -> Keras 2: class and argument renames, merge modes, kernel sizes."""
    cls, cfg = entry.get("class_name"), entry.get("config")
    if not isinstance(cfg, dict):
        return entry
    name = _name(entry)
    _check_layer(cls, cfg, name, where)
    new_cls = _merge_class(cfg, name, where) if cls == "Merge" else CLASS_RENAMES.get(cls, cls)
    new = {}
    for key, value in cfg.items():
        if key in DROPPED or (cls == "Merge" and key.startswith(("mode", "output_", "dot_", "arguments"))):
            continue
        key = ARG_RENAMES.get(key, key)
        new[key] = DATA_FORMATS.get(value, value) if key == "data_format" else value
    if "nb_row" in new:  # Convolution2D family: two ints -> one kernel_size
        new["kernel_size"] = (new.pop("nb_row"), new.pop("nb_col"))
    if cls == "Merge":
        concat_axis = new.pop("concat_axis", -1)
        if new_cls == "Concatenate":
            new["axis"] = concat_axis
    if cls == "ZeroPadding2D":
        new["padding"] = _zero_padding(new.get("padding", (1, 1)))
    return dict(entry, class_name=new_cls, config=new)


def _check_layer(cls, cfg, name, where):
    """Refuse what the Keras 2 form cannot express: Theano ordering, BN modes 1/2, merges of models."""
    if cfg.get("dim_ordering", "tf") != "tf":
        raise UnsupportedError(
            f"{where}: layer {name!r} ({cls}) uses dim_ordering={cfg['dim_ordering']!r} (Theano's channels-first "
            "layout, whose kernels are also flipped); npcnn reads dim_ordering 'tf' only. Convert it in Keras 1: "
            "load the model, call keras.utils.layer_utils.convert_all_kernels_in_model(model), rebuild it with "
            "dim_ordering='tf' (image_dim_ordering 'tf' in ~/.keras/keras.json), copy the weights over and save")
    if cfg.get("border_mode", "valid") not in ("valid", "same", "causal"):
        raise UnsupportedError(f"{where}: layer {name!r} ({cls}) uses border_mode={cfg['border_mode']!r} (Theano's "
                               "'full' or another backend-specific mode); npcnn supports 'valid' and 'same'")
    if cls == "BatchNormalization" and cfg.get("mode", 0) != 0:
        raise UnsupportedError(f"{where}: layer {name!r} is a Keras 1 BatchNormalization with mode={cfg['mode']}"
                               " (normalising each sample with its own statistics); npcnn supports mode 0 only")
    if cls == "Merge" and cfg.get("layers"):
        raise UnsupportedError(f"{where}: layer {name!r} is a Keras 1 Merge of whole models inside a Sequential;"
                               " npcnn reads functional models (rebuild it with the functional merge())")


def _merge_class(cfg, name, where):
    """A Merge layer's Keras 2 class from its mode; a mode given as Python code is refused as unsafe."""
    mode, mode_type = cfg.get("mode", "sum"), cfg.get("mode_type", "raw")
    if mode_type in ("lambda", "function") or not isinstance(mode, str):
        raise UnsafeModelError(f"{where}: layer {name!r} refused: a Keras 1 Merge whose mode is a Python "
                               f"{mode_type or 'function'}, stored as code. npcnn never imports or runs code "
                               "named in a model file; rebuild the model with a standard merge mode")
    if mode not in MERGE_MODES:
        raise UnsupportedError(f"{where}: layer {name!r} is a Keras 1 Merge with mode={mode!r}; npcnn supports "
                               f"the modes {', '.join(sorted(MERGE_MODES))}")
    return MERGE_MODES[mode]


def _zero_padding(padding):
    """Keras 1.2 ZeroPadding2D: (rows, cols) symmetric, (top, bottom, left, right), or a dict of the four
    -> Keras 2's ((top, bottom), (left, right)) or (rows, cols)."""
    if isinstance(padding, dict):
        padding = [padding.get(k, 0) for k in ("top_pad", "bottom_pad", "left_pad", "right_pad")]
    if isinstance(padding, (list, tuple)) and len(padding) == 4:
        return ((padding[0], padding[1]), (padding[2], padding[3]))
    return padding


def weight_converter(entry):
    """For a translated layer entry: a function (list of stored arrays -> arrays in Keras 2 layout),
    or None when the layer's weights are already as Keras 2 stores them."""
    key = entry.get("keras1_weights") if isinstance(entry, dict) else None
    if key is None:
        return None
    convert, cfg = WEIGHT_LAYOUTS[tuple(key)], entry.get("config") or {}
    return lambda arrays: convert(arrays, cfg) if arrays else arrays
