"""Checkpoints that survive interruption, and the history of a training run.

A run folder holds ``last.pt`` (model, optimiser, epoch, history, best score: everything needed
to resume) and ``best.pt`` (model weights of the best validation epoch plus that score). Both
are written atomically, so an interrupted run resumes from the last finished epoch.

A run is resumed only when it was made from the same data, code and recipe: the caller's
``config`` (recipe and data fingerprint) and the fingerprint of the training code must match,
and it must not have run more epochs than asked for. The training code is the module that
calls :func:`save_last` / :func:`resume` (``umcam_lib.train.classifier``,
``umcam_lib.train.seg_train``), the module defining the model's class, this module, and every
``umcam_lib`` module they import, transitively (:func:`training_code`); an edit elsewhere in
the library (``report.py``, a notebook) keeps the run resumable, an edit of any of these
starts it afresh. ``python -m umcam_lib.pipeline --force`` (environment variable
``UMCAM_FORCE=1``) starts every run afresh.

Checkpoints hold only tensors and plain Python values and are read with
``torch.load(..., weights_only=True)``: opening someone else's run folder cannot execute code.
"""
from __future__ import annotations

import numbers
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch

from ..config.schema import check_section
from ..io import atomic_path
from ..paths import resolve
from ..provenance import code_fingerprint

FORCE_ENV = "UMCAM_FORCE"
"""When this environment variable is ``"1"`` (``pipeline --force``), :func:`resume` starts afresh."""

DONORS_ENV = "UMCAM_DONOR_RUNS"
"""Run folders (``os.pathsep``-separated) whose trainings a run may take over (:func:`adopt`); the
pipeline sets it to a profile's companion runs while the profile itself runs."""


@dataclass
class TrainState:
    """Where a training run stands.

    Attributes
    ----------
    epoch : int
        Number of finished epochs (the next epoch to run has this index).
    best_score : float
        Best validation score so far (higher is better); ``-inf`` before the first.
    best_epoch : int
        Epoch index of ``best_score`` (-1 before the first).
    history : list of dict
        One dict of logged values per finished epoch.
    """

    epoch: int = 0
    best_score: float = float("-inf")
    best_epoch: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)


def plain(obj: Any) -> Any:
    """``obj`` with numpy scalars and arrays, tuples and paths turned into plain Python values
    (what ``torch.load(..., weights_only=True)`` accepts); tensors are kept."""
    if isinstance(obj, torch.Tensor) or obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, Mapping):  # a dict or a checked parameter section
        return {plain(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def make_optimizer(model: torch.nn.Module, cfg: Mapping[str, Any], section: str) -> torch.optim.Optimizer:
    """The optimiser of a training section (``classifier`` or ``seg``); one vocabulary for both.

    ``sgd``: SGD with ``momentum`` and L2 ``weight_decay`` (the paper's). ``adamw``: AdamW
    (decoupled ``weight_decay``) with ``momentum`` as its beta1 (beta2 0.999).

    Parameters
    ----------
    model : nn.Module
    cfg : mapping
        A checked section (:func:`umcam_lib.config.check_section`) with ``optimizer``, ``lr``,
        ``momentum`` and ``weight_decay``.
    section : str
        Its name, for the error message.
    """
    cfg = check_section(section, cfg)
    name, lr, wd, mom = cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, betas=(mom, 0.999), weight_decay=wd)
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=mom, weight_decay=wd)


