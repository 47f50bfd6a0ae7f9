"""Dataset examples: the images (and image patches) that most activate each channel of a layer.

Images are streamed in batches; only the running top-k per channel is kept (k values, indices,
positions and patches per channel), so memory does not grow with the number of images:

    for each batch:  a = activations (B, h, w, C);  score (B, C) = max (or mean) over (h, w)
                     merge the batch's scores with the kept top-k, keep the k best per channel
                     (ties: the earlier image first, as a stable sort over the whole set would do)
                     crop the patches of the newly kept entries: the receptive-field window of the
                     position of the channel's maximum (receptive_field.window)
"""
import os
from collections import namedtuple

import numpy as np

from ..errors import InputError
from .receptive_field import receptive_field, window

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

TopK = namedtuple("TopK", "indices values positions boxes patches channels files")
TopK.__doc__ = """Top-k dataset examples of a layer, per tracked channel (C of them) and rank (k, best first):
indices (C, k) image index in the stream; values (C, k) score; positions (C, k, 2) (row, col) of the max
in the layer; boxes (C, k, 4) (y0, y1, x0, x1) input window; patches (C, k, ph, pw, channels) or None;
channels (C,) the layer channels; files: the image paths (folder input) or None."""


def list_images(folder):
    """The image files in ``folder`` (recursively), sorted: the order defines the image indices."""
    if not os.path.isdir(folder):
        raise InputError(f"not a folder: {folder}")
    found = []
    for root, _, names in os.walk(folder):
        found += [os.path.join(root, f) for f in names if f.lower().endswith(IMAGE_EXTENSIONS)]
    if not found:
        raise InputError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
    return sorted(found)


def _folder_batches(files, batch_size, hw, channels, preprocess):
    from ..images import load_image
    for s in range(0, len(files), batch_size):
        imgs = [load_image(f, size=hw, grayscale=(channels == 1)) for f in files[s:s + batch_size]]
        x = np.stack(imgs)
        yield preprocess(x) if preprocess is not None else x


def _batches(images, batch_size):
    """An array (N, H, W, C) or an iterable of images (H, W, C) / batches (B, H, W, C) -> batches."""
    if isinstance(images, np.ndarray):
        for s in range(0, len(images), batch_size):
            yield images[s:s + batch_size]
        return
    pending = []
    for item in images:
        item = np.asarray(item)
        if item.ndim == 4:
            if pending:
                yield np.stack(pending)
                pending = []
            yield item
        else:
            pending.append(item)
            if len(pending) == batch_size:
                yield np.stack(pending)
                pending = []
    if pending:
        yield np.stack(pending)


def top_k_images(model, images, layer, k=9, batch_size=32, channels=None, score="max", patches=True,
                 preprocess=None, progress=True):
    """The k images of ``images`` that most activate each channel of ``layer``, with their patches.

    images: an array (N, H, W, C), an iterable of images or batches, or a folder path (files read with
    npcnn.images.load_image at the model's input size, 0..255; pass ``preprocess`` to map them to the
    model's input range, e.g. ``lambda x: x / 127.5 - 1``).
    score: "max" (the strongest position) or "mean" (the channel's mean activation) per image.
    channels: which channels to track (default all); memory is about len(channels) * k patches.
    Returns a :class:`TopK`.
    """
    if score not in ("max", "mean"):
        raise InputError(f"score must be 'max' or 'mean', got {score!r}")
    files = None
    if isinstance(images, (str, os.PathLike)):
        files = list_images(images)
        shape = model._inputs[0].shape
        stream = _folder_batches(files, batch_size, shape[1:3], shape[3], preprocess)
        total = len(files)
    else:
        if preprocess is not None:
            images = (preprocess(np.asarray(b)) for b in _batches(images, batch_size))
        stream = _batches(images, batch_size)
        total = len(images) if hasattr(images, "__len__") else None
    rf = receptive_field(model, layer) if patches else None

    from tqdm.auto import tqdm
    bar = tqdm(total=total, desc=f"top-{k} {layer}", disable=not progress, unit="img", leave=False)
    kept = None
    seen = 0
    for x in stream:
        a = model.activations(x, [layer])[layer]
        if a.ndim == 2:  # Dense units (class scores): one position, the patch is the whole image
            a = a[:, None, None, :]
        if a.ndim != 4:
            raise InputError(f"layer {layer!r} output has shape {a.shape}; dataset examples need (N, h, w, C) "
                             "or (N, units)")
        chans = np.arange(a.shape[-1]) if channels is None else np.asarray(channels, dtype=int)
        a = a[..., chans]
        b, h, w, nc = a.shape
        flat = a.reshape(b, h * w, nc)
        where = flat.argmax(axis=1)                                          # (B, C) position of the max
        scores = flat.max(axis=1) if score == "max" else flat.mean(axis=1)   # (B, C)
        batch = dict(values=scores.T, indices=np.broadcast_to(seen + np.arange(b), (nc, b)),
                     positions=np.stack(np.unravel_index(where.T, (h, w)), axis=-1))
        kept = _merge(kept, batch, k, x, rf, patches)
        seen += b
        bar.update(b)
    bar.close()
    if kept is None:
        raise InputError("no images were given")
    return TopK(kept["indices"], kept["values"], kept["positions"], kept["boxes"], kept.get("patches"),
                chans, files)


def _merge(kept, batch, k, x, rf, want_patches):
    """Keep the k best of (kept, batch) per channel; crop patches only for the batch's winners."""
    c, b = batch["values"].shape
    hw = x.shape[1:3]
    full = np.array([0, hw[0], 0, hw[1]])
    batch["boxes"] = window(rf, batch["positions"], hw) if rf else np.broadcast_to(full, (c, b, 4))
    if kept is None:
        kept = {key: v[:, :0] for key, v in batch.items()}
        if want_patches:
            kept["patches"] = np.zeros((c, 0, *_patch_shape(rf, x)), dtype=x.dtype)
    merged = {key: np.concatenate([kept[key], batch[key]], axis=1) for key in batch}
    order = np.lexsort((merged["indices"], -merged["values"]), axis=1)[:, :k]   # by value, then index
    out = {key: np.take_along_axis(v, order[..., None] if v.ndim == 3 else order, axis=1)
           for key, v in merged.items()}
    if want_patches:
        n_old = kept["values"].shape[1]
        ph, pw = _patch_shape(rf, x)[:2]
        patches = np.zeros((c, order.shape[1], ph, pw, x.shape[-1]), dtype=x.dtype)
        for ci, row in enumerate(order):
            for r, j in enumerate(row):
                if j < n_old:
                    patches[ci, r] = kept["patches"][ci, j]
                else:
                    y0, y1, x0, x1 = out["boxes"][ci, r]
                    patches[ci, r] = x[j - n_old, y0:y1, x0:x1]
        out["patches"] = patches
    return out


def _patch_shape(rf, x):
    h, w = x.shape[1:3]
    return int(min(round(rf.size[0]), h)), int(min(round(rf.size[1]), w)), x.shape[-1]
