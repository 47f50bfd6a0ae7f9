"""Training data as batches: arrays, or a folder of images with one sub-folder per class, streamed; and
random augmentation like Keras's ``ImageDataGenerator`` (rescale, rotation, shifts, flip, zoom), seeded.

A *batch source* is anything with ``len(source)`` (batches per epoch) and ``iter(source)`` (one epoch of
``(x, y)`` batches, reshuffled each time); ``fit`` and ``evaluate`` take one wherever they take arrays:

    gen = ImageDataGenerator(rescale=1/255, rotation_range=40, width_shift_range=0.2, height_shift_range=0.2,
                             zoom_range=0.2, horizontal_flip=True)
    train = gen.flow_from_directory("cats_and_dogs/train", target_size=(150, 150), batch_size=20,
                                    class_mode="binary", seed=0)
    model.fit(train, epochs=50)

Augmentation, per image, as Keras writes it: output pixel (r, c) is read from the input at
``M @ (r, c, 1)``, M = centre^-1 . rotation(theta) . shift(tx, ty) . zoom(zx, zy) . centre, with
theta ~ U(-rotation_range, +rotation_range) degrees, tx ~ U(-h, h) * height (h = height_shift_range; a
range of 1 or more is in pixels, not multiplied), ty likewise for the width, zx, zy ~ U(1 - zoom_range,
1 + zoom_range) independently (zx > 1 zooms *out*: each output pixel reads from farther away), then a
left-right flip with probability 1/2; values between pixels are interpolated bilinearly and points outside
the image take the nearest edge pixel (``fill_mode="nearest"``) or ``cval`` (``"constant"``). Rescaling
comes after the transform.
"""
import math
import os

import numpy as np

from .. import initializers
from ..errors import FormatError, InputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".gif", ".tif", ".tiff", ".webp")


def _generator(seed):
    """A private generator for one data stream: from ``seed``, or drawn from npcnn's seeded RNG."""
    if seed is None:
        seed = int(initializers.rng().integers(1 << 62))
    return np.random.default_rng(seed)


class Batches:
    """Base of every batch source: samples ``order``-ed and cut into batches of ``batch_size``.

    Subclasses implement ``load(indices) -> (x, y)`` (y None when there are no labels) and ``labels()``.
    """

    def __init__(self, n, batch_size=32, shuffle=True, seed=None, augment=None):
        if int(batch_size) < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size}")
        self.n, self.batch_size, self.shuffle = int(n), int(batch_size), bool(shuffle)
        self.augment, self.rng = augment, _generator(seed)

    def __len__(self):
        return math.ceil(self.n / self.batch_size)

    def __iter__(self):
        order = self.rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        for start in range(0, self.n, self.batch_size):
            x, y = self.load(order[start:start + self.batch_size])
            if self.augment is not None:
                x = self.augment.transform_batch(x, self.rng)
            yield (x, y) if y is not None else (x,)

    def first(self, k=1):
        """The first ``k`` samples un-augmented (rescaled): what fit checks the model against."""
        x, _ = self.load(np.arange(min(k, self.n)))
        return self.augment.standardize(x) if self.augment is not None else x

    def load(self, indices):
        raise NotImplementedError

    def labels(self):
        raise NotImplementedError


class ArrayBatches(Batches):
    """Batches of in-memory arrays x (N, ...) and y (N, ...) (or no y)."""

    def __init__(self, x, y=None, batch_size=32, shuffle=True, seed=None, augment=None):
        self.x = np.asarray(x)
        self.y = None if y is None else np.asarray(y)
        if self.x.ndim == 0:
            raise InputError("x must be an array of samples (N, ...), got a scalar")
        if self.y is not None and len(self.y) != len(self.x):
            raise InputError(f"x has {len(self.x)} samples but y has {len(self.y)} labels; they must match")
        super().__init__(len(self.x), batch_size, shuffle, seed, augment)

    def load(self, indices):
        return self.x[indices], (None if self.y is None else self.y[indices])

    def labels(self):
        return self.y