def _save(obj: dict[str, Any], path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(plain(obj), tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by this module with ``weights_only=True``.

    Raises
    ------
    ValueError
        When the file holds anything but tensors and plain values (it may execute code if
        unpickled; it was not written by this study), naming the file.
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError (or RuntimeError) for unsafe content
        if "weights_only" in str(exc) or "Unpickl" in type(exc).__name__:
            raise ValueError(f"{path}: refused to load: the checkpoint holds objects other than tensors and "
                             f"plain values, and loading them could run code ({type(exc).__name__}); "
                             f"delete it if this study did not write it") from exc
        raise


def _caller_module() -> str:
    """Dotted name of the module of the first frame outside this one (the training loop)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    return str(frame.f_globals.get("__name__", "")) if frame is not None else ""


def training_code(model: torch.nn.Module | None = None, caller: str | None = None) -> str:
    """Fingerprint of the code a training run depends on (what :func:`resume` compares).

    Parameters
    ----------
    model : nn.Module, optional
        The network trained; the module defining its class is included (unwrapped from
        ``torch.compile``'s ``_orig_mod``).
    caller : str, optional
        Dotted name of the training module (default: the module calling into this one).

    Returns
    -------
    str
        :func:`umcam_lib.provenance.code_fingerprint` of that module, the model's module and
        this module: their source and that of every ``umcam_lib`` module they import,
        transitively.
    """
    roots = {__name__, caller if caller is not None else _caller_module()}
    if model is not None:
        roots.add(type(getattr(model, "_orig_mod", model)).__module__)
    return code_fingerprint(tuple(sorted(r for r in roots if r.split(".")[0] == __name__.split(".")[0])))


def _with_code(config: dict[str, Any] | None, model: torch.nn.Module | None) -> dict[str, Any]:
    return {**(config or {}), "code": training_code(model, _caller_module())}


def save_last(run_dir: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
              state: TrainState, config: dict[str, Any] | None = None,
              scheduler: Any = None, average: torch.nn.Module | None = None) -> None:
    """Write ``last.pt`` (resumable state) and ``history.csv`` under ``run_dir``.

    ``average`` is an optional moving average of the weights (:func:`weight_average`), saved
    beside the model so that a resumed run continues it.
    """
    run_dir = resolve(run_dir)
    _save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
           "scheduler": scheduler.state_dict() if scheduler is not None else None,
           "average": average.state_dict() if average is not None else None,
           "state": state.__dict__, "config": _with_code(config, model)}, run_dir / "last.pt")
    with atomic_path(run_dir / "history.csv") as tmp:
        pd.DataFrame(state.history).to_csv(tmp, index=False)


def save_best(run_dir: str | Path, model: torch.nn.Module, state: TrainState,
              config: dict[str, Any] | None = None) -> None:
    """Write ``best.pt``: the weights of the current best epoch."""
    _save({"model": model.state_dict(), "epoch": state.best_epoch, "score": state.best_score,
           "config": _with_code(config, model)}, resolve(run_dir) / "best.pt")


def donor_runs() -> list[Path]:
    """The run folders named in :data:`DONORS_ENV` (empty when it is unset)."""
    return [Path(p) for p in os.environ.get(DONORS_ENV, "").split(os.pathsep) if p]


def adopt(run_dir: str | Path, donors: list[Path], model: torch.nn.Module,
          config: dict[str, Any]) -> Path | None:
    """Take over another run folder's checkpoints of the same training, before :func:`resume`.

    When a profile and its companion train the same network on the same targets (the real
    profile's fully supervised UNet: the label unit changes the classifier only), the second
    run need not repeat it. A donor's files are copied here only when this folder has no
    ``last.pt`` of its own, ``--force`` is off, and the donor's ``last.pt`` was saved with the
    same ``config`` and training code (:func:`training_code`): the same test :func:`resume`
    applies, so the copy continues exactly as an uninterrupted run here would have.

    Parameters
    ----------
    run_dir : path
        This training's folder (``last.pt``, ``best.pt``, ``history.csv``).
    donors : list of path
        Folders of the same training in other runs, tried in order.
    model : nn.Module
        The network about to be trained (its class's module is part of the code compared).
    config : dict
        This run's recipe and data fingerprint, as given to :func:`resume`.

    Returns
    -------
    Path or None
        The donor whose checkpoints were copied, or None.
    """
    out = resolve(run_dir)
    if (out / "last.pt").is_file() or os.environ.get(FORCE_ENV) == "1":
        return None
    code = training_code(model, _caller_module())
    for donor in donors:
        src = resolve(donor)
        if src == out or not (src / "last.pt").is_file() or not (src / "best.pt").is_file():
            continue
        saved = dict(load_checkpoint(src / "last.pt").get("config") or {})
        if saved.pop("code", None) != code or saved != plain(config):
            continue
        for name in ("best.pt", "history.csv", "last.pt"):  # last.pt last: it is what resume trusts
            if (src / name).is_file():
                with atomic_path(out / name) as tmp:
                    shutil.copyfile(src / name, tmp)
        print(f"{out}: the same training (settings, data and code) ran in {src}; continuing from its checkpoints")
        return src
    return None


def resume(run_dir: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
           config: dict[str, Any] | None = None, scheduler: Any = None,
           epochs: int | None = None, average: torch.nn.Module | None = None) -> TrainState:
    """Load ``last.pt`` into ``model`` and ``optimizer`` when it may be continued.

    Parameters
    ----------
    run_dir : path
        Folder of ``last.pt``.
    model, optimizer : torch objects
        Receive the saved state.
    config : dict, optional
        The recipe and data fingerprint of this run; ``last.pt`` must have been saved with the
        same (and with the same training code, :func:`training_code`, added here).
    scheduler : optional
        A learning-rate scheduler to restore.
    epochs : int, optional
        The number of epochs asked for: a run that already went further is not resumed (its
        best epoch could be one the user did not ask for).
    average : nn.Module, optional
        A moving average of the weights (:func:`weight_average`) that receives its saved state.

    Returns
    -------
    TrainState
        The saved state, or a fresh one when there is nothing to resume, when it was saved with
        other settings, data or code, when it ran more than ``epochs`` epochs, or under
        ``--force`` (each case printed).
    """
    path = resolve(run_dir) / "last.pt"
    if not path.is_file():
        return TrainState()
    if os.environ.get(FORCE_ENV) == "1":
        print(f"{path}: --force: starting a new run")
        return TrainState()
    ckpt = load_checkpoint(path)
    saved = dict(ckpt.get("config") or {})
    if config is not None and saved.get("code") != training_code(model, _caller_module()):
        print(f"{path}: saved by another version of the training code (or of a module it imports); "
              f"starting a new run")
        return TrainState()
    saved.pop("code", None)
    if config is not None and saved != plain(config):
        print(f"{path}: saved with other settings or data; starting a new run")
        return TrainState()
    done = int((ckpt.get("state") or {}).get("epoch", 0))
    if epochs is not None and done > int(epochs):
        print(f"{path}: already ran {done} epochs, more than the {int(epochs)} asked for; starting a new run")
        return TrainState()
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None and ckpt.get("scheduler") is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    if average is not None and ckpt.get("average") is not None:
        average.load_state_dict(ckpt["average"])
    state = TrainState(**ckpt["state"])
    print(f"resuming {path.parent} after epoch {state.epoch} (best {state.best_score:.4f} at epoch {state.best_epoch})")
    return state


def note_in_best(run_dir: str | Path, **settings: Any) -> None:
    """Record prediction settings (not training settings) in ``best.pt``'s config.

    Settings that change how a trained model is *used* (``seg.tta``) must not restart its
    training, so they are left out of the config that :func:`resume` compares and written into
    ``best.pt`` here, where ``python -m umcam_lib.segment`` reads its defaults. The file is
    rewritten (atomically) only when a value differs.
    """
    path = resolve(run_dir) / "best.pt"
    ckpt = load_checkpoint(path)
    config = dict(ckpt.get("config") or {})
    if all(config.get(k) == v for k, v in settings.items()):
        return
    ckpt["config"] = {**config, **settings}
    _save(ckpt, path)


def weight_average(model: torch.nn.Module, decay: float) -> torch.nn.Module:
    """An exponential moving average of ``model``'s weights (``torch.optim.swa_utils``).

    After each optimisation step call ``average.update_parameters(model)``; the averaged
    network is ``average.module``. Each update moves the average a fraction ``1 - decay`` of
    the way to the current weights, so it spans about ``1 / (1 - decay)`` steps (0.99: the last
    100 or so). Buffers are averaged too.

    Parameters
    ----------
    model : nn.Module
        The network being trained (copied; the copy starts at its current weights).
    decay : float
        In (0, 1).
    """
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(float(decay)), use_buffers=True)


def load_best(run_dir: str | Path, model: torch.nn.Module, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load ``best.pt`` weights into ``model``; return the checkpoint's metadata."""
    path = resolve(run_dir) / "best.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: train this model first")
    ckpt = load_checkpoint(path, map_location=map_location)
    model.load_state_dict(ckpt["model"])
    return {k: v for k, v in ckpt.items() if k != "model"}
