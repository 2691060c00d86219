"""DRS: discriminative region suppression (Kim, Han and Kim, AAAI 2021), the network.

A classifier trained with image-level labels looks only at the few pixels that separate the
classes best, so its CAM covers a small part of the object. DRS caps every activation of every
feature map at a fraction ``delta`` of that map's maximum,

    x <- min(x, delta * max_spatial(x))          per image and per channel,

after every ReLU. The most discriminative pixels can then contribute no more than ``delta`` of
their value, and the classifier has to gather its evidence from the less discriminative regions
around them: the activation spreads over the whole object. ``delta`` is fixed (the paper's
best, 0.55) or learned per image and channel, ``sigmoid(W . mean_spatial(x))`` with one
bias-free linear layer ``W`` [C, C] per suppressed layer.

This module builds the DRS classifier on the study's VGG-16 (:mod:`umcam_lib.models.vgg`):

    features.*   VGG-16; every ReLU becomes :class:`SuppressedReLU` (same index, so the block
                 names of ``BLOCK_LAYERS`` still address the last ReLU of each block, whose
                 output is now the suppressed activation)
    extra.*      ``extra_layers`` 3x3 convolutions (C5 -> C5) each followed by a suppressed ReLU,
                 as the DRS authors' "extra" layers (they use three); identities (Dirac kernels)
                 when the network is warm-started from a trained plain classifier
    classifier   1x1 convolution to 2 classes, then global average pooling (as the study's VGG)

The baseline built on it (training, localisation maps, threshold, pseudo labels; the choices
against the published method) is :mod:`umcam_lib.baselines.drs`.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import nn

from .vgg import VGGClassifier, vgg16_classifier
from ..hashing import array_hash, value_hash

#: Default suppression factor of the DRS paper (their best on PASCAL VOC).
DEFAULT_DELTA = 0.55


class _SuppressedReLUFn(torch.autograd.Function):
    """``min(relu(x), delta * max_hw relu(x))`` with a hand-written backward pass.

    Autograd of ``torch.minimum`` against a broadcast cap and of ``amax`` costs several passes
    over the feature map; this backward makes two (about half the time on the CPU). The
    gradient is the same: it reaches ``x`` where it is positive and below the cap, and, through
    the cap, the position of each channel's maximum and ``delta``.

    Inputs: ``x`` [B, C, H, W]; ``delta`` a 0-d tensor or [B, C]; ``relu`` (bool) applies the
    ReLU first (else ``x`` must be non-negative already).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, delta: torch.Tensor, relu: bool) -> torch.Tensor:  # type: ignore[override]
        r = torch.relu(x) if relu else x
        b, c = x.shape[:2]
        peak, arg = r.reshape(b, c, -1).max(dim=2)                     # [B, C]
        cap = (delta.to(r.dtype) * peak)[..., None, None]
        over = r > cap
        keep = (x > 0) & ~over if relu else ~over
        ctx.save_for_backward(keep, over, arg, peak, delta)
        return torch.where(over, cap, r)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        keep, over, arg, peak, delta = ctx.saved_tensors
        b, c = peak.shape
        zero = grad.new_zeros(())
        gx = torch.where(keep, grad, zero).contiguous()   # index_put_ below needs a flat view
        # float32 sums: under mixed precision a float16 sum over H x W could overflow
        g_cap = torch.where(over, grad, zero).sum(dim=(2, 3), dtype=torch.float32)   # [B, C]
        g_delta = None
        if ctx.needs_input_grad[1]:
            g_delta = (g_cap * peak.float()).sum() if delta.dim() == 0 else g_cap * peak.float()
            g_delta = g_delta.to(delta.dtype)
        g_peak = (g_cap * delta.float() * (peak > 0)).reshape(-1).to(gx.dtype)
        flat = gx.view(b * c, -1)
        flat.index_put_((torch.arange(b * c, device=gx.device), arg.reshape(-1)), g_peak, accumulate=True)
        return gx, g_delta, None


