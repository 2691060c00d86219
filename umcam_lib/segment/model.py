"""The UNet that segments: a run's trained variant (or a shipped model) and its preprocessing."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .. import runtime
from ..models.unet import unet_from_checkpoint
from ..paths import resolve
from ..train.seg_predict import variant_dir

DEFAULT_METHOD = "UM-CAM+SPL"


# --------------------------------------------------------------------------- the run's model
@dataclass(frozen=True)
class Preprocessing:
    """What the run's slices were prepared with (``data.spacing_mm``, ``data.image_size``)."""

    spacing_mm: float
    image_size: int


def run_preprocessing(run_dir: str | Path) -> Preprocessing:
    """The ``data`` parameters a run prepared its slices with.

    Read from ``data/fingerprint.json`` (written by notebook 01 with the slice set), else from
    ``provenance/01.json``.

    Raises
    ------
    FileNotFoundError
        Neither file exists (notebook 01 never finished in this run folder).
    """
    run = resolve(run_dir)
    for path, keys in ((run / "data" / "fingerprint.json", ("data",)),
                       (run / "provenance" / "01.json", ("params", "data"))):
        if path.is_file():
            d: Any = json.loads(path.read_text())
            for k in keys:
                d = d.get(k, {}) if isinstance(d, dict) else {}
            if "spacing_mm" in d and "image_size" in d:
                return Preprocessing(float(d["spacing_mm"]), int(d["image_size"]))
    raise FileNotFoundError(f"{run}: no data/fingerprint.json or provenance/01.json with data.spacing_mm and "
                            f"data.image_size; is this a pipeline run folder (notebook 01 finished)?")


def available_methods(run_dir: str | Path) -> dict[str, Path]:
    """Trained UNets of a run: ``{method: folder holding best.pt}``.

    ``seg/<name>/best.pt`` gives ``<name>`` (notebooks 06 and 07); the beta/lambda sweep's
    points ``seg/sweep/<point>/best.pt`` give ``sweep/<point>``; a finished segment-only UNet
    ``segmenter/<name>/`` (:mod:`umcam_lib.segment.segmenter`, with its ``summary.json``) gives
    ``segmenter/<name>``.
    """
    seg = resolve(run_dir) / "seg"
    out: dict[str, Path] = {}
    for ckpt in sorted(seg.glob("*/best.pt")):
        out[ckpt.parent.name] = ckpt.parent
    for ckpt in sorted(seg.glob("sweep/*/best.pt")):
        out[f"sweep/{ckpt.parent.name}"] = ckpt.parent
    for ckpt in sorted((resolve(run_dir) / "segmenter").glob("*/best.pt")):
        if (ckpt.parent / "summary.json").is_file():
            out[f"segmenter/{ckpt.parent.name}"] = ckpt.parent
    return out


def desc_label(method: str) -> str:
    """A BIDS ``desc`` label (letters and digits) for a method: ``UM-CAM+SPL`` -> ``umcamspl``."""
    label = re.sub(r"[^a-z0-9]", "", method.lower())
    return label or "seg"


def method_dir(run_dir: str | Path, method: str) -> Path:
    """The folder of ``method``'s ``best.pt`` (exact name, the folder name notebook 06 makes of it,
    or its desc label, case-insensitive); a clear error listing the run's methods otherwise."""
    methods = available_methods(run_dir)
    if method in methods:
        return methods[method]
    d = variant_dir(run_dir, method)
    if (d / "best.pt").is_file():
        return d
    for name, folder in methods.items():
        if method.lower() in (name.lower(), desc_label(name)):
            return folder
    have = ", ".join(methods) or "none (run notebooks 06/07 first)"
    raise FileNotFoundError(f"{resolve(run_dir)}: no trained UNet for method {method!r}; this run has: {have}")


def _run_width(run_dir: str | Path) -> int | None:
    """The run's ``seg.width`` (``provenance/06.json``) for checkpoints that do not record it."""
    prov = resolve(run_dir) / "provenance" / "06.json"
    return json.loads(prov.read_text())["params"]["seg"]["width"] if prov.is_file() else None


def load_model(run_dir: str | Path, method: str, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a run's UNet from ``best.pt`` (weights only; the width is read from it, else from the
    run's ``provenance/06.json``; :func:`umcam_lib.models.unet.unet_from_checkpoint`).

    Returns
    -------
    model : torch.nn.Module
        In eval mode, on ``device``.
    info : dict
        ``method``, ``checkpoint`` (path), ``epoch`` and ``score`` (best validation DSC) and the
        checkpoint's ``config``.
    """
    path = method_dir(run_dir, method) / "best.pt"
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        config = dict(ckpt.get("config") or {})
        model = unet_from_checkpoint(ckpt, _run_width(run_dir) if config.get("width") is None else None)
    except Exception as exc:
        raise RuntimeError(f"{path}: cannot load the {method} UNet ({type(exc).__name__}: {exc})") from exc
    model = model.to(runtime.as_device(device))
    info = {"method": method, "checkpoint": str(path), "epoch": ckpt.get("epoch"), "score": ckpt.get("score"),
            "config": config}
    return model, info
