"""Does the classifier look at the brain, and does each layer's CAM show it?

Three measurements a teacher can show side by side (notebook 04):

- :func:`layer_localisation`: for every layer's Grad-CAM (and Average-CAM, UM-CAM), the mean
  Dice (%) of the best grid threshold on the positive slices of a split, the *pointing game*
  (share of slices whose map maximum falls inside the brain) and the floor every pseudo mask
  must beat: a mask of the whole slice (``all_foreground``).
- :func:`occlusion_test`: the classifier's mean P(brain) on positive slices as they are, with
  the (dilated) brain replaced by the median of its surroundings ("erase the brain"), and with
  everything outside a box around the head replaced by it ("keep only the head"). A classifier
  that answers from the brain drops to near 0 in the first and keeps its answer in the second.

All numbers are computed from the run's model and slices; nothing is tabulated by hand.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from torch import nn

from ..data.artifacts import SliceSet
from ..metrics import dice_batch, threshold_grid
from .fusion import average_cam, umcam
from .gradcam import compute_cams
from .pseudo_mask import dice_over_grid
from .. import runtime

#: Layers every localisation table shows, in network order.
DIAGNOSTIC_LAYERS = ("block1", "block2", "block3", "block4", "block5", "head")


def pointing_game(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Whether each map's maximum falls inside its mask.

    Parameters
    ----------
    maps : ndarray, shape (n, H, W)
        CAMs (any scale).
    masks : ndarray, shape (n, H, W)
        Binary brain masks.

    Returns
    -------
    ndarray of bool, shape (n,)
        ``True`` where the arg-max pixel is brain (an all-zero map never hits).
    """
    maps = np.asarray(maps, dtype=np.float32)
    masks = np.asarray(masks).astype(bool)
    if maps.shape != masks.shape or maps.ndim != 3:
        raise ValueError(f"expected maps and masks [n, H, W] of one shape, got {maps.shape} and {masks.shape}")
    flat = maps.reshape(len(maps), -1)
    peak = flat.argmax(axis=1)
    hit = masks.reshape(len(masks), -1)[np.arange(len(maps)), peak]
    return hit & (flat.max(axis=1) > 0)


def best_threshold_dice(maps: np.ndarray, masks: np.ndarray, grid: Sequence[float]) -> tuple[float, float]:
    """Mean Dice (%) at the grid threshold that maximises it, and that threshold."""
    curve = dice_over_grid(maps, masks, grid).mean(axis=1)
    best = int(np.argmax(curve))
    return float(curve[best]), float(np.asarray(grid)[best])


def layer_localisation(model: nn.Module, slices: SliceSet, split: str, fused: Sequence[str],
                       target: int | str = 1, grid: Sequence[float] = (0.05, 0.95, 0.05),
                       layers: Sequence[str] = DIAGNOSTIC_LAYERS, batch_size: int = 64,
                       device: str | torch.device | None = None) -> pd.DataFrame:
    """Per-layer Grad-CAM localisation on the positive slices of ``split``.

    Parameters
    ----------
    model : nn.Module
        The trained slice classifier.
    slices : SliceSet
        Prepared slices; the positive slices of ``split`` are used.
    split : {"train", "val", "test"}
    fused : sequence of str
        Layers Average-CAM and UM-CAM combine (``cam.layers``).
    target : int or {"logit", "margin"}
        Grad-CAM target (see :func:`umcam_lib.cam.gradcam.target_score`).
    grid : [start, stop, step]
        Threshold grid (``cam.threshold_grid``); each row reports its best threshold, i.e. an
        upper bound of what a validation-chosen threshold gives on the same split.

    Returns
    -------
    DataFrame
        One row per layer, then ``average_cam``, ``umcam`` and ``all_foreground``: ``layer``,
        ``dsc`` (%), ``threshold``, ``pointing`` (share in [0, 1]; NaN for the floor), ``n``.
    """
    rows = slices.indices(split, positive_only=True)
    if rows.size == 0:
        raise ValueError(f"split {split!r} has no positive slice to measure localisation on")
    images, masks = slices.images[rows], slices.masks[rows]
    thresholds = threshold_grid(grid)
    names = list(dict.fromkeys([*layers, *fused]))
    maps = compute_cams(model, images, names, batch_size=batch_size, device=device, target=target, progress=False)
    out = []
    for name in layers:
        m = maps[names.index(name)]
        dsc, thr = best_threshold_dice(m, masks, thresholds)
        out.append({"layer": name, "dsc": dsc, "threshold": thr, "pointing": float(pointing_game(m, masks).mean())})
    sel = np.stack([maps[names.index(n)] for n in fused])
    for name, fused_map in (("average_cam", average_cam(sel)), ("umcam", umcam(sel))):
        fused_map = np.asarray(fused_map, dtype=np.float32)
        dsc, thr = best_threshold_dice(fused_map, masks, thresholds)
        out.append({"layer": name, "dsc": dsc, "threshold": thr,
                    "pointing": float(pointing_game(fused_map, masks).mean())})
    out.append({"layer": "all_foreground", "dsc": float(all_foreground_dice(masks).mean()),
                "threshold": float("nan"), "pointing": float("nan")})
    df = pd.DataFrame(out)
    df["n"] = int(rows.size)
    return df


