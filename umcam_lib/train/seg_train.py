"""The training loop of the segmentation UNet (METHOD Eq. 8), resumable and seeded.

Model selection: after each validated epoch every slice of every validation volume is
predicted (in batches) and the mean 3D DSC over validation volumes is computed; ``best.pt``
keeps the best epoch. ``seg.epochs`` is a cap: with ``seg.patience`` a run stops after that many
validations without a better score, and with ``seg.plateau_decay`` each such validation also
lowers the learning rate, so a run ends on a plateau rather than at a fixed budget. With
``seg.ema`` the network validated, kept and returned is an exponential moving average of the
weights (updated after every step), which smooths the epoch-to-epoch swings of a noisy,
heavily augmented run. The validation score that chooses the epoch is computed without
``seg.tta`` (the test-time augmentation of reported predictions, eight times the cost). The
test split is never looked at during training.

The ``seg`` section's keys, defaults and allowed values are those of
:class:`umcam_lib.config.SegParams`; :func:`check_seg_config` checks a section against them.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from .. import runtime
from ..config.schema import SegParams, check_choice, check_section
from ..data import SliceSet
from ..losses import eq8_loss
from ..models.unet import build_unet
from ..paths import resolve
from ..scoring import evaluate_volumes
from .augment import augment_segmentation_batch, random_patches
from .common import (TrainState, adopt, donor_runs, load_best, make_optimizer, note_in_best, resume, save_best,
                     save_last, weight_average)
from .seg_predict import predict_split, variant_dir
from .seg_targets import training_set
from ..hashing import array_hash, value_hash

def check_seg_config(cfg: SegParams | Mapping[str, Any]) -> SegParams:
    """The ``seg`` section checked against the schema, missing keys at their defaults
    (:func:`umcam_lib.config.check_section`; a bad value raises ``ParameterError``).

    The keys (:class:`umcam_lib.config.SegParams`): ``optimizer`` (``sgd``: the paper's SGD with
    ``momentum``; ``adamw``: AdamW with ``momentum`` as beta1, for short CPU budgets),
    ``epoch_slices`` (training slices drawn per epoch; null = all), ``positive_fraction`` (share
    of positive slices in each epoch's draw; null = as they come, the paper's uniform sampling),
    ``val_every`` (validate every k epochs and at the last), ``eval_batch_size``, ``patience``
    (early stopping: stop after this many validations without a better validation DSC; null =
    train all ``epochs``, which is then the cap), ``loss_main`` (the reading of Eq. 8:
    :mod:`umcam_lib.losses`), ``channels_last`` (memory format of the UNet on the CPU; the same
    numbers up to float rounding, faster on some CPUs), ``cpu_bf16`` (bfloat16 autocast of the
    training steps on a CPU with native bfloat16, :func:`umcam_lib.runtime.autocast`; validation
    and reported predictions stay float32; ignored on CUDA, where ``amp`` decides), ``postprocess`` (``none`` or ``lcc``: keep
    the largest 3D connected component of each predicted volume), ``plateau_decay`` (multiply the
    learning rate by this factor after every validation that does not beat the best so far; null
    = constant learning rate), ``lr_schedule`` (``cosine``: the learning rate of epoch ``e`` is
    ``lr * (1 + cos(pi * e / epochs)) / 2``, annealed to zero by the last epoch; not combined with
    ``plateau_decay``), ``ema`` (decay of an exponential moving average of the weights, updated
    every step: validation, ``best.pt`` and the returned UNet use the average; null = the raw
    weights), ``tta`` (predictions reported and written are averaged over the 8 right-angle
    rotations and flips of each slice; epochs are chosen without it, and changing it retrains
    nothing: it is recorded in ``best.pt`` only), ``patch`` (train on random square patches of this many pixels,
    :func:`umcam_lib.train.augment.random_patches`; null = whole slices), ``min_epochs`` (a warm-up: no early stop and no decay before this
    many epochs, while every prediction is still empty), and the recipe ``width, epochs,
    batch_size, lr, momentum, weight_decay, lambda_spl, soft_labels``.
    """
    return check_section("seg", cfg)


def _fingerprint(rows: np.ndarray, *arrays: np.ndarray | None, extra: Any = None) -> str:
    """Short hash of the training rows, their targets (as float16) and ``extra`` (resume check)."""
    targets = (np.asarray(a, dtype=np.float16) for a in arrays if a is not None)
    return value_hash([array_hash(np.asarray(rows, dtype=np.int64), *targets), extra])

def _val_score(model: nn.Module, slices: SliceSet, dev: torch.device, amp: bool, batch_size: int,
               postprocess: str = "none") -> float:
    rows, probs = predict_split(model, slices, "val", dev, amp, batch_size)
    return float(evaluate_volumes(slices, "val", rows, probs > 0.5, postprocess=postprocess)["dsc"].mean())

def stale_validations(history: Sequence[Mapping[str, Any]], best_epoch: int) -> int:
    """Validated epochs after ``best_epoch`` (the early-stopping counter, rebuilt from a history)."""
    return sum(1 for h in history if int(h["epoch"]) > int(best_epoch) and not np.isnan(float(h["val_dsc"])))

def _permutations(items: np.ndarray, count: int, gen: torch.Generator) -> np.ndarray:
    """``count`` items drawn by concatenating seeded permutations of ``items`` (each item once per round)."""
    rounds = -(-count // max(len(items), 1))
    return np.concatenate([items[torch.randperm(len(items), generator=gen).numpy()] for _ in range(rounds)])[:count]

def epoch_order(labels: np.ndarray, seed: int, epoch: int, take: int | None = None,
                positive_fraction: float | None = None) -> np.ndarray:
    """Positions (into the training rows) of one epoch's slices, in training order.

    Parameters
    ----------
    labels : ndarray, shape (n,)
        Image-level labels of the training rows.
    seed, epoch : int
        The order depends on these only, so a resumed run repeats an uninterrupted one.
    take : int, optional
        Slices per epoch (``None``: all n).
    positive_fraction : float, optional
        Share of positive slices among them (drawn round-robin through seeded permutations of
        the positives and of the negatives); ``None``: a plain permutation of all rows.
    """
    gen = runtime.generator(seed * 1_000_003 + epoch)
    n = len(labels)
    count = n if take is None else int(take)
    if positive_fraction is None:
        return _permutations(np.arange(n), count, gen)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels != 1)
    n_pos = int(round(count * float(positive_fraction))) if len(neg) else count
    n_pos = n_pos if len(pos) else 0
    chosen = np.concatenate([_permutations(pos, n_pos, gen), _permutations(neg, count - n_pos, gen)])
    return chosen[torch.randperm(len(chosen), generator=gen).numpy()]


@dataclass(frozen=True)
class TrainingData:
    """The training slices of one variant as tensors, and the reading of Eq. 8 that scores them.

    Attributes
    ----------
    images : torch.Tensor, shape (n, H, W)
        The training slices (float32, on the CPU; each batch is moved to the device).
    labels : torch.Tensor, shape (n, H, W)
        The main term's labels (:func:`umcam_lib.train.seg_targets.training_set`; already
        thresholded for hard labels).
    spl : torch.Tensor or None
        The SPL term's labels (None: no SPL term).
    lamb : float
        The SPL term's weight (Eq. 8's lambda).
    main : str
        The reading of Eq. 8 (``seg.loss_main``; :func:`umcam_lib.losses.eq8_loss`).
    """

    images: torch.Tensor
    labels: torch.Tensor
    spl: torch.Tensor | None
    lamb: float
    main: str


def train_epoch(model: nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, data: TrainingData,
                order: np.ndarray, cfg: SegParams, dev: torch.device, amp: bool, aug_seed: int,
                average: nn.Module | None = None) -> float:
    """One pass over an epoch's training batches; return the epoch's mean loss.

    Each batch: augmentation (``seg.augment``, then ``seg.patch``), forward (under
    :func:`umcam_lib.runtime.autocast`), the Eq. 8 loss, backward through ``scaler``, an
    optimiser step and, with ``average``, an update of the weight average.

    Parameters
    ----------
    model : torch.nn.Module
        The UNet (put in train mode here).
    opt : torch.optim.Optimizer
    scaler : torch.amp.GradScaler
        Gradient scaling (disabled unless float16 autocast on CUDA).
    data : TrainingData
        The training slices and their labels.
    order : ndarray of int
        Positions into ``data`` in training order (:func:`epoch_order`), cut into batches of
        ``seg.batch_size``.
    cfg : SegParams
        The checked ``seg`` section.
    dev : torch.device
    amp : bool
        Float16 autocast (:func:`umcam_lib.runtime.use_amp`).
    aug_seed : int
        Seeds the generator of the augmentations and patches.
    average : torch.nn.Module, optional
        The weight average (:func:`umcam_lib.train.common.weight_average`), updated after every step.

    Returns
    -------
    float
        The mean loss over the epoch's slices (0 when there are none).
    """
    fmt = _memory_format(cfg)
    bs = cfg.batch_size
    model.train()
    aug_gen = runtime.generator(aug_seed)
    total, count = 0.0, 0
    for i in range(0, len(order), bs):
        b = torch.from_numpy(order[i:i + bs])
        x, yb = data.images[b][:, None].to(dev).contiguous(memory_format=fmt), data.labels[b].to(dev)
        sb = data.spl[b].to(dev) if data.spl is not None else None
        if cfg.augment:
            x, (yb, sb) = augment_segmentation_batch(x, [yb, sb], aug_gen, gamma=tuple(cfg.augment_gamma),
                                                     scale=tuple(cfg.augment_scale),
                                                     resolution=tuple(cfg.augment_resolution),
                                                     bias=cfg.augment_bias, noise=cfg.augment_noise)
            x = x.contiguous(memory_format=fmt)
        if cfg.patch is not None:
            x, (yb, sb) = random_patches(x, [yb, sb], int(cfg.patch), aug_gen, focus=yb)
            x = x.contiguous(memory_format=fmt)
        with runtime.autocast(dev, amp, cpu_bf16=cfg.cpu_bf16):
            logits = model(x)
        loss = eq8_loss(logits, yb, sb, data.lamb, soft=True, main=data.main)  # labels already thresholded if hard
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if average is not None:
            average.update_parameters(model)
        total += float(loss.detach()) * len(b)
        count += len(b)
    return total / max(count, 1)


def _memory_format(cfg: SegParams) -> torch.memory_format:
    return torch.channels_last if cfg.channels_last else torch.contiguous_format


def _check_slice_size(slices: SliceSet) -> None:
    if min(slices.images.shape[1:]) < 32:
        raise ValueError(f"the UNet needs slices of at least 32 x 32 pixels (four poolings, instance norm), got "
                         f"{slices.images.shape[1:]}: raise data.image_size")


def _anneal_lr(opt: torch.optim.Optimizer, cfg: SegParams, epoch: int) -> None:
    """``seg.lr_schedule: cosine``: set the learning rate of (0-based) ``epoch``."""
    if cfg.lr_schedule == "cosine":
        for group in opt.param_groups:
            group["lr"] = cfg.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / cfg.epochs))


def _validation_due(epoch: int, cfg: SegParams, has_val: bool) -> bool:
    """Whether (0-based) ``epoch`` is validated: every ``seg.val_every`` epochs and the last."""
    return has_val and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs)


def _patience_spent(state: TrainState, patience: int | None, min_epochs: int) -> bool:
    """Early stopping: ``patience`` validations without a better score, after the warm-up."""
    return patience is not None and state.best_epoch >= 0 and state.epoch >= min_epochs and \
        stale_validations(state.history, state.best_epoch) >= patience


def _keep_epoch(out: Path, state: TrainState, row: dict[str, Any], has_val: bool, cfg: SegParams,
                model: nn.Module, scored: nn.Module, opt: torch.optim.Optimizer, config: dict[str, Any],
                average: nn.Module | None) -> None:
    """Record an epoch's ``row`` in ``state``; keep ``best.pt`` when it scores best, else decay the
    learning rate on a plateau (``seg.plateau_decay``); write ``last.pt``."""
    epoch, val = row["epoch"] - 1, row["val_dsc"]
    score = val if has_val else float(epoch)
    state.epoch = epoch + 1
    state.history.append(row)
    if not np.isnan(score) and score > state.best_score:
        state.best_score, state.best_epoch = score, epoch + 1
        save_best(out, scored, state, config)
    elif has_val and not np.isnan(val) and cfg.plateau_decay is not None and epoch + 1 >= cfg.min_epochs:
        for group in opt.param_groups:  # saved with the optimiser in last.pt, so a resumed run keeps it
            group["lr"] *= float(cfg.plateau_decay)
    save_last(out, model, opt, state, config, average=average)


def train_variant(name: str, slices: SliceSet, targets: Mapping[str, Any], seg_cfg: SegParams | Mapping[str, Any],
                  run_dir: str | Path, device: str | torch.device = "auto", amp: bool = True, seed: int = 0,
                  out_dir: str | Path | None = None, progress: bool = True,
                  on_epoch: Callable[[int, nn.Module], None] | None = None) -> nn.Module:
    """Train one UNet on pseudo labels; resumable; return it with its best validation weights.

    Parameters
    ----------
    name : str
        Variant name (a folder under ``run_dir/seg`` unless ``out_dir`` is given).
    slices : SliceSet
        Training slices are those of split ``train``; validation volumes choose the epoch.
    targets : dict
        ``index``, ``maps`` (and optionally ``spl``, ``lambda``): see the module docstring.
    seg_cfg : dict
        The ``seg`` parameter section (:func:`check_seg_config`). ``epoch_slices`` and
        ``positive_fraction`` shape each epoch's draw of training slices (:func:`epoch_order`);
        ``val_every`` sets how often the validation volumes are scored.
    run_dir : path
        The run folder.
    device : {"auto", "cpu", "cuda"} or torch.device
    amp : bool
        Float16 autocast with gradient scaling, on CUDA only (the scaler's state is not part of
        ``last.pt``: a resumed CUDA run restarts it).
    seed : int
        Seeds the initial weights and the order of slices (bit-identical runs on the CPU).
    out_dir : path, optional
        Where ``last.pt``, ``best.pt`` and ``history.csv`` go (default ``run_dir/seg/<name>``).
    progress : bool
        Show a tqdm bar over epochs.
    on_epoch : callable, optional
        Called as ``on_epoch(epoch, model)`` after each epoch (1-based; the model in eval mode,
        put back in train mode afterwards; the weight average with ``seg.ema``): lets a
        benchmark trace a learning curve.

    Returns
    -------
    torch.nn.Module
        The UNet (on ``device``, eval mode) with the weights of the best validation epoch
        (mean 3D DSC over validation volumes; the last epoch when there is no validation split).
    """
    cfg = check_seg_config(seg_cfg)
    dev = runtime.as_device(device)
    use_amp = runtime.use_amp(dev, amp)
    out = resolve(out_dir) if out_dir is not None else variant_dir(run_dir, name)
    _check_slice_size(slices)
    rows, y, y_spl = training_set(slices, targets, soft=cfg.soft_labels)
    lamb = float(targets.get("lambda", cfg.lambda_spl)) if y_spl is not None else 0.0
    main = str(check_choice("seg.loss_main", targets.get("main", cfg.loss_main)))
    has_val = len(slices.volume_ids("val")) > 0
    patience = None if cfg.patience is None or not has_val else int(cfg.patience)

    # the network, its optimiser and weight average, and where a run of this recipe stands
    runtime.seed_everything(seed)
    model = build_unet(cfg.width).to(dev, memory_format=_memory_format(cfg))
    opt = make_optimizer(model, cfg, "seg")
    scaler = torch.amp.GradScaler(dev.type, enabled=use_amp)
    config = {"variant": name, "seed": int(seed), "lambda": lamb, **cfg.trained(),
              "main": main if y_spl is not None else "umcam", "postprocess": cfg.postprocess,
              "targets": _fingerprint(rows, y, y_spl, extra=lamb)}
    average = weight_average(model, float(cfg.ema)) if cfg.ema is not None else None
    scored = average.module if average is not None else model  # the network validated and kept
    if out_dir is None:  # a companion run may already have trained this very network
        adopt(out, [variant_dir(d, name) for d in donor_runs()], model, config)
    state = resume(out, model, opt, config=config, average=average)
    data = TrainingData(torch.from_numpy(np.ascontiguousarray(slices.images[rows], dtype=np.float32)),
                        torch.from_numpy(y), torch.from_numpy(y_spl) if y_spl is not None else None, lamb, main)

    bar = tqdm(total=cfg.epochs, initial=state.epoch, desc=f"UNet {name}", disable=not progress, leave=True)
    while state.epoch < cfg.epochs and not _patience_spent(state, patience, cfg.min_epochs):
        t0, epoch = time.perf_counter(), state.epoch
        order = epoch_order(slices.labels[rows], seed, epoch, cfg.epoch_slices, cfg.positive_fraction)
        _anneal_lr(opt, cfg, epoch)
        loss = train_epoch(model, opt, scaler, data, order, cfg, dev, use_amp, seed * 1_000_003 + epoch + 7, average)
        val = float("nan")
        if _validation_due(epoch, cfg, has_val):
            val = _val_score(scored, slices, dev, use_amp, cfg.eval_batch_size, cfg.postprocess)
        row = {"epoch": epoch + 1, "loss": loss, "val_dsc": val, "seconds": time.perf_counter() - t0}
        _keep_epoch(out, state, row, has_val, cfg, model, scored, opt, config, average)
        if on_epoch is not None:
            model.eval()
            on_epoch(state.epoch, scored.eval())
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", val_dsc=f"{val:.1f}", best=f"{state.best_score:.1f}")
    bar.close()
    if state.epoch < cfg.epochs and progress:
        print(f"UNet {name}: early stop after epoch {state.epoch} (best validation DSC {state.best_score:.1f} "
              f"at epoch {state.best_epoch}, {patience} validations without improvement)")
    load_best(out, model, map_location=dev)
    note_in_best(out, tta=cfg.tta)  # how its predictions are reported; changing it retrains nothing
    return model.eval()
