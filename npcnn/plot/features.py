"""Figures for npcnn.features: channel grids, standardised per-layer strips, filters, weight histograms,
activation-maximization galleries and dataset examples. Each function takes arrays and returns a
matplotlib Figure (save it with ``fig.savefig("maps.png")``); the only arithmetic is display scaling.

Large layers stay readable: at most ``max_channels`` panels per figure, ``page`` picks which ones, and
the title says which channels are shown ("channels 64-127 of 512").
"""
import math

import numpy as np

from ..errors import InputError
from ..features.maps import standardize


def _subplots(rows, cols, figsize, **kw):
    """A Figure and its (rows, cols) axes, made without pyplot: no global state, nothing to close,
    works on any backend (``fig.savefig`` renders with Agg; Jupyter displays a returned Figure)."""
    from matplotlib.figure import Figure
    fig = Figure(figsize)
    return fig, fig.subplots(rows, cols, squeeze=False, **kw)


def grid_shape(n, max_ratio=4):
    """rows x cols for n panels: the most square exact factorisation no wider than ``max_ratio`` (8 -> 2x4,
    32 -> 4x8, 64 -> 8x8), else a near-square grid with a few empty cells (7 -> 3x3)."""
    if n <= 0:
        return 1, 1
    if n <= max_ratio:
        return 1, n
    rows = max(r for r in range(1, int(math.isqrt(n)) + 1) if n % r == 0)
    if n // rows <= max_ratio * rows:
        return rows, n // rows
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def _page(total, per_page, page, noun="channels"):
    """(first, last) indices of a page and the 'channels a-b of n' caption."""
    pages = max(1, math.ceil(total / per_page))
    if not 0 <= page < pages:
        raise InputError(f"page {page} does not exist: {total} channels make {pages} page(s) of {per_page}")
    first, last = page * per_page, min(total, (page + 1) * per_page)
    what = f"{noun} {first}-{last - 1} of {total}" if (first, last) != (0, total) else f"{total} {noun}"
    return first, last, what


def _one_image(maps, image):
    maps = np.asarray(maps)
    if maps.ndim == 4:
        return maps[image], tuple(maps.shape)
    if maps.ndim == 3:
        return maps, (1, *maps.shape)
    raise InputError(f"feature maps must be (N, h, w, C) or (h, w, C), got shape {maps.shape}")


def _blank(ax):
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)


def _as_display(img):
    """(h, w, 1) -> (h, w) for a colormap; (h, w, 3) stays RGB."""
    img = np.asarray(img)
    return img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img


def plot_feature_grid(maps, layer="", image=0, cmap="gray", max_channels=64, page=0, panel_size=1.6):
    """Every channel of one image's feature maps in a grid (8 channels -> the 2x4 grid of the TinyML log).

    maps: (N, h, w, C) or (h, w, C). Each panel has its own colour scale (imshow's default, as in the
    log), so a weak channel's pattern stays visible; a constant channel shows flat.
    """
    m, shape = _one_image(maps, image)
    first, last, what = _page(m.shape[-1], max_channels, page)
    rows, cols = grid_shape(last - first)
    fig, axes = _subplots(rows, cols, (cols * panel_size, rows * panel_size + 0.6))
    spread = np.ptp(m.reshape(-1, m.shape[-1]), axis=0)
    for k, ax in enumerate(axes.flat):
        _blank(ax)
        c = first + k
        if c < last:
            # a channel whose range is ~0 next to the others' (a dead filter) is shown flat, not as
            # its auto-scaled round-off noise
            dead = spread[c] <= 1e-6 * spread.max()
            ax.imshow(np.zeros_like(m[..., c]) if dead else m[..., c], cmap=cmap, vmin=-1 if dead else None,
                      vmax=1 if dead else None)
            ax.set_title(f"{c} (flat, max |v| {np.abs(m[..., c]).max():.1g})" if dead else f"{c}", fontsize=8, pad=2)
    fig.suptitle(f"{layer}  {shape}  {what}".strip(), fontsize=10)
    fig.tight_layout()
    return fig


