"""AMR: activation modulation and recalibration (Qin et al., AAAI 2022), the second weak baseline.

AMR runs two classifiers side by side on the same image:

- the *spotlight* branch is a plain CAM classifier; its CAM marks the most discriminative
  region, as usual;
- the *compensation* branch is the same network with an activation modulation module (AMM)
  after every block. An AMM re-weights the features twice, per channel and per pixel, through
  a *Gaussian projection*: a score ``z`` becomes ``exp(-(z - mean z)^2 / (2 var z))``, which is
  largest for scores near the average and small for the extreme ones. The most discriminative
  channels and pixels are thereby damped and the moderately active ones lifted, so the
  compensation branch learns to see the parts of the object that the spotlight misses.

Training minimises the classification losses of both branches plus an L1 consistency between
their CAMs (which keeps the compensation branch on the object), and the final localisation map
is the mean of both branches' maps.

Implementation here (``AMRClassifier``):

    spotlight       the study's plain VGG-16 classifier, *frozen*: the trained classifier of
                    notebook 02 (``run_dir/classifier/best.pt``). The authors' code also
                    detaches the spotlight branch (it only loads trained CAM weights).
    compensation    the same VGG-16 whose last ReLU of each block (``BLOCK_LAYERS``) is a
                    :class:`ModulatedReLU` (ReLU, then :class:`AMM`), initialised from the
                    spotlight's weights (the authors start it from ImageNet weights, which the
                    study does not have).
    forward(x)      the compensation branch's logits [B, 2] (what the validation F1 selects on)
    training_loss   CE(spotlight) + CE(compensation) + consistency * L1(CAM_s, CAM_c)

The baseline built on it (training, the localisation map, its threshold and pseudo labels) is
:mod:`umcam_lib.baselines.amr`. Choices against the published method (named in notebook 07):

- CAMs in the consistency term are each branch's class map of the brain class (ReLU, divided
  by its per-image maximum, so the term compares shapes, not scales) on positive slices only;
  the authors compare raw CAMs of every class with weight 0.05 and halve both CE terms;
- the Gaussian projection is not divided by ``sqrt(2 pi) sigma`` (its peak is 1), and the
  spatial AMM convolution has no batch normalisation;
- the final map is the mean of the two branches' Grad-CAMs of ``block5`` (stride 16), not of
  their class maps (stride 32: 4 x 4 pixels at 128 x 128); no test-time flip or multi-scale
  averaging, and no second stage (the authors refine with IRN): the map goes to the study's
  threshold -> UNet path.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .drs import weights_fingerprint
from .vgg import BLOCK_LAYERS, VGGClassifier

#: The block outputs that get an AMM in the compensation branch (module names).
AMM_LAYERS: tuple[str, ...] = tuple(BLOCK_LAYERS[f"block{i}"] for i in range(1, 6))


_EPS = 1e-6


def gaussian_projection(z: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """``exp(-(z - mean)^2 / (2 std^2))`` with mean and std over ``dims`` (no gradient through them).

    Parameters
    ----------
    z : Tensor
        Scores, any shape.
    dims : tuple of int
        Axes over which the mean and (population) standard deviation are taken, per remaining
        index (e.g. per image).

    Returns
    -------
    Tensor, float32, same shape as ``z``, values in (0, 1]
        1 where ``z`` equals the mean; a constant ``z`` gives 1 everywhere. Computed in float32
        (under float16 autocast a tiny variance would underflow to 0 and give NaN).
    """
    z = z.float()
    mean = z.mean(dim=dims, keepdim=True).detach()
    std = z.std(dim=dims, keepdim=True, correction=0).detach().clamp_min(_EPS)
    return torch.exp(-(z - mean) ** 2 / (2.0 * std ** 2))


class ChannelModulation(nn.Module):
    """Channel AMM: global average pooling -> MLP -> Gaussian projection across channels.

    Parameters
    ----------
    channels : int
        Channels C of the feature map.
    reduction : int
        Hidden units of the MLP are ``max(4, C // reduction)`` (at least 4, so that a narrow
        network's MLP cannot die with its only hidden unit).
    """

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(4, int(channels) // int(reduction))
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=False), nn.Linear(hidden, channels))

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image channel weights [B, C, 1, 1] in (0, 1]."""
        z = self.mlp(x.mean(dim=(2, 3)))
        return gaussian_projection(z, dims=(1,))[:, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x).to(x.dtype)


class SpatialModulation(nn.Module):
    """Spatial AMM: channel max and mean -> 7x7 convolution -> Gaussian projection across pixels."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size=kernel_size, padding=kernel_size // 2)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image pixel weights [B, 1, H, W] in (0, 1]."""
        pooled = torch.cat([x.max(dim=1, keepdim=True).values, x.mean(dim=1, keepdim=True)], dim=1)
        return gaussian_projection(self.conv(pooled), dims=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x).to(x.dtype)


class AMM(nn.Module):
    """Activation modulation module: channel modulation, then spatial modulation.

    ``forward(x [B, C, H, W]) -> [B, C, H, W]``.
    """

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.channel = ChannelModulation(channels, reduction)
        self.spatial = SpatialModulation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


class ModulatedReLU(nn.Module):
    """ReLU followed by :class:`AMM` (one module, so it keeps the ReLU's name for Grad-CAM)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.amm = AMM(channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.amm(self.relu(x))


def add_amms(model: VGGClassifier, reduction: int = 4) -> VGGClassifier:
    """Replace the last ReLU of each VGG block of ``model`` by a :class:`ModulatedReLU` (in place)."""
    channels = model.in_channels
    for i, layer in enumerate(model.features):
        if isinstance(layer, nn.Conv2d):
            channels = layer.out_channels
        elif f"features.{i}" in AMM_LAYERS:
            if not isinstance(layer, nn.ReLU):
                raise ValueError(f"features.{i} of the classifier is {type(layer).__name__}, expected the block's ReLU")
            model.features[i] = ModulatedReLU(channels, reduction)
    return model


def normalised_class_cam(class_map: torch.Tensor, target: int = 1) -> torch.Tensor:
    """CAM of ``target`` from a class map: ReLU, divided by its per-image maximum.

    Parameters
    ----------
    class_map : Tensor, shape (B, n_classes, h, w)

    Returns
    -------
    Tensor, shape (B, h, w), values in [0, 1]; an all-zero map stays zero.
    """
    cam = torch.relu(class_map[:, int(target)].float())
    return cam / (cam.amax(dim=(1, 2), keepdim=True) + _EPS)


class AMRClassifier(nn.Module):
    """Spotlight (frozen) and compensation (with AMMs) branches; see the module docstring.

    Parameters
    ----------
    spotlight : VGGClassifier
        The trained plain classifier; it is copied, frozen and kept in eval mode.
    consistency : float
        Weight of the L1 consistency between the branches' CAMs (``baselines.amr_consistency``).
    reduction : int
        Channel-AMM MLP reduction (``baselines.amr_reduction``).
    init_from_spotlight : bool
        Start the compensation branch from the spotlight's weights (else a fresh initialisation).
    """

    def __init__(self, spotlight: VGGClassifier, consistency: float = 1.0, reduction: int = 4,
                 init_from_spotlight: bool = True) -> None:
        super().__init__()
        if not isinstance(spotlight, VGGClassifier):
            raise TypeError(f"spotlight must be the study's VGGClassifier, got {type(spotlight).__name__}")
        if float(consistency) < 0:
            raise ValueError(f"baselines.amr_consistency must be >= 0, got {consistency!r}")
        self.consistency = float(consistency)
        self.reduction = int(reduction)
        self.init_from_spotlight = bool(init_from_spotlight)
        # part of config(): a checkpoint trained around other spotlight weights is not resumed
        self.spotlight_fingerprint = weights_fingerprint(spotlight)
        self.spotlight = copy.deepcopy(spotlight)
        for p in self.spotlight.parameters():
            p.requires_grad_(False)
        self.spotlight.eval()
        if init_from_spotlight:
            comp = copy.deepcopy(spotlight)
        else:
            comp = VGGClassifier(**spotlight.config())
        for p in comp.parameters():
            p.requires_grad_(True)
        self.compensation = add_amms(comp, self.reduction)

    def config(self) -> dict[str, Any]:
        """Arguments that rebuild this architecture."""
        return {**self.spotlight.config(), "consistency": self.consistency, "reduction": self.reduction,
                "init_from_spotlight": self.init_from_spotlight, "spotlight_fingerprint": self.spotlight_fingerprint,
                "variant": "AMR"}

    def train(self, mode: bool = True) -> "AMRClassifier":
        """Set the compensation branch's mode; the frozen spotlight always stays in eval mode."""
        super().train(mode)
        self.spotlight.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the compensation branch, images [B, C, H, W] in [0, 1] -> [B, 2]."""
        return self.compensation(x)

    def branch_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits [B, 2] and brain-class CAMs [B, h, w] (normalised class maps) of both branches."""
        with torch.no_grad():
            map_s = self.spotlight.class_map(x)
        map_c = self.compensation.class_map(x)
        return {"logits_s": self.spotlight.pool(map_s).flatten(1), "cam_s": normalised_class_cam(map_s),
                "logits_c": self.compensation.pool(map_c).flatten(1), "cam_c": normalised_class_cam(map_c)}

    def consistency_loss(self, cam_s: torch.Tensor, cam_c: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean absolute difference of the two CAMs [B, h, w] over the positive slices (0 without any)."""
        positive = labels.bool()
        if not bool(positive.any()):
            return cam_c.sum() * 0.0
        return (cam_s[positive] - cam_c[positive]).abs().mean()

    def training_loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``CE(spotlight) + CE(compensation) + consistency * L1(CAM_s, CAM_c)`` of one batch.

        Parameters
        ----------
        images : Tensor, shape (B, C, H, W), in [0, 1]
        labels : Tensor of int64, shape (B,)
            Image-level labels (1 = brain present).

        Returns
        -------
        Tensor, scalar. The spotlight's CE is a constant (frozen branch) kept in the logged value.
        """
        out = self.branch_outputs(images)
        ce_s = F.cross_entropy(out["logits_s"].float(), labels)
        ce_c = F.cross_entropy(out["logits_c"].float(), labels)
        return ce_s + ce_c + self.consistency * self.consistency_loss(out["cam_s"], out["cam_c"], labels)


def amr_classifier(spotlight: VGGClassifier, consistency: float = 1.0, reduction: int = 4,
                   init_from_spotlight: bool = True) -> AMRClassifier:
    """Build an :class:`AMRClassifier` around a trained plain classifier ``spotlight``."""
    return AMRClassifier(spotlight, consistency=consistency, reduction=reduction,
                         init_from_spotlight=init_from_spotlight)