def all_foreground_dice(masks: np.ndarray) -> np.ndarray:
    """Dice (%) of a mask covering the whole slice, per slice: the floor of any pseudo mask.

    Parameters
    ----------
    masks : ndarray, shape (n, H, W)
        Reference masks (the positive slices of a split, where the floor is reported).

    Returns
    -------
    ndarray, float64, shape (n,)
        :func:`umcam_lib.metrics.dice_batch` of an all-ones mask against each slice:
        ``200 |M| / (|M| + H W)``, and 0 on a slice without brain.
    """
    m = np.asarray(masks).astype(bool)
    return dice_batch(np.ones_like(m), m)


def erase_brain(images: np.ndarray, masks: np.ndarray, dilate_px: int = 3) -> np.ndarray:
    """Slices with the dilated brain replaced by the median of a ring around it.

    Parameters
    ----------
    images, masks : ndarray, shape (n, H, W)
    dilate_px : int
        Dilation of the mask before erasing (pixels), so the brain's border goes too.
    """
    out = np.array(images, dtype=np.float32, copy=True)
    for i, (img, m) in enumerate(zip(out, np.asarray(masks).astype(bool))):
        if not m.any():
            continue
        region = ndimage.binary_dilation(m, iterations=dilate_px)
        ring = ndimage.binary_dilation(region, iterations=max(2, dilate_px)) & ~region
        img[region] = np.median(img[ring]) if ring.any() else 0.0
    return out


def keep_head(images: np.ndarray, masks: np.ndarray, margin_px: int = 8) -> np.ndarray:
    """Slices where everything outside the brain's bounding box (plus a margin) is replaced by
    the median of the image's outside."""
    out = np.array(images, dtype=np.float32, copy=True)
    h, w = out.shape[1:]
    for img, m in zip(out, np.asarray(masks).astype(bool)):
        if not m.any():
            continue
        ys, xs = np.nonzero(m)
        box = np.zeros_like(m)
        box[max(0, ys.min() - margin_px):min(h, ys.max() + margin_px + 1),
            max(0, xs.min() - margin_px):min(w, xs.max() + margin_px + 1)] = True
        img[~box] = np.median(img[~box])
    return out


def occlusion_test(model: nn.Module, slices: SliceSet, splits: Sequence[str] = ("val", "test"),
                   batch_size: int = 64, device: str | torch.device = "cpu") -> pd.DataFrame:
    """Mean P(brain) on the positive slices of ``splits``: intact, brain erased, head only.

    Returns
    -------
    DataFrame
        Columns ``input`` (``intact``, ``brain erased``, ``head only``), ``p_brain`` (mean
        probability of the brain class), ``called_brain`` (share with p >= 0.5), ``n``.
    """
    rows = slices.positive_rows(splits)
    if rows.size == 0:
        raise ValueError(f"splits {list(splits)} have no positive slice")
    images, masks = slices.images[rows], slices.masks[rows]
    out = []
    for name, x in (("intact", images), ("brain erased", erase_brain(images, masks)),
                    ("head only", keep_head(images, masks))):
        p = _p_brain(model, x, batch_size, device)
        out.append({"input": name, "p_brain": float(np.mean(p)), "called_brain": float(np.mean(p >= 0.5)),
                    "n": int(rows.size)})
    return pd.DataFrame(out)


@torch.no_grad()
def _p_brain(model: nn.Module, images: np.ndarray, batch_size: int, device: str | torch.device) -> np.ndarray:
    """Softmax probability of the brain class for slices [n, H, W] (eval mode)."""
    with runtime.eval_mode(model.to(device)):
        out = [torch.softmax(model(torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size]))[:, None]
                                   .to(device)).double(), dim=1)[:, 1].cpu()
               for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy()


