"""DRS: discriminative region suppression (Kim, Han and Kim, AAAI 2021), the first weak baseline.

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
                 as the DRS authors' "extra" layers (they use three)
    classifier   1x1 convolution to 2 classes, then global average pooling (as the study's VGG)

Choices against the published method (named in notebook 07):

- the localisation map is the Grad-CAM of ``block5`` (``features.29``, the last ReLU of the
  backbone, stride 16) for the brain class, the same layer as the study's Grad-CAM baseline;
  the DRS authors read the class map of the final 1x1 layer, which in the non-dilated VGG has
  stride 32 (4 x 4 pixels at 128 x 128) - too coarse to compare boundaries;
- the map is read either as trained, every activation capped (the DRS authors' inference), or
  with the caps switched off (:func:`suppression_disabled`); :func:`choose_readout` keeps the
  one with the higher validation Dice (``baselines.drs_readout``, default ``auto``). On this
  study's coarse feature maps the capped readout tends to saturate over most of the slice:
  capping every layer removes the contrast inside broadly active channels;
- notebook 07 warm-starts the network from notebook 02's classifier (the DRS authors start
  from ImageNet weights, which the study does not have); the extra layers then start as
  identities. The fifth block is dilated only when the study's classifier is;
- the authors' second stage (a refinement network trained on the localisation maps and
  saliency maps) is not used: the map goes straight to the study's threshold -> UNet path.
"""
from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import runtime
from ..data.artifacts import SliceSet
from .vgg import VGGClassifier, vgg16_classifier

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
        The weights will be copied from a trained plain classifier (:func:`build_drs` ``init``):
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
    activation, without the saturation the caps cause (see :func:`drs_cams`).
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
    h = hashlib.blake2b(digest_size=8)
    for key, value in model.state_dict().items():
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


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


def baseline_options(baselines: Mapping[str, Any]) -> dict[str, Any]:
    """The DRS / AMR settings of a ``baselines`` parameter section, checked, with defaults.

    Keys: ``drs_delta`` (0.55), ``drs_learnable`` (false), ``drs_extra_layers`` (3),
    ``drs_readout`` ("auto": DRS map with or without its caps, chosen on validation; or
    "suppressed" / "unsuppressed"), ``amr_consistency`` (1.0), ``amr_reduction`` (4),
    ``epochs`` (required).

    Raises
    ------
    ValueError
        Naming the ``baselines.*`` key that is missing or out of range.
    """
    if "epochs" not in baselines:
        raise ValueError("the baselines section needs 'epochs' (classifier epochs of DRS and AMR)")
    out = {"drs_delta": DEFAULT_DELTA, "drs_learnable": False, "drs_extra_layers": 3, "drs_readout": "auto",
           "amr_consistency": 1.0, "amr_reduction": 4, **dict(baselines)}
    if not 0.0 < float(out["drs_delta"]) <= 1.0:
        raise ValueError(f"baselines.drs_delta must be in (0, 1], got {out['drs_delta']!r}")
    if int(out["drs_extra_layers"]) < 0:
        raise ValueError(f"baselines.drs_extra_layers must be >= 0, got {out['drs_extra_layers']!r}")
    if float(out["amr_consistency"]) < 0:
        raise ValueError(f"baselines.amr_consistency must be >= 0, got {out['amr_consistency']!r}")
    if int(out["amr_reduction"]) < 1:
        raise ValueError(f"baselines.amr_reduction must be >= 1, got {out['amr_reduction']!r}")
    if out["drs_readout"] not in ("auto", "suppressed", "unsuppressed"):
        raise ValueError(f"baselines.drs_readout must be 'auto', 'suppressed' or 'unsuppressed', "
                         f"got {out['drs_readout']!r}")
    if int(out["epochs"]) < 1:
        raise ValueError(f"baselines.epochs must be >= 1, got {out['epochs']!r}")
    return out


