"""The 2D UNet segmenter of stage 2 (MONAI ``BasicUNet``), its width set by one number.

MONAI's default ``BasicUNet`` features are ``(32, 32, 64, 128, 256, 32)``: five encoder levels
and the width after the last upsampling. :func:`unet_features` keeps that shape and scales it
from the first-level width, so ``width=32`` is MONAI's default network and ``width=8`` a
sixteenth of its parameters (small enough for a 2-core CPU).
"""
from __future__ import annotations

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
