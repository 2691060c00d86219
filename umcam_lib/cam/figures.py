"""Figures of notebooks 03 and 04: CAM grids (paper Fig. 1a and 2), entropy weights, thresholds."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..data.artifacts import SliceSet
from .fusion import entropy_weights

#: Display names of the method keys the localisation summary holds next to the layer names
#: (the same names as ``umcam_lib.cam.study.METHOD_NAMES``, which this stage may not import).
DISPLAY_NAMES: dict[str, str] = {"gradcam": "Grad-CAM", "average_cam": "Average-CAM", "umcam": "UM-CAM"}

#: Label of the colour bar of every CAM overlay (CAMs are min-max normalised per slice).
CAM_LABEL = "CAM value (0-1)"
#: Colour map of every CAM overlay: perceptually uniform, so equal steps in value look equal.
CAM_CMAP = "magma"
#: Outline of the true brain and of a pseudo mask over a CAM: colours magma does not contain.
TRUTH_COLOUR, MASK_COLOUR = "lime", "cyan"


def pick_examples(slices: SliceSet, split: str = "test", k: int = 4) -> np.ndarray:
    """``k`` positive slices of ``split`` for figures: large brains, distinct volumes first.

    Deterministic: rows are ranked by mask area; one slice per volume is taken before a second
    one of the same volume. Returns the rows sorted.
    """
    rows = slices.indices(split, positive_only=True)
    if len(rows) == 0:
        raise ValueError(f"split {split!r} has no positive slice to show")
    area = slices.masks[rows].reshape(len(rows), -1).sum(axis=1)
    order = rows[np.argsort(-area, kind="stable")]
    chosen: list[int] = []
    used: set[int] = set()
    for r in order:
        if int(slices.volume[r]) not in used:
            chosen.append(int(r))
            used.add(int(slices.volume[r]))
        if len(chosen) == k:
            break
    for r in order:
        if len(chosen) == k:
            break
        if int(r) not in chosen:
            chosen.append(int(r))
    return np.sort(np.asarray(chosen, dtype=np.int64))


def pick_by_quality(volume_of: np.ndarray, scores: pd.DataFrame,
                    labels: Sequence[str] = ("best", "median", "worst")) -> tuple[np.ndarray, list[str]]:
    """Slices for a figure that shows how a method does, not only where it does best.

    Parameters
    ----------
    volume_of : ndarray of int, shape (N,)
        Volume of every slice row (``SliceSet.volume``).
    scores : DataFrame
        Columns ``id`` (slice row) and ``dsc``: per-slice scores of the reference method (e.g.
        a :class:`~umcam_lib.cam.pseudo_mask.CamEvaluation`'s ``scores["test"]``).
    labels : sequence of {"best", "median", "worst"}
        Which ranks to show, in this order.

    Returns
    -------
    rows : ndarray of int
        One slice row per label, from distinct volumes where the split has enough of them (the
        nearest rank from an unused volume is taken).
    row_labels : list of str
        ``"best: slice 812, DSC 91"`` per row.

    Examples
    --------
    >>> volume_of = np.array([0, 0, 1, 2])
    >>> pick_by_quality(volume_of, pd.DataFrame({"id": [0, 1, 2, 3], "dsc": [90.0, 80.0, 50.0, 10.0]}))[1]
    ['best: slice 0, DSC 90', 'median: slice 2, DSC 50', 'worst: slice 3, DSC 10']
    """
    d = scores.dropna(subset=["dsc"]).sort_values(["dsc", "id"], ascending=[False, True]).reset_index(drop=True)
    if d.empty:
        raise ValueError("pick_by_quality: no scored slice to show")
    targets = {"best": 0, "median": (len(d) - 1) // 2, "worst": len(d) - 1}
    used_rows: set[int] = set()
    used_vols: set[int] = set()
    rows, names = [], []
    for label in labels:
        if label not in targets:
            raise ValueError(f"pick_by_quality: label must be best, median or worst, got {label!r}")
        order = sorted(range(len(d)), key=lambda i: abs(i - targets[label]))
        fresh = [i for i in order if int(d.loc[i, "id"]) not in used_rows
                 and int(volume_of[int(d.loc[i, "id"])]) not in used_vols]
        pick = (fresh or [i for i in order if int(d.loc[i, "id"]) not in used_rows] or order)[0]
        row = int(d.loc[pick, "id"])
        used_rows.add(row)
        used_vols.add(int(volume_of[row]))
        rows.append(row)
        names.append(f"{label}: slice {row}, DSC {float(d.loc[pick, 'dsc']):.0f}")
    return np.asarray(rows, dtype=np.int64), names


def _outline(ax: plt.Axes, mask: np.ndarray, color: str, style: str = "solid") -> None:
    if np.any(mask) and not np.all(mask):
        ax.contour(mask.astype(float), levels=[0.5], colors=color, linewidths=1.0, linestyles=style)


def _show_cam(ax: plt.Axes, image: np.ndarray, cam: np.ndarray, mask: np.ndarray,
              threshold: float | None = None) -> Any:
    ax.imshow(image, cmap="gray", vmin=0, vmax=1)
    im = ax.imshow(cam, cmap=CAM_CMAP, vmin=0, vmax=1, alpha=0.6)
    _outline(ax, mask > 0, TRUTH_COLOUR)
    if threshold is not None:
        _outline(ax, cam >= threshold, MASK_COLOUR, "dashed")
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def _cam_mappable() -> Any:
    """The 0-1 scale of :func:`_show_cam`, opaque (the colour bar of every CAM overlay)."""
    import matplotlib as mpl

    return mpl.cm.ScalarMappable(norm=mpl.colors.Normalize(0, 1), cmap=CAM_CMAP)


def _side_colorbar(fig: plt.Figure, axes: np.ndarray, mappable: Any, label: str,
                   margin_in: float = 0.85) -> Any:
    """Lay ``fig`` out leaving ``margin_in`` inches on the right, then put one colour bar there
    spanning the height of ``axes`` (the panels keep their size: the bar has its own axes)."""
    width = fig.get_size_inches()[0]
    fig.tight_layout(rect=(0, 0, 1 - margin_in / width, 1))
    boxes = [a.get_position() for a in np.ravel(axes)]
    x0 = max(b.x1 for b in boxes) + 0.12 / width
    y0, y1 = min(b.y0 for b in boxes), max(b.y1 for b in boxes)
    cax = fig.add_axes((x0, y0, 0.12 / width, y1 - y0))
    cb = fig.colorbar(mappable, cax=cax)
    cb.set_label(label, fontsize=8)
    cb.ax.tick_params(labelsize=7)
    return cb


def plot_cam_grid(images: np.ndarray, masks: np.ndarray, columns: Mapping[str, np.ndarray],
                  thresholds: Mapping[str, float] | None = None, row_labels: Sequence[str] | None = None,
                  title: str = "") -> plt.Figure:
    """One row per slice: the image with its ground-truth outline, then each CAM over it.

    Parameters
    ----------
    images, masks : ndarray, shape (k, H, W)
        Slices in [0, 1] and their ground truth (solid :data:`TRUTH_COLOUR` outline).
    columns : mapping
        Column title -> CAMs [k, H, W] in [0, 1] (:data:`CAM_CMAP`, a perceptually uniform colour
        map, over the image; one colour bar on the right, labelled :data:`CAM_LABEL`).
    thresholds : mapping, optional
        Column title -> threshold; its pseudo-mask outline is drawn dashed in :data:`MASK_COLOUR`.
    row_labels : sequence of str, optional
        Label of each row (e.g. the slice row).
    """
    k = len(images)
    n_cols = 1 + len(columns)
    fig, axes = plt.subplots(k, n_cols, figsize=(1.9 * n_cols, 1.9 * k), squeeze=False)
    for i in range(k):
        ax = axes[i, 0]
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=1)
        _outline(ax, masks[i] > 0, TRUTH_COLOUR)
        ax.set_xticks([])
        ax.set_yticks([])
        if row_labels is not None:
            ax.set_ylabel(row_labels[i], fontsize=8)
        for j, (name, cams) in enumerate(columns.items(), start=1):
            t = None if thresholds is None else thresholds.get(name)
            _show_cam(axes[i, j], images[i], np.asarray(cams[i], dtype=np.float32), masks[i], t)
    axes[0, 0].set_title("image + truth", fontsize=9)
    for j, name in enumerate(columns, start=1):
        axes[0, j].set_title(name, fontsize=9)
    from matplotlib.lines import Line2D

    legend = [Line2D([], [], color=TRUTH_COLOUR, lw=1.2, label="true brain")]
    if thresholds:
        legend.append(Line2D([], [], color=MASK_COLOUR, lw=1.2, ls="--", label="pseudo mask (validation threshold)"))
    fig.legend(handles=legend, loc="lower center", ncol=len(legend), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    fig.subplots_adjust(bottom=0.08)
    if title:
        fig.suptitle(title, fontsize=10)
    if len(columns):
        _side_colorbar(fig, axes[:, 1:], _cam_mappable(), CAM_LABEL)
    else:
        fig.tight_layout()
    return fig


def plot_entropy_weights(images: np.ndarray, masks: np.ndarray, layer_maps: np.ndarray,
                         layer_names: Sequence[str], fused: np.ndarray) -> plt.Figure:
    """For each slice two rows: the per-layer CAMs M_n and their entropy weights W_n = exp(-H_n).

    Parameters
    ----------
    images, masks : ndarray, shape (k, H, W)
    layer_maps : ndarray, shape (L, k, H, W)
        Per-layer CAMs in [0, 1].
    layer_names : sequence of str, length L
    fused : ndarray, shape (k, H, W)
        The UM-CAM of the slices (last column of the CAM row).

    The empty cell under the first UM-CAM holds two horizontal colour bars: the CAM scale (jet,
    0-1) and the weight scale (viridis, 0.5-1: the binary entropy is at most ln 2, so
    ``W = exp(-H) >= 0.5``).
    """
    layer_maps = np.asarray(layer_maps, dtype=np.float32)
    weights = entropy_weights(layer_maps)
    k, n_layers = layer_maps.shape[1], layer_maps.shape[0]
    n_cols = n_layers + 2
    fig, axes = plt.subplots(2 * k, n_cols, figsize=(1.8 * n_cols, 3.7 * k), squeeze=False)
    for i in range(k):
        top, bottom = axes[2 * i], axes[2 * i + 1]
        top[0].imshow(images[i], cmap="gray", vmin=0, vmax=1)
        _outline(top[0], masks[i] > 0, "lime")
        top[0].set_ylabel("CAM $M_n$", fontsize=8)
        bottom[0].imshow(weights[:, i].mean(axis=0), cmap="viridis", vmin=0.5, vmax=1)
        bottom[0].set_ylabel("weight $W_n$", fontsize=8)
        bottom[0].set_title("mean $W$", fontsize=8)
        for n in range(n_layers):
            _show_cam(top[n + 1], images[i], layer_maps[n, i], masks[i])
            im = bottom[n + 1].imshow(weights[n, i], cmap="viridis", vmin=0.5, vmax=1)
            if i == 0:
                top[n + 1].set_title(layer_names[n], fontsize=9)
        _show_cam(top[-1], images[i], np.asarray(fused[i], dtype=np.float32), masks[i])
        if i == 0:
            top[-1].set_title("UM-CAM", fontsize=9)
        bottom[-1].axis("off")
        for ax in list(top) + list(bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    for (y, mappable, label) in ((0.68, _cam_mappable(), CAM_LABEL), (0.18, im, "entropy weight W = exp(-H)")):
        cax = axes[1, -1].inset_axes((0.08, y, 0.84, 0.12))
        cb = fig.colorbar(mappable, cax=cax, orientation="horizontal")
        cb.set_label(label, fontsize=8)
        cb.ax.tick_params(labelsize=7)
    return fig


def plot_threshold_curves(curves: pd.DataFrame, chosen: Mapping[str, float] | None = None) -> plt.Figure:
    """Mean validation Dice against threshold, one line per method (chosen thresholds marked)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for method in curves.columns:
        line, = ax.plot(curves.index, curves[method], marker=".", label=method)
        if chosen and method in chosen:
            t = chosen[method]
            ax.plot([t], [curves[method].loc[np.isclose(curves.index, t)].max()], "o",
                    color=line.get_color(), markersize=8, markerfacecolor="none")
    ax.set_xlabel("threshold")
    ax.set_ylabel("mean validation DSC (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _clipped_sd(mean: pd.Series, sd: pd.Series, top: float) -> np.ndarray:
    """Asymmetric error bars ``[2, n]``: one SD each way, clipped to the range ``[0, top]``."""
    m = mean.to_numpy(float)
    d = sd.fillna(0).to_numpy(float)
    return np.stack([np.minimum(d, m), np.minimum(d, np.maximum(top - m, 0))])


def plot_layer_localisation(summary: pd.DataFrame, names: Mapping[str, str] | None = None) -> Any:
    """Bar chart of :func:`umcam_lib.cam.diagnostics.summarise_localisation`: best-threshold
    DSC (left, %) and pointing game (right, fraction of slices) per layer, error bars = SD over
    seeds clipped to the scale (0-100 %, 0-1), the all-foreground floor as a dashed line.

    Parameters
    ----------
    summary : DataFrame
        Columns ``layer, dsc_mean, dsc_sd, pointing_mean, pointing_sd, n_seeds``; one row per
        layer or fused method, and optionally an ``all_foreground`` row (the floor).
    names : mapping, optional
        Key -> tick label; defaults to :data:`DISPLAY_NAMES` (keys not in it are shown as they are).
    """
    import matplotlib.pyplot as plt

    labels = {**DISPLAY_NAMES, **(names or {})}
    s = summary[summary["layer"] != "all_foreground"]
    floor = summary.loc[summary["layer"] == "all_foreground", "dsc_mean"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    x = np.arange(len(s))
    axes[0].bar(x, s["dsc_mean"], yerr=_clipped_sd(s["dsc_mean"], s["dsc_sd"], 100.0), color="tab:blue",
                capsize=3)
    axes[0].set_ylim(0, 100)
    axes[0].set_ylabel("best-threshold DSC (%)")
    axes[1].bar(x, s["pointing_mean"], yerr=_clipped_sd(s["pointing_mean"], s["pointing_sd"], 1.0),
                color="tab:orange", capsize=3)
    axes[1].set_ylim(0, 1)
    axes[1].set_ylabel("pointing game (hit fraction)")
    for ax in axes:
        ax.set_xticks(x, [labels.get(str(k), str(k)) for k in s["layer"]], rotation=30, ha="right")
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    n = int(summary["n_seeds"].max())
    fig.suptitle(f"Does each layer's Grad-CAM point at the brain? (validation positives, {n} seed{'s' * (n > 1)}; "
                 "error bars: SD over seeds)", fontsize=10)
    if len(floor):
        # the legend goes above the left panel, outside the bars
        axes[0].axhline(float(floor.iloc[0]), ls="--", color="k", lw=1, label="all-foreground mask")
        axes[0].legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), fontsize=8, frameon=False, borderaxespad=0.2)
    fig.tight_layout()
    return fig
