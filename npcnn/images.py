"""Images in and out: load with Pillow (which comes with matplotlib), resize to a model's input size,
and the preprocessing conventions keras.applications use.

    x = load_image("cat.jpg", size=(224, 224))           # (224, 224, 3) float32, 0..255, RGB
    x = preprocess(x, "caffe")                           # VGG16/ResNet50 convention
    batch = image_batch(["a.jpg", "b.png"], model, preprocess="unit")   # (2, H, W, C) for the model
"""
import os
import warnings

import numpy as np

from .errors import InputError

MAX_PIXELS = 64_000_000
"""Images larger than this (in pixels) are refused unless the decoder can shrink them while reading (JPEG)."""

# mean/std in 0..255 RGB order, as keras.applications.imagenet_utils uses them
_CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)
_TORCH_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_TORCH_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

PREPROCESS_MODES = {
    "none": "pixels as they are, 0..255",
    "unit": "x / 255, to 0..1",
    "tf": "x / 127.5 - 1, to -1..1 (MobileNet, Xception, Inception)",
    "torch": "(x / 255 - ImageNet mean) / ImageNet std (DenseNet)",
    "caffe": "RGB -> BGR, minus the ImageNet mean (VGG, ResNet)",
}


def _pil():
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - Pillow ships with matplotlib
        raise InputError("reading images needs Pillow (it comes with matplotlib: pip install matplotlib)") from e
    return Image


def load_image(path, size=None, grayscale=False):
    """Read an image file -> float32 array (H, W, 3) RGB, or (H, W, 1) with ``grayscale``, values 0..255.

    size: (height, width) to resize to (bilinear), or None to keep the file's size.
    16-bit images are scaled to 0..255; CMYK, palette and alpha images are converted to RGB (alpha is
    composited on white, with a warning); huge images are shrunk while decoding (JPEG) or refused.
    """
    Image = _pil()
    if not os.path.isfile(path):
        raise InputError(f"image file not found: {path}")
    try:
        img = Image.open(path)
        img.size  # noqa: B018 - forces the header to be parsed
    except Exception as e:  # Pillow raises many types for a non-image
        raise InputError(f"{path} is not an image Pillow can read ({type(e).__name__}: {e})") from None
    with img:
        w, h = img.size
        if w * h > MAX_PIXELS:
            target = size[::-1] if size else (4096, 4096)
            if img.format == "JPEG":
                img.draft("RGB", target)  # the JPEG decoder downsamples by up to 8x for free
            if img.size[0] * img.size[1] > MAX_PIXELS:
                raise InputError(f"{path} is {w}x{h} pixels ({w * h / 1e6:.0f} MP), above npcnn's limit of "
                                 f"{MAX_PIXELS / 1e6:.0f} MP; downscale it first")
        try:
            arr = _to_array(img, path, grayscale)
        except InputError:
            raise
        except Exception as e:
            raise InputError(f"{path}: the image data could not be decoded ({type(e).__name__}: {e})") from None
    if size is not None:
        arr = resize(arr, size)
    return arr


def _to_array(img, path, grayscale):
    """A Pillow image in any mode -> float32 (H, W, 3 or 1) in 0..255."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        raw = np.asarray(img, dtype=np.float64)
        top = 65535.0 if raw.max() > 255 or img.mode.startswith("I;16") else 255.0
        gray = (raw / top * 255.0).astype(np.float32)
        arr = gray[..., None]
        return arr if grayscale else np.repeat(arr, 3, axis=-1)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        warnings.warn(f"{path}: the alpha channel was dropped (composited on white)", stacklevel=3)
        rgba = img.convert("RGBA")
        base = _pil().new("RGBA", rgba.size, (255, 255, 255, 255))
        img = _pil().alpha_composite(base, rgba)
    img = img.convert("L" if grayscale else "RGB")
    arr = np.asarray(img, dtype=np.float32)
    return arr[..., None] if arr.ndim == 2 else arr


def resize(x, size):
    """Bilinear resize of (H, W, C) -> (size[0], size[1], C), through Pillow per channel (float32)."""
    Image = _pil()
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise InputError(f"cannot resize to {size}")
    if x.shape[:2] == (h, w):
        return x.astype(np.float32, copy=False)
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(x[..., c], dtype=np.float32), mode="F")
                        .resize((w, h), Image.BILINEAR)) for c in range(x.shape[-1])]
    return np.stack(chans, axis=-1).astype(np.float32)


def crop(x, box):
    """x (H, W, C) cropped to box = (x0, y0, x1, y1) in pixels (x1, y1 exclusive)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    if not (0 <= x0 < x1 <= x.shape[1] and 0 <= y0 < y1 <= x.shape[0]):
        raise InputError(f"crop box {box} is outside the image of size {x.shape[1]}x{x.shape[0]}")
    return x[y0:y1, x0:x1]


def preprocess(x, mode="unit"):
    """Pixels 0..255 (..., H, W, C) -> the model's input range. Modes: see ``PREPROCESS_MODES``."""
    x = np.asarray(x, dtype=np.float32)
    if mode in (None, "none"):
        return x
    if mode == "unit":
        return x / 255.0
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "torch":
        return (x / 255.0 - _channel(_TORCH_MEAN, x)) / _channel(_TORCH_STD, x)
    if mode == "caffe":
        return x[..., ::-1] - _channel(_CAFFE_MEAN_BGR, x)
    raise InputError(f"unknown preprocessing {mode!r}; choose one of {', '.join(PREPROCESS_MODES)}")


def deprocess(x, mode="unit"):
    """The inverse of :func:`preprocess`: model input range -> pixels 0..255 (for display)."""
    x = np.asarray(x, dtype=np.float32)
    if mode in (None, "none"):
        return x
    if mode == "unit":
        return x * 255.0
    if mode == "tf":
        return (x + 1.0) * 127.5
    if mode == "torch":
        return (x * _channel(_TORCH_STD, x) + _channel(_TORCH_MEAN, x)) * 255.0
    if mode == "caffe":
        return (x + _channel(_CAFFE_MEAN_BGR, x))[..., ::-1]
    raise InputError(f"unknown preprocessing {mode!r}; choose one of {', '.join(PREPROCESS_MODES)}")


def _channel(v, x):
    if x.shape[-1] == 3:
        return v
    return np.asarray(v.mean(), dtype=np.float32)  # grayscale: the mean over RGB


def model_input_size(model):
    """(height, width, channels) a model expects; None where the model accepts any size."""
    shape = model.input_shape
    if isinstance(shape, list):
        shape = shape[0]
    if len(shape) != 4:
        raise InputError(f"model {model.name!r} takes inputs of shape {shape}, not images (N, H, W, C)")
    return shape[1], shape[2], shape[3]


def image_batch(paths, model, preprocess_mode="unit", size=None, box=None):
    """Load image files as one batch for ``model``: (N, H, W, C), resized and preprocessed.

    Grayscale models get grayscale images; 1-channel images are repeated for RGB models.
    ``box`` (x0, y0, x1, y1) crops each image first.
    """
    h, w, c = model_input_size(model)
    if size is not None:
        h, w = size
    if h is None or w is None:
        raise InputError(f"model {model.name!r} accepts any image size: pass size=(height, width)")
    if c not in (1, 3):
        raise InputError(f"model {model.name!r} expects {c} channels; only 1 (grayscale) or 3 (RGB) images load")
    out = []
    for p in paths if isinstance(paths, (list, tuple)) else [paths]:
        img = load_image(p, grayscale=(c == 1))
        if box is not None:
            img = crop(img, box)
        out.append(resize(img, (h, w)))
    return preprocess(np.stack(out), preprocess_mode)
