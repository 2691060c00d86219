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

**Readings of Eq. 3-4.** The paper's text leaves open how the maps are put into [0, 1] before
the entropy, and which logarithm the entropy uses. Each open point is a parameter of the
``cam`` section whose default is the reading above (today's result, bit for bit):

==========================  ============================================================
``cam.umcam_norm``          ``max`` (each map / its own maximum; default), ``minmax`` (each
                            map min-max scaled: what the authors' code gets from
                            pytorch-grad-cam's ``scale_cam_image``, which does it at feature
                            resolution before resizing), ``batch_max`` (raw maps / the largest
                            maximum of their batch of ``cam.batch_size`` slices),
                            ``volume_max`` (/ the largest maximum of the slice's volume),
                            ``percentile`` (/ the map's ``cam.umcam_percentile``-th
                            percentile, clipped to 1) -- :func:`normalise_maps`
``cam.entropy_base``        ``e`` (nats; default) or ``2`` (bits: an undecided pixel weighs
                            ``exp(-1) = 0.37`` instead of 0.5). ``2 ** -H_bits`` would equal
                            ``exp(-H_nats)``, so only the weight ``exp(-H_bits)`` is a new reading
``cam.entropy_temperature`` ``T`` in ``W = exp(-H / T)`` (1 by default): below 1 the weights
                            separate confident from undecided pixels more sharply
``cam.umcam_final_norm``    ``minmax`` (the authors' code; default) or ``none`` (Eq. 4 as
                            printed: a weighted mean is already in [0, 1])
==========================  ============================================================

:func:`fuse_reading` applies a whole reading; :func:`layercam_fusion` is the multi-layer fusion
of the LayerCAM paper, the closest published rival of UM-CAM.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

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


def _weights(m: torch.Tensor, eps: float, base: str | float, temperature: float) -> torch.Tensor:
    h = _entropy(m, eps)
    if _is_e(base) and float(temperature) == 1.0:
        return torch.exp(-h)  # the default reading: exactly the operations of the original code
    return torch.exp(-h / (float(np.log(_base_value(base))) * float(temperature)))


def _is_e(base: str | float) -> bool:
    return isinstance(base, str) and base == "e"


def _base_value(base: str | float) -> float:
    if _is_e(base):
        return float(np.e)
    try:
        b = float(base)
    except (TypeError, ValueError):
        raise ValueError(f"entropy base must be 'e' or a number > 1, got {base!r}") from None
    if not b > 1:
        raise ValueError(f"entropy base must be 'e' or a number > 1, got {base!r}")
    return b


def _check_temperature(temperature: float) -> None:
    if not float(temperature) > 0:
        raise ValueError(f"entropy temperature must be > 0, got {temperature!r}")


def binary_entropy(maps: np.ndarray | torch.Tensor, eps: float = EPS) -> np.ndarray | torch.Tensor:
    """Per-pixel binary entropy ``H_n(i)`` of maps [N_layers, B, H, W] (nats, about 0 .. ln 2).

    Values are clipped to [0, 1] first. With ``eps`` inside the logarithms a pixel of exactly 0
    or 1 gets about ``-eps`` (not ``NaN``).
    """
    return _chunked(lambda m: _entropy(m, eps), maps, keeps_layers=True)


def entropy_weights(maps: np.ndarray | torch.Tensor, eps: float = EPS, base: str | float = "e",
                    temperature: float = 1.0) -> np.ndarray | torch.Tensor:
    """UM-CAM's per-pixel weights ``W_n(i) = exp(-H_n(i) / T)`` (Eq. 3), shape [N_layers, B, H, W].

    Parameters
    ----------
    maps : ndarray or Tensor, shape (N_layers, B, H, W)
        Normalised maps in [0, 1].
    eps : float
        Inside the logarithms.
    base : "e" or number
        Base of the entropy's logarithm (``cam.entropy_base``): ``"e"`` (nats, the default) or 2.
    temperature : float
        ``T > 0`` (``cam.entropy_temperature``; 1 by default).

    Returns
    -------
    Same kind as ``maps``, float32
        1 where a layer is confident (map near 0 or 1); at a map value of 0.5,
        ``exp(-log_base(2) / T)``: 0.5 in nats with T = 1.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.array([0.0, 0.5, 1.0], dtype=np.float32).reshape(1, 1, 1, 3)
    >>> entropy_weights(m).astype(float).round(3).ravel().tolist()
    [1.0, 0.5, 1.0]
    >>> entropy_weights(m, base=2).astype(float).round(3).ravel().tolist()
    [1.0, 0.368, 1.0]
    """
    _base_value(base)
    _check_temperature(temperature)
    return _chunked(lambda m: _weights(m, eps, base, temperature), maps, keeps_layers=True)


def minmax_per_slice(u: torch.Tensor) -> torch.Tensor:
    """``(u - min) / (max - min)`` per slice of [B, H, W]; a constant slice is returned unchanged."""
    lo = u.amin(dim=(1, 2), keepdim=True)
    hi = u.amax(dim=(1, 2), keepdim=True)
    span = hi - lo
    ok = span > 0
    return torch.where(ok, (u - lo) / torch.where(ok, span, torch.ones_like(span)), u)


def _umcam(m: torch.Tensor, eps: float, normalise: bool, base: str | float = "e",
           temperature: float = 1.0) -> torch.Tensor:
    m = m.clamp(0.0, 1.0)
    w = _weights(m, eps, base, temperature)
    u = (w * m).sum(dim=0) / (w.sum(dim=0) + eps)
    return minmax_per_slice(u) if normalise else u


def _average(m: torch.Tensor, normalise: bool) -> torch.Tensor:
    u = m.clamp(0.0, 1.0).mean(dim=0)
    return minmax_per_slice(u) if normalise else u


def umcam(maps: np.ndarray | torch.Tensor, eps: float = EPS, normalise: bool = True, base: str | float = "e",
          temperature: float = 1.0) -> np.ndarray | torch.Tensor:
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
    base, temperature
        The entropy's logarithm and temperature (see :func:`entropy_weights`); the defaults are
        the paper's reading and give exactly the original result.

    Returns
    -------
    ndarray (float32) or Tensor, shape (B, H, W)
        Fused maps in [0, 1].

    Examples
    --------
    Two layers on one 1 x 2 slice: where layer 0 is sure (0.0, 1.0) it outweighs layer 1 (0.5).

    >>> import numpy as np
    >>> m = np.array([[[[0.0, 1.0]]], [[[0.5, 0.5]]]], dtype=np.float32)
    >>> umcam(m, normalise=False).astype(float).round(3).tolist()
    [[[0.167, 0.833]]]
    >>> umcam(m).tolist()
    [[[0.0, 1.0]]]
    """
    _base_value(base)
    _check_temperature(temperature)
    return _chunked(lambda m: _umcam(m, eps, normalise, base, temperature), maps, keeps_layers=False)


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

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> m = np.array([[[[0.2, 0.8]]], [[[0.6, 0.4]]]], dtype=np.float32)   # 2 layers, one 1 x 2 slice
    >>> average_cam(m, normalise=False).astype(float).round(3).tolist()
    [[[0.4, 0.6]]]
    >>> average_cam(m).tolist()
    [[[0.0, 1.0]]]
    >>> tuple(average_cam(torch.from_numpy(m)).shape)                     # tensors in, tensors out
    (1, 1, 2)
    """
    return _chunked(lambda m: _average(m, normalise), maps, keeps_layers=False)


# ----------------------------------------------------------------------------- readings of Eq. 3-4
#: ``cam.umcam_norm`` values: how the per-layer maps are put into [0, 1] before Eq. 3.
NORMS = ("max", "minmax", "batch_max", "volume_max", "percentile")


def normalise_maps(maps: np.ndarray, rule: str = "max", peaks: np.ndarray | None = None,
                   groups: np.ndarray | None = None, percentile: float = 99.0) -> np.ndarray:
    """Re-normalise per-layer CAMs by one reading of "each map in [0, 1]" (``cam.umcam_norm``).

    Parameters
    ----------
    maps : ndarray, shape (N_layers, B, H, W)
        Maps as the study stores them: each upsampled map divided by its own maximum.
    rule : {"max", "minmax", "batch_max", "volume_max", "percentile"}
        ``max``: returned unchanged (the same array). ``minmax``: ``(M - min M) / (max M - min M)``
        per map (a constant map is left as it is). ``batch_max`` / ``volume_max``: the raw map
        ``M * peak`` divided by the largest peak of its group (``groups``: batch or volume of each
        slice), so a slice whose map is weak keeps a low map. ``percentile``: ``M / q`` with ``q``
        the map's ``percentile``-th percentile, clipped to 1 (``q = 0``: the map is kept).
    peaks : ndarray, shape (N_layers, B), optional
        Maximum of each raw map (:func:`umcam_lib.cam.gradcam.compute_cams` with
        ``return_peaks``); needed by ``batch_max`` and ``volume_max``.
    groups : ndarray, shape (B,), optional
        Group label of each slice (batch number or volume); needed with ``peaks``.
    percentile : float
        In (0, 100] (``cam.umcam_percentile``).

    Returns
    -------
    ndarray, float32 (the input itself for ``max``), shape (N_layers, B, H, W), in [0, 1]

    Examples
    --------
    >>> import numpy as np
    >>> m = np.array([[[[0.5, 1.0]], [[0.5, 1.0]]]], dtype=np.float32)   # 1 layer, 2 slices
    >>> normalise_maps(m, "minmax").ravel().tolist()
    [0.0, 1.0, 0.0, 1.0]
    >>> peaks = np.array([[2.0, 4.0]], dtype=np.float32)              # raw maxima of the 2 maps
    >>> normalise_maps(m, "batch_max", peaks, groups=np.array([0, 0])).ravel().tolist()
    [0.25, 0.5, 0.5, 1.0]
    """
    _check(maps)
    if rule == "max":
        return maps
    if rule not in NORMS:
        raise ValueError(f"cam.umcam_norm must be one of {NORMS}, got {rule!r}")
    m = np.asarray(maps, dtype=np.float32)
    if rule == "minmax":
        lo = m.min(axis=(2, 3), keepdims=True)
        hi = m.max(axis=(2, 3), keepdims=True)
        span = hi - lo
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(span > 0, (m - lo) / np.where(span > 0, span, 1), m).astype(np.float32)
    if rule == "percentile":
        if not 0 < float(percentile) <= 100:
            raise ValueError(f"cam.umcam_percentile must be in (0, 100], got {percentile!r}")
        q = np.percentile(m.reshape(*m.shape[:2], -1), float(percentile), axis=2)[..., None, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(q > 0, np.minimum(m / np.where(q > 0, q, 1), 1.0), m).astype(np.float32)
    if peaks is None or groups is None:
        raise ValueError(f"cam.umcam_norm={rule!r} needs the maps' raw peaks and a group per slice")
    peaks = np.asarray(peaks, dtype=np.float32)
    groups = np.asarray(groups)
    if peaks.shape != m.shape[:2] or groups.shape != (m.shape[1],):
        raise ValueError(f"peaks must be {m.shape[:2]} and groups ({m.shape[1]},), got {peaks.shape} and {groups.shape}")
    top = np.zeros_like(peaks)
    for g in np.unique(groups):
        sel = groups == g
        top[:, sel] = peaks[:, sel].max(axis=1, keepdims=True)
    scale = np.where(top > 0, peaks / np.where(top > 0, top, 1), 0.0).astype(np.float32)
    return (m * scale[..., None, None]).astype(np.float32)


def norm_groups(rule: str, rows: np.ndarray, volumes: np.ndarray, batch_size: int) -> np.ndarray | None:
    """Group of each slice for ``batch_max`` (``row // batch_size``: the batches in which the maps
    of a stack are computed) or ``volume_max`` (the slice's volume); ``None`` for other rules.

    Examples
    --------
    >>> import numpy as np
    >>> norm_groups("batch_max", np.arange(5), np.zeros(5, int), 2).tolist()
    [0, 0, 1, 1, 2]
    """
    rows = np.asarray(rows)
    if rule == "batch_max":
        return rows // int(batch_size)
    if rule == "volume_max":
        return np.asarray(volumes)[rows]
    return None


def reading_of(cam: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :func:`fuse_reading` from a (checked) ``cam`` section."""
    return {"norm": cam.get("umcam_norm", "max"), "percentile": float(cam.get("umcam_percentile", 99.0)),
            "base": cam.get("entropy_base", "e"), "temperature": float(cam.get("entropy_temperature", 1.0)),
            "final_norm": cam.get("umcam_final_norm", "minmax")}


def fuse_reading(maps: np.ndarray, fusion: str = "umcam", norm: str = "max", percentile: float = 99.0,
                 base: str | float = "e", temperature: float = 1.0, final_norm: str = "minmax",
                 peaks: np.ndarray | None = None, groups: np.ndarray | None = None) -> np.ndarray:
    """Average-CAM or UM-CAM under one reading of Eq. 3-4 (see the module docstring).

    Parameters
    ----------
    maps : ndarray, shape (N_layers, B, H, W)
        Per-layer maps, each divided by its own maximum.
    fusion : {"umcam", "average_cam"}
        Average-CAM takes the same normalisation (the entropy options do not apply to it).
    norm, percentile, peaks, groups
        See :func:`normalise_maps`.
    base, temperature
        See :func:`entropy_weights`.
    final_norm : {"minmax", "none"}
        Min-max normalise the fused slice (the authors' code) or not (Eq. 4 as printed).

    Returns
    -------
    ndarray, float32, shape (B, H, W)
        With every option at its default, exactly :func:`umcam` (or :func:`average_cam`).

    Examples
    --------
    >>> import numpy as np
    >>> m = np.array([[[[0.0, 1.0]]], [[[0.5, 0.5]]]], dtype=np.float32)
    >>> bool((fuse_reading(m) == umcam(m)).all())
    True
    >>> fuse_reading(m, final_norm="none", temperature=0.5).astype(float).round(3).tolist()
    [[[0.1, 0.9]]]
    """
    if final_norm not in ("minmax", "none"):
        raise ValueError(f"cam.umcam_final_norm must be 'minmax' or 'none', got {final_norm!r}")
    m = normalise_maps(maps, norm, peaks=peaks, groups=groups, percentile=percentile)
    normalise = final_norm == "minmax"
    if fusion == "average_cam":
        return np.asarray(average_cam(m, normalise=normalise))
    if fusion == "umcam":
        return np.asarray(umcam(m, normalise=normalise, base=base, temperature=temperature))
    raise ValueError(f"fusion must be 'umcam' or 'average_cam', got {fusion!r}")


# ----------------------------------------------------------------------------- LayerCAM fusion
#: ``cam.layercam_fusion`` values.
LAYERCAM_RULES = ("max", "sum")


def layercam_fusion(maps: np.ndarray | torch.Tensor, rule: str = "max", gamma: float = 2.0,
                    normalise: bool = True) -> np.ndarray | torch.Tensor:
    """Fuse per-layer LayerCAM maps as the LayerCAM paper does (Jiang et al., IEEE TIP 2021).

    Each map (already divided by its maximum) is first stretched by ``tanh(gamma * M)``: shallow
    LayerCAM maps have a few strong pixels and many weak ones, and the stretch lifts the weak
    object pixels before the layers are combined. The layers are then combined pixel by pixel,
    by the element-wise **maximum** (default) or the **sum**, and the result is min-max normalised
    per slice like the other fused maps.

    The maximum is the default because every stretched map is in [0, 1] on its own scale: the
    maximum keeps the strongest evidence of any layer at a pixel and cannot turn many weak
    responses into a strong one, whereas a sum lets the diffuse texture of several shallow layers
    add up where none of them is confident. ``rule="sum"`` is kept so both can be measured.

    Parameters
    ----------
    maps : ndarray or Tensor, shape (N_layers, B, H, W)
        Per-layer LayerCAM maps in [0, 1] (``compute_cams(..., weighting="layercam")``).
    rule : {"max", "sum"}
        ``cam.layercam_fusion``.
    gamma : float
        Stretch of ``tanh(gamma * M)`` (``cam.layercam_gamma``; the paper's 2); 0 = no stretch.
    normalise : bool
        Final per-slice min-max normalisation.

    Returns
    -------
    Same kind as ``maps``, float32, shape (B, H, W), in [0, 1]

    Examples
    --------
    >>> import numpy as np
    >>> m = np.array([[[[0.2, 1.0]]], [[[0.6, 0.1]]]], dtype=np.float32)
    >>> layercam_fusion(m, normalise=False).astype(float).round(3).tolist()
    [[[0.834, 0.964]]]
    >>> layercam_fusion(m).tolist()
    [[[0.0, 1.0]]]
    """
    if rule not in LAYERCAM_RULES:
        raise ValueError(f"cam.layercam_fusion must be one of {LAYERCAM_RULES}, got {rule!r}")
    if float(gamma) < 0:
        raise ValueError(f"cam.layercam_gamma must be >= 0, got {gamma!r}")

    def fuse(m: torch.Tensor) -> torch.Tensor:
        m = m.clamp(0.0, 1.0)
        if float(gamma) > 0:
            m = torch.tanh(float(gamma) * m)
        u = m.amax(dim=0) if rule == "max" else m.sum(dim=0)
        return minmax_per_slice(u) if normalise else u

    return _chunked(fuse, maps, keeps_layers=False)


#: Fusion rules by name (keys are the map names under ``runs/<profile>/cams``). ``layercam`` fuses
#: LayerCAM maps, the two others Grad-CAM maps.
FUSIONS: dict[str, Callable[..., np.ndarray | torch.Tensor]] = {"average_cam": average_cam, "umcam": umcam,
                                                                 "layercam": layercam_fusion}
