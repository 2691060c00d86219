"""Prediction and 3D scoring of a trained UNet, and the stored predictions.

Every slice of every volume of a split is predicted (no slice chosen by its ground truth) and
scored in 3D with :mod:`umcam_lib.scoring`. Predictions are stored as
``run_dir/seg/<variant>/pred_<split>.npz`` (a :mod:`umcam_lib.data.maps` file of probabilities).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from .. import runtime
from ..data import SliceSet
from ..data.maps import load_maps, save_maps
from ..models.unet import unet_from_checkpoint
from ..paths import resolve
from ..scoring import evaluate_volumes, oracle_selection, split_rows
from .common import load_checkpoint
from .seg_targets import VARIANTS

def folder_name(method: str) -> str:
    """The folder name of a method's UNet: characters other than letters, digits and ``+-_.``
    become ``_`` (the one rule of ``run_dir/seg/<name>`` and of ``models/<name>``).

    Examples
    --------
    >>> folder_name("UM-CAM+SPL"), folder_name("Grad CAM/x")
    ('UM-CAM+SPL', 'Grad_CAM_x')
    """
    return re.sub(r"[^A-Za-z0-9+\-_.]", "_", method)


def variant_dir(run_dir: str | Path, name: str) -> Path:
    """``run_dir/seg/<name>`` with each ``/``-separated part of ``name`` made a folder name by
    :func:`folder_name` (``sweep/umcam_lambda0.1`` is a folder inside ``seg/sweep``)."""
    return resolve(run_dir).joinpath("seg", *(folder_name(part) for part in name.split("/")))


#: Named sets of test-time views, each view ``(k, flip)``: ``k`` quarter turns, then a left-right
#: flip. ``d8`` is the full dihedral group (the study's TTA); the others are its cheaper subgroups
#: (``segment --tta-views``; chosen on validation in ``benchmarks/segment_tta_views.py``).
TTA_VIEWS: dict[str, tuple[tuple[int, bool], ...]] = {
    "d8": tuple((k, f) for k in range(4) for f in (False, True)),
    "rot4": ((0, False), (1, False), (2, False), (3, False)),
    "flip4": ((0, False), (0, True), (2, False), (2, True)),
    "flip2": ((0, False), (0, True)),
}


def check_views(views: str) -> tuple[tuple[int, bool], ...]:
    """The ``(k, flip)`` views of a :data:`TTA_VIEWS` name (``ValueError`` naming the choices)."""
    if views not in TTA_VIEWS:
        raise ValueError(f"tta views must be one of {', '.join(TTA_VIEWS)}, got {views!r}")
    return TTA_VIEWS[views]


def to_view(images: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """Slices ``[n, h, w]`` turned ``k`` quarter turns, then flipped left-right (contiguous)."""
    view = np.rot90(images, k, axes=(1, 2))
    return np.ascontiguousarray(view[:, :, ::-1] if flip else view)


def from_view(out: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """Inverse of :func:`to_view`: a prediction of a view back to the slices' orientation."""
    out = out[:, :, ::-1] if flip else out
    return np.rot90(out, -k, axes=(1, 2))


def dihedral_average(predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray, views: str = "d8") -> np.ndarray:
    """Test-time augmentation: the mean of ``predict`` over right-angle rotations and flips.

    Each view of the slices (``k`` quarter turns, then optionally a left-right flip) is
    predicted and mapped back to the original orientation before averaging, so every output
    pixel is the mean of the predictions of that same pixel.

    Parameters
    ----------
    predict : callable
        Maps slices ``[n, h, w]`` to per-pixel values of the same shape.
    images : ndarray, shape (n, H, W)
    views : str
        A :data:`TTA_VIEWS` name: ``d8`` (all 8 views), ``rot4``, ``flip4`` or ``flip2``.

    Returns
    -------
    ndarray, float32, shape (n, H, W)
    """
    chosen = check_views(views)
    total = np.zeros(images.shape, dtype=np.float64)
    for k, flip in chosen:
        total += from_view(predict(to_view(images, k, flip)), k, flip)
    return (total / len(chosen)).astype(np.float32)


