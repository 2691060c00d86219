"""Fusing the CAMs of several layers: Average-CAM and UM-CAM (METHOD section 2, Eq. 3-4).

Shallow layers see fine detail but little meaning: their CAMs follow edges and texture all over
the slice. Deep layers know *what* a brain is but see it through a coarse grid: their CAMs are
blobs. Fusing both keeps the deep layers' localisation and the shallow layers' boundaries.

UM-CAM reads each normalised map M_n(i) in [0, 1] as a foreground probability and trusts it
where it is confident. With the binary entropy
``H_n(i) = -[M log M + (1 - M) log(1 - M)]`` (in nats, 0 .. ln 2), the weight is
``W_n(i) = exp(-H_n(i))``: 1 for a pixel the layer calls clearly foreground or background, 0.5
for a pixel it leaves at 0.5. The fused map is the weighted mean ``sum_n W_n M_n / sum_n W_n``.
Average-CAM is the same with every ``W_n = 1``.

As in the authors' code, ``eps = 1e-6`` is added inside the logarithms and to the denominator,
and the fused map is finally min-max normalised per slice, ``(U - min U) / (max U - min U)``.
A slice whose fused map is constant (for example all zero) is returned unchanged, so every result
is finite and in [0, 1].

All functions take maps ``[N_layers, B, H, W]`` as a numpy array or a torch tensor and return
the same kind; numpy inputs (e.g. float16 maps from disk) are processed in chunks of slices
in float32.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

EPS = 1e-6
#: Slices per chunk when fusing numpy arrays (bounds the float32 working memory).
CHUNK = 256


def _check(maps: np.ndarray | torch.Tensor) -> None:
    if maps.ndim != 4:
        raise ValueError(f"maps must be [N_layers, B, H, W], got shape {tuple(maps.shape)}")
    if maps.shape[0] < 1:
        raise ValueError("maps has no layer (N_layers = 0)")


def _chunked(fn: Callable[[torch.Tensor], torch.Tensor], maps: np.ndarray | torch.Tensor,
             keeps_layers: bool) -> np.ndarray | torch.Tensor:
    """Apply a torch function to numpy maps chunk by chunk over B (tensors: in one go)."""
    _check(maps)
    if isinstance(maps, torch.Tensor):
        return fn(maps.float())
    b = maps.shape[1]
    shape = maps.shape if keeps_layers else maps.shape[1:]
    out = np.empty(shape, dtype=np.float32)
    for s in range(0, b, CHUNK):
        chunk = torch.from_numpy(np.ascontiguousarray(maps[:, s:s + CHUNK], dtype=np.float32))
        res = fn(chunk).numpy()
        if keeps_layers:
            out[:, s:s + CHUNK] = res
        else:
            out[s:s + CHUNK] = res
    return out


def _entropy(m: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    p = m.clamp(0.0, 1.0)
    return -(p * torch.log(p + eps) + (1.0 - p) * torch.log(1.0 - p + eps))


def binary_entropy(maps: np.ndarray | torch.Tensor, eps: float = EPS) -> np.ndarray | torch.Tensor:
    """Per-pixel binary entropy ``H_n(i)`` of maps [N_layers, B, H, W] (nats, about 0 .. ln 2).

    Values are clipped to [0, 1] first. With ``eps`` inside the logarithms a pixel of exactly 0
    or 1 gets about ``-eps`` (not ``NaN``).
    """
    return _chunked(lambda m: _entropy(m, eps), maps, keeps_layers=True)


def entropy_weights(maps: np.ndarray | torch.Tensor, eps: float = EPS) -> np.ndarray | torch.Tensor:
    """UM-CAM's per-pixel weights ``W_n(i) = exp(-H_n(i))`` (Eq. 3), shape [N_layers, B, H, W].

    1 where a layer is confident (map near 0 or 1), 0.5 where it is undecided (map = 0.5).
    """
    return _chunked(lambda m: torch.exp(-_entropy(m, eps)), maps, keeps_layers=True)


def minmax_per_slice(u: torch.Tensor) -> torch.Tensor:
    """``(u - min) / (max - min)`` per slice of [B, H, W]; a constant slice is returned unchanged."""
    lo = u.amin(dim=(1, 2), keepdim=True)
    hi = u.amax(dim=(1, 2), keepdim=True)
    span = hi - lo
    ok = span > 0
    return torch.where(ok, (u - lo) / torch.where(ok, span, torch.ones_like(span)), u)


def _umcam(m: torch.Tensor, eps: float, normalise: bool) -> torch.Tensor:
    m = m.clamp(0.0, 1.0)
    w = torch.exp(-_entropy(m, eps))
    u = (w * m).sum(dim=0) / (w.sum(dim=0) + eps)
    return minmax_per_slice(u) if normalise else u


def _average(m: torch.Tensor, normalise: bool) -> torch.Tensor:
    u = m.clamp(0.0, 1.0).mean(dim=0)
    return minmax_per_slice(u) if normalise else u


def umcam(maps: np.ndarray | torch.Tensor, eps: float = EPS, normalise: bool = True) -> np.ndarray | torch.Tensor:
    """UM-CAM (Eq. 3-4): entropy-weighted mean of per-layer CAMs, min-max normalised per slice.

    Parameters
    ----------
    maps : ndarray or Tensor, shape (N_layers, B, H, W)
        Per-layer CAMs in [0, 1] (each divided by its own maximum), e.g. from
        :func:`umcam_lib.cam.multi_layer_gradcam`.
    eps : float
        Added inside the logarithms and to the denominator (authors' 1e-6).
    normalise : bool
        Apply the final per-slice min-max normalisation (the authors do).

    Returns
    -------
    ndarray (float32) or Tensor, shape (B, H, W)
        Fused maps in [0, 1].
    """
    return _chunked(lambda m: _umcam(m, eps, normalise), maps, keeps_layers=False)


def average_cam(maps: np.ndarray | torch.Tensor, normalise: bool = True) -> np.ndarray | torch.Tensor:
    """Average-CAM: the plain mean of per-layer CAMs (UM-CAM with all weights 1).

    Parameters
    ----------
    maps : ndarray or Tensor, shape (N_layers, B, H, W)
        Per-layer CAMs in [0, 1].
    normalise : bool
        Min-max normalise each fused slice, as for UM-CAM.

    Returns
    -------
    ndarray (float32) or Tensor, shape (B, H, W)
    """
    return _chunked(lambda m: _average(m, normalise), maps, keeps_layers=False)


#: Fusion rules by name (keys are the map names under ``runs/<profile>/cams``).
FUSIONS: dict[str, Callable[..., np.ndarray | torch.Tensor]] = {"average_cam": average_cam, "umcam": umcam}
