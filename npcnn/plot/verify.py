"""The figure of ``npcnn verify``: error per layer on a log scale, the tolerance, the first failure."""
import numpy as np


def verify_errors(result, title="npcnn vs reference, layer by layer"):
    """result: a :class:`npcnn.verify.VerifyResult` -> Figure with max relative error per layer (log scale)."""
    import matplotlib.pyplot as plt

    rows = result.rows
    rel = np.array([r.max_rel if r.max_rel == r.max_rel else np.nan for r in rows], dtype=float)
    f32 = np.array([r.float32_rel for r in rows], dtype=float)
    floor = 1e-17
    fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * len(rows) + 2), 4.2))
    xs = np.arange(len(rows))
    ax.semilogy(xs, np.maximum(rel, floor), "o-", color="#1f77b4", label="npcnn float64 vs reference")
    if np.isfinite(f32).any():
        ax.semilogy(xs, np.maximum(f32, floor), ".--", color="#999999", label="npcnn float32 vs reference")
    ax.axhline(result.rtol, color="#d62728", lw=1, ls=":", label=f"rtol = {result.rtol:g}")
    bad = [i for i, r in enumerate(rows) if not r.passed]
    if bad:
        i = bad[0]
        ax.axvline(i, color="#d62728", lw=1, alpha=0.5)
        ax.annotate(f"first failure:\n{rows[i].key}", (i, np.nanmax(np.maximum(rel, floor))), ha="left",
                    va="top", fontsize=8, color="#d62728", xytext=(4, -4), textcoords="offset points")
    ax.set_xticks(xs)
    ax.set_xticklabels([r.key for r in rows], rotation=90, fontsize=7)
    ax.set_ylabel("max |error| / max |reference|")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    return fig
