"""The trained UNets that come with the repository (``models/``), checked before they are used.

``models/`` is written by ``python -m umcam_lib.segment.ship RUN_DIR`` (:mod:`umcam_lib.segment.ship`) from a
finished real-profile run and read by ``python -m umcam_lib.segment`` when no run folder is
given. Layout::

    models/registry.json             every file below with its SHA-256 and size in bytes,
                                     the aliases ("weak", "fullysup") and the default
    models/<name>/best.pt            {"model": state dict in float16, "config": the training
                                     checkpoint's config (width, tta, postprocess, ...),
                                     "epoch", "score", "method", "dtype": "float16"}
    models/<name>/preprocessing.json {"spacing_mm", "image_size"}: how slices were prepared
    models/<name>/card.json          the model card (data, recipe, commit, scores)
    models/<name>/MODEL_CARD.md      the same card for people

Before a model is loaded, every file of it is hashed and compared with ``registry.json``
(:func:`verify`); a missing or altered file is an error that names it and says how to
regenerate the folder. The weights are cast back to float32 on loading.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..hashing import file_sha256
from ..models.unet import unet_from_checkpoint
from ..paths import REPO_ROOT, resolve
from ..train.seg_predict import folder_name
from .model import desc_label

MODELS_DIR = REPO_ROOT / "models"
"""Where the shipped models live (``--models`` of ``segment`` overrides it)."""
REGISTRY = "registry.json"
FILES = ("best.pt", "preprocessing.json", "card.json", "MODEL_CARD.md")
"""The files of one shipped model, all listed with their hashes in ``registry.json``."""
REGENERATE = "python -m umcam_lib.segment.ship runs/real"
DEFAULT_ALIAS = "weak"


class ShippedModelError(RuntimeError):
    """A shipped model is missing, unknown or does not match ``registry.json``."""


def _fail(msg: str, models_dir: Path) -> ShippedModelError:
    hint = "regenerate the shipped models with `" + REGENERATE + "`"
    if models_dir.resolve() != MODELS_DIR.resolve():
        hint += f" --out {models_dir}"
    return ShippedModelError(f"{msg}; {hint} (or pass a run folder: `python -m umcam_lib.segment RUN_DIR ...`)")


def read_registry(models_dir: str | Path = MODELS_DIR) -> dict[str, Any]:
    """``models_dir/registry.json`` as a dict.

    Raises
    ------
    ShippedModelError
        The file is missing or not a registry (no ``models`` / ``files``).
    """
    models_dir = resolve(models_dir)
    path = models_dir / REGISTRY
    if not path.is_file():
        raise _fail(f"{path}: no shipped-model registry (no models were shipped into {models_dir})", models_dir)
    try:
        reg = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise _fail(f"{path}: not valid JSON ({exc})", models_dir) from exc
    if not isinstance(reg, dict) or not isinstance(reg.get("models"), dict) or not isinstance(reg.get("files"), dict):
        raise _fail(f"{path}: not a shipped-model registry (needs 'models' and 'files')", models_dir)
    return reg


def model_name(registry: dict[str, Any], choice: str | None) -> str:
    """The registered model a choice names: an alias (``weak``, ``fullysup``), a method name, its
    folder name, or its letters and digits (``umcamspl``), case-insensitive; None: the default.

    Raises
    ------
    ShippedModelError
        No registered model fits; the message lists the aliases and models.
    """
    choice = choice or registry.get("default", DEFAULT_ALIAS)
    aliases = {k.lower(): v for k, v in (registry.get("aliases") or {}).items()}
    models = registry["models"]
    if choice.lower() in aliases:
        return aliases[choice.lower()]
    for name in models:
        keys = {name.lower(), folder_name(name).lower(), desc_label(name)}
        if choice.lower() in keys:
            return name
    have = ", ".join([*(f"{a} ({v})" for a, v in aliases.items()), *models]) or "none"
    raise ShippedModelError(f"no shipped model {choice!r}; shipped: {have}")


def verify(models_dir: str | Path = MODELS_DIR, name: str | None = None) -> dict[str, Any]:
    """Hash the files of one shipped model (or of all, ``name=None``) against ``registry.json``.

    Returns
    -------
    dict
        The registry.

    Raises
    ------
    ShippedModelError
        A file is missing, has another size or SHA-256, or is not listed; the message names it.
    """
    models_dir = resolve(models_dir)
    reg = read_registry(models_dir)
    names = [name] if name is not None else list(reg["models"])
    for n in names:
        if n not in reg["models"]:
            raise ShippedModelError(f"{models_dir / REGISTRY}: no model {n!r}")
        folder = reg["models"][n]["folder"]
        for f in FILES:
            rel = f"{folder}/{f}"
            path = models_dir / rel
            entry = reg["files"].get(rel)
            if entry is None:
                raise _fail(f"{path}: not listed in {models_dir / REGISTRY}", models_dir)
            if not path.is_file():
                raise _fail(f"{path}: missing (registry.json lists it)", models_dir)
            size = path.stat().st_size
            if size != int(entry["bytes"]):
                raise _fail(f"{path}: {size} bytes, registry.json says {entry['bytes']} (altered or truncated)",
                            models_dir)
            digest = file_sha256(path)
            if digest != entry["sha256"]:
                raise _fail(f"{path}: SHA-256 {digest[:16]}... differs from registry.json's "
                            f"{entry['sha256'][:16]}... (altered or corrupt)", models_dir)
    return reg


def to_float16(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict with its floating-point tensors in float16 (others unchanged)."""
    return {k: v.detach().to(torch.float16) if v.is_floating_point() else v for k, v in state.items()}


def load_unet(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Read a shipped ``best.pt`` and rebuild its UNet
    (:func:`umcam_lib.models.unet.unet_from_checkpoint`: float32, eval mode, CPU).

    Returns
    -------
    model : torch.nn.Module
    ckpt : dict
        The checkpoint as read (``config``, ``epoch``, ``score``, float16 ``model``).

    Raises
    ------
    ShippedModelError
        The file cannot be read, records no width, or its weights do not fit the UNet of that width.
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ShippedModelError(f"{path}: cannot load ({type(exc).__name__}: {exc})") from exc
    try:
        return unet_from_checkpoint(ckpt), ckpt
    except ValueError as exc:
        raise ShippedModelError(f"{path}: {exc}") from exc


def load(models_dir: str | Path = MODELS_DIR, choice: str | None = None,
         device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """Verify and load one shipped model.

    Parameters
    ----------
    models_dir : path
        The shipped models (default the repository's ``models/``).
    choice : str, optional
        See :func:`model_name` (default: the registry's default, the weakly supervised model).
    device : str or torch.device

    Returns
    -------
    model : torch.nn.Module
        Float32, eval mode, on ``device``.
    info : dict
        ``method``, ``checkpoint`` (path), ``epoch``, ``score`` and ``config`` (as a run's
        :func:`umcam_lib.segment.load_model` gives them) plus ``models_dir`` and ``card``.
    preprocessing : dict
        ``spacing_mm`` (float) and ``image_size`` (int).
    """
    models_dir = resolve(models_dir)
    reg = read_registry(models_dir)
    name = model_name(reg, choice)
    verify(models_dir, name)
    folder = models_dir / reg["models"][name]["folder"]
    path = folder / "best.pt"
    model, ckpt = load_unet(path)
    model = model.to(device)
    prep = json.loads((folder / "preprocessing.json").read_text())
    info = {"method": name, "checkpoint": str(path), "epoch": ckpt.get("epoch"), "score": ckpt.get("score"),
            "config": dict(ckpt.get("config") or {}), "models_dir": str(models_dir),
            "card": str(folder / "MODEL_CARD.md")}
    return model, info, {"spacing_mm": float(prep["spacing_mm"]), "image_size": int(prep["image_size"])}
