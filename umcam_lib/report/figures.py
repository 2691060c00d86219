"""Figures of the 3D evaluation of the segmentations (notebooks 06 and 07).

The scoring itself (every slice of every volume predicted and stacked, DSC and HD95 in 3D, the
authors' oracle slice selection for comparison) lives in :mod:`umcam_lib.scoring`, below the
training stage that selects its epochs with it; import it from there. This module adds the
example picking and the figures.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .. import metrics
from ..data import SliceSet
from ..data.maps import require_rows

__all__ = ["example_rows", "plot_examples", "plot_sweep",
           "plot_labels", "plot_training_curves", "running_mean"]


# ----------------------------------------------------------------------------- figures
def example_rows(slices: SliceSet, split: str = "test", n: int = 4) -> np.ndarray:
    """Slices to show: in ``n`` volumes spread over the split, the slice with the most brain.

    (Chosen by ground truth for display only; scores never select slices.)
    """
    vols = slices.volume_ids(split)
    if len(vols) == 0:
        raise ValueError(f"the slice set has no {split!r} volumes")
    picks = vols[np.unique(np.linspace(0, len(vols) - 1, min(n, len(vols))).round().astype(int))]
    out = []
    for v in picks:
        rows = slices.volume_slices(int(v))
        out.append(rows[int(np.argmax(slices.masks[rows].reshape(len(rows), -1).sum(1)))])
    return np.array(out, dtype=np.int64)


def _crop_box(mask: np.ndarray, size: int) -> tuple[slice, slice]:
    """A ``size`` x ``size`` window centred on the mask (the image centre when it is empty)."""
    h, w = mask.shape
    size = min(size, h, w)
    cy, cx = (np.argwhere(mask).mean(0) if mask.any() else (h / 2, w / 2))
    y0 = int(np.clip(round(cy - size / 2), 0, h - size))
    x0 = int(np.clip(round(cx - size / 2), 0, w - size))
    return slice(y0, y0 + size), slice(x0, x0 + size)


def plot_examples(slices: SliceSet, predictions: dict[str, tuple[np.ndarray, np.ndarray]],
                  rows: np.ndarray, crop: int | None = None) -> Any:
    """Figure in the manner of the paper's Fig. 3: image, ground truth, each method's prediction.

    Parameters
    ----------
    predictions : dict
        Method name -> ``(index, probs)`` (e.g. from ``load_predictions``), covering ``rows``.
    rows : ndarray, int, shape (k,)
        Slice rows, one figure row each (see :func:`example_rows`).
    crop : int, optional
        Show a ``crop`` x ``crop`` window around the brain (pixels); whole slice when None.

    Returns
    -------
    matplotlib.figure.Figure
        Ground truth in green, predictions in red over the image with the truth's outline, and
        each prediction's 2D Dice (%) in a dark box.
    """
    import matplotlib.pyplot as plt

    cols = ["image", "ground truth", *predictions]
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(1.9 * len(cols), 1.9 * len(rows)), squeeze=False)
    for i, r in enumerate(rows):
        gt = slices.masks[r].astype(bool)
        box = _crop_box(gt, crop) if crop else (slice(None), slice(None))
        img = slices.images[r][box]
        for j, col in enumerate(cols):
            ax = axes[i, j]
            ax.imshow(img, cmap="gray", vmin=0, vmax=1)
            if col == "ground truth":
                m, color = gt[box], (0.1, 0.9, 0.2)
            elif col in predictions:
                index, probs = predictions[col]
                (pos,) = require_rows(index, [r], f"the predictions of {col!r}", "predict every example row")
                m, color = probs[pos][box] > 0.5, (1.0, 0.2, 0.1)
            else:
                m = None
            if m is not None:
                overlay = np.zeros(m.shape + (4,))
                overlay[m] = (*color, 0.45)
                ax.imshow(overlay)
                ax.contour(m, levels=[0.5], colors=[color], linewidths=0.8)
                if col in predictions:  # the slice's 2D Dice on a dark box, readable over any image
                    ax.text(0.03, 0.03, f"DSC {metrics.dice(m, gt[box]):.0f}", color="white", fontsize=8,
                            fontweight="bold", transform=ax.transAxes, va="bottom",
                            bbox=dict(boxstyle="round,pad=0.2", facecolor="black", alpha=0.7, edgecolor="none"))
                    if col != "ground truth" and gt[box].any():
                        ax.contour(gt[box], levels=[0.5], colors=[(0.1, 0.9, 0.2)], linewidths=0.6)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(col, fontsize=8)
        axes[i, 0].set_ylabel(f"vol {int(slices.volume[r])}, z {int(slices.slice_index[r])}", fontsize=7)
    fig.tight_layout()
    return fig


def centroid_offsets(slices: SliceSet, predictions: dict[str, tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """How far each method's masks sit from the truth: the mean centroid offset, in mm.

    On every predicted slice where both the prediction (probability > 0.5) and the true mask
    are non-empty, the offset is the prediction's centroid minus the truth's, in image rows
    (down is positive) and columns (right is positive), times the in-plane spacing.

    Returns
    -------
    DataFrame
        One row per method: ``method, n_slices, dy_mm, dx_mm`` (means), ``dy_sd_mm, dx_sd_mm``.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> gt = np.zeros((1, 8, 8), bool); gt[0, 4:6, 2:4] = True
    >>> s = SimpleNamespace(masks=gt, spacing_mm=2.0)
    >>> up = np.roll(gt, -1, axis=1).astype(np.float32)
    >>> centroid_offsets(s, {"up": (np.array([0]), up)})[["method", "dy_mm", "dx_mm"]].to_dict("records")
    [{'method': 'up', 'dy_mm': -2.0, 'dx_mm': 0.0}]
    """
    out = []
    for name, (index, probs) in predictions.items():
        dys, dxs = [], []
        for pos, row in enumerate(np.asarray(index)):
            gt, pred = np.asarray(slices.masks[int(row)]) > 0, np.asarray(probs[pos]) > 0.5
            if gt.any() and pred.any():
                (gy, gx), (py, px) = (np.argwhere(m).mean(axis=0) for m in (gt, pred))
                dys.append(py - gy)
                dxs.append(px - gx)
        mm = float(slices.spacing_mm)
        out.append({"method": name, "n_slices": len(dys),
                    "dy_mm": float(np.mean(dys)) * mm if dys else float("nan"),
                    "dx_mm": float(np.mean(dxs)) * mm if dxs else float("nan"),
                    "dy_sd_mm": float(np.std(dys, ddof=1)) * mm if len(dys) > 1 else float("nan"),
                    "dx_sd_mm": float(np.std(dxs, ddof=1)) * mm if len(dxs) > 1 else float("nan")})
    return pd.DataFrame(out)


def describe_offsets(offsets: pd.DataFrame, spacing_mm: float) -> str:
    """One sentence per method whose masks sit systematically off the truth (more than half a
    pixel on average, and more than a third of the slice-to-slice SD), else one sentence saying none do."""
    lines = []
    for r in offsets.itertuples():
        for axis, mean, sd, plus, minus in (("dy", r.dy_mm, r.dy_sd_mm, "below", "above"),
                                            ("dx", r.dx_mm, r.dx_sd_mm, "right of", "left of")):
            if np.isfinite(mean) and abs(mean) > 0.5 * spacing_mm and (not np.isfinite(sd) or abs(mean) > sd / 3):
                lines.append(f"- {r.method}: masks sit {abs(mean):.1f} mm {plus if mean > 0 else minus} the truth "
                             f"on average (SD {sd:.1f} mm over {r.n_slices} slices).")
    return "\n".join(lines) if lines else "- No method's masks sit systematically off the truth (all mean offsets " \
        f"under half a pixel, {0.5 * spacing_mm:g} mm)."


def plot_sweep(sweep: pd.DataFrame, chosen: tuple[str, float] | None = None,
               paper: tuple[str, float] | None = None, value: str = "val_dsc_mean") -> Any:
    """The Eq. 8 sweep: ``value`` against the SPL share of the loss, one line per reading.

    Parameters
    ----------
    sweep : DataFrame
        :func:`umcam_lib.train.seg_sweep.run_sweep` (``loss_main, lambda, spl_share`` and ``value``;
        ``same_as`` names the point a row shares its training with).
    chosen, paper : (reading, lambda), optional
        Circled in black (validation-chosen) and marked with a white-edged star (the paper's).

    Returns
    -------
    matplotlib.figure.Figure
        x: share ``w`` of the SPL term (0 = UM-CAM only, 1 = SPL only). Reading ``umcam`` is drawn
        with small filled circles and a thin solid line, reading ``spl`` with large open squares and
        a thick dashed line beneath it, so that where the two coincide (same ``w``, trained once) both stay visible.
        Each ``w`` gets one label listing the lambda of each reading there.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.6, 3.9))
    styles = {"umcam": dict(marker="o", markersize=6, linestyle="-", color="tab:blue", zorder=3,
                            label="reading umcam: CE(UM-CAM) + λ CE(SPL)"),
              "spl": dict(marker="s", markersize=13, linestyle="--", linewidth=3.2, alpha=0.75, color="tab:orange",
                          markerfacecolor="none", markeredgewidth=1.6, zorder=2, label="reading spl: CE(SPL) + λ CE(UM-CAM)")}
    for main, g in sweep.groupby("loss_main", sort=False):
        g = g.sort_values("spl_share")
        ax.plot(g["spl_share"], g[value], **styles.get(str(main), dict(marker="x", label=str(main))))
    # one label per SPL share: the lambda of each reading that lands there, and whether it was trained once
    keyed = sweep.assign(_w=sweep["spl_share"].round(6))
    for k, (w, g) in enumerate(keyed.groupby("_w", sort=True)):
        parts = [f"{r.loss_main} λ={r['lambda']:g}" for _, r in g.sort_values("loss_main", ascending=False).iterrows()]
        shared = "same_as" in g and g["same_as"].fillna("").astype(str).str.len().gt(0).any() and len(g) > 1
        text = " = ".join(parts) + ("\n(one training)" if shared else "")
        y = float(g[value].max())
        ax.annotate(text, (float(w), y), textcoords="offset points", xytext=(0, 12 if k % 2 == 0 else -26),
                    ha="center", fontsize=7, color="0.2",
                    arrowprops=dict(arrowstyle="-", color="0.6", lw=0.6))
    for point, style in ((chosen, dict(marker="o", markersize=20, markerfacecolor="none", markeredgecolor="black",
                                       markeredgewidth=1.8, label="validation-chosen")),
                         (paper, dict(marker="*", markersize=14, color="gold", markeredgecolor="black",
                                      label="paper (umcam reading, λ 0.1)"))):
        if point is not None:
            hit = sweep[(sweep["loss_main"] == point[0]) & (sweep["lambda"] == point[1])]
            if not hit.empty:
                ax.plot(hit["spl_share"], hit[value], linestyle="none", zorder=4, **style)
    ax.set_xlabel("share w of the SPL term in Eq. 8  (0: UM-CAM only, 1: SPL only)")
    ax.set_ylabel("mean validation 3D DSC (%)" if value == "val_dsc_mean" else value)
    ax.set_xlim(-0.1, 1.1)
    lo, hi = float(sweep[value].min()), float(sweep[value].max())
    pad = max(2.0, 0.25 * (hi - lo))
    ax.set_ylim(lo - pad, hi + pad)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    return fig


