"""3D evaluation of slice-wise segmentations: stack every slice of a volume, then score it.

The paper reports DSC and HD95 of the final segmentation "in 3D". The authors' evaluation
predicted only the slices whose ground truth was non-empty, i.e. it used the answer to decide
where to look (an oracle slice selection that hides every false positive outside the brain).
Here every slice of every volume of a split is predicted and stacked in ``slice_index`` order;
no slice is chosen by its ground truth. A volume with an empty prediction is scored with
:mod:`umcam_lib.metrics`' finite penalty (DSC 0, HD95 = the diagonal of the volume), never
dropped.

Units. A volume is an array ``[S, H, W]`` (slices, rows, columns).

- ``hd95`` (pixels): :func:`umcam_lib.metrics.hd95` with ``spacing=None``, i.e. voxel units:
  one in-plane pixel of the profile's grid per step in H and W, and **one slice per step in
  S**. The slice axis is therefore measured in slice units (a step of ``thickness_mm``, i.e.
  ``thickness_mm / spacing_mm`` in-plane pixels), as the paper's "pixels" leave it undefined.
- ``hd95_mm``: the same distance with ``spacing=(thickness_mm, spacing_mm, spacing_mm)``.
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import pandas as pd

from . import metrics
from .data import SliceSet

SCORE_COLUMNS = ["volume", "n_slices", "gt_voxels", "pred_voxels", "dsc", "hd95", "hd95_mm"]


def score_volume(pred: np.ndarray, gt: np.ndarray, spacing_mm: float, thickness_mm: float) -> dict[str, float]:
    """DSC (%), HD95 (voxel units) and HD95 (mm) of one 3D prediction.

    Parameters
    ----------
    pred, gt : ndarray, bool or {0, 1}, shape (S, H, W)
        Predicted and true masks, slices along axis 0.
    spacing_mm : float
        In-plane pixel size (mm).
    thickness_mm : float
        Slice step (mm).

    Returns
    -------
    dict
        ``dsc``, ``hd95``, ``hd95_mm`` (finite also for empty inputs), ``gt_voxels``,
        ``pred_voxels``.
    """
    pred, gt = np.asarray(pred).astype(bool), np.asarray(gt).astype(bool)
    if pred.ndim != 3 or pred.shape != gt.shape:
        raise ValueError(f"score_volume expects two (S, H, W) arrays of one shape, got {pred.shape} and {gt.shape}")
    return {
        "dsc": metrics.dice(pred, gt),
        "hd95": metrics.hd95(pred, gt),
        "hd95_mm": metrics.hd95(pred, gt, spacing=(float(thickness_mm), float(spacing_mm), float(spacing_mm))),
        "gt_voxels": int(gt.sum()),
        "pred_voxels": int(pred.sum()),
    }


def split_rows(slices: SliceSet, split: str) -> np.ndarray:
    """Rows of every slice of the split's volumes, volume by volume in stack order."""
    vols = slices.volume_ids(split)
    if len(vols) == 0:
        raise ValueError(f"the slice set has no {split!r} volumes")
    return np.concatenate([slices.volume_slices(int(v)) for v in vols])


