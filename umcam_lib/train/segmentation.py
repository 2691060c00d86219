"""Stage 2: train the 2D UNet on pseudo labels (METHOD Eq. 8), predict, score in 3D, record.

Pseudo labels of a variant are a dict ``targets`` with

- ``index`` : int [n], slice rows (of the :class:`~umcam_lib.data.SliceSet`) of positive training
  slices,
- ``maps``  : float [n, H, W] in [0, 1], the label of the first CE term of Eq. 8,
- ``spl``   : optional float [n, H, W] in [0, 1], the label of the second term,
- ``lambda``: optional float, the weight of the second term (default ``seg.lambda_spl``).

Every training slice is used. A slice whose image-level label is 0 gets an all-background target
under every variant (its entry in ``targets``, if any, is ignored); a positive training slice
missing from ``targets['index']`` is an error, so no slice is silently dropped.

Variants of Table 1 (bottom) and Table 2, built by :func:`variant_targets`:

==============  ============================================================================
``Grad-CAM``    Grad-CAM maps thresholded at their validation-chosen threshold (hard 0/1)
``UM-CAM``      UM-CAM maps thresholded likewise
``SPL``         the SPL (soft) alone
``UM-CAM+SPL``  Eq. 8: CE(P, UM-CAM mask) + lambda * CE(P, SPL), lambda = ``seg.lambda_spl``
``FullySup``    the true masks (an upper bound, not weak supervision)
==============  ============================================================================

A positive training slice for which notebook 05 produced no SPL (its thresholded UM-CAM had no
connected component to seed from) takes its UM-CAM pseudo mask as SPL, so the slice is not
dropped and both terms of Eq. 8 agree on it. Under the ``grid`` threshold rule that mask is
usually empty too, so such a slice effectively trains as background, as a weak learner that
found nothing would; the number of such slices is printed.

Model selection: after each validated epoch every slice of every validation volume is
predicted (in batches) and the mean 3D DSC over validation volumes is computed; ``best.pt``
keeps the best epoch. ``seg.epochs`` is a cap: with ``seg.patience`` a run stops after that many
validations without a better score, and with ``seg.plateau_decay`` each such validation also
lowers the learning rate, so a run ends on a plateau rather than at a fixed budget. The test
split is never looked at during training.

Eq. 8 has two readings (``seg.loss_main``, :func:`eq8_loss`): ``umcam`` weights the SPL term by
lambda, ``spl`` weights the UM-CAM term. ``seg.postprocess: lcc`` keeps the largest 3D connected
component of each predicted volume before scoring (:func:`umcam_lib.evaluate.largest_component_3d`).
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from .. import runtime
from ..data import SliceSet
from ..evaluate import evaluate_volumes, split_rows
from ..maps import load_maps, map_path, save_maps
from ..models.unet import build_unet
from ..paths import resolve
from .augment import augment_segmentation_batch
from .common import load_best, resume, save_best, save_last

#: The segmentation variants of this notebook, in table order.
VARIANTS: tuple[str, ...] = ("Grad-CAM", "UM-CAM", "SPL", "UM-CAM+SPL", "FullySup")

#: Tables each variant's scores go to (Table 1 bottom: the ablation; Table 2: the comparison).
VARIANT_TABLES: dict[str, tuple[str, ...]] = {
    "Grad-CAM": ("table1",), "UM-CAM": ("table1",), "SPL": ("table1",),
    "UM-CAM+SPL": ("table1", "table2"), "FullySup": ("table2",),
}

#: CAM map file (``cams/<name>.npz``) of each CAM-derived variant.
CAM_MAPS: dict[str, str] = {"Grad-CAM": "gradcam", "UM-CAM": "umcam"}

#: The paper's setting: beta = 4 (Eq. 6-7), lambda = 0.1 (Eq. 8), read as CE(UM-CAM) + lambda CE(SPL).
PAPER_BETA, PAPER_LAMBDA, PAPER_MAIN = 4.0, 0.1, "umcam"

_REQUIRED = ("width", "epochs", "batch_size", "lr", "momentum", "weight_decay", "lambda_spl", "soft_labels")
_OPTIONAL: dict[str, Any] = {"optimizer": "sgd", "epoch_slices": None, "positive_fraction": None, "val_every": 1,
                             "eval_batch_size": 64, "patience": None, "loss_main": "umcam", "channels_last": False,
                             "postprocess": "none", "plateau_decay": None,
                             "min_epochs": 0, "augment": False, "augment_scale": [1.0, 1.0]}
OPTIMIZERS = ("sgd", "adamw")
#: The two readings of Eq. 8 (``seg.loss_main``): which label carries the weight 1.
LOSS_MAIN = ("umcam", "spl")
#: Post-processing of the binarised 3D prediction (``seg.postprocess``).
POSTPROCESS = ("none", "lcc")
#: Keys that change what a training run computes (the resume check compares them).
_TRAIN_KEYS = ("width", "epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "soft_labels",
               "epoch_slices", "positive_fraction", "val_every", "patience", "loss_main", "plateau_decay", "min_epochs",
               "augment", "augment_scale")


# ----------------------------------------------------------------------------- configuration
def check_seg_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the ``seg`` parameter section; return a copy with optional keys filled in.

    Required: ``width, epochs, batch_size, lr, momentum, weight_decay, lambda_spl, soft_labels``.
    Optional: ``optimizer`` (``sgd``: the paper's SGD with ``momentum``; ``adamw``: AdamW,
    ``momentum`` unused, for short CPU budgets), ``epoch_slices`` (training slices drawn per
    epoch; ``None`` = all),
    ``positive_fraction`` (share of positive slices in each epoch's draw; ``None`` = as they
    come, the paper's uniform sampling), ``val_every`` (validate every k epochs and at the
    last), ``eval_batch_size``, ``patience`` (early stopping: stop after this many validations
    without a better validation DSC; ``None`` = train all ``epochs``, which is then the cap),
    ``loss_main`` (the reading of Eq. 8: ``umcam`` = CE(UM-CAM) + lambda CE(SPL), ``spl`` =
    CE(SPL) + lambda CE(UM-CAM)), ``channels_last`` (memory format of the UNet on the CPU; the
    same numbers up to float rounding, faster on some CPUs), ``postprocess`` (``none`` or
    ``lcc``: keep the largest 3D connected component of each predicted volume),
    ``plateau_decay`` (multiply the learning rate by this factor after every validation that does
    not beat the best so far; ``None`` = constant learning rate), ``min_epochs`` (a warm-up: no
    early stop and no decay before this many epochs, while every prediction is still empty).
    """
    missing = [k for k in _REQUIRED if k not in cfg]
    if missing:
        raise KeyError(f"seg parameters lack {missing} (see params/quick.yaml, section seg)")
    out = {**_OPTIONAL, **dict(cfg)}
    for key in ("width", "epochs", "batch_size", "val_every", "eval_batch_size"):
        if int(out[key]) < 1:
            raise ValueError(f"seg.{key} must be >= 1, got {out[key]!r}")
    if out["epoch_slices"] is not None and int(out["epoch_slices"]) < 1:
        raise ValueError(f"seg.epoch_slices must be null or >= 1, got {out['epoch_slices']!r}")
    if out["optimizer"] not in OPTIMIZERS:
        raise ValueError(f"seg.optimizer must be one of {OPTIMIZERS}, got {out['optimizer']!r}")
    pf = out["positive_fraction"]
    if pf is not None and not 0.0 < float(pf) < 1.0:
        raise ValueError(f"seg.positive_fraction must be null or in (0, 1), got {pf!r}")
    if out["patience"] is not None and int(out["patience"]) < 1:
        raise ValueError(f"seg.patience must be null or >= 1, got {out['patience']!r}")
    if int(out["min_epochs"]) < 0:
        raise ValueError(f"seg.min_epochs must be >= 0, got {out['min_epochs']!r}")
    if out["plateau_decay"] is not None and not 0.0 < float(out["plateau_decay"]) <= 1.0:
        raise ValueError(f"seg.plateau_decay must be null or in (0, 1], got {out['plateau_decay']!r}")
    if out["loss_main"] not in LOSS_MAIN:
        raise ValueError(f"seg.loss_main must be one of {LOSS_MAIN}, got {out['loss_main']!r}")
    if out["postprocess"] not in POSTPROCESS:
        raise ValueError(f"seg.postprocess must be one of {POSTPROCESS}, got {out['postprocess']!r}")
    if float(out["lambda_spl"]) < 0:
        raise ValueError(f"seg.lambda_spl must be >= 0, got {out['lambda_spl']!r}")
    return out


