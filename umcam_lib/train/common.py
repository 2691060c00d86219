"""Checkpoints that survive interruption, and the history of a training run.

A run folder holds ``last.pt`` (model, optimiser, epoch, history, best score: everything needed
to resume) and ``best.pt`` (model weights of the best validation epoch plus that score). Both
are written atomically, so an interrupted run resumes from the last finished epoch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..io import atomic_path
from ..paths import resolve


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


def _save(obj: dict[str, Any], path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_last(run_dir: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
              state: TrainState, config: dict[str, Any] | None = None,
              scheduler: Any = None) -> None:
    """Write ``last.pt`` (resumable state) and ``history.csv`` under ``run_dir``."""
    run_dir = resolve(run_dir)
    _save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
           "scheduler": scheduler.state_dict() if scheduler is not None else None,
           "state": state.__dict__, "config": config or {}}, run_dir / "last.pt")
    with atomic_path(run_dir / "history.csv") as tmp:
        pd.DataFrame(state.history).to_csv(tmp, index=False)


def save_best(run_dir: str | Path, model: torch.nn.Module, state: TrainState,
              config: dict[str, Any] | None = None) -> None:
    """Write ``best.pt``: the weights of the current best epoch."""
    _save({"model": model.state_dict(), "epoch": state.best_epoch, "score": state.best_score,
           "config": config or {}}, resolve(run_dir) / "best.pt")


def resume(run_dir: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
           config: dict[str, Any] | None = None, scheduler: Any = None) -> TrainState:
    """Load ``last.pt`` into ``model`` and ``optimizer`` when it exists and its config matches.

    Returns a fresh :class:`TrainState` when there is nothing (or nothing compatible) to resume.
    """
    path = resolve(run_dir) / "last.pt"
    if not path.is_file():
        return TrainState()
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if config is not None and ckpt.get("config") != config:
        print(f"{path}: saved with other settings; starting a new run")
        return TrainState()
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None and ckpt.get("scheduler") is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    state = TrainState(**ckpt["state"])
    print(f"resuming {path.parent} after epoch {state.epoch} (best {state.best_score:.4f} at epoch {state.best_epoch})")
    return state


def load_best(run_dir: str | Path, model: torch.nn.Module, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load ``best.pt`` weights into ``model``; return the checkpoint's metadata."""
    path = resolve(run_dir) / "best.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: train this model first")
    ckpt = torch.load(path, map_location=map_location, weights_only=False)
    model.load_state_dict(ckpt["model"])
    return {k: v for k, v in ckpt.items() if k != "model"}
