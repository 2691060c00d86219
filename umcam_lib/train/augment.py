"""Augmentation of classifier training slices with ``torchvision.transforms.v2``.

The paper lists gamma correction, random rotation, random flips and random cropping; the
authors' code rotates by up to 30 degrees and crops 224 pixels out of a 256-pixel resize (a
shift of up to 1/8 of the image). Here each slice ``[1, H, W]`` in [0, 1] goes through

1. gamma correction ``x ** g`` with ``g`` log-uniform in ``gamma`` (default 0.7 .. 1.5),
2. with probability ``rotation_p`` (default 0.5), rotation by an angle uniform in
   +-``rotation`` degrees (bilinear, zero fill),
3. horizontal and vertical flips, each with probability 0.5,
4. a random crop of the original size from the image zero-padded by ``crop_padding`` x size on
   each side (a random shift; the size, and so the 1:1 pixel grid, is kept),
5. when ``scale`` is ``[low, high]`` (default ``None``: off), a zoom about the image centre by a
   factor uniform in that range (bilinear, zero fill): anatomy of other sizes, e.g. older fetuses.

Every random draw uses torch's global generator, so a seeded run is reproducible.

Why the rotation is applied to only half of the slices: bilinear interpolation smooths the
pixel noise. A classifier that sees only rotated (smoothed) slices in training meets sharper,
noisier slices at test time, a distribution shift that on noisy phantoms made it call many
negative slices positive. Seeing unrotated slices too removes the shift.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F_nn
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ..config.schema import AUGMENT_DEFAULTS, check_section

#: Defaults of the augmentation parameters (``classifier.augment: true``): those of the schema.
DEFAULT_AUGMENT: dict[str, Any] = AUGMENT_DEFAULTS


class RandomGamma(v2.Transform):
    """Gamma correction ``x -> x ** g`` of images in [0, 1], ``g`` log-uniform in ``gamma_range``."""

    def __init__(self, gamma_range: tuple[float, float] = (0.7, 1.5)) -> None:
        super().__init__()
        lo, hi = (float(g) for g in gamma_range)
        if not 0 < lo <= hi:
            raise ValueError(f"augment.gamma must be [low, high] with 0 < low <= high, got {gamma_range!r}")
        self.gamma_range = (lo, hi)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        lo, hi = (math.log(g) for g in self.gamma_range)
        u = float(torch.empty(()).uniform_(lo, hi)) if hi > lo else lo
        return {"gamma": math.exp(u)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, torch.Tensor) and inpt.is_floating_point():
            return F.adjust_gamma(inpt.clamp(0.0, 1.0), params["gamma"])
        return inpt


def augment_options(augment: bool | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Normalise ``classifier.augment``: ``true`` -> defaults, a mapping -> defaults updated by it,
    ``false``/``None`` -> ``None`` (no augmentation). Any other value, or a mapping with an
    unknown key, raises ``ParameterError`` (the schema's check of ``classifier.augment``)."""
    if augment is None or augment is False:
        return None
    augment = check_section("classifier", {"augment": augment})["augment"]
    if augment is True:
        return dict(DEFAULT_AUGMENT)
    return {**DEFAULT_AUGMENT, **dict(augment)}