def variant_dir(run_dir: str | Path, name: str) -> Path:
    """``run_dir/seg/<name>`` (characters other than letters, digits, ``+-_.`` become ``_``)."""
    return resolve(run_dir) / "seg" / re.sub(r"[^A-Za-z0-9+\-_.]", "_", name)


# ----------------------------------------------------------------------------- loss (Eq. 8)
def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pixel-mean cross-entropy of 2-class logits against a foreground probability map.

    Parameters
    ----------
    logits : Tensor, shape (B, 2, H, W)
        Background and foreground logits (computed in float32 here).
    target : Tensor, shape (B, H, W)
        Foreground probability in [0, 1]; the background target is ``1 - target``.

    Returns
    -------
    Tensor
        Scalar ``-mean( y log p_fg + (1 - y) log p_bg )`` (natural log).
    """
    if logits.ndim != 4 or logits.shape[1] != 2 or logits.shape[0] != target.shape[0] \
            or logits.shape[2:] != target.shape[1:]:
        raise ValueError(f"logits must be (B, 2, H, W) and target (B, H, W), got {tuple(logits.shape)} "
                         f"and {tuple(target.shape)}")
    logp = F.log_softmax(logits.float(), dim=1)
    y = target.float()
    return -(y * logp[:, 1] + (1.0 - y) * logp[:, 0]).mean()


def eq8_loss(logits: torch.Tensor, y_um: torch.Tensor, y_spl: torch.Tensor | None = None,
             lamb: float = 0.0, soft: bool = True, main: str = "umcam") -> torch.Tensor:
    """METHOD Eq. 8 in either reading.

    ``main="umcam"``: ``CE(P, Y_UM) + lambda * CE(P, Y_SPL)`` (the reading of METHOD.md);
    ``main="spl"``: ``CE(P, Y_SPL) + lambda * CE(P, Y_UM)`` (the equation's symbols were lost,
    and this reading is as consistent with the text). Without ``y_spl`` both are ``CE(P, Y_UM)``.
    With an optimiser that ignores the scale of the loss (Adam/AdamW), reading ``umcam`` at
    lambda equals reading ``spl`` at 1 / lambda: only the share ``w`` of the SPL term matters
    (:func:`spl_share`).

    Parameters
    ----------
    logits : Tensor, shape (B, 2, H, W)
    y_um : Tensor, shape (B, H, W)
        First label (a pseudo mask, SPL or true mask, depending on the variant), in [0, 1].
    y_spl : Tensor, shape (B, H, W), optional
        Second label; ``None`` drops the second term.
    lamb : float
        Weight of the second term (the SPL under ``main="umcam"``, the UM-CAM under ``"spl"``).
    soft : bool
        ``True``: soft-label CE against the maps as given. ``False``: labels are first
        thresholded (``>= 0.5`` is foreground), i.e. ordinary hard-label CE.
    main : {"umcam", "spl"}
        Which label carries the weight 1 (``seg.loss_main``).
    """
    if main not in LOSS_MAIN:
        raise ValueError(f"seg.loss_main must be one of {LOSS_MAIN}, got {main!r}")
    if not soft:
        y_um = (y_um >= 0.5).float()
        y_spl = None if y_spl is None else (y_spl >= 0.5).float()
    if y_spl is None:
        return soft_cross_entropy(logits, y_um)
    first, second = (y_um, y_spl) if main == "umcam" else (y_spl, y_um)
    loss = soft_cross_entropy(logits, first)
    if lamb != 0:
        loss = loss + float(lamb) * soft_cross_entropy(logits, second)
    return loss


def spl_share(lamb: float, main: str = "umcam") -> float:
    """Share of the SPL term in Eq. 8, ``w`` in ``(1 - w) CE(UM) + w CE(SPL)`` up to a scale.

    ``lambda / (1 + lambda)`` under ``main="umcam"``, ``1 / (1 + lambda)`` under ``"spl"``.
    """
    lamb = float(lamb)
    if main not in LOSS_MAIN:
        raise ValueError(f"seg.loss_main must be one of {LOSS_MAIN}, got {main!r}")
    return lamb / (1.0 + lamb) if main == "umcam" else 1.0 / (1.0 + lamb)


# ----------------------------------------------------------------------------- targets
def _threshold(run_dir: str | Path, map_name: str, method: str) -> float:
    from ..cam.pseudo_mask import load_thresholds, thresholds_path

    th = load_thresholds(run_dir)
    for key in (map_name, method):
        if key in th:
            return float(th[key])
    raise KeyError(f"{thresholds_path(run_dir)} has no threshold for {map_name!r} (has {sorted(th)}): "
                   f"run notebooks 03 and 04 first")


def _take(index: np.ndarray, maps: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maps of ``rows`` that ``index`` has, and the boolean mask of which rows it has."""
    pos = {int(r): i for i, r in enumerate(np.asarray(index))}
    have = np.array([int(r) in pos for r in rows], dtype=bool)
    return maps[[pos[int(r)] for r in rows[have]]], have


