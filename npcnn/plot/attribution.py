"""Figures for npcnn.attribution: a heatmap over its image (adjustable alpha, colorbar), methods side by
side, deletion/insertion curves, and the cascading-randomisation sanity check. Each function takes arrays
and returns a matplotlib Figure; the only arithmetic is display scaling.

Colour scales: a map with both signs is drawn on a diverging map centred at 0 (blue < 0 < red, limits
±max|map|); a non-negative map (CAM family, |gradient|) on "jet" from 0 to its maximum. Gradient maps
have a few extreme pixels, so by default the scale is clipped at the 99.5th percentile of |map|
(``percentile=100`` shows the full range); the colorbar always shows the scale actually used.
"""
import numpy as np

from ..errors import InputError

__all__ = ["plot_overlay", "plot_attributions", "plot_curves", "plot_randomization"]


def _figure(rows, cols, figsize):
    from matplotlib.figure import Figure  # no pyplot: no global state, works on any backend
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False)


def _gray_or_rgb(image, input_range=None):
    """(H, W), (H, W, 1) or (H, W, 3) in any range -> (H, W) or (H, W, 3) in [0, 1] for imshow."""
    img = np.asarray(image, np.float64)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[-1] != 3):
        raise InputError(f"image must be (H, W), (H, W, 1) or (H, W, 3), got shape {img.shape}")
    lo, hi = input_range if input_range is not None else (img.min(), img.max())
    return np.clip((img - lo) / (hi - lo if hi > lo else 1.0), 0, 1)


def _as_map(heatmap, shape):
    """A map (H, W) or (H, W, C) (channels summed) checked against the image's (H, W)."""
    m = np.asarray(heatmap, np.float64)
    if m.ndim == 3:
        m = m.sum(axis=-1)
    if m.shape != tuple(shape):
        raise InputError(f"heatmap of shape {np.shape(heatmap)} does not match the image size {tuple(shape)}; "
                         "use upsample=True for CAM maps")
    return m


def _scale(m, percentile, cmap):
    """(vmin, vmax, colormap name) for a map: diverging and symmetric when it has both signs."""
    top = float(np.percentile(np.abs(m), percentile)) or float(np.abs(m).max()) or 1.0
    if m.min() < 0 < m.max():
        return -top, top, cmap or "RdBu_r"
    if m.max() <= 0:
        return -top, 0.0, cmap or "Blues_r"
    return 0.0, top, cmap or "jet"


def overlay_on(ax, image, heatmap, alpha=0.5, cmap=None, title="", colorbar=True, input_range=None,
               percentile=99.5, label="attribution"):
    """Draw ``heatmap`` over ``image`` on an existing Axes; returns the heatmap's AxesImage."""
    img = _gray_or_rgb(image, input_range)
    m = _as_map(heatmap, img.shape[:2])
    vmin, vmax, cm = _scale(m, percentile, cmap)
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
    shown = ax.imshow(np.clip(m, vmin, vmax), cmap=cm, vmin=vmin, vmax=vmax, alpha=alpha)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    if colorbar:
        _colorbar(ax, shown, label)
    return shown


def _colorbar(ax, shown, label):
    """An opaque colorbar for ``shown`` (an AxesImage), even when the image itself is drawn translucent."""
    from matplotlib.cm import ScalarMappable
    bar = ax.figure.colorbar(ScalarMappable(norm=shown.norm, cmap=shown.cmap), ax=ax, fraction=0.046, pad=0.03)
    bar.set_label(label, fontsize=8)
    bar.ax.tick_params(labelsize=7)


def plot_overlay(image, heatmap, alpha=0.5, cmap=None, title="", colorbar=True, input_range=None, percentile=99.5,
                 label="attribution", size=4.0):
    """One heatmap over its image. image (H, W[, C]); heatmap (H, W) or (H, W, C) -> Figure.

    alpha: opacity of the heatmap (0 = image only, 1 = map only); input_range=(low, high) of the image
    values (default its min and max).
    """
    fig, axes = _figure(1, 1, (size + 0.9, size))
    overlay_on(axes[0, 0], image, heatmap, alpha, cmap, title, colorbar, input_range, percentile, label)
    return fig