class DirectoryIterator(Batches):
    """Images read from ``directory/<class name>/**/*.png|jpg|...`` a batch at a time (Keras's
    ``flow_from_directory``). Classes are the sub-folders in sorted order (or ``classes``).

    Yields x (B, *target_size, 1|3|4) float32 and y by ``class_mode``: "categorical" one-hot (B, C),
    "binary" (B,) 0./1. (exactly two classes), "sparse" (B,) class numbers, None: x only.
    Attributes as Keras's: ``class_indices`` {name: number}, ``classes`` (N,), ``filenames``.
    """

    def __init__(self, directory, augment=None, target_size=(256, 256), color_mode="rgb", classes=None,
                 class_mode="categorical", batch_size=32, shuffle=True, seed=None, interpolation="nearest"):
        directory = os.fspath(directory)
        if not os.path.isdir(directory):
            raise InputError(f"flow_from_directory: {directory!r} is not a folder")
        if class_mode not in ("categorical", "binary", "sparse", None):
            raise InputError(f"class_mode must be 'categorical', 'binary', 'sparse' or None, got {class_mode!r}")
        modes = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}
        if color_mode not in modes:
            raise InputError(f"color_mode must be one of {', '.join(modes)}, got {color_mode!r}")
        if interpolation not in ("nearest", "bilinear", "bicubic"):
            raise InputError(f"interpolation must be 'nearest', 'bilinear' or 'bicubic', got {interpolation!r}")
        names = list(classes) if classes else sorted(
            d for d in os.listdir(directory) if os.path.isdir(os.path.join(directory, d)))
        if not names:
            raise InputError(f"flow_from_directory: {directory!r} has no class sub-folders; put each class's "
                             "images in a folder of its own: <directory>/<class name>/<image>.png")
        files, labels = [], []
        for i, name in enumerate(names):
            sub = os.path.join(directory, name)
            if not os.path.isdir(sub):
                raise InputError(f"flow_from_directory: class folder {sub!r} does not exist")
            found = sorted(os.path.relpath(os.path.join(d, f), directory) for d, _, fs in os.walk(sub)
                           for f in fs if f.lower().endswith(IMAGE_EXTENSIONS))  # nested folders too, as Keras
            files += found
            labels += [i] * len(found)
        if not files:
            raise InputError(f"flow_from_directory: no images ({', '.join(IMAGE_EXTENSIONS)}) in the class "
                             f"folders of {directory!r} ({', '.join(names)})")
        if class_mode == "binary" and len(names) != 2:
            raise InputError(f"class_mode='binary' needs exactly 2 class folders, {directory!r} has "
                             f"{len(names)}: {', '.join(names)}")
        self.directory, self.filenames = directory, files
        self.class_indices = {name: i for i, name in enumerate(names)}
        self.classes = np.array(labels, dtype=np.int64)
        self.class_mode, self.target_size = class_mode, tuple(int(s) for s in target_size)
        self.color_mode, self._pil_mode, self.interpolation = color_mode, modes[color_mode], interpolation
        super().__init__(len(files), batch_size, shuffle, seed, augment)

    def load_image(self, filename):
        """One image file -> (H, W, channels) float32 at ``target_size``."""
        from PIL import Image  # Pillow comes with matplotlib
        path = os.path.join(self.directory, filename)
        try:
            with Image.open(path) as img:
                img = img.convert(self._pil_mode)
                h, w = self.target_size
                if img.size != (w, h):
                    img = img.resize((w, h), getattr(Image, self.interpolation.upper()))
                arr = np.asarray(img, dtype=np.float32)
        except (OSError, ValueError) as e:
            raise FormatError(f"cannot read image {path!r}: {e}") from None
        return arr[..., None] if arr.ndim == 2 else arr

    def load(self, indices):
        x = np.stack([self.load_image(self.filenames[i]) for i in indices])
        return x, self.encode(self.classes[indices])

    def encode(self, classes):
        if self.class_mode is None:
            return None
        if self.class_mode == "categorical":
            return np.eye(len(self.class_indices), dtype=np.float32)[classes]
        return classes.astype(np.float32 if self.class_mode == "binary" else np.int64)

    def labels(self):
        return self.encode(self.classes)