def strip_image(maps, image=0, channels=None, per_row=16):
    """The standardised channels of one image tiled side by side, wrapped after ``per_row``:
    (rows * (h+1) - 1, per_row * (w+1) - 1) float, values 0..255 (the uint8 of features.standardize),
    NaN in the 1-pixel gaps and the unused cells (imshow leaves NaN blank), as the cats-vs-dogs article."""
    m, _ = _one_image(maps, image)
    chans = list(range(m.shape[-1])) if channels is None else list(channels)
    tiles = standardize(m[..., chans])                        # (h, w, C) uint8
    h, w = tiles.shape[:2]
    cols = per_row
    rows = math.ceil(len(chans) / cols)
    out = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), np.nan, dtype=np.float32)
    for k in range(len(chans)):
        r, c = divmod(k, cols)
        out[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = tiles[..., k]
    return out


def plot_feature_strip(maps, layer="", image=0, cmap="viridis", max_channels=64, page=0, per_row=16, width=16):
    """One layer as a horizontal strip of channels, each standardised (x - mean)/std * 64 + 128 and clipped
    to 0..255 (constant channels flat at 128), wrapped every ``per_row`` channels; cmap gray or viridis."""
    m, shape = _one_image(maps, image)
    first, last, what = _page(m.shape[-1], max_channels, page)
    tiled = strip_image(m, channels=range(first, last), per_row=min(per_row, last - first))
    height = max(1.2, width * tiled.shape[0] / tiled.shape[1]) + 0.5
    fig, axes = _subplots(1, 1, (width, height))
    ax = axes[0, 0]
    ax.imshow(tiled, cmap=cmap, vmin=0, vmax=255, interpolation="nearest")
    _blank(ax)
    ax.set_title(f"{layer}  {shape}  {what}".strip(), fontsize=10)
    fig.tight_layout()
    return fig


def plot_layer_strips(maps_by_layer, image=0, cmap="viridis", max_channels=16, width=16):
    """The article's series: one standardised strip per layer (first ``max_channels`` channels each),
    titled with the layer name and shape. maps_by_layer: {name: (N, h, w, C)} (features.all_feature_maps)."""
    if not maps_by_layer:
        raise InputError("no feature maps to plot")
    strips = []
    for name, maps in maps_by_layer.items():
        m, shape = _one_image(maps, image)
        _, last, what = _page(m.shape[-1], max_channels, 0)
        strips.append((name, shape, what, strip_image(m, channels=range(last), per_row=max_channels)))
    ratios = [s.shape[0] / s.shape[1] for *_, s in strips]
    fig, axes = _subplots(len(strips), 1, (width, sum(width * r + 0.45 for r in ratios)),
                          gridspec_kw={"height_ratios": [width * r + 0.45 for r in ratios]})
    for ax, (name, shape, what, tiled) in zip(axes[:, 0], strips):
        ax.imshow(tiled, cmap=cmap, vmin=0, vmax=255, interpolation="nearest")
        _blank(ax)
        ax.set_title(f"{name}  {shape}  {what}", fontsize=9, loc="left")
    fig.tight_layout()
    return fig


def plot_filters(filters, layer="", max_filters=64, max_inputs=8, page=0, cmap="gray", panel_size=0.9):
    """Kernels as images: filters (F, kh, kw, Cin) in 0..1 (features.filters).

    Cin = 3: one colour image per filter, in a grid. Otherwise one row per filter and one column per
    input channel (the article's layout; at most ``max_inputs`` columns); Cin = 1: a grid of filters.
    All panels share the 0..1 scale, so weights of one layer are comparable.
    """
    f = np.asarray(filters)
    if f.ndim != 4:
        raise InputError(f"filters must be (F, kh, kw, Cin) (features.filters), got shape {f.shape}")
    n, kh, kw, cin = f.shape
    colour = cin == 3
    per_page = max_filters if (colour or cin == 1) else min(max_filters, 16)
    first, last, what = _page(n, per_page, page, noun="filters")
    if colour or cin == 1:
        rows, cols = grid_shape(last - first, max_ratio=8)
        cells = [(k, None) for k in range(first, last)]
    else:
        rows, cols = last - first, min(cin, max_inputs)
        cells = [(k, j) for k in range(first, last) for j in range(cols)]
    fig, axes = _subplots(rows, cols, (cols * panel_size + 0.4, rows * panel_size + 0.7))
    for ax, cell in zip(axes.flat, cells + [None] * (rows * cols - len(cells))):
        _blank(ax)
        if cell is None:
            continue
        k, j = cell
        img = f[k] if j is None else f[k, :, :, j]
        ax.imshow(np.clip(_as_display(img), 0, 1), cmap=None if colour else cmap, vmin=0, vmax=1,
                  interpolation="nearest")
        if j in (None, 0):
            ax.set_ylabel(f"{k}", fontsize=7, rotation=0, labelpad=8, va="center")
        if k == first and j is not None:
            ax.set_title(f"in {j}", fontsize=7, pad=2)
    extra = "" if colour or cin == 1 or cin <= max_inputs else f", first {max_inputs} of {cin} inputs"
    fig.suptitle(f"{layer} filters {kh}x{kw}x{cin}: {what}{extra}".strip(), fontsize=10)
    fig.tight_layout()
    return fig


def plot_weight_histograms(weights, bins=60, cols=4, panel=(3.0, 2.1)):
    """A histogram of the kernel weights of each layer: weights {layer: array} (features.layer_weights)."""
    if not weights:
        raise InputError("no weights to plot")
    n = len(weights)
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig, axes = _subplots(rows, cols, (cols * panel[0], rows * panel[1]))
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, (name, w) in zip(axes.flat, weights.items()):
        w = np.ravel(w)
        ax.hist(w, bins=bins, color="#3b75af")
        ax.set_title(f"{name} ({w.size:,})", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.axvline(0, color="k", lw=0.6)
        ax.text(0.98, 0.95, f"std {w.std():.3g}", transform=ax.transAxes, ha="right", va="top", fontsize=7)
    fig.suptitle("kernel weights per layer", fontsize=10)
    fig.tight_layout()
    return fig


def _display_range(img, input_range):
    """An image -> 0..1 for display: its own min/max (``input_range=None``) or the model's input range."""
    img = np.asarray(img, dtype=np.float64)
    lo, hi = (img.min(), img.max()) if input_range is None else input_range
    return np.clip((img - lo) / (hi - lo), 0, 1) if hi > lo else np.full_like(img, 0.5)


def plot_gallery(images, titles=None, input_range=None, cmap="gray", cols=None, title="", panel_size=2.0):
    """Activation-maximization results (or any images): images (N, H, W, C), one panel each.

    input_range=None stretches each image to its own min/max (the patterns show best); pass the model's
    input range, e.g. (-1, 1), to see the images exactly as the model reads them.
    """
    imgs = np.asarray(images)
    if imgs.ndim == 3:
        imgs = imgs[None]
    if imgs.ndim != 4:
        raise InputError(f"images must be (N, H, W, C), got shape {imgs.shape}")
    n = len(imgs)
    rows, cols = (math.ceil(n / cols), cols) if cols else grid_shape(n)
    fig, axes = _subplots(rows, cols, (cols * panel_size, rows * panel_size + 0.5))
    for k, ax in enumerate(axes.flat):
        _blank(ax)
        if k < n:
            ax.imshow(_as_display(_display_range(imgs[k], input_range)), cmap=cmap, vmin=0, vmax=1)
            if titles is not None:
                ax.set_title(str(titles[k]), fontsize=8, pad=2)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_dataset_examples(top, images=None, max_channels=8, cmap="gray", panel_size=1.2, layer="", page=0):
    """The top-k images per channel (rows: channels, columns: rank 1..k) from features.top_k_images.

    With ``images`` (the array given to top_k_images) whole images are shown with the receptive-field
    box of the maximal unit drawn on them; without, the cropped patches (``top.patches``). Each panel is
    labelled with its image index and score; all panels share one display scale.
    """
    first, last, what = _page(len(top.channels), max_channels, page)
    k = top.indices.shape[1]
    if images is None:
        if top.patches is None:
            raise InputError("top_k_images(..., patches=False) kept no patches; pass images= to show them")
        panels = top.patches[first:last]
    else:
        panels = np.asarray(images)[top.indices[first:last]]
    lo, hi = float(np.min(panels)), float(np.max(panels))
    from matplotlib.patches import Rectangle
    rows = last - first
    fig, axes = _subplots(rows, k, (k * panel_size + 0.5, rows * panel_size + 0.6))
    for r in range(rows):
        c = first + r
        for j in range(k):
            ax = axes[r, j]
            _blank(ax)
            ax.imshow(_as_display(_display_range(panels[r, j], (lo, hi))), cmap=cmap, vmin=0, vmax=1)
            ax.set_title(f"#{top.indices[c, j]}  {top.values[c, j]:.2f}", fontsize=6, pad=2)
            if images is not None:
                y0, y1, x0, x1 = top.boxes[c, j]
                ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="#ff3030", lw=1))
            if j == 0:
                ax.set_ylabel(f"ch {top.channels[c]}", fontsize=8)
    fig.suptitle(f"{layer} top-{k} dataset examples, {what}".strip(), fontsize=10)
    fig.tight_layout()
    return fig


__all__ = ["grid_shape", "plot_feature_grid", "strip_image", "plot_feature_strip", "plot_layer_strips",
           "plot_filters", "plot_weight_histograms", "plot_gallery", "plot_dataset_examples"]