def build_drs(classifier: Mapping[str, Any], baselines: Mapping[str, Any], in_channels: int = 1,
              seed: int | None = None, init: VGGClassifier | None = None) -> DRSClassifier:
    """The DRS classifier of a profile: architecture from ``classifier``, DRS from ``baselines``.

    Parameters
    ----------
    classifier : mapping
        The ``classifier`` section (``width``, ``dilated``, ``pretrained``).
    baselines : mapping
        The ``baselines`` section (see :func:`baseline_options`).
    seed : int, optional
        Seed torch first, so the random initialisation is reproducible.
    init : VGGClassifier, optional
        Warm start from this trained plain classifier (see :func:`drs_classifier`).
    """
    opts = baseline_options(baselines)
    if seed is not None:
        runtime.seed_everything(int(seed))
    return drs_classifier(width=float(classifier["width"]), in_channels=in_channels,
                          dilated=bool(classifier["dilated"]), pretrained=classifier.get("pretrained", False),
                          delta=float(opts["drs_delta"]), learnable=bool(opts["drs_learnable"]),
                          extra_layers=int(opts["drs_extra_layers"]), init=init,
                          batch_norm=bool(classifier.get("batch_norm", False)),
                          pooling=str(classifier.get("pooling", "avg")), lse_r=float(classifier.get("lse_r", 5.0)),
                          input_norm=str(classifier.get("input_norm", "imagenet")),
                          padding=str(classifier.get("padding", "zeros")))


def drs_cams(model: DRSClassifier, images: np.ndarray, layer: str = "block5", batch_size: int = 64,
             device: str | torch.device | None = None, amp: bool = False, progress: bool = True,
             suppress: bool = True) -> np.ndarray:
    """DRS localisation maps: Grad-CAM of ``layer`` (default ``block5``) for the brain class.

    Parameters
    ----------
    model : DRSClassifier
    images : ndarray, shape (N, H, W)
        Slices in [0, 1].
    layer : str
        Block or module name (``block5`` = ``features.29``).
    batch_size, device, amp, progress
        As :func:`umcam_lib.cam.gradcam.compute_cams`.
    suppress : bool
        ``True``: the network as trained, every activation capped (the DRS authors' inference).
        ``False``: the same weights read with the caps switched off (:func:`suppression_disabled`).
        Capping at every layer removes the contrast inside broadly active channels, so on
        coarse feature maps the capped readout can saturate over most of the slice;
        :func:`choose_readout` picks between the two on validation.

    Returns
    -------
    ndarray, float16, shape (N, H, W)
        Maps in [0, 1], each divided by its maximum.
    """
    from ..cam.gradcam import compute_cams

    desc = "DRS Grad-CAM" + ("" if suppress else " (caps off)")
    if suppress:
        return compute_cams(model, images, [layer], batch_size, device, amp, progress=progress, desc=desc)[0]
    with suppression_disabled(model):
        return compute_cams(model, images, [layer], batch_size, device, amp, progress=progress, desc=desc)[0]


# ----------------------------------------------------------------------------- the baseline path
# Shared by DRS and AMR (notebook 07): classifier -> CAM -> validation threshold -> pseudo labels.

def training_recipe(classifier: Mapping[str, Any], baselines: Mapping[str, Any]) -> dict[str, Any]:
    """The classifier recipe (``classifier`` section) with ``epochs = baselines.epochs``."""
    return {**dict(classifier), "epochs": int(baseline_options(baselines)["epochs"])}


def train_drs(slices: SliceSet, classifier: Mapping[str, Any], baselines: Mapping[str, Any], out_dir: str | Path,
              init: VGGClassifier | None = None, device: str | torch.device = "auto", amp: bool = True,
              seed: int = 0, progress: bool = True) -> tuple[DRSClassifier, pd.DataFrame]:
    """Train the DRS classifier with the classifier recipe; return its best epoch and the history.

    Parameters
    ----------
    slices : SliceSet
        Image-level labels of the training slices; validation F1 picks the epoch.
    classifier, baselines : mapping
        Parameter sections (:func:`build_drs`, :func:`training_recipe`).
    out_dir : path
        Checkpoints (``best.pt``, ``last.pt``, ``history.csv``); an interrupted run resumes.
    init : VGGClassifier, optional
        Warm start from notebook 02's classifier (see :func:`drs_classifier`).
    device, amp, seed, progress
        As :func:`umcam_lib.train.classifier.train_classifier`.

    Returns
    -------
    model : DRSClassifier
        Weights of the best validation epoch, eval mode, on ``device``.
    history : DataFrame
        One row per epoch (see ``train_classifier``).
    """
    from ..train.classifier import load_classifier, train_classifier

    model = build_drs(classifier, baselines, seed=seed, init=init)
    history = train_classifier(model, slices, training_recipe(classifier, baselines), out_dir, device, amp, seed,
                               progress)
    return load_classifier(out_dir, classifier, model=model, device=device), history


def cam_rows(slices: SliceSet) -> np.ndarray:
    """Rows whose baseline CAM is computed: every positive slice of every split, ascending.

    Positive training slices become pseudo labels (negative ones are all background anyway);
    positive validation slices choose the threshold; positive test slices are scored with it.
    """
    return np.sort(np.concatenate([slices.indices(s, positive_only=True) for s in ("train", "val", "test")]))