class ImageDataGenerator:
    """Random augmentation and rescaling, Keras's arguments (see the module docstring for the maths)."""

    def __init__(self, rescale=None, rotation_range=0.0, width_shift_range=0.0, height_shift_range=0.0,
                 zoom_range=0.0, horizontal_flip=False, fill_mode="nearest", cval=0.0):
        if fill_mode not in ("nearest", "constant"):
            raise InputError(f"fill_mode must be 'nearest' or 'constant', got {fill_mode!r}")
        if np.isscalar(zoom_range):
            zoom_range = (1 - zoom_range, 1 + zoom_range)
        if len(zoom_range) != 2 or min(zoom_range) <= 0:
            raise InputError(f"zoom_range must be a number in [0, 1) or a pair of positive numbers, "
                             f"got {zoom_range}")
        self.rescale = rescale
        self.rotation_range, self.fill_mode, self.cval = float(rotation_range), fill_mode, float(cval)
        self.width_shift_range, self.height_shift_range = float(width_shift_range), float(height_shift_range)
        self.zoom_range, self.horizontal_flip = tuple(float(z) for z in zoom_range), bool(horizontal_flip)

    def flow(self, x, y=None, batch_size=32, shuffle=True, seed=None):
        """Augmented batches of arrays x (N, H, W, C) (and labels y)."""
        return ArrayBatches(x, y, batch_size, shuffle, seed, augment=self)

    def flow_from_directory(self, directory, target_size=(256, 256), color_mode="rgb", classes=None,
                            class_mode="categorical", batch_size=32, shuffle=True, seed=None,
                            interpolation="nearest"):
        """Augmented batches of the images in ``directory/<class>/`` (:class:`DirectoryIterator`)."""
        return DirectoryIterator(directory, self, target_size, color_mode, classes, class_mode, batch_size,
                                 shuffle, seed, interpolation)

    def standardize(self, x):
        x = np.asarray(x, dtype=np.float32)
        return x * np.float32(self.rescale) if self.rescale else x

    def transform_matrices(self, n, hw, rng):
        """(n, 3, 3) matrices taking output (row, col, 1) to input coordinates, one random draw each."""
        h, w = hw
        theta = np.deg2rad(rng.uniform(-self.rotation_range, self.rotation_range, n))
        hs, ws = self.height_shift_range, self.width_shift_range
        # as Keras: a range below 1 is a fraction of the image size, from 1 up a number of pixels
        tx = rng.uniform(-hs, hs, n) * (h if hs < 1 else 1)
        ty = rng.uniform(-ws, ws, n) * (w if ws < 1 else 1)
        zx, zy = rng.uniform(*self.zoom_range, (2, n))
        cos, sin, zero, one = np.cos(theta), np.sin(theta), np.zeros(n), np.ones(n)
        rot = np.stack([cos, -sin, zero, sin, cos, zero, zero, zero, one], 1).reshape(n, 3, 3)
        shift = np.stack([one, zero, tx, zero, one, ty, zero, zero, one], 1).reshape(n, 3, 3)
        zoom = np.stack([zx, zero, zero, zero, zy, zero, zero, zero, one], 1).reshape(n, 3, 3)
        cy, cx = h / 2 - 0.5, w / 2 - 0.5  # the image centre in pixel coordinates
        to_centre = np.array([[1, 0, -cy], [0, 1, -cx], [0, 0, 1.0]])
        from_centre = np.array([[1, 0, cy], [0, 1, cx], [0, 0, 1.0]])
        return from_centre @ rot @ shift @ zoom @ to_centre

    def transform_batch(self, x, rng):
        """Augment then rescale a batch x (N, H, W, C) -> float32 (N, H, W, C)."""
        x = np.asarray(x, dtype=np.float32)
        n, h, w = x.shape[:3]
        if self.rotation_range or self.width_shift_range or self.height_shift_range or self.zoom_range != (1, 1):
            x = self._resample(x, self.transform_matrices(n, (h, w), rng))
        if self.horizontal_flip:
            flip = rng.random(n) < 0.5
            x[flip] = x[flip, :, ::-1]
        return self.standardize(x)

    def _resample(self, x, mats):
        """out[n, r, c] = x[n] at M[n] @ (r, c, 1), bilinear; outside: nearest edge or cval."""
        n, h, w, _ = x.shape
        rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        grid = np.stack([rows.ravel(), cols.ravel(), np.ones(h * w)])          # (3, h*w)
        src = mats[:, :2] @ grid                                              # (n, 2, h*w)
        sr, sc = src[:, 0], src[:, 1]
        outside = (sr < 0) | (sr > h - 1) | (sc < 0) | (sc > w - 1)
        sr, sc = np.clip(sr, 0, h - 1), np.clip(sc, 0, w - 1)                 # "nearest": the edge pixel
        r0, c0 = np.minimum(np.floor(sr).astype(int), h - 2), np.minimum(np.floor(sc).astype(int), w - 2)
        r0, c0 = np.maximum(r0, 0), np.maximum(c0, 0)
        fr, fc = (sr - r0)[..., None], (sc - c0)[..., None]                    # (n, h*w, 1)
        img = np.arange(n)[:, None]
        r1, c1 = np.minimum(r0 + 1, h - 1), np.minimum(c0 + 1, w - 1)
        out = ((1 - fr) * (1 - fc) * x[img, r0, c0] + (1 - fr) * fc * x[img, r0, c1]
               + fr * (1 - fc) * x[img, r1, c0] + fr * fc * x[img, r1, c1])
        if self.fill_mode == "constant":
            out[outside] = self.cval
        return out.reshape(x.shape).astype(np.float32)