def build_augmentation(image_size: tuple[int, int], augment: bool | Mapping[str, Any] | None = True) -> v2.Transform | None:
    """The training transform for slices ``[1, H, W]`` float in [0, 1].

    Parameters
    ----------
    image_size : (H, W)
        Size of the slices (kept by the crop).
    augment : bool or mapping
        ``classifier.augment`` (see :data:`DEFAULT_AUGMENT` for the keys).

    Returns
    -------
    v2.Transform or None
        ``None`` when augmentation is off.
    """
    opts = augment_options(augment)
    if opts is None:
        return None
    steps: list[v2.Transform] = []
    if opts["gamma"]:
        steps.append(RandomGamma(tuple(opts["gamma"])))
    if opts["rotation"]:
        rotate = v2.RandomRotation(float(opts["rotation"]), interpolation=v2.InterpolationMode.BILINEAR, fill=0.0)
        p = float(opts["rotation_p"])
        if p >= 1.0:
            steps.append(rotate)
        elif p > 0.0:
            steps.append(v2.RandomApply([rotate], p=p))
    if opts["flip"]:
        steps += [v2.RandomHorizontalFlip(0.5), v2.RandomVerticalFlip(0.5)]
    if opts["scale"]:
        lo, hi = (float(v) for v in opts["scale"])
        steps.append(v2.RandomAffine(degrees=0.0, scale=(lo, hi), interpolation=v2.InterpolationMode.BILINEAR, fill=0.0))
    pad = int(round(float(opts["crop_padding"]) * min(image_size)))
    if pad > 0:
        steps.append(v2.RandomCrop(tuple(image_size), padding=pad, fill=0.0))
    return v2.Compose(steps) if steps else None