def plot_labels(image: np.ndarray, gt: np.ndarray, labels: dict[str, np.ndarray], title: str = "") -> Any:
    """One slice's training labels side by side: image, then each label map in [0, 1].

    Parameters
    ----------
    image, gt : ndarray, shape (H, W)
        The slice and its true mask (drawn as a green contour on every panel).
    labels : dict
        Name -> label map (H, W) in [0, 1] (hard pseudo masks or soft SPL).
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 1 + len(labels), figsize=(2.3 * (1 + len(labels)), 2.6), squeeze=False)
    axes[0, 0].imshow(image, cmap="gray", vmin=0, vmax=1)
    axes[0, 0].set_title("image", fontsize=9)
    for ax, (name, m) in zip(axes[0, 1:], labels.items()):
        im = ax.imshow(m, cmap="magma", vmin=0, vmax=1)
        ax.set_title(name, fontsize=9)
    for ax in axes[0]:
        if gt.any():
            ax.contour(gt, levels=[0.5], colors=["lime"], linewidths=0.8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[0, -1], fraction=0.046, label="foreground target")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def running_mean(values: pd.Series, window: int) -> pd.Series:
    """Centred running mean over ``window`` consecutive values (shorter at the ends), NaNs skipped."""
    return values.rolling(max(1, int(window)), center=True, min_periods=1).mean()


def plot_training_curves(histories: dict[str, pd.DataFrame], smooth: int | None = None) -> Any:
    """Training loss and validation 3D DSC per epoch of each UNet (``history.csv`` of each run).

    Parameters
    ----------
    histories : dict
        Name -> DataFrame with columns ``epoch, loss, val_dsc`` (``val_dsc`` NaN on epochs that
        were not validated).
    smooth : int, optional
        Window (in validations, and in epochs for the loss) of the running mean drawn as the line;
        None: a tenth of the longest run's validations (at least 1: no smoothing for short runs).

    Returns
    -------
    matplotlib.figure.Figure
        Left: training loss; right: validation DSC at its cadence, every validation as a faint
        point and the running mean as the line, with the kept (best) epoch starred at its raw
        value. A curve that ends before the others stopped early (its validation DSC had
        plateaued).
    """
    import matplotlib.pyplot as plt

    n_val = max((int(h["val_dsc"].notna().sum()) for h in histories.values()), default=1)
    window = int(smooth) if smooth is not None else max(1, round(n_val / 10))
    fig, (ax_l, ax_v) = plt.subplots(1, 2, figsize=(12, 3.9))
    for name, h in histories.items():
        raw_l = ax_l.plot(h["epoch"], h["loss"], linestyle="none", marker=".", markersize=3, alpha=0.3)[0]
        color = raw_l.get_color()
        ax_l.plot(h["epoch"], running_mean(h["loss"], window), color=color, label=name)
        v = h.dropna(subset=["val_dsc"])
        if len(v):
            ax_v.plot(v["epoch"], v["val_dsc"], linestyle="none", marker="o", markersize=3, alpha=0.3, color=color)
            ax_v.plot(v["epoch"], running_mean(v["val_dsc"], window), color=color, label=name)
            best = v.loc[v["val_dsc"].idxmax()]
            ax_v.plot([best["epoch"]], [best["val_dsc"]], marker="*", markersize=12, color=color,
                      markeredgecolor="black", markeredgewidth=0.6, linestyle="none")
    what = f"line: running mean over {window} validations; dots: each validation" if window > 1 \
        else "dots and line: each validation"
    ax_l.set_xlabel("epoch")
    ax_l.set_ylabel("training loss (Eq. 8)")
    ax_l.set_yscale("log")
    ax_l.set_title(("line: running mean over %d epochs; dots: each epoch" % window) if window > 1 else
                   "training loss per epoch", fontsize=9)
    ax_v.set_xlabel("epoch")
    ax_v.set_ylabel("validation 3D DSC (%)")
    ax_v.set_title(f"{what}; star: kept epoch (best.pt)", fontsize=9)
    ax_v.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    return fig