def predict_probs(model: nn.Module, images: np.ndarray, device: str | torch.device = "cpu", amp: bool = False,
                  batch_size: int = 64, tta: bool = False, views: str = "d8") -> np.ndarray:
    """Foreground probability (softmax channel 1) of each slice.

    Parameters
    ----------
    images : ndarray, float, shape (n, H, W)
        Slices in [0, 1].
    tta : bool
        Average over the slices' right-angle rotations and flips (:func:`dihedral_average`;
        as many times the cost as ``views`` has views).
    views : str
        With ``tta``: a :data:`TTA_VIEWS` name (``d8``: all 8 views).

    Returns
    -------
    ndarray, float32, shape (n, H, W)
    """
    if tta:
        return dihedral_average(lambda x: predict_probs(model, x, device, amp, batch_size), images, views)
    dev = runtime.as_device(device)
    use_amp = runtime.use_amp(dev, amp)
    model.eval()
    out = np.empty(images.shape, dtype=np.float32)
    weights = [p for p in model.parameters() if p.ndim == 4]
    fmt = torch.channels_last if weights and weights[0].is_contiguous(memory_format=torch.channels_last) \
        and not weights[0].is_contiguous() else torch.contiguous_format
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size], dtype=np.float32))[:, None].to(dev)
            x = x.contiguous(memory_format=fmt)
            with runtime.autocast(dev, use_amp):
                logits = model(x)
            out[i:i + batch_size] = torch.softmax(logits.float(), dim=1)[:, 1].cpu().numpy()
    return out

def predict_split(model: nn.Module, slices: SliceSet, split: str, device: str | torch.device = "cpu",
                  amp: bool = False, batch_size: int = 64, tta: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Predict every slice of every volume of ``split`` (no selection by ground truth; ``tta``:
    :func:`predict_probs`).

    Returns
    -------
    rows : ndarray, int, shape (n,)
        Slice rows, volume by volume in stack order.
    probs : ndarray, float32, shape (n, H, W)
        Foreground probabilities.
    """
    rows = split_rows(slices, split)
    return rows, predict_probs(model, slices.images[rows], device, amp, batch_size, tta)

def evaluate_variant(model: nn.Module, slices: SliceSet, split: str, device: str | torch.device = "auto",
                     amp: bool = True, run_dir: str | Path | None = None, name: str | None = None,
                     batch_size: int = 64, postprocess: str = "none", tta: bool = False) -> pd.DataFrame:
    """Predict all slices of ``split``, stack them per volume and score each volume in 3D.

    ``tta`` averages each slice's prediction over its 8 right-angle rotations and flips
    (:func:`dihedral_average`).

    With ``run_dir`` and ``name`` the probabilities are stored as
    ``run_dir/seg/<name>/pred_<split>.npz`` (a :mod:`umcam_lib.data.maps` file; raw, before any
    ``postprocess``, which is applied to the binarised volume before scoring).

    Returns
    -------
    DataFrame
        One row per volume: ``method, split, volume, n_slices, gt_voxels, pred_voxels, dsc``
        (%), ``hd95`` (voxel units: pixels in-plane, slices through-plane), ``hd95_mm``.
    """
    rows, probs = predict_split(model, slices, split, device, amp, batch_size, tta)
    if run_dir is not None and name is not None:
        save_maps(variant_dir(run_dir, name).parent, variant_dir(run_dir, name).name, f"pred_{split}", rows, probs)
    scores = evaluate_volumes(slices, split, rows, probs > 0.5, postprocess=postprocess)
    scores.insert(0, "split", split)
    scores.insert(0, "method", name or "model")
    return scores

def load_predictions(run_dir: str | Path, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, probs)`` stored by :func:`evaluate_variant`."""
    d = variant_dir(run_dir, name)
    return load_maps(d.parent, d.name, f"pred_{split}")

def load_variant(run_dir: str | Path, name: str, width: int, device: str | torch.device = "cpu",
                 out_dir: str | Path | None = None) -> nn.Module:
    """Rebuild a trained UNet from ``best.pt`` (``run_dir/seg/<name>`` unless ``out_dir``).

    Parameters
    ----------
    width : int
        The run's ``seg.width``, used when the checkpoint records no width
        (:func:`umcam_lib.models.unet.unet_from_checkpoint`).

    Returns
    -------
    torch.nn.Module
        Eval mode, on ``device``.

    Raises
    ------
    FileNotFoundError
        No ``best.pt`` in the folder.
    """
    path = (resolve(out_dir) if out_dir is not None else variant_dir(run_dir, name)) / "best.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: train this model first")
    return unet_from_checkpoint(load_checkpoint(path), width).to(runtime.as_device(device))


