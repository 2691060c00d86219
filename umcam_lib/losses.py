"""The segmentation loss of the paper, METHOD Eq. 8, in both of its readings.

The UNet of notebooks 06 and 07 is trained with a cross-entropy against two labels of each
positive slice, the UM-CAM pseudo mask ``Y_UM`` and the SPL ``Y_SPL``::

    L = CE(P, Y_UM) + lambda CE(P, Y_SPL)        reading "umcam" (METHOD.md)
    L = CE(P, Y_SPL) + lambda CE(P, Y_UM)        reading "spl"

The paper's text lost the symbols of the equation, so which label carries the weight 1 is not
known; ``seg.loss_main`` chooses. With an optimiser that ignores the scale of the loss
(Adam/AdamW), only the share of the SPL term matters (:func:`spl_share`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .config.schema import check_choice, choices

#: The two readings of Eq. 8 (``seg.loss_main``): which label carries the weight 1.
LOSS_MAIN: tuple[str, ...] = choices("seg.loss_main")

#: The paper's setting: beta = 4 (Eq. 6-7), lambda = 0.1 (Eq. 8), read as CE(UM-CAM) + lambda CE(SPL).
PAPER_BETA, PAPER_LAMBDA, PAPER_MAIN = 4.0, 0.1, "umcam"


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pixel-mean cross-entropy of 2-class logits against a foreground probability map.

    Parameters
    ----------
    logits : Tensor, shape (B, 2, H, W)
        Background and foreground logits (computed in float32 here).
    target : Tensor, shape (B, H, W)
        Foreground probability in [0, 1]; the background target is ``1 - target``.

    Returns
    -------
    Tensor
        Scalar ``-mean( y log p_fg + (1 - y) log p_bg )`` (natural log).
    """
    if logits.ndim != 4 or logits.shape[1] != 2 or logits.shape[0] != target.shape[0] \
            or logits.shape[2:] != target.shape[1:]:
        raise ValueError(f"logits must be (B, 2, H, W) and target (B, H, W), got {tuple(logits.shape)} "
                         f"and {tuple(target.shape)}")
    logp = F.log_softmax(logits.float(), dim=1)
    y = target.float()
    return -(y * logp[:, 1] + (1.0 - y) * logp[:, 0]).mean()


def _check_main(main: str) -> None:
    if main not in LOSS_MAIN:
        check_choice("seg.loss_main", main)


def eq8_loss(logits: torch.Tensor, y_um: torch.Tensor, y_spl: torch.Tensor | None = None,
             lamb: float = 0.0, soft: bool = True, main: str = "umcam") -> torch.Tensor:
    """METHOD Eq. 8 in either reading.

    ``main="umcam"``: ``CE(P, Y_UM) + lambda * CE(P, Y_SPL)`` (the reading of METHOD.md);
    ``main="spl"``: ``CE(P, Y_SPL) + lambda * CE(P, Y_UM)`` (the equation's symbols were lost,
    and this reading is as consistent with the text). Without ``y_spl`` both are ``CE(P, Y_UM)``.
    With an optimiser that ignores the scale of the loss (Adam/AdamW), reading ``umcam`` at
    lambda equals reading ``spl`` at 1 / lambda: only the share ``w`` of the SPL term matters
    (:func:`spl_share`).

    Parameters
    ----------
    logits : Tensor, shape (B, 2, H, W)
    y_um : Tensor, shape (B, H, W)
        First label (a pseudo mask, SPL or true mask, depending on the variant), in [0, 1].
    y_spl : Tensor, shape (B, H, W), optional
        Second label; ``None`` drops the second term.
    lamb : float
        Weight of the second term (the SPL under ``main="umcam"``, the UM-CAM under ``"spl"``).
    soft : bool
        ``True``: soft-label CE against the maps as given. ``False``: labels are first
        thresholded (``>= 0.5`` is foreground), i.e. ordinary hard-label CE.
    main : {"umcam", "spl"}
        Which label carries the weight 1 (``seg.loss_main``).
    """
    _check_main(main)
    if not soft:
        y_um = (y_um >= 0.5).float()
        y_spl = None if y_spl is None else (y_spl >= 0.5).float()
    if y_spl is None:
        return soft_cross_entropy(logits, y_um)
    first, second = (y_um, y_spl) if main == "umcam" else (y_spl, y_um)
    loss = soft_cross_entropy(logits, first)
    if lamb != 0:
        loss = loss + float(lamb) * soft_cross_entropy(logits, second)
    return loss


def spl_share(lamb: float, main: str = "umcam") -> float:
    """Share of the SPL term in Eq. 8, ``w`` in ``(1 - w) CE(UM) + w CE(SPL)`` up to a scale.

    ``lambda / (1 + lambda)`` under ``main="umcam"``, ``1 / (1 + lambda)`` under ``"spl"``.
    """
    lamb = float(lamb)
    _check_main(main)
    return lamb / (1.0 + lamb) if main == "umcam" else 1.0 / (1.0 + lamb)