def iter_volumes(slices: SliceSet, split: str, index: np.ndarray, pred: np.ndarray
                 ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(volume, pred3d, gt3d)`` for every volume of ``split``.

    Parameters
    ----------
    slices : SliceSet
    split : {"val", "test", "train"}
    index : ndarray, int, shape (n,)
        Slice rows that ``pred`` covers; must include every slice of the split's volumes.
    pred : ndarray, shape (n, H, W)
        Binary (or probability, binarised at 0.5) prediction per row of ``index``.
    """
    index = np.asarray(index)
    if pred.shape[0] != index.shape[0]:
        raise ValueError(f"pred has {pred.shape[0]} slices but index has {index.shape[0]}")
    pos = {int(r): i for i, r in enumerate(index)}
    for v in slices.volume_ids(split):
        rows = slices.volume_slices(int(v))
        missing = [int(r) for r in rows if int(r) not in pos]
        if missing:
            raise ValueError(f"volume {int(v)} ({split}): {len(missing)} of its {len(rows)} slices have no "
                             f"prediction (e.g. row {missing[0]}); every slice must be predicted")
        p = pred[[pos[int(r)] for r in rows]]
        p = p > 0.5 if p.dtype.kind == "f" else p.astype(bool)
        yield int(v), p, slices.masks[rows].astype(bool)


def largest_component_3d(pred: np.ndarray) -> np.ndarray:
    """Keep the largest 26-connected component of a 3D binary volume (``seg.postprocess: lcc``).

    Parameters
    ----------
    pred : ndarray, bool, shape (S, H, W)

    Returns
    -------
    ndarray, bool, shape (S, H, W)
        All-false when ``pred`` is empty. Slices are treated as neighbours in stack order,
        whatever their thickness (connectivity counts voxels, not millimetres).
    """
    from skimage.measure import label

    pred = np.asarray(pred).astype(bool)
    if pred.ndim != 3:
        raise ValueError(f"largest_component_3d expects an (S, H, W) volume, got shape {pred.shape}")
    if not pred.any():
        return pred
    lab = label(pred, connectivity=3)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


POSTPROCESS = ("none", "lcc")


def evaluate_volumes(slices: SliceSet, split: str, index: np.ndarray, pred: np.ndarray,
                     postprocess: str = "none") -> pd.DataFrame:
    """Score the 3D prediction of every volume of ``split``.

    Parameters
    ----------
    slices : SliceSet
        Provides ground-truth masks, stack order, ``spacing_mm`` and ``volumes.thickness_mm``.
    split : str
        ``val`` or ``test`` (``train`` works too).
    index : ndarray, int, shape (n,)
        Slice rows covered by ``pred`` (all slices of the split's volumes, at least).
    pred : ndarray, shape (n, H, W)
        Binary masks, or foreground probabilities binarised at 0.5.
    postprocess : {"none", "lcc"}
        ``lcc``: keep only the largest 3D connected component of each volume before scoring.

    Returns
    -------
    DataFrame
        One row per volume: ``volume, n_slices, gt_voxels, pred_voxels, dsc, hd95, hd95_mm``.
    """
    if postprocess not in POSTPROCESS:
        raise ValueError(f"seg.postprocess must be one of {POSTPROCESS}, got {postprocess!r}")
    thickness = slices.volumes.set_index("volume")["thickness_mm"]
    rows = []
    for v, p, g in iter_volumes(slices, split, index, pred):
        if postprocess == "lcc":
            p = largest_component_3d(p)
        s = score_volume(p, g, slices.spacing_mm, float(thickness.loc[v]))
        rows.append({"volume": v, "n_slices": p.shape[0], **s})
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


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
        Ground truth in green, predictions in red, over the image.
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
                pos = np.flatnonzero(np.asarray(index) == r)
                if len(pos) == 0:
                    raise ValueError(f"predictions of {col!r} lack slice row {int(r)}")
                m, color = probs[pos[0]][box] > 0.5, (1.0, 0.2, 0.1)
            else:
                m = None
            if m is not None:
                overlay = np.zeros(m.shape + (4,))
                overlay[m] = (*color, 0.45)
                ax.imshow(overlay)
                ax.contour(m, levels=[0.5], colors=[color], linewidths=0.8)
                if col in predictions:
                    ax.text(0.02, 0.02, f"{metrics.dice(m, gt[box]):.0f}", color="yellow", fontsize=7,
                            transform=ax.transAxes, va="bottom")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(col, fontsize=8)
        axes[i, 0].set_ylabel(f"vol {int(slices.volume[r])}, z {int(slices.slice_index[r])}", fontsize=7)
    fig.tight_layout()
    return fig


def plot_sweep(sweep: pd.DataFrame, chosen: tuple[str, float] | None = None,
               paper: tuple[str, float] | None = None, value: str = "val_dsc_mean") -> Any:
    """The Eq. 8 sweep: ``value`` against the SPL share of the loss, one line per reading.

    Parameters
    ----------
    sweep : DataFrame
        :func:`umcam_lib.train.seg_sweep.run_sweep` (``loss_main, lambda, spl_share`` and ``value``).
    chosen, paper : (reading, lambda), optional
        Circled in black (validation-chosen) and marked with a white-edged star (the paper's).

    Returns
    -------
    matplotlib.figure.Figure
        x: share ``w`` of the SPL term (0 = UM-CAM only, 1 = SPL only); each point labelled
        with its lambda. Under AdamW the two readings meet where their shares coincide.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    styles = {"umcam": dict(marker="o", label="CE(UM-CAM) + lambda CE(SPL)"),
              "spl": dict(marker="s", label="CE(SPL) + lambda CE(UM-CAM)")}
    for main, g in sweep.groupby("loss_main", sort=False):
        g = g.sort_values("spl_share")
        ax.plot(g["spl_share"], g[value], linestyle="-", **styles.get(str(main), dict(marker="x", label=str(main))))
        for _, r in g.iterrows():
            ax.annotate(f"{r['lambda']:g}", (r["spl_share"], r[value]), textcoords="offset points", xytext=(3, 4),
                        fontsize=7)
    for point, style in ((chosen, dict(marker="o", markersize=16, markerfacecolor="none", markeredgecolor="black",
                                       markeredgewidth=1.8, label="validation-chosen")),
                         (paper, dict(marker="*", markersize=14, color="gold", markeredgecolor="black",
                                      label="paper (umcam reading, lambda 0.1)"))):
        if point is not None:
            hit = sweep[(sweep["loss_main"] == point[0]) & (sweep["lambda"] == point[1])]
            if not hit.empty:
                ax.plot(hit["spl_share"], hit[value], linestyle="none", **style)
    ax.set_xlabel("share of the SPL term in Eq. 8  (0: UM-CAM only, 1: SPL only)")
    ax.set_ylabel("mean validation 3D DSC (%)" if value == "val_dsc_mean" else value)
    ax.set_xlim(-0.02, 1.02)
    ax.legend(fontsize=7, loc="best")
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


def oracle_selection(slices: SliceSet, index: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """The authors' evaluation: keep predictions only on slices whose ground truth is non-empty.

    Returns ``pred`` with every slice of an empty ground truth set to background -- an oracle
    that hides all false positives outside the brain's slices. Shown for comparison only.
    """
    keep = slices.masks[np.asarray(index)].reshape(len(index), -1).any(axis=1)
    out = np.array(pred, copy=True)
    out[~keep] = 0
    return out


def plot_training_curves(histories: dict[str, pd.DataFrame]) -> Any:
    """Training loss and validation 3D DSC per epoch of each UNet (``history.csv`` of each run).

    Parameters
    ----------
    histories : dict
        Name -> DataFrame with columns ``epoch, loss, val_dsc`` (``val_dsc`` NaN on epochs that
        were not validated).

    Returns
    -------
    matplotlib.figure.Figure
        Left: training loss; right: validation DSC with the kept (best) epoch marked. A curve that
        ends before the others stopped early (its validation DSC had plateaued).
    """
    import matplotlib.pyplot as plt

    fig, (ax_l, ax_v) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, h in histories.items():
        line, = ax_l.plot(h["epoch"], h["loss"], label=name)
        v = h.dropna(subset=["val_dsc"])
        if len(v):
            ax_v.plot(v["epoch"], v["val_dsc"], marker=".", color=line.get_color(), label=name)
            best = v.loc[v["val_dsc"].idxmax()]
            ax_v.plot([best["epoch"]], [best["val_dsc"]], marker="*", markersize=11, color=line.get_color())
    ax_l.set_xlabel("epoch")
    ax_l.set_ylabel("training loss (Eq. 8)")
    ax_l.set_yscale("log")
    ax_v.set_xlabel("epoch")
    ax_v.set_ylabel("validation 3D DSC (%)")
    ax_v.set_title("star: kept epoch (best.pt)", fontsize=9)
    ax_v.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig
