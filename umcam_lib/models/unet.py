"""The 2D UNet segmenter of stage 2 (MONAI ``BasicUNet``), its width set by one number.

MONAI's default ``BasicUNet`` features are ``(32, 32, 64, 128, 256, 32)``: five encoder levels
and the width after the last upsampling. :func:`unet_features` keeps that shape and scales it
from the first-level width, so ``width=32`` is MONAI's default network and ``width=8`` a
sixteenth of its parameters (small enough for a 2-core CPU).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn
from monai.networks.nets import BasicUNet


def unet_features(width: int) -> tuple[int, int, int, int, int, int]:
    """Feature counts of the six ``BasicUNet`` stages for a first-level ``width``.

    Parameters
    ----------
    width : int
        Features of the first encoder level (``seg.width``), >= 1.

    Returns
    -------
    tuple of six int
        ``(w, w, 2w, 4w, 8w, w)``: encoder levels 1-5 and the last decoder level.
    """
    w = int(width)
    if w < 1 or w != width:
        raise ValueError(f"seg.width must be a positive integer, got {width!r}")
    return (w, w, 2 * w, 4 * w, 8 * w, w)


def build_unet(width: int = 32, in_channels: int = 1, out_channels: int = 2) -> nn.Module:
    """A 2D ``BasicUNet`` (instance norm, LeakyReLU, transposed-convolution upsampling).

    Parameters
    ----------
    width : int
        First-level features (see :func:`unet_features`).
    in_channels : int
        Image channels (1 for MRI slices).
    out_channels : int
        Classes; 2 (background, brain) for the study.

    Returns
    -------
    torch.nn.Module
        Maps ``[B, in_channels, H, W]`` to logits ``[B, out_channels, H, W]`` (any H, W; sizes
        that are multiples of 16 avoid padding in the decoder).
    """
    return BasicUNet(spatial_dims=2, in_channels=in_channels, out_channels=out_channels,
                     features=unet_features(width))


def checkpoint_width(ckpt: Mapping[str, Any], default: int | None = None) -> int | None:
    """The UNet width a checkpoint records (``config.width``), else ``default``.

    Parameters
    ----------
    ckpt : mapping
        A checkpoint dict (``{"model": state dict, "config": {...}, ...}``).
    default : int, optional
        The width to use when the checkpoint records none (older checkpoints: the run's
        ``seg.width``).

    Returns
    -------
    int or None
        None when neither gives a width.

    Examples
    --------
    >>> checkpoint_width({"config": {"width": 8}}, 16), checkpoint_width({"config": {}}, 16)
    (8, 16)
    """
    width = (ckpt.get("config") or {}).get("width")
    if width is None:
        width = default
    return None if width is None else int(width)


def unet_from_checkpoint(ckpt: Mapping[str, Any], width: int | None = None) -> nn.Module:
    """The one way a UNet is rebuilt from a checkpoint: float32, eval mode, on the CPU.

    Parameters
    ----------
    ckpt : mapping
        ``{"model": state dict (float32 or float16), "config": {"width": ...}, ...}``.
    width : int, optional
        Used only when the checkpoint records no ``config.width`` (:func:`checkpoint_width`).

    Returns
    -------
    torch.nn.Module
        :func:`build_unet` of that width with the checkpoint's weights cast to float32.

    Raises
    ------
    ValueError
        No width is known, or the weights do not fit the UNet of that width (the message says
        which; callers prefix the file).
    """
    w = checkpoint_width(ckpt, width)
    if w is None:
        raise ValueError("the checkpoint does not record the UNet width (config.width)")
    model = build_unet(w)
    try:
        model.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v
                               for k, v in ckpt["model"].items()})
    except (KeyError, RuntimeError) as exc:
        raise ValueError(f"weights do not fit a width-{w} UNet ({exc})") from exc
    return model.eval()