def plot_attributions(image, maps, alpha=0.5, title="", input_range=None, percentile=99.5, cols=4, panel_size=2.6,
                      cmap=None):
    """The image, then each method's map over it, side by side. maps: {method name: (H, W) or (H, W, C)}."""
    names = list(maps)
    n = len(names) + 1
    cols = min(cols, n)
    rows = -(-n // cols)
    fig, axes = _figure(rows, cols, (cols * (panel_size + 0.7), rows * panel_size + (0.4 if title else 0)))
    axes = axes.ravel()
    img = np.asarray(image, np.float64)
    lo, hi = input_range if input_range is not None else (img.min(), img.max())
    shown = axes[0].imshow(img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else _gray_or_rgb(img, (lo, hi)),
                           cmap="gray", vmin=lo, vmax=hi)
    _colorbar(axes[0], shown, "")
    axes[0].set_title("input", fontsize=10)
    axes[0].set_xticks([])
    axes[0].set_yticks([])
    for ax, name in zip(axes[1:], names):
        overlay_on(ax, image, maps[name], alpha, cmap, name, True, input_range, percentile, "")
    for ax in axes[n:]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=12)
    return fig


def plot_curves(curves, image=0, title="", size=(5.5, 3.8)):
    """Deletion or insertion curves of several methods for one image, AUC in the legend.

    curves: {method name: Curve} from :func:`npcnn.attribution.deletion` / ``insertion``.
    """
    fig, axes = _figure(1, 1, size)
    ax = axes[0, 0]
    for name, c in curves.items():
        ax.plot(c.fractions, c.scores[image], label=f"{name} (AUC {c.auc[image]:.3f})")
    ax.set_xlabel("fraction of pixels changed")
    ax.set_ylabel("target score")
    ax.set_xlim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "faithfulness curves", fontsize=11)
    return fig


def plot_randomization(result, image=0, input_image=None, alpha=0.6, input_range=None, panel_size=1.8,
                       max_panels=8):
    """Cascading randomisation: the map after each step (top row, over ``input_image`` if given) and the
    Spearman rank correlation with the original map (bottom). result: npcnn.attribution.Randomization."""
    picks = np.unique(np.linspace(0, len(result.layers) - 1, min(max_panels, len(result.layers))).astype(int))
    cols = len(picks)
    from matplotlib.figure import Figure
    fig = Figure(figsize=(cols * panel_size + 0.5, panel_size + 3.2), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[panel_size, 3.0])
    axes = top.subplots(1, cols, squeeze=False)[0]
    for ax, k in zip(axes, picks):
        m = np.abs(_as_map(result.maps[k][image], result.maps[k][image].shape[:2]))
        label = result.layers[k] if k == 0 else f"→ {result.layers[k]}"
        if input_image is not None:
            overlay_on(ax, input_image, m, alpha, None, label, False, input_range)
        else:
            ax.imshow(m, cmap="jet")
            ax.set_title(label, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        ax.title.set_fontsize(8)
    ax = bottom.subplots()
    ax.plot(range(len(result.layers)), result.similarity[:, image], marker="o")
    ax.set_xticks(range(len(result.layers)))
    ax.set_xticklabels(result.layers, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("Spearman rank corr.\nwith original |map|", fontsize=9)
    ax.set_ylim(min(-0.2, float(np.min(result.similarity[:, image])) - 0.05), 1.05)
    ax.axhline(0, color="gray", lw=0.8)
    ax.grid(alpha=0.3)
    ax.set_title("cascading randomisation, top layer first (maps above: |map|, each scaled to its own maximum)",
                 fontsize=10)
    return fig
