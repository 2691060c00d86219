"""Teaching figures of notebook 05: seeds, geodesic maps and SPL of example slices."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from ..data.artifacts import SliceSet
from .geodesic import geodesic_batch_points, zscore

#: Colour-bar label of D_f and D_b (their unit mixes pixels and z-scored intensity steps with lamb).
GEODESIC_LABEL = "geodesic distance (a.u.)"

COLUMNS = ("image", "UM-CAM", "seeds", "D_f (to brain seed)", "D_b (to background seeds)", "SPL", "ground truth")


def pick_examples(slices: SliceSet, candidates: np.ndarray, k: int = 4,
                  splits: Sequence[str] = ("test", "val", "train")) -> np.ndarray:
    """Up to ``k`` rows of ``candidates`` (slices with an SPL) spanning small to large brains.

    Takes them from the first split in ``splits`` that has any candidate; picks the slices at
    evenly spaced quantiles of the ground-truth brain area.
    """
    candidates = np.asarray(candidates, dtype=np.int64)
    for split in splits:
        rows = candidates[slices.split[candidates] == split]
        if rows.size:
            break
    else:
        return np.zeros(0, np.int64)
    area = slices.masks[rows].reshape(rows.size, -1).sum(axis=1)
    order = rows[np.argsort(area, kind="stable")]
    pick = np.unique(np.round(np.linspace(0, order.size - 1, min(k, order.size))).astype(int))
    return order[pick]


def _outline(ax: plt.Axes, mask: np.ndarray, color: str, style: str = "solid") -> None:
    if np.any(mask) and not np.all(mask):
        ax.contour(mask.astype(float), levels=[0.5], colors=color, linewidths=1.0, linestyles=style)


def _points(ax: plt.Axes, pts: Sequence[tuple[int, int]], color: str, marker: str) -> None:
    if pts:
        r, c = zip(*pts)
        ax.scatter(c, r, s=36, c=color, marker=marker, edgecolors="white", linewidths=0.6, zorder=3)


def _colorbar(ax: plt.Axes, im, label: str = "") -> None:
    """A slim colour bar just right of one map panel, in its own inset axes (the panel keeps its
    size, unlike ``fig.colorbar(ax=...)``, which takes the bar's width out of the panel)."""
    cax = ax.inset_axes((1.03, 0.0, 0.05, 1.0))
    cb = ax.figure.colorbar(im, cax=cax)
    cb.ax.tick_params(labelsize=6)
    if label:
        cb.set_label(label, fontsize=6)


def plot_spl_examples(examples: Sequence[Mapping[str, object]], images: np.ndarray, cams: np.ndarray,
                      masks: np.ndarray, row_labels: Sequence[str] | None = None) -> plt.Figure:
    """One row per example slice: image, UM-CAM, seeds, D_f, D_b, SPL, ground truth.

    Parameters
    ----------
    examples : sequence of dict
        :func:`umcam_lib.gse.explain` results (seeds, distances, SPL) of each slice.
    images, cams, masks : ndarray, shape (n, H, W)
        The slices, their UM-CAMs and their ground-truth masks.
    row_labels : sequence of str, optional
    """
    n = len(examples)
    fig, axes = plt.subplots(n, len(COLUMNS), figsize=(2.1 * len(COLUMNS), 2.2 * max(n, 1)), squeeze=False)
    for i, ex in enumerate(examples):
        img, cam, gt = images[i], cams[i], masks[i]
        ax = axes[i]
        for a in ax:
            a.set_xticks([])
            a.set_yticks([])
        ax[0].imshow(img, cmap="gray")
        ax[1].imshow(img, cmap="gray")
        _colorbar(ax[1], ax[1].imshow(cam, cmap="jet", alpha=0.5, vmin=0, vmax=1), "UM-CAM value (0-1)")
        _outline(ax[1], np.asarray(ex["mask"]), "white")
        ax[2].imshow(img, cmap="gray")
        _outline(ax[2], np.asarray(ex["component"]), "yellow")
        bg = list(ex["bg"])  # type: ignore[arg-type]
        if bg:
            (top, left), (_, right), (bottom, _), _ = bg
            ax[2].plot([left, right, right, left, left], [top, top, bottom, bottom, top], color="lime", lw=0.8)
        _points(ax[2], list(ex["fg"]), "red", "o")  # type: ignore[arg-type]
        _points(ax[2], bg, "lime", "s")
        if ex["spl"] is not None:
            d_f, d_b = np.asarray(ex["d_f"]), np.asarray(ex["d_b"])
            vmax = float(np.percentile(np.concatenate([d_f.ravel(), d_b.ravel()]), 99))
            _colorbar(ax[3], ax[3].imshow(d_f, cmap="magma", vmin=0, vmax=vmax), GEODESIC_LABEL)
            _colorbar(ax[4], ax[4].imshow(d_b, cmap="magma", vmin=0, vmax=vmax), GEODESIC_LABEL)
            _colorbar(ax[5], ax[5].imshow(np.asarray(ex["spl"]), cmap="RdBu_r", vmin=0, vmax=1), "P(brain)")
            _outline(ax[5], np.asarray(ex["spl"]) > 0.5, "black")
        ax[6].imshow(img, cmap="gray")
        _outline(ax[6], gt, "lime")
        if ex["spl"] is not None:
            _outline(ax[6], np.asarray(ex["spl"]) > 0.5, "red", "dashed")
        if row_labels is not None:
            ax[0].set_ylabel(row_labels[i], fontsize=8)
    for j, title in enumerate(COLUMNS):
        axes[0, j].set_title(title, fontsize=8)
    fig.suptitle("seeds from the UM-CAM (red: brain, green: background, box + margin); geodesic distances "
                 "(dark = near); SPL = E_f / (E_f + E_b); truth (green) vs SPL > 0.5 (red, dashed)", fontsize=8)
    fig.tight_layout()
    return fig


def plot_geodesic_vs_euclidean(image: np.ndarray, seed: tuple[int, int], iterations: int = 2,
                               gt: np.ndarray | None = None) -> plt.Figure:
    """Distance from one seed with ``lamb = 0`` (chamfer, ~Euclidean) and ``lamb = 1`` (geodesic).

    Parameters
    ----------
    image : ndarray, shape (H, W)
    seed : (row, col)
    iterations : int
    gt : ndarray, shape (H, W), optional
        Outline drawn on every panel.
    """
    z = zscore(image)
    pts = (np.array([0, 1]), np.array([0, 0]), np.array([seed[0]] * 2), np.array([seed[1]] * 2))
    # two seed sets on the same slice is one batch call per lambda
    d_euc = geodesic_batch_points(z[None], pts, 2, 0.0, iterations)[0, 0]
    d_geo = geodesic_batch_points(z[None], pts, 2, 1.0, iterations)[0, 0]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
    panels = [(image, "gray", "image and seed"), (d_euc, "magma", "lamb = 0: Euclidean (chamfer) distance"),
              (d_geo, "magma", "lamb = 1: geodesic distance")]
    for ax, (data, cmap, title) in zip(axes, panels):
        vmax = None if cmap == "gray" else float(np.percentile(data, 99))
        im = ax.imshow(data, cmap=cmap, vmin=0 if vmax else None, vmax=vmax)
        if cmap != "gray":
            _colorbar(ax, im, "distance (pixels)" if "Euclidean" in title
                      else "geodesic distance (z-scored intensity x px)")
        ax.scatter([seed[1]], [seed[0]], s=30, c="red", edgecolors="white")
        if gt is not None:
            _outline(ax, gt, "lime")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def plot_leakage(images: np.ndarray, masks: np.ndarray, settings: dict, row_labels: Sequence[str] | None = None):
    """SPL > 0.5 of the same slices under several GSE settings (leakage before / after).

    Parameters
    ----------
    images, masks : ndarray, shape (K, H, W)
        Slices and their true masks (green contour; for display only).
    settings : dict
        Column title -> SPL maps ``(K, H, W)`` (NaN or all-zero where a slice has no SPL).
    row_labels : sequence of str, optional

    Returns
    -------
    matplotlib.figure.Figure
        One row per slice: the image, then one panel per setting with the SPL mask in red and its
        2D Dice against the truth; red outside green is leakage.
    """
    import matplotlib.pyplot as plt

    from .. import metrics

    k, n = len(images), len(settings)
    fig, axes = plt.subplots(k, 1 + n, figsize=(2.3 * (1 + n), 2.3 * k), squeeze=False)
    for i in range(k):
        axes[i, 0].imshow(images[i], cmap="gray", vmin=0, vmax=1)
        axes[i, 0].contour(masks[i], levels=[0.5], colors=["lime"], linewidths=0.8)
        if row_labels is not None:
            axes[i, 0].set_ylabel(row_labels[i], fontsize=7)
        for j, (title, maps) in enumerate(settings.items(), start=1):
            m = np.nan_to_num(np.asarray(maps[i], dtype=float)) > 0.5
            ax = axes[i, j]
            ax.imshow(images[i], cmap="gray", vmin=0, vmax=1)
            overlay = np.zeros(m.shape + (4,))
            overlay[m] = (1.0, 0.2, 0.1, 0.45)
            ax.imshow(overlay)
            ax.contour(masks[i], levels=[0.5], colors=["lime"], linewidths=0.8)
            ax.text(0.02, 0.02, f"DSC {metrics.dice(m, masks[i].astype(bool)):.0f}", color="yellow", fontsize=7,
                    transform=ax.transAxes, va="bottom")
            if i == 0:
                ax.set_title(title, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("SPL > 0.5 (red) vs the true brain (green): leakage outside the brain", fontsize=9)
    fig.tight_layout()
    return fig