def oracle_comparison(slices: SliceSet, run_dir: str | Path, variants: Sequence[str] = VARIANTS,
                      split: str = "test") -> pd.DataFrame:
    """Mean 3D scores under three protocols, from the stored predictions (:func:`load_predictions`).

    ``all``: every slice predicted (the study's protocol); ``lcc``: the same, then only the
    largest 3D connected component of each volume kept (``seg.postprocess: lcc``); ``oracle``:
    only the slices whose ground truth is non-empty (the authors' evaluation).

    Returns one row per variant: ``method, dsc_all, dsc_lcc, dsc_oracle, hd95_all, hd95_lcc,
    hd95_oracle, hd95_mm_all, hd95_mm_lcc, hd95_mm_oracle``.
    """
    rows = []
    for name in variants:
        index, probs = load_predictions(run_dir, name, split)
        pred = probs > 0.5
        res = {"all": evaluate_volumes(slices, split, index, pred),
               "lcc": evaluate_volumes(slices, split, index, pred, postprocess="lcc"),
               "oracle": evaluate_volumes(slices, split, index, oracle_selection(slices, index, pred))}
        row: dict[str, Any] = {"method": name}
        for metric in ("dsc", "hd95", "hd95_mm"):
            for proto, df in res.items():
                row[f"{metric}_{proto}"] = df[metric].mean()
        rows.append(row)
    return pd.DataFrame(rows)


def summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation per method and split of per-volume scores."""
    agg = scores.groupby(["method", "split"], sort=False)[["dsc", "hd95", "hd95_mm"]].agg(["mean", "std"])
    agg.columns = [f"{a}_{b}" for a, b in agg.columns]
    return agg.reset_index()


def tta_comparison(slices: SliceSet, run_dir: str | Path, width: int, variants: Sequence[str] = VARIANTS,
                   splits: Sequence[str] = ("val", "test"), postprocess: str = "none",
                   device: str | torch.device = "cpu", batch_size: int = 64,
                   reported: pd.DataFrame | None = None, reported_tta: bool = False) -> pd.DataFrame:
    """Mean 3D DSC of each trained UNet with and without test-time augmentation.

    Each UNet (``best.pt``) predicts every slice of each split twice: as it is, and averaged
    over the slice's 8 right-angle rotations and flips (:func:`dihedral_average`); both are
    scored in 3D after ``postprocess``. The validation columns are what ``seg.tta`` is chosen on.

    Parameters
    ----------
    reported : DataFrame, optional
        Per-volume scores already computed for these UNets (:func:`evaluate_variant`, columns
        ``method, split, dsc``; what notebook 06's ``run_variants`` returns), made with
        ``reported_tta`` and the same ``postprocess``. Their mean is taken for that column instead
        of predicting it again, so only the other mode is predicted (the plain column costs one
        pass, the augmented one eight) and that column equals the tables' row.
    reported_tta : bool
        Whether ``reported`` was predicted with test-time augmentation (``seg.tta``).

    Returns
    -------
    DataFrame
        One row per variant: ``method``, then ``<split>_plain``, ``<split>_tta`` and
        ``<split>_gain`` (tta minus plain, DSC points) for each split.
    """
    known: dict[tuple[str, str], float] = {}
    if reported is not None and len(reported):
        known = {(str(m), str(s)): float(v) for (m, s), v in reported.groupby(["method", "split"])["dsc"].mean().items()}
    reported_label = "tta" if reported_tta else "plain"
    out = []
    for name in variants:
        model = load_variant(run_dir, name, width, device)
        row: dict[str, Any] = {"method": name}
        for split in splits:
            for label, tta in (("plain", False), ("tta", True)):
                if label == reported_label and (name, split) in known:
                    row[f"{split}_{label}"] = known[(name, split)]
                    continue
                index, probs = predict_split(model, slices, split, device, False, batch_size, tta)
                row[f"{split}_{label}"] = float(evaluate_volumes(slices, split, index, probs > 0.5,
                                                                 postprocess=postprocess)["dsc"].mean())
            row[f"{split}_gain"] = row[f"{split}_tta"] - row[f"{split}_plain"]
        out.append(row)
    return pd.DataFrame(out)