def choose_readout(slices: SliceSet, index: np.ndarray, candidates: Mapping[str, np.ndarray], grid: Sequence[float],
                   method: str = "DRS", readout: str = "auto") -> tuple[str, dict[str, Any]]:
    """Pick one of several maps of the same slices by validation Dice (as a threshold is picked).

    Parameters
    ----------
    slices : SliceSet
    index : ndarray, shape (n,)
        Slice rows of every candidate.
    candidates : mapping
        Readout name -> maps [n, H, W] in [0, 1] (e.g. ``{"suppressed": ..., "unsuppressed": ...}``).
    grid : sequence of float
        Candidate thresholds.
    method : str
        Table name prefix: the evaluations are named ``"<method> (<readout>)"``.
    readout : str
        ``"auto"``: the candidate with the highest mean validation Dice at its best threshold
        (the first among ties); or a candidate name to force it (``baselines.drs_readout``).

    Returns
    -------
    chosen : str
        The chosen readout name.
    evaluations : dict
        Readout name -> :class:`umcam_lib.cam.CamEvaluation` (validation and test scores of each).
    """
    from ..cam.pseudo_mask import evaluate_cam

    if not candidates:
        raise ValueError("choose_readout needs at least one candidate map set")
    if readout != "auto" and readout not in candidates:
        raise ValueError(f"baselines.drs_readout must be 'auto' or one of {sorted(candidates)}, got {readout!r}")
    evaluations = {name: evaluate_cam(slices, index, maps, grid, name, f"{method} ({name})")
                   for name, maps in candidates.items()}
    if readout == "auto":
        readout = max(evaluations, key=lambda k: (float(np.max(evaluations[k].val_curve)), -list(evaluations).index(k)))
    return readout, evaluations


def pseudo_label_targets(slices: SliceSet, index: np.ndarray, maps: np.ndarray, threshold: float) -> dict[str, Any]:
    """Hard pseudo labels ``CAM >= threshold`` of every positive training slice.

    Parameters
    ----------
    slices : SliceSet
    index : ndarray, shape (n,)
        Slice rows of ``maps``; must contain every positive training slice.
    maps : ndarray, shape (n, H, W)
        CAMs in [0, 1].
    threshold : float
        The validation-chosen threshold.

    Returns
    -------
    dict
        ``index`` [m] (positive training rows), ``maps`` [m, H, W] float32 in {0, 1},
        ``threshold``: the ``targets`` of :func:`umcam_lib.train.segmentation.train_evaluate_record`,
        which gives every negative training slice an all-background label.
    """
    from ..cam.pseudo_mask import take_rows

    rows = slices.indices("train", positive_only=True)
    taken = take_rows(np.asarray(index), np.asarray(maps), rows, "baseline CAMs")
    return {"index": rows, "maps": (np.asarray(taken, dtype=np.float32) >= float(threshold)).astype(np.float32),
            "threshold": float(threshold)}


def evaluate_baseline_cam(run_dir: str | Path, slices: SliceSet, index: np.ndarray, maps: np.ndarray,
                          grid: Sequence[float], name: str, method: str) -> tuple[Any, dict[str, Any]]:
    """Threshold a baseline's CAMs on validation, score them, store the threshold, build labels.

    Parameters
    ----------
    run_dir : path
        The threshold goes to ``cams/thresholds.json`` under key ``name``.
    slices : SliceSet
    index, maps : ndarray
        Slice rows [n] and CAMs [n, H, W] (at least :func:`cam_rows`).
    grid : sequence of float
        Candidate thresholds (``metrics.threshold_grid(cam["threshold_grid"])``).
    name, method : str
        Map name (``"drs"``) and table name (``"DRS"``).

    Returns
    -------
    evaluation : umcam_lib.cam.CamEvaluation
        Threshold, validation curve and per-slice Dice / HD95 of positive val and test slices
        (not recorded in Table 2, whose pseudo-mask section holds the paper's CAM variants).
    targets : dict
        :func:`pseudo_label_targets` at the chosen threshold.
    """
    from ..cam.pseudo_mask import evaluate_cam, save_threshold

    evaluation = evaluate_cam(slices, index, maps, grid, name, method)
    save_threshold(run_dir, name, evaluation.threshold)
    return evaluation, pseudo_label_targets(slices, index, maps, evaluation.threshold)