class Suppression(nn.Module):
    """Discriminative region suppression of a non-negative feature map ``[B, C, H, W]``.

    ``forward(x) = min(x, delta * max_{h, w} x)`` per image and channel.

    Parameters
    ----------
    channels : int
        Channels C of the suppressed feature map (used by the learnable delta).
    delta : float
        Fixed suppression factor in (0, 1]; ignored when ``learnable``.
    learnable : bool
        Learn ``delta`` per image and channel: ``sigmoid(Linear(C, C, bias=False)(mean_hw x))``.
    """

    def __init__(self, channels: int, delta: float = DEFAULT_DELTA, learnable: bool = False) -> None:
        super().__init__()
        if not 0.0 < float(delta) <= 1.0:
            raise ValueError(f"baselines.drs_delta must be in (0, 1], got {delta!r}")
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels!r}")
        self.channels = int(channels)
        self.delta = float(delta)
        self.learnable = bool(learnable)
        self.fc = nn.Linear(self.channels, self.channels, bias=False) if self.learnable else None
        #: ``False`` turns the module into the identity (a ReLU in :class:`SuppressedReLU`);
        #: see :func:`suppression_disabled`.
        self.enabled = True

    def delta_map(self, x: torch.Tensor) -> torch.Tensor:
        """The suppression factor: [B, C] in (0, 1) when learnable, else a 0-d tensor."""
        if self.fc is None:
            return torch.tensor(self.delta, dtype=torch.float32, device=x.device)
        b, c = x.shape[:2]
        if c != self.channels:
            raise ValueError(f"Suppression built for {self.channels} channels got {c}")
        return torch.sigmoid(self.fc(x.mean(dim=(2, 3))))

    def suppress(self, x: torch.Tensor, relu: bool = False) -> torch.Tensor:
        """Suppress ``x`` [B, C, H, W] (after a ReLU applied here when ``relu``)."""
        if x.ndim != 4:
            raise ValueError(f"Suppression expects feature maps [B, C, H, W], got shape {tuple(x.shape)}")
        if not self.enabled:
            return torch.relu(x) if relu else x
        if self.fc is not None and relu:
            x, relu = torch.relu(x), False    # the learned delta reads the rectified map
        return _SuppressedReLUFn.apply(x, self.delta_map(x), relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Non-negative ``x`` [B, C, H, W] -> suppressed ``x`` of the same shape."""
        return self.suppress(x)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, " + ("learnable" if self.learnable else f"delta={self.delta}")


class SuppressedReLU(nn.Module):
    """ReLU followed by :class:`Suppression`, fused (one module, so it keeps the ReLU's name)."""

    def __init__(self, channels: int, delta: float = DEFAULT_DELTA, learnable: bool = False) -> None:
        super().__init__()
        self.suppress = Suppression(channels, delta, learnable)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.suppress.suppress(x, relu=True)


class DRSClassifier(VGGClassifier):
    """The study's VGG-16 slice classifier with DRS after every ReLU (see module docstring).

    Parameters
    ----------
    width, in_channels, dilated, num_classes
        As :class:`umcam_lib.models.vgg.VGGClassifier`.
    delta : float
        Fixed suppression factor (``baselines.drs_delta``).
    learnable : bool
        Learnable per-channel delta (``baselines.drs_learnable``).
    extra_layers : int
        3x3 convolution + suppressed ReLU layers between the backbone and the 1x1 head
        (``baselines.drs_extra_layers``; 3 in the DRS paper, 0 for none).
    warm_start : bool
        The weights will be copied from a trained plain classifier (:func:`drs_classifier` ``init``):
        the extra layers start as identities (Dirac kernels) instead of a random initialisation.
    **vgg_options
        ``pooling``, ``lse_r``, ``input_norm``, ``padding`` of :class:`VGGClassifier` (those of
        the classifier it is warm-started from).

    ``forward(images [B, in_channels, H, W] in [0, 1]) -> logits [B, 2]``.
    """

    def __init__(self, width: float = 1.0, in_channels: int = 1, dilated: bool = False,
                 num_classes: int = 2, delta: float = DEFAULT_DELTA, learnable: bool = False,
                 extra_layers: int = 3, warm_start: bool = False, batch_norm: bool = False,
                 **vgg_options: Any) -> None:
        super().__init__(width=width, in_channels=in_channels, dilated=dilated, num_classes=num_classes,
                         batch_norm=batch_norm, **vgg_options)
        if int(extra_layers) < 0:
            raise ValueError(f"baselines.drs_extra_layers must be >= 0, got {extra_layers!r}")
        self.delta = float(delta)
        self.learnable = bool(learnable)
        self.extra_layers = int(extra_layers)
        self.warm_start = bool(warm_start)
        #: Fingerprint of the warm-start weights (set by :func:`drs_classifier`); part of
        #: :meth:`config`, so a checkpoint fine-tuned from other weights is not resumed.
        self.init_fingerprint: str | None = None
        channels = self.in_channels
        for i, layer in enumerate(self.features):
            if isinstance(layer, nn.Conv2d):
                channels = layer.out_channels
            elif isinstance(layer, nn.ReLU):
                self.features[i] = SuppressedReLU(channels, delta, learnable)
        c5 = self.classifier.in_channels
        extra: list[nn.Module] = []
        for _ in range(self.extra_layers):
            conv = nn.Conv2d(c5, c5, kernel_size=3, padding=1, padding_mode=self.padding)
            if self.warm_start:   # identity: the warm-started backbone's features reach the head unchanged
                nn.init.dirac_(conv.weight)
            else:
                nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            extra += [conv, SuppressedReLU(c5, delta, learnable)]
        self.extra = nn.Sequential(*extra)

    def config(self) -> dict[str, Any]:
        """Arguments that rebuild this architecture."""
        return {**super().config(), "delta": self.delta, "learnable": self.learnable,
                "extra_layers": self.extra_layers, "warm_start": self.warm_start,
                "init_fingerprint": self.init_fingerprint, "variant": "DRS"}

    def class_map(self, x: torch.Tensor) -> torch.Tensor:
        """The 2-channel class map before pooling, [B, 2, H / stride, W / stride]."""
        return self.classifier(self.extra(self.features(self.normalise(x))))

    def suppressors(self) -> list[Suppression]:
        """Every :class:`Suppression` of the network, input to output."""
        return [m for m in self.modules() if isinstance(m, Suppression)]


@contextlib.contextmanager
def suppression_disabled(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` with every :class:`Suppression` switched off (plain ReLUs) inside the block.

    Reading a DRS-trained network without its caps shows where the training spread the
    activation, without the saturation the caps cause (see :func:`umcam_lib.baselines.drs.drs_cams`).
    """
    modules = [m for m in model.modules() if isinstance(m, Suppression)]
    before = [m.enabled for m in modules]
    try:
        for m in modules:
            m.enabled = False
        yield model
    finally:
        for m, state in zip(modules, before):
            m.enabled = state


def drs_classifier(width: float = 1.0, in_channels: int = 1, dilated: bool = False,
                   pretrained: Any = False, delta: float = DEFAULT_DELTA, learnable: bool = False,
                   extra_layers: int = 3, init: VGGClassifier | None = None,
                   batch_norm: bool = False, **vgg_options: Any) -> DRSClassifier:
    """Build a :class:`DRSClassifier`.

    Parameters
    ----------
    width, in_channels, dilated, delta, learnable, extra_layers
        See :class:`DRSClassifier`.
    pretrained : bool or path
        As :func:`umcam_lib.models.vgg16_classifier`: ImageNet weights fill the backbone
        convolutions (ignored when ``init`` is given).
    init : VGGClassifier, optional
        A trained plain classifier of the same architecture whose backbone and head weights are
        copied (a warm start; the DRS modules have no weights when ``delta`` is fixed).
    """
    model = DRSClassifier(width=width, in_channels=in_channels, dilated=dilated, delta=delta,
                          learnable=learnable, extra_layers=extra_layers, warm_start=init is not None,
                          batch_norm=batch_norm, **vgg_options)
    if init is not None:
        copy_plain_weights(init, model)
        model.init_fingerprint = weights_fingerprint(init)
    elif pretrained is not False and pretrained is not None:
        plain = vgg16_classifier(width=width, in_channels=in_channels, dilated=dilated, pretrained=pretrained)
        features = {k: v for k, v in plain.state_dict().items() if k.startswith("features.")}
        model.load_state_dict(features, strict=False)
    return model


def weights_fingerprint(model: nn.Module) -> str:
    """A short hash of a module's weights (state dict, in key order)."""
    return value_hash([[key, array_hash(value.detach().cpu().numpy())] for key, value in model.state_dict().items()])


def copy_plain_weights(source: VGGClassifier, target: nn.Module) -> None:
    """Copy the ``features.*`` convolutions and the ``classifier`` head of ``source`` into ``target``.

    Raises
    ------
    ValueError
        When ``target`` lacks one of the weights or a shape differs (another width or depth),
        naming the parameter.
    """
    own = target.state_dict()
    state = {}
    for key, value in source.state_dict().items():
        if not key.startswith(("features.", "classifier.")):
            continue
        if key not in own or own[key].shape != value.shape:
            raise ValueError(f"cannot warm-start from the plain classifier: its {key} "
                             f"{tuple(value.shape)} does not fit the baseline's "
                             f"{tuple(own[key].shape) if key in own else 'missing parameter'}; "
                             f"the classifier section must match notebook 02's")
        state[key] = value.detach().clone()
    target.load_state_dict(state, strict=False)