def summarise_localisation(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Mean and SD over seeds of :func:`layer_localisation` tables (one per seed).

    Returns
    -------
    DataFrame
        One row per layer (network order, then the fusions and the floor): ``layer``,
        ``dsc_mean``, ``dsc_sd``, ``pointing_mean``, ``pointing_sd``, ``n_seeds``.
    """
    df = pd.concat(list(frames), ignore_index=True)
    order = list(dict.fromkeys(df["layer"]))
    g = df.groupby("layer", sort=False)
    out = pd.DataFrame({
        "dsc_mean": g["dsc"].mean(), "dsc_sd": g["dsc"].std(ddof=1),
        "pointing_mean": g["pointing"].mean(), "pointing_sd": g["pointing"].std(ddof=1),
        "n_seeds": g["dsc"].size(),
    }).reindex(order).reset_index().rename(columns={"index": "layer"})
    return out


def _fmt(mean: float, sd: float, pct: bool = False) -> str:
    if np.isnan(mean):
        return "n/a"
    unit = "%" if pct else ""
    return f"{mean:.1f}{unit}" if np.isnan(sd) else f"{mean:.1f}{unit} ± {sd:.1f}"


def describe_localisation(summary: pd.DataFrame) -> str:
    """Markdown sentences read off :func:`summarise_localisation`'s table (no claim is typed
    in by hand: every statement is a comparison of the numbers in ``summary``)."""
    s = summary.set_index("layer")
    floor = float(s.loc["all_foreground", "dsc_mean"]) if "all_foreground" in s.index else float("nan")
    layers = [l for l in DIAGNOSTIC_LAYERS if l in s.index]
    best = max(layers, key=lambda l: s.loc[l, "dsc_mean"])
    lines = [f"- The best single layer is **{best}** ({_fmt(s.loc[best, 'dsc_mean'], s.loc[best, 'dsc_sd'])} DSC); "
             f"a mask of the whole slice scores {floor:.1f}."]
    points = [l for l in layers if s.loc[l, "pointing_mean"] >= 0.5]
    misses = [l for l in layers if s.loc[l, "pointing_mean"] < 0.5]
    def games(names: list[str]) -> str:
        return ", ".join(f"{s.loc[n, 'pointing_mean']:.2f}" for n in names)

    if points:
        lines.append(f"- The map maximum falls inside the brain on most slices for: {', '.join(points)} "
                     f"(pointing game {games(points)}).")
    if misses:
        lines.append(f"- It falls outside the brain on most slices for: {', '.join(misses)} "
                     f"(pointing game {games(misses)}): these maps do not point at the brain.")
    for fused in ("average_cam", "umcam"):
        if fused in s.index:
            d = float(s.loc[fused, "dsc_mean"])
            rel = "above" if d > s.loc[best, "dsc_mean"] else "below"
            lines.append(f"- {'UM-CAM' if fused == 'umcam' else 'Average-CAM'}: "
                         f"{_fmt(d, s.loc[fused, 'dsc_sd'])} DSC, {rel} the best single layer.")
    return "\n".join(lines)


def describe_occlusion(df: pd.DataFrame) -> str:
    """One sentence on :func:`occlusion_test`'s table, graded by how many answers erasing flips.

    The classifier *answers from the brain* when erasing the brain leaves at most 10 % of the
    slices called brain and keeping only the head keeps at least 80 % of the intact calls; *partly*
    when erasing at least halves the calls; otherwise it *does not answer from the brain alone*.

    Examples
    --------
    >>> t = pd.DataFrame({"input": ["intact", "brain erased", "head only"], "p_brain": [0.9, 0.4, 0.8],
    ...                   "called_brain": [0.96, 0.45, 0.85], "n": [100] * 3})
    >>> describe_occlusion(t).split(": the classifier ")[1]
    'answers partly from the brain (45 % of the brain-erased slices are still called brain).'
    """
    p = df.set_index("input")["p_brain"]
    erased, head = float(p["brain erased"]), float(p["head only"])
    calls = df.set_index("input")["called_brain"] if "called_brain" in df.columns else None
    if calls is None:  # a table from before called_brain was recorded: judge on the means
        c_intact, c_erased, c_head = float(p["intact"]), erased, head
    else:
        c_intact, c_erased, c_head = (float(calls[k]) for k in ("intact", "brain erased", "head only"))
    if c_erased <= 0.1 and c_head >= 0.8 * c_intact:
        verdict = "answers from the brain"
    elif c_erased <= 0.5 * c_intact:
        verdict = "answers partly from the brain"
    else:
        verdict = "does not answer from the brain alone"
    still = f" ({100 * c_erased:.0f} % of the brain-erased slices are still called brain)" if calls is not None else ""
    called = (f"; called brain: {100 * c_intact:.0f} / {100 * c_erased:.0f} / {100 * c_head:.0f} %"
              if calls is not None else "")
    return (f"Mean P(brain) on {int(df['n'].iloc[0])} positive slices: {p['intact']:.2f} intact, "
            f"{erased:.2f} with the brain erased, {head:.2f} with only a box around the head kept{called}: "
            f"the classifier {verdict}{still}.")

