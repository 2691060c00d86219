"""Device, seeding, threads and mixed precision: the small pieces every training step shares."""
from __future__ import annotations

import contextlib
import os
import random
from typing import Iterator

import numpy as np
import torch


def select_device(preference: str = "auto") -> torch.device:
    """Return the torch device to use.

    Parameters
    ----------
    preference : {"auto", "cpu", "cuda"}
        ``auto`` picks CUDA when it is available, else the CPU. ``cuda`` fails clearly when no
        GPU is present.
    """
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was requested but torch sees no CUDA device; use device='auto' or 'cpu'")
    if preference not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {preference!r}")
    return torch.device(preference)


def as_device(device: str | torch.device = "auto") -> torch.device:
    """A :class:`torch.device` from a preference (:func:`select_device`) or a device, returned as is.

    Examples
    --------
    >>> as_device("cpu"), as_device(torch.device("cpu"))
    (device(type='cpu'), device(type='cpu'))
    """
    return device if isinstance(device, torch.device) else select_device(device)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put ``model`` in eval mode for the block, then restore the mode it had.

    Examples
    --------
    >>> net = torch.nn.Dropout().train()
    >>> with eval_mode(net):
    ...     net.training
    False
    >>> net.training
    True
    """
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch; on the CPU, ask torch for deterministic algorithms."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def set_threads(n: int | None) -> None:
    """Limit torch's intra-op threads (``None`` or 0 leaves torch's default)."""
    if n:
        torch.set_num_threads(int(n))
        os.environ.setdefault("OMP_NUM_THREADS", str(int(n)))


def use_amp(device: torch.device, amp: bool) -> bool:
    """Mixed precision is used only on CUDA and only when asked for."""
    return bool(amp) and device.type == "cuda"


def cpu_bf16_supported() -> bool:
    """True when the CPU has native bfloat16 arithmetic (AVX-512 BF16 or AMX) that oneDNN uses."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool, cpu_bf16: bool = False) -> Iterator[None]:
    """Mixed precision of a forward pass.

    Parameters
    ----------
    device : torch.device
    enabled : bool
        On CUDA: ``torch.autocast`` to float16 (the ``amp`` parameter, through :func:`use_amp`).
    cpu_bf16 : bool
        On the CPU: ``torch.autocast`` to bfloat16 (convolutions and matrix products in
        bfloat16 through oneDNN, reductions and losses in float32; ``seg.cpu_bf16``,
        ``classifier.cpu_bf16``). Ignored on CUDA, where ``enabled`` decides, and a no-op on a
        CPU without native bfloat16 (:func:`cpu_bf16_supported`), where it would be slower.
    """
    if enabled and device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.float16):
            yield
    elif cpu_bf16 and device.type == "cpu" and cpu_bf16_supported():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            yield
    else:
        yield


def generator(seed: int) -> torch.Generator:
    """A CPU torch generator seeded with ``seed`` (for DataLoader shuffling)."""
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def worker_count(threads: int | None) -> int:
    """Worker processes for CPU-parallel steps: ``threads``, or every core when it is null / 0."""
    return max(1, int(threads)) if threads else max(1, os.cpu_count() or 1)