def cam_pseudo_masks(run_dir: str | Path, slices: SliceSet, variant: str) -> dict[str, Any]:
    """Thresholded CAM pseudo masks of the positive training slices for ``Grad-CAM``/``UM-CAM``."""
    name = CAM_MAPS[variant]
    rows = slices.indices("train", positive_only=True)
    index, maps = load_maps(run_dir, "cams", name)
    taken, have = _take(index, maps, rows)
    if not have.all():
        raise ValueError(f"{map_path(run_dir, 'cams', name)} lacks {int((~have).sum())} positive training slices "
                         f"(e.g. row {int(rows[~have][0])}): notebook 03/04 must compute CAMs for every slice")
    t = _threshold(run_dir, name, variant)
    return {"index": rows, "maps": (taken >= t).astype(np.float32), "threshold": t}


def load_spl(run_dir: str | Path, slices: SliceSet, fallback: Mapping[str, Any] | None = None,
             spl: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """SPL of every positive training slice, with the UM-CAM pseudo mask where no SPL exists.

    Parameters
    ----------
    spl : (index, maps), optional
        SPL maps to use instead of ``run_dir/spl/spl.npz`` (e.g. recomputed with another beta).
    fallback : dict, optional
        UM-CAM pseudo masks (:func:`cam_pseudo_masks`); loaded when needed and not given.

    Returns
    -------
    dict
        ``index`` [n], ``maps`` [n, H, W] float32, ``n_fallback`` (slices that took the UM-CAM mask).
    """
    rows = slices.indices("train", positive_only=True)
    index, maps = spl if spl is not None else load_maps(run_dir, "spl", "spl")
    out = np.zeros((len(rows),) + slices.images.shape[1:], dtype=np.float32)
    taken, have = _take(index, maps, rows)
    out[have] = taken
    if not have.all():
        fb = fallback if fallback is not None else cam_pseudo_masks(run_dir, slices, "UM-CAM")
        fb_maps, fb_have = _take(fb["index"], fb["maps"], rows[~have])
        if not fb_have.all():
            raise ValueError("UM-CAM pseudo masks lack positive training slices that also have no SPL")
        out[~have] = fb_maps
    return {"index": rows, "maps": np.clip(out, 0.0, 1.0), "n_fallback": int((~have).sum())}


def variant_targets(variant: str, slices: SliceSet, run_dir: str | Path, seg_cfg: Mapping[str, Any],
                    spl: tuple[np.ndarray, np.ndarray] | None = None, lamb: float | None = None) -> dict[str, Any]:
    """Training targets of one of :data:`VARIANTS` from the artifacts of notebooks 03-05.

    Parameters
    ----------
    variant : str
        One of :data:`VARIANTS`.
    spl : (index, maps), optional
        SPL maps replacing ``spl/spl.npz`` (the beta sweep).
    lamb : float, optional
        Eq. 8 weight for ``UM-CAM+SPL`` (default ``seg.lambda_spl``).

    Returns
    -------
    dict
        ``index``, ``maps`` and, for ``UM-CAM+SPL``, ``spl`` and ``lambda``; see the module docstring.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown segmentation variant {variant!r}; expected one of {VARIANTS}")
    if variant in CAM_MAPS:
        return cam_pseudo_masks(run_dir, slices, variant)
    if variant == "FullySup":
        rows = slices.indices("train", positive_only=True)
        return {"index": rows, "maps": slices.masks[rows].astype(np.float32)}
    um = cam_pseudo_masks(run_dir, slices, "UM-CAM")
    s = load_spl(run_dir, slices, fallback=um, spl=spl)
    if s["n_fallback"]:
        print(f"{variant}: {s['n_fallback']} positive training slices have no SPL; their UM-CAM pseudo mask stands in")
    if variant == "SPL":
        return {"index": s["index"], "maps": s["maps"], "n_fallback": s["n_fallback"]}
    lam = float(seg_cfg["lambda_spl"] if lamb is None else lamb)
    return {"index": um["index"], "maps": um["maps"], "spl": s["maps"], "lambda": lam, "n_fallback": s["n_fallback"]}


def training_set(slices: SliceSet, targets: Mapping[str, Any], soft: bool = True
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Labels for every training slice: ``targets`` on positive slices, background on negatives.

    Returns
    -------
    rows : ndarray, int, shape (n,)
        All training rows.
    y : ndarray, float32, shape (n, H, W)
        First label of Eq. 8 (thresholded at 0.5 when ``soft`` is False).
    y_spl : ndarray, float32, shape (n, H, W), or None
        Second label when ``targets`` has ``spl``.
    """
    if "index" not in targets or "maps" not in targets:
        raise KeyError("targets must have 'index' and 'maps' (and optionally 'spl', 'lambda')")
    index, maps = np.asarray(targets["index"]), np.asarray(targets["maps"])
    if maps.shape[0] != index.shape[0] or maps.shape[1:] != slices.images.shape[1:]:
        raise ValueError(f"targets['maps'] has shape {maps.shape}; expected ({len(index)}, "
                         f"{slices.images.shape[1]}, {slices.images.shape[2]})")
    rows = slices.indices("train")
    pos = rows[slices.labels[rows] == 1]
    have = set(int(r) for r in index)
    missing = [int(r) for r in pos if int(r) not in have]
    if missing:
        raise ValueError(f"targets lack {len(missing)} positive training slices (e.g. row {missing[0]}): "
                         f"every training slice must have a label")
    where = {int(r): i for i, r in enumerate(index)}
    sel = [where[int(r)] for r in pos]
    place = np.searchsorted(rows, pos)

    def fill(m: np.ndarray) -> np.ndarray:
        out = np.zeros((len(rows),) + slices.images.shape[1:], dtype=np.float32)
        out[place] = np.clip(np.asarray(m, dtype=np.float32)[sel], 0.0, 1.0)
        return out if soft else (out >= 0.5).astype(np.float32)

    y = fill(maps)
    y_spl = None
    if targets.get("spl") is not None:
        spl = np.asarray(targets["spl"])
        if spl.shape != maps.shape:
            raise ValueError(f"targets['spl'] has shape {spl.shape}, targets['maps'] {maps.shape}")
        y_spl = fill(spl)
    return rows, y, y_spl


def _fingerprint(rows: np.ndarray, *arrays: np.ndarray | None, extra: Any = None) -> str:
    h = hashlib.sha256(np.asarray(rows, dtype=np.int64).tobytes())
    for a in arrays:
        if a is not None:
            h.update(np.ascontiguousarray(a, dtype=np.float16).tobytes())
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- prediction
def predict_probs(model: nn.Module, images: np.ndarray, device: str | torch.device = "cpu", amp: bool = False,
                  batch_size: int = 64) -> np.ndarray:
    """Foreground probability (softmax channel 1) of each slice.

    Parameters
    ----------
    images : ndarray, float, shape (n, H, W)
        Slices in [0, 1].

    Returns
    -------
    ndarray, float32, shape (n, H, W)
    """
    dev = runtime.select_device(device) if isinstance(device, str) else device
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
                  amp: bool = False, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Predict every slice of every volume of ``split`` (no selection by ground truth).

    Returns
    -------
    rows : ndarray, int, shape (n,)
        Slice rows, volume by volume in stack order.
    probs : ndarray, float32, shape (n, H, W)
        Foreground probabilities.
    """
    rows = split_rows(slices, split)
    return rows, predict_probs(model, slices.images[rows], device, amp, batch_size)


def evaluate_variant(model: nn.Module, slices: SliceSet, split: str, device: str | torch.device = "auto",
                     amp: bool = True, run_dir: str | Path | None = None, name: str | None = None,
                     batch_size: int = 64, postprocess: str = "none") -> pd.DataFrame:
    """Predict all slices of ``split``, stack them per volume and score each volume in 3D.

    With ``run_dir`` and ``name`` the probabilities are stored as
    ``run_dir/seg/<name>/pred_<split>.npz`` (a :mod:`umcam_lib.maps` file; raw, before any
    ``postprocess``, which is applied to the binarised volume before scoring).

    Returns
    -------
    DataFrame
        One row per volume: ``method, split, volume, n_slices, gt_voxels, pred_voxels, dsc``
        (%), ``hd95`` (voxel units: pixels in-plane, slices through-plane), ``hd95_mm``.
    """
    rows, probs = predict_split(model, slices, split, device, amp, batch_size)
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


# ----------------------------------------------------------------------------- training
def _val_score(model: nn.Module, slices: SliceSet, dev: torch.device, amp: bool, batch_size: int,
               postprocess: str = "none") -> float:
    rows, probs = predict_split(model, slices, "val", dev, amp, batch_size)
    return float(evaluate_volumes(slices, "val", rows, probs > 0.5, postprocess=postprocess)["dsc"].mean())


def stale_validations(history: Sequence[Mapping[str, Any]], best_epoch: int) -> int:
    """Validated epochs after ``best_epoch`` (the early-stopping counter, rebuilt from a history)."""
    return sum(1 for h in history if int(h["epoch"]) > int(best_epoch) and not np.isnan(float(h["val_dsc"])))


def _permutations(items: np.ndarray, count: int, gen: torch.Generator) -> np.ndarray:
    """``count`` items drawn by concatenating seeded permutations of ``items`` (each item once per round)."""
    rounds = -(-count // max(len(items), 1))
    return np.concatenate([items[torch.randperm(len(items), generator=gen).numpy()] for _ in range(rounds)])[:count]


def epoch_order(labels: np.ndarray, seed: int, epoch: int, take: int | None = None,
                positive_fraction: float | None = None) -> np.ndarray:
    """Positions (into the training rows) of one epoch's slices, in training order.

    Parameters
    ----------
    labels : ndarray, shape (n,)
        Image-level labels of the training rows.
    seed, epoch : int
        The order depends on these only, so a resumed run repeats an uninterrupted one.
    take : int, optional
        Slices per epoch (``None``: all n).
    positive_fraction : float, optional
        Share of positive slices among them (drawn round-robin through seeded permutations of
        the positives and of the negatives); ``None``: a plain permutation of all rows.
    """
    gen = runtime.generator(seed * 1_000_003 + epoch)
    n = len(labels)
    count = n if take is None else int(take)
    if positive_fraction is None:
        return _permutations(np.arange(n), count, gen)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels != 1)
    n_pos = int(round(count * float(positive_fraction))) if len(neg) else count
    n_pos = n_pos if len(pos) else 0
    chosen = np.concatenate([_permutations(pos, n_pos, gen), _permutations(neg, count - n_pos, gen)])
    return chosen[torch.randperm(len(chosen), generator=gen).numpy()]


def make_optimizer(model: nn.Module, cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    """SGD with momentum (the paper) or AdamW, from the ``seg`` section."""
    if cfg["optimizer"] == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]))
    return torch.optim.SGD(model.parameters(), lr=float(cfg["lr"]), momentum=float(cfg["momentum"]),
                           weight_decay=float(cfg["weight_decay"]))


def train_variant(name: str, slices: SliceSet, targets: Mapping[str, Any], seg_cfg: Mapping[str, Any],
                  run_dir: str | Path, device: str | torch.device = "auto", amp: bool = True, seed: int = 0,
                  out_dir: str | Path | None = None, progress: bool = True) -> nn.Module:
    """Train one UNet on pseudo labels; resumable; return it with its best validation weights.

    Parameters
    ----------
    name : str
        Variant name (a folder under ``run_dir/seg`` unless ``out_dir`` is given).
    slices : SliceSet
        Training slices are those of split ``train``; validation volumes choose the epoch.
    targets : dict
        ``index``, ``maps`` (and optionally ``spl``, ``lambda``): see the module docstring.
    seg_cfg : dict
        The ``seg`` parameter section (:func:`check_seg_config`). ``epoch_slices`` and
        ``positive_fraction`` shape each epoch's draw of training slices (:func:`epoch_order`);
        ``val_every`` sets how often the validation volumes are scored.
    run_dir : path
        The run folder.
    device : {"auto", "cpu", "cuda"} or torch.device
    amp : bool
        Float16 autocast with gradient scaling, on CUDA only (the scaler's state is not part of
        ``last.pt``: a resumed CUDA run restarts it).
    seed : int
        Seeds the initial weights and the order of slices (bit-identical runs on the CPU).
    out_dir : path, optional
        Where ``last.pt``, ``best.pt`` and ``history.csv`` go (default ``run_dir/seg/<name>``).
    progress : bool
        Show a tqdm bar over epochs.

    Returns
    -------
    torch.nn.Module
        The UNet (on ``device``, eval mode) with the weights of the best validation epoch
        (mean 3D DSC over validation volumes; the last epoch when there is no validation split).
    """
    cfg = check_seg_config(seg_cfg)
    dev = runtime.select_device(device) if isinstance(device, str) else device
    use_amp = runtime.use_amp(dev, amp)
    out = resolve(out_dir) if out_dir is not None else variant_dir(run_dir, name)
    if min(slices.images.shape[1:]) < 32:
        raise ValueError(f"the UNet needs slices of at least 32 x 32 pixels (four poolings, instance norm), got "
                         f"{slices.images.shape[1:]}: raise data.image_size")
    rows, y, y_spl = training_set(slices, targets, soft=bool(cfg["soft_labels"]))
    lamb = float(targets.get("lambda", cfg["lambda_spl"])) if y_spl is not None else 0.0
    main = str(targets.get("main", cfg["loss_main"]))
    if main not in LOSS_MAIN:
        raise ValueError(f"targets['main'] / seg.loss_main must be one of {LOSS_MAIN}, got {main!r}")
    has_val = len(slices.volume_ids("val")) > 0
    patience = None if cfg["patience"] is None or not has_val else int(cfg["patience"])
    post = str(cfg["postprocess"])
    fmt = torch.channels_last if cfg["channels_last"] else torch.contiguous_format

    runtime.seed_everything(seed)
    model = build_unet(int(cfg["width"])).to(dev, memory_format=fmt)
    opt = make_optimizer(model, cfg)
    scaler = torch.amp.GradScaler(dev.type, enabled=use_amp)
    config = {"variant": name, "seed": int(seed), "lambda": lamb, **{k: cfg[k] for k in _TRAIN_KEYS},
              "main": main if y_spl is not None else "umcam", "postprocess": post,
              "targets": _fingerprint(rows, y, y_spl, extra=lamb)}
    state = resume(out, model, opt, config=config)
    n_epochs = int(cfg["epochs"])
    images = torch.from_numpy(np.ascontiguousarray(slices.images[rows], dtype=np.float32))
    ty, ts = torch.from_numpy(y), (torch.from_numpy(y_spl) if y_spl is not None else None)
    bs = int(cfg["batch_size"])

    def stopped() -> bool:
        return patience is not None and state.best_epoch >= 0 and state.epoch >= int(cfg["min_epochs"]) and \
            stale_validations(state.history, state.best_epoch) >= patience

    bar = tqdm(total=n_epochs, initial=state.epoch, desc=f"UNet {name}", disable=not progress, leave=True)
    while state.epoch < n_epochs and not stopped():
        t0, epoch = time.perf_counter(), state.epoch
        order = epoch_order(slices.labels[rows], seed, epoch, cfg["epoch_slices"], cfg["positive_fraction"])
        model.train()
        aug_gen = runtime.generator(seed * 1_000_003 + epoch + 7)
        total, count = 0.0, 0
        for i in range(0, len(order), bs):
            b = torch.from_numpy(order[i:i + bs])
            x, yb = images[b][:, None].to(dev).contiguous(memory_format=fmt), ty[b].to(dev)
            sb = ts[b].to(dev) if ts is not None else None
            if cfg["augment"]:
                x, (yb, sb) = augment_segmentation_batch(x, [yb, sb], aug_gen, scale=tuple(cfg["augment_scale"]))
                x = x.contiguous(memory_format=fmt)
            with runtime.autocast(dev, use_amp):
                logits = model(x)
            loss = eq8_loss(logits, yb, sb, lamb, soft=True, main=main)  # labels already thresholded if hard
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            total += float(loss.detach()) * len(b)
            count += len(b)
        last = epoch + 1 == n_epochs
        val = float("nan")
        if has_val and ((epoch + 1) % int(cfg["val_every"]) == 0 or last):
            val = _val_score(model, slices, dev, use_amp, int(cfg["eval_batch_size"]), post)
        score = val if has_val else float(epoch)
        state.epoch = epoch + 1
        state.history.append({"epoch": epoch + 1, "loss": total / max(count, 1), "val_dsc": val,
                              "seconds": time.perf_counter() - t0})
        if not np.isnan(score) and score > state.best_score:
            state.best_score, state.best_epoch = score, epoch + 1
            save_best(out, model, state, config)
        elif has_val and not np.isnan(val) and cfg["plateau_decay"] is not None and epoch + 1 >= int(cfg["min_epochs"]):
            for group in opt.param_groups:  # saved with the optimiser in last.pt, so a resumed run keeps it
                group["lr"] *= float(cfg["plateau_decay"])
        save_last(out, model, opt, state, config)
        bar.update(1)
        bar.set_postfix(loss=f"{total / max(count, 1):.4f}", val_dsc=f"{val:.1f}", best=f"{state.best_score:.1f}")
    bar.close()
    if state.epoch < n_epochs and progress:
        print(f"UNet {name}: early stop after epoch {state.epoch} (best validation DSC {state.best_score:.1f} "
              f"at epoch {state.best_epoch}, {patience} validations without improvement)")
    load_best(out, model, map_location=dev)
    return model.eval()


def load_variant(run_dir: str | Path, name: str, width: int, device: str | torch.device = "cpu",
                 out_dir: str | Path | None = None) -> nn.Module:
    """Rebuild a trained UNet from ``best.pt`` (``run_dir/seg/<name>`` unless ``out_dir``)."""
    dev = runtime.select_device(device) if isinstance(device, str) else device
    model = build_unet(int(width)).to(dev)
    load_best(resolve(out_dir) if out_dir is not None else variant_dir(run_dir, name), model, map_location=dev)
    return model.eval()


# ----------------------------------------------------------------------------- recording
def record_variant(run_dir: str | Path, scores: pd.DataFrame, tables: Sequence[str] | None = None) -> None:
    """Record per-volume scores (from :func:`evaluate_variant`) in Tables 1 / 2 (section segmentation).

    Parameters
    ----------
    scores : DataFrame
        Rows of one method and one split (columns ``method, split, volume, dsc, hd95, hd95_mm``).
    tables : sequence of {"table1", "table2"}, optional
        Default :data:`VARIANT_TABLES` of the method; methods not listed there (e.g. ``DRS``,
        ``AMR``) default to ``("table2",)``.
    """
    from .. import report

    methods, splits = scores["method"].unique(), scores["split"].unique()
    if len(methods) != 1 or len(splits) != 1:
        raise ValueError(f"record_variant expects one method and one split, got {list(methods)} / {list(splits)}")
    method, split = str(methods[0]), str(splits[0])
    for table in tables if tables is not None else VARIANT_TABLES.get(method, ("table2",)):
        report.record_scores(run_dir, table, "segmentation", method, split, scores["volume"].to_numpy(),
                             scores["dsc"].to_numpy(), scores["hd95"].to_numpy(), scores["hd95_mm"].to_numpy())


def train_evaluate_record(name: str, slices: SliceSet, targets: Mapping[str, Any], seg_cfg: Mapping[str, Any],
                          run_dir: str | Path, device: str | torch.device = "auto", amp: bool = True,
                          seed: int = 0, splits: Sequence[str] = ("val", "test"),
                          tables: Sequence[str] | None = None, progress: bool = True) -> pd.DataFrame:
    """One call for a method: train (or resume), predict every slice of ``splits``, score, record.

    Returns
    -------
    DataFrame
        Per-volume scores of every split (see :func:`evaluate_variant`).
    """
    cfg = check_seg_config(seg_cfg)
    model = train_variant(name, slices, targets, cfg, run_dir, device, amp, seed, progress=progress)
    frames = []
    for split in splits:
        scores = evaluate_variant(model, slices, split, device, amp, run_dir, name, int(cfg["eval_batch_size"]),
                                  postprocess=str(cfg["postprocess"]))
        record_variant(run_dir, scores, tables)
        frames.append(scores)
    return pd.concat(frames, ignore_index=True)


def all_targets(slices: SliceSet, run_dir: str | Path, seg_cfg: Mapping[str, Any],
                variants: Sequence[str] = VARIANTS) -> dict[str, dict[str, Any]]:
    """:func:`variant_targets` of each variant (variant name -> targets dict)."""
    return {name: variant_targets(name, slices, run_dir, seg_cfg) for name in variants}


def run_variants(slices: SliceSet, run_dir: str | Path, seg_cfg: Mapping[str, Any],
                 variants: Sequence[str] = VARIANTS, device: str | torch.device = "auto", amp: bool = True,
                 seed: int = 0, targets: Mapping[str, Mapping[str, Any]] | None = None,
                 progress: bool = True) -> pd.DataFrame:
    """Train, evaluate (val and test, 3D) and record every variant of :data:`VARIANTS`.

    Parameters
    ----------
    targets : dict, optional
        Variant name -> targets (:func:`all_targets`); built from the run's artifacts when None.

    Returns
    -------
    DataFrame
        Per-volume scores of all variants and both splits.
    """
    frames = []
    for name in variants:
        given = targets is not None and name in targets
        t = targets[name] if given else variant_targets(name, slices, run_dir, seg_cfg)
        frames.append(train_evaluate_record(name, slices, t, seg_cfg, run_dir, device, amp, seed, progress=progress))
    return pd.concat(frames, ignore_index=True)


def label_examples(slices: SliceSet, targets: Mapping[str, Mapping[str, Any]], row: int) -> dict[str, np.ndarray]:
    """The training label of slice ``row`` under each variant (name -> [H, W] map in [0, 1])."""
    out = {}
    for name, t in targets.items():
        where = np.flatnonzero(np.asarray(t["index"]) == row)
        if len(where) == 0:
            raise ValueError(f"targets of {name!r} lack slice row {row}")
        out[name] = np.asarray(t["maps"][where[0]], dtype=np.float32)
        if t.get("spl") is not None:
            out[f"{name}: SPL term"] = np.asarray(t["spl"][where[0]], dtype=np.float32)
    return out


def oracle_comparison(slices: SliceSet, run_dir: str | Path, variants: Sequence[str] = VARIANTS,
                      split: str = "test") -> pd.DataFrame:
    """Mean 3D scores under three protocols, from the stored predictions (:func:`load_predictions`).

    ``all``: every slice predicted (the study's protocol); ``lcc``: the same, then only the
    largest 3D connected component of each volume kept (``seg.postprocess: lcc``); ``oracle``:
    only the slices whose ground truth is non-empty (the authors' evaluation).

    Returns one row per variant: ``method, dsc_all, dsc_lcc, dsc_oracle, hd95_all, hd95_lcc,
    hd95_oracle, hd95_mm_all, hd95_mm_lcc, hd95_mm_oracle``.
    """
    from ..evaluate import oracle_selection

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