def augmentation_figure(images: np.ndarray, augment: bool | Mapping[str, Any] = True, n_aug: int = 5,
                        seed: int = 0, row_labels: list[str] | None = None) -> Any:
    """A row per slice: the slice, then ``n_aug`` random augmentations of it.

    Parameters
    ----------
    images : ndarray [K, H, W] in [0, 1]
    augment : ``classifier.augment``
    row_labels : list of K str, optional
        Written left of each row (e.g. the slice's label).
    seed : int
        Seeds torch's generator (the figure is reproducible; training's draws are unaffected
        because training reseeds every epoch).

    Returns
    -------
    matplotlib Figure
    """
    import matplotlib.pyplot as plt

    images = np.asarray(images, dtype=np.float32)
    transform = build_augmentation(images.shape[1:], augment)
    torch.manual_seed(seed)
    fig, axes = plt.subplots(len(images), n_aug + 1, figsize=(1.6 * (n_aug + 1), 1.6 * len(images)), squeeze=False)
    for r, image in enumerate(images):
        x = torch.from_numpy(image)[None]
        views = [x] + [transform(x) if transform is not None else x for _ in range(n_aug)]
        for c, (ax, v) in enumerate(zip(axes[r], views)):
            ax.imshow(v[0].numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("original" if c == 0 else f"augmented {c}", fontsize=8)
        if row_labels is not None:
            axes[r, 0].set_ylabel(row_labels[r], fontsize=8)
    fig.tight_layout()
    return fig


def augment_segmentation_batch(images: torch.Tensor, targets: list[torch.Tensor | None], gen: torch.Generator,
                               gamma: tuple[float, float] = (0.7, 1.5), scale: tuple[float, float] = (1.0, 1.0),
                               resolution: tuple[float, float] = (1.0, 1.0), bias: float = 0.0, noise: float = 0.0
                               ) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """Augment a UNet training batch: one random dihedral view per slice, zoom, resolution,
    gamma, bias field and noise.

    Each slice is rotated by a multiple of 90 degrees and flipped with probability 0.5 (the
    eight orientations of the square; they cover the in-plane orientations in which scanners
    store stacks, and are exact: no interpolation, so labels stay aligned and sharp); then,
    when ``scale`` is not ``(1, 1)``, zoomed by a factor log-uniform in ``scale`` about a random
    point of the slice (bilinear, zero fill; the anatomy of fetuses of other ages is larger or
    smaller at the same pixel spacing); and its intensities go through ``x ** g`` with ``g``
    log-uniform in ``gamma`` (contrast). Three more changes of the image alone, each off at its
    default and drawing nothing from ``gen`` when off (so a batch augmented without them is
    bit for bit what it was before they existed), stand in for other scanners
    (:func:`degrade_images`): a coarser in-plane resolution, a smooth multiplicative bias field
    and Gaussian noise.

    Parameters
    ----------
    images : Tensor, float, shape (B, 1, H, W), values in [0, 1]
        Requires H == W (a rotation by 90 degrees keeps the shape).
    targets : list of Tensor (B, H, W) or None
        Label maps moved with their slice (``None`` entries pass through).
    gen : torch.Generator
        All draws come from it (a seeded generator gives a reproducible epoch).
    gamma : (low, high)
        Range of the gamma exponent; ``(1, 1)`` turns the contrast change off.
    scale : (low, high)
        Range of the zoom factor (> 1 enlarges); ``(1, 1)`` turns zooming off.
    resolution, bias, noise
        See :func:`degrade_images`; ``(1, 1)``, 0 and 0 turn them off.

    Returns
    -------
    (images, targets)
        New tensors of the same shapes; the inputs are not modified.
    """
    if images.ndim != 4 or images.shape[-1] != images.shape[-2]:
        raise ValueError(f"expected square slices [B, 1, H, H], got {tuple(images.shape)}")
    b = images.shape[0]
    ks = torch.randint(0, 4, (b,), generator=gen)
    flips = torch.rand(b, generator=gen) < 0.5
    lo, hi = math.log(gamma[0]), math.log(gamma[1])
    g = torch.exp(torch.empty(b).uniform_(0, 1, generator=gen) * (hi - lo) + lo)

    def view(t: torch.Tensor, i: int) -> torch.Tensor:
        t = torch.rot90(t, int(ks[i]), dims=(-2, -1))
        return torch.flip(t, dims=(-1,)) if bool(flips[i]) else t

    x = torch.stack([view(images[i], i) for i in range(b)])
    out = [None if t is None else torch.stack([view(t[i], i) for i in range(b)]) for t in targets]
    if tuple(scale) != (1.0, 1.0):
        lo_s, hi_s = math.log(scale[0]), math.log(scale[1])
        zoom = torch.exp(torch.empty(b).uniform_(0, 1, generator=gen) * (hi_s - lo_s) + lo_s)
        centre = torch.empty(b, 2).uniform_(-0.5, 0.5, generator=gen)
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / zoom
        theta[:, :, 2] = centre * (1.0 - 1.0 / zoom)[:, None]   # zoom about a point inside the central half
        grid = F_nn.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)

        def warp(t: torch.Tensor) -> torch.Tensor:
            t4 = t if t.ndim == 4 else t[:, None]
            w = F_nn.grid_sample(t4.to(grid.dtype), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            return w if t.ndim == 4 else w[:, 0]

        x = warp(x)
        out = [None if t is None else warp(t).to(t.dtype) for t in out]
    x = x.clamp(0.0, 1.0) ** g.to(x.device, x.dtype).view(b, 1, 1, 1)
    return degrade_images(x, gen, resolution, bias, noise), out


def degrade_images(x: torch.Tensor, gen: torch.Generator, resolution: tuple[float, float] = (1.0, 1.0),
                   bias: float = 0.0, noise: float = 0.0) -> torch.Tensor:
    """What another scanner does to a slice, drawn per slice: coarser pixels, a bias field, noise.

    Parameters
    ----------
    x : Tensor, float, shape (B, 1, H, W), values in [0, 1]
    gen : torch.Generator
        All draws come from it; nothing is drawn for a change that is off.
    resolution : (low, high)
        Factor ``r`` log-uniform in the range: the slice is resampled to ``H / r`` pixels
        (antialiased) and back (bilinear), as if acquired with pixels ``r`` times larger.
        ``(1, 1)``: off.
    bias : float
        Largest log-amplitude of a smooth multiplicative field ``exp(a f)``: ``f`` is a 4 x 4
        grid of standard normal values, upsampled bicubically and scaled to a peak of 1, ``a``
        uniform in ``[0, bias]``. 0: off.
    noise : float
        Largest standard deviation (image units) of added Gaussian noise, drawn uniform in
        ``[0, noise]`` per slice. 0: off.

    Returns
    -------
    Tensor, shape (B, 1, H, W)
        Clamped to [0, 1] when any change is on; ``x`` itself when all are off.
    """
    b, _, h, w = x.shape
    changed = False
    if tuple(resolution) != (1.0, 1.0):
        lo, hi = math.log(resolution[0]), math.log(resolution[1])
        rs = torch.exp(torch.empty(b).uniform_(0, 1, generator=gen) * (hi - lo) + lo)
        rows = []
        for i in range(b):
            r = float(rs[i])
            size = (max(4, round(h / r)), max(4, round(w / r)))
            low = F_nn.interpolate(x[i:i + 1], size=size, mode="bilinear", antialias=True, align_corners=False)
            rows.append(F_nn.interpolate(low, size=(h, w), mode="bilinear", align_corners=False))
        x, changed = torch.cat(rows), True
    if bias > 0:
        amp = torch.empty(b).uniform_(0, 1, generator=gen) * float(bias)
        coarse = torch.empty(b, 1, 4, 4).normal_(0, 1, generator=gen)
        field = F_nn.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
        field = field / field.abs().amax(dim=(-2, -1), keepdim=True).clamp_min(1e-6)
        x, changed = x * torch.exp(amp.view(b, 1, 1, 1) * field).to(x.device, x.dtype), True
    if noise > 0:
        sd = torch.empty(b).uniform_(0, 1, generator=gen) * float(noise)
        n = torch.empty(x.shape).normal_(0, 1, generator=gen)
        x, changed = x + (sd.view(b, 1, 1, 1) * n).to(x.device, x.dtype), True
    return x.clamp(0.0, 1.0) if changed else x


def random_patches(images: torch.Tensor, targets: list[torch.Tensor | None], size: int, gen: torch.Generator,
                   focus: torch.Tensor | None = None, focus_p: float = 0.5
                   ) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """Cut one random square patch of ``size`` pixels out of every slice of a UNet batch.

    A fully convolutional UNet trained on patches is applied to whole slices unchanged; a patch
    costs ``(size / H) ** 2`` of a slice, so the same time buys more optimisation steps.

    Parameters
    ----------
    images : Tensor, shape (B, 1, H, W)
    targets : list of Tensor (B, H, W) or None
        Label maps cut at the same place (``None`` entries pass through).
    size : int
        Patch side in pixels, at most ``min(H, W)``.
    gen : torch.Generator
        All draws come from it.
    focus : Tensor (B, H, W), optional
        Where a patch may be centred "on the object": with probability ``focus_p`` a slice whose
        ``focus`` map has pixels ``>= 0.5`` gets a patch centred on one of them (drawn uniformly;
        the training label, never a reference mask unless the label is one). Otherwise the
        patch position is uniform.
    focus_p : float
        Probability of a focused patch.

    Returns
    -------
    (images, targets)
        Tensors of shape (B, 1, size, size) and (B, size, size).
    """
    b, _, h, w = images.shape
    if not 1 <= size <= min(h, w):
        raise ValueError(f"seg.patch: a patch of {size} px does not fit slices of {h} x {w} px")
    tops = torch.randint(0, h - size + 1, (b,), generator=gen)
    lefts = torch.randint(0, w - size + 1, (b,), generator=gen)
    use_focus = torch.rand(b, generator=gen) < focus_p
    if focus is not None:
        for i in range(b):
            if not bool(use_focus[i]):
                continue
            fg = torch.nonzero(focus[i] >= 0.5)
            if len(fg) == 0:
                continue
            r, c = fg[int(torch.randint(0, len(fg), (1,), generator=gen))].tolist()
            tops[i] = min(max(r - size // 2, 0), h - size)
            lefts[i] = min(max(c - size // 2, 0), w - size)

    def cut(t: torch.Tensor) -> torch.Tensor:
        return torch.stack([t[i, ..., int(tops[i]):int(tops[i]) + size, int(lefts[i]):int(lefts[i]) + size]
                            for i in range(b)])

    return cut(images), [None if t is None else cut(t) for t in targets]
