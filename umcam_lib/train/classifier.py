"""Training and evaluating the slice classifier from image-level labels.

The recipe (paper section 3.1.2, METHOD section 6) is the ``classifier`` section of the
profile; its keys, defaults and allowed values are those of
:class:`umcam_lib.config.ClassifierParams`, and every function here checks the section with
:func:`umcam_lib.config.check_section` (keys it lacks take their defaults)::

    width, dilated, pretrained, batch_norm,     architecture (see umcam_lib.models.vgg); batch
    pooling, lse_r, input_norm, padding         norm and the rest are not in the paper
    epochs, batch_size                          200 and 32 in the paper
    optimizer, lr, momentum, weight_decay       "sgd" (the paper: 1e-3, 0.99, 5e-4) or "adamw"
                                                (AdamW; ``momentum`` is its beta1), as for ``seg``
    augment                                     true / false / mapping (see umcam_lib.train.augment)
    balance                                     weight the cross-entropy by inverse class frequency
    num_workers                                 DataLoader worker processes
    equivariance                                weight of :func:`equivariance_loss` (0 = the paper's
                                                plain cross-entropy; the DRS / AMR baselines never use it)
    cpu_bf16                                    bfloat16 autocast of the training steps on a CPU with
                                                native bfloat16 (validation and CAMs stay float32)
    label_unit, crop_mm, crops_per_slice,       what one yes/no label is given to: "slice" (the paper) or
    crop_brain_fraction                         "crop" (random squares; umcam_lib.data.weak_labels)

The best epoch is the one with the highest validation F1 (of the "brain" class at p >= 0.5),
as in the authors' code. After every epoch ``last.pt`` and ``history.csv`` are rewritten
(:mod:`umcam_lib.train.common`), so an interrupted run resumes where it stopped. Every epoch
reseeds torch from ``(seed, epoch)``, so a resumed run gives the same weights as an
uninterrupted one, and two runs with one seed on the CPU give identical weights.
"""
from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .. import runtime
from ..config.schema import ClassifierParams, check_section
from ..data.artifacts import SliceSet
from ..data.weak_labels import crop_set, crop_size_px
from ..models.vgg import VGGClassifier, vgg16_classifier
from ..paths import resolve
from . import common
from .augment import build_augmentation
from ..hashing import array_hash

#: Keys that do not change the result of an epoch (a run may be extended or resumed with others).
# ----------------------------------------------------------------------------- configuration
def check_config(cfg: ClassifierParams | Mapping[str, Any]) -> ClassifierParams:
    """The ``classifier`` section checked against the schema, missing keys at their defaults
    (:func:`umcam_lib.config.check_section`; a bad value raises ``ParameterError``)."""
    return check_section("classifier", cfg)


def build_classifier(cfg: ClassifierParams | Mapping[str, Any], seed: int | None = None,
                     in_channels: int = 1) -> nn.Module:
    """Build :func:`umcam_lib.models.vgg16_classifier` from a ``classifier`` section.

    Parameters
    ----------
    cfg : mapping
        The ``classifier`` section (its architecture keys are used).
    seed : int, optional
        Seed torch (and numpy, python) first, so the random initialisation is reproducible.
    """
    cfg = check_config(cfg)
    if seed is not None:
        runtime.seed_everything(seed)
    return vgg16_classifier(width=cfg.width, in_channels=in_channels, dilated=cfg.dilated,
                            pretrained=cfg.pretrained, **architecture(cfg))


def architecture(cfg: ClassifierParams | Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :class:`~umcam_lib.models.vgg.VGGClassifier` beyond width and
    depth that a (checked) ``classifier`` section sets: ``batch_norm``, ``pooling``, ``lse_r``,
    ``input_norm``, ``padding`` (shared with the DRS baseline, which is built on the same VGG)."""
    cfg = check_config(cfg)
    return {"batch_norm": cfg.batch_norm, "pooling": cfg.pooling, "lse_r": cfg.lse_r,
            "input_norm": cfg.input_norm, "padding": cfg.padding}


# ----------------------------------------------------------------------------- data
class SliceDataset(Dataset):
    """Slices ``[N, H, W]`` in [0, 1] and labels ``[N]`` -> (image [1, H, W] float32, label int64)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Any = None) -> None:
        if images.ndim != 3 or images.shape[0] != labels.shape[0]:
            raise ValueError(f"expected images [N, H, W] and labels [N], got {images.shape} and {labels.shape}")
        self.images = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        self.transform = transform

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[i][None]
        if self.transform is not None:
            x = self.transform(x)
        return x, self.labels[i]


def _fingerprint(slices: SliceSet, rows: np.ndarray) -> str:
    """Short hash of the images and labels of ``rows`` (decides whether last.pt may be resumed)."""
    return array_hash(np.asarray(slices.images[rows], dtype=np.float32), np.asarray(slices.labels[rows], dtype=np.uint8))


# ----------------------------------------------------------------------------- metrics
def classification_metrics(labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, precision, recall and F1 of the positive class ("brain").

    Parameters
    ----------
    labels : array [N] of {0, 1}
        Image-level truth.
    probs : array [N] of float
        Predicted probability of class 1; a slice is predicted positive when ``probs >= threshold``.

    Returns
    -------
    dict
        ``accuracy``, ``precision``, ``recall``, ``f1`` in [0, 1]. A ratio whose denominator is
        zero (no predicted or no true positives) is 0, and so is F1 when precision + recall = 0.
    """
    y = np.asarray(labels).astype(bool).ravel()
    p = np.asarray(probs, dtype=np.float64).ravel() >= threshold
    if y.shape != p.shape:
        raise ValueError(f"labels and probs differ in length: {y.shape[0]} vs {p.shape[0]}")
    tp = int(np.sum(p & y))
    fp = int(np.sum(p & ~y))
    fn = int(np.sum(~p & y))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    accuracy = float(np.mean(p == y)) if y.size else float("nan")
    return {"accuracy": accuracy, "precision": precision, "recall": recall, "f1": f1}


@torch.no_grad()
def predict_logits(model: nn.Module, images: np.ndarray | torch.Tensor, batch_size: int = 64,
                   device: str | torch.device = "auto", amp: bool = False) -> np.ndarray:
    """Logits of slices ``images [N, H, W]`` in [0, 1] -> float32 array [N, 2] (eval mode)."""
    dev = runtime.as_device(device)
    x_all = torch.as_tensor(np.asarray(images, dtype=np.float32) if not torch.is_tensor(images) else images)
    if x_all.ndim != 3:
        raise ValueError(f"expected images [N, H, W], got shape {tuple(x_all.shape)}")
    out = []
    with runtime.eval_mode(model.to(dev)):
        for start in range(0, x_all.shape[0], int(batch_size)):
            x = x_all[start:start + int(batch_size), None].to(dev, dtype=torch.float32)
            x = x.contiguous(memory_format=torch.channels_last)
            with runtime.autocast(dev, runtime.use_amp(dev, amp)):
                out.append(model(x).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 2), np.float32)


def predict_proba(model: nn.Module, images: np.ndarray | torch.Tensor, batch_size: int = 64,
                  device: str | torch.device = "auto", amp: bool = False) -> np.ndarray:
    """Probability of "brain" for slices ``images [N, H, W]`` in [0, 1] -> float64 array [N]."""
    logits = torch.from_numpy(predict_logits(model, images, batch_size, device, amp))
    return torch.softmax(logits.double(), dim=1)[:, 1].numpy()


def evaluate(model: nn.Module, images: np.ndarray, labels: np.ndarray, batch_size: int = 64,
             device: str | torch.device = "auto", amp: bool = False, threshold: float = 0.5) -> dict[str, float]:
    """Cross-entropy ``loss`` and :func:`classification_metrics` of ``model`` on slices."""
    logits = torch.from_numpy(predict_logits(model, images, batch_size, device, amp))
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    loss = float(nn.functional.cross_entropy(logits.double(), y)) if len(y) else float("nan")
    probs = torch.softmax(logits.double(), dim=1)[:, 1].numpy()
    return {"loss": loss, **classification_metrics(labels, probs, threshold)}


def metrics_table(model: nn.Module, slices: SliceSet, splits: tuple[str, ...] = ("val", "test"),
                  batch_size: int = 64, device: str | torch.device = "auto", amp: bool = False) -> pd.DataFrame:
    """One row per split: ``split, n, positives, accuracy, precision, recall, f1``."""
    rows = []
    for split in splits:
        idx = slices.indices(split)
        m = evaluate(model, slices.images[idx], slices.labels[idx], batch_size, device, amp)
        rows.append({"split": split, "n": int(idx.size), "positives": int(slices.labels[idx].sum()),
                     **{k: m[k] for k in ("accuracy", "precision", "recall", "f1")}})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- training
def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch)) % (2**63)


def _class_weights(labels: np.ndarray, device: torch.device) -> torch.Tensor:
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=2).astype(np.float64)
    counts = np.maximum(counts, 1.0)
    return torch.tensor(counts.sum() / (2.0 * counts), dtype=torch.float32, device=device)


#: Exact symmetries of a square class map used by the equivariance loss (``k`` of ``rot90``, flip).
_SYMMETRIES = ((1, False), (2, False), (3, False), (0, True), (1, True), (2, True), (3, True))


def _transform(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """Rotate ``x`` [..., H, W] by ``k`` quarter turns, then optionally flip it left-right."""
    x = torch.rot90(x, k, dims=(-2, -1)) if k else x
    return torch.flip(x, dims=(-1,)) if flip else x


def class_maps(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The class map and the same 1x1 head applied before the last pooling.

    Returns
    -------
    class_map : Tensor, shape (B, 2, H / 32, W / 32)
        What global pooling turns into the logits.
    fine_map : Tensor, shape (B, 2, H / 16, W / 16)
        The head applied to the fifth block's last ReLU (the ``block5`` Grad-CAM layer), twice
        as fine.
    """
    pre = model.features[:-1](model.normalise(images))
    return model.classifier(model.features[-1](pre)), model.classifier(pre)


def equivariance_loss(model: nn.Module, images: torch.Tensor, fine_map: torch.Tensor,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """How far the class evidence is from following a rotation / flip of the input.

    SEAM's equivariant regularisation (Wang et al., CVPR 2020) on the classifier's head: for
    one random symmetry ``T`` of the square (quarter turns and/or a flip, exact on the map's
    grid), the mean absolute difference between ``M(T(x))`` and ``T(M(x))``, where ``M`` is the
    brain-minus-background map of :func:`class_maps`' ``fine_map``. A network trained from
    scratch with global pooling is free to put its evidence at a fixed offset from the brain (a
    unit whose receptive field is larger than the slice can answer "brain below me"); an offset
    that does not turn with the image is penalised, which pulls the deep maps onto the object.

    Parameters
    ----------
    model : nn.Module
        A :class:`umcam_lib.models.vgg.VGGClassifier`.
    images : Tensor, shape (B, C, H, W)
        The (augmented) batch, H == W.
    fine_map : Tensor, shape (B, 2, h, w)
        ``class_maps(model, images)[1]``, already computed for the classification loss.

    Returns
    -------
    Tensor, scalar
    """
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"the equivariance loss needs square slices, got {tuple(images.shape[-2:])}")
    i = int(torch.randint(len(_SYMMETRIES), (1,), generator=generator))
    k, flip = _SYMMETRIES[i]
    turned = class_maps(model, _transform(images, k, flip))[1]
    margin = lambda m: (m[:, 1] - m[:, 0]).float()  # noqa: E731 - brain log-odds map
    return (margin(turned) - _transform(margin(fine_map), k, flip)).abs().mean()


def _batch_loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                weight: torch.Tensor | None, equivariance: float = 0.0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Loss of one batch and the logits (``None`` when the model brings its own loss)."""
    custom = getattr(model, "training_loss", None)
    if callable(custom):
        return custom(images, labels), None
    if equivariance > 0 and type(model) is VGGClassifier:  # baselines (DRS) keep their own recipe
        cmap, fine = class_maps(model, images)
        logits = model.pool(cmap).flatten(1)
        loss = nn.functional.cross_entropy(logits.float(), labels, weight=weight)
        return loss + float(equivariance) * equivariance_loss(model, images, fine), logits
    logits = model(images)
    return nn.functional.cross_entropy(logits.float(), labels, weight=weight), logits


def _run_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler, device: torch.device, amp: bool,
               weight: torch.Tensor | None, bar: tqdm, equivariance: float = 0.0,
               cpu_bf16: bool = False) -> tuple[float, float]:
    """One pass over ``loader``; returns (mean loss, accuracy or NaN). ``cpu_bf16``: bfloat16
    autocast of the steps on a CPU with native bfloat16 (:func:`umcam_lib.runtime.autocast`)."""
    model.train()
    total, n, correct, counted = 0.0, 0, 0, 0
    for images, labels in loader:
        images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        labels = labels.to(device, non_blocking=True)
        with runtime.autocast(device, amp, cpu_bf16=cpu_bf16):
            loss, logits = _batch_loss(model, images, labels, weight, equivariance)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"classifier training loss became {float(loss)}: lower classifier.lr")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        total += float(loss.detach()) * labels.shape[0]
        n += labels.shape[0]
        if logits is not None:
            correct += int((logits.detach().argmax(1) == labels).sum())
            counted += labels.shape[0]
        bar.update(1)
        bar.set_postfix(loss=f"{total / n:.4f}", refresh=False)
    return total / max(n, 1), (correct / counted if counted else float("nan"))


#: Seeds of the crop positions per split: the crops are part of the dataset (what the annotator
#: labelled), so they do not change with the training seed.
CROP_SEEDS = {"train": 0, "val": 1, "test": 2}


def labelled_images(slices: SliceSet, split: str, cfg: ClassifierParams | Mapping[str, Any]) -> tuple[np.ndarray,
                    np.ndarray]:
    """The images a split's weak labels were given to, and those labels.

    Parameters
    ----------
    slices : SliceSet
    split : {"train", "val", "test"}
    cfg : mapping
        The ``classifier`` section: ``label_unit`` "slice" gives the slices and their labels
        (the paper); "crop" gives ``crops_per_slice`` random ``crop_mm`` squares of every slice
        of the split, each labelled "brain" when it holds ``crop_brain_fraction`` of its
        slice's brain (:mod:`umcam_lib.data.weak_labels`).

    Returns
    -------
    images : ndarray, float32, shape (M, h, w)
    labels : ndarray, uint8, shape (M,)
    """
    cfg = check_config(cfg)
    rows = slices.indices(split)
    if cfg.label_unit == "slice" or rows.size == 0:
        return slices.images[rows], slices.labels[rows]
    crop = crop_size_px(cfg.crop_mm, float(slices.spacing_mm), int(slices.images.shape[-1]))
    c = crop_set(slices.images, slices.masks, rows, crop, cfg.crops_per_slice,
                 cfg.crop_brain_fraction, CROP_SEEDS[split])
    return c.images, c.labels


def label_table(slices: SliceSet, cfg: ClassifierParams | Mapping[str, Any], splits: tuple[str, ...] = ("train",
                "val", "test")
                ) -> pd.DataFrame:
    """How informative the weak labels are: images and positives per split, for slices and for crops.

    Returns
    -------
    DataFrame
        ``unit`` (slice / crop), ``split``, ``images``, ``positives``, ``positive_share``;
        the crop rows use the ``crop_*`` keys of ``cfg`` whatever ``label_unit`` says.
    """
    rows = []
    for unit in ("slice", "crop"):
        for split in splits:
            _, y = labelled_images(slices, split, {**dict(cfg), "label_unit": unit})
            rows.append({"unit": unit, "split": split, "images": int(y.size), "positives": int(y.sum()),
                         "positive_share": float(y.mean()) if y.size else float("nan")})
    return pd.DataFrame(rows)


def train_classifier(model: nn.Module, slices: SliceSet, cfg: ClassifierParams | Mapping[str, Any], out_dir: str | Path,
                     device: str | torch.device = "auto", amp: bool = True, seed: int = 0,
                     progress: bool = True) -> pd.DataFrame:
    """Train ``model`` on the training slices' image-level labels; keep the best validation F1.

    Parameters
    ----------
    model : nn.Module
        Maps images [B, 1, H, W] in [0, 1] to logits [B, 2]. When it has a method
        ``training_loss(images, labels) -> scalar tensor`` that replaces the cross-entropy of
        ``model(images)`` (used by the DRS / AMR baselines). Seed before building it
        (:func:`build_classifier` does) for a reproducible run.
    slices : SliceSet
        Trains on ``slices.indices("train")``, validates on ``slices.indices("val")``; the
        masks are never used.
    cfg : mapping
        The ``classifier`` section (see module docstring).
    out_dir : path
        Run folder: ``best.pt``, ``last.pt``, ``history.csv``. A ``last.pt`` written with the
        same settings (all of ``cfg`` but ``epochs``, the seed, the same slices and library code)
        is resumed, unless it ran more epochs than ``cfg["epochs"]``.
    device : {"auto", "cpu", "cuda"} or torch.device
    amp : bool
        Mixed precision (float16 autocast and gradient scaling), used on CUDA only.
    seed : int
        Seeds every epoch's shuffling and augmentation (with the epoch number); the global
        python / numpy / torch generators are reseeded at the start of every epoch.
    progress : bool
        Show one progress bar per epoch.

    ``model`` is left with the weights of the last epoch; :func:`load_classifier` gives the
    best one.

    Returns
    -------
    DataFrame
        One row per finished epoch: ``epoch`` (1-based), ``train_loss``, ``train_accuracy``
        (NaN with a custom loss), ``val_loss``, ``val_accuracy``, ``val_precision``,
        ``val_recall``, ``val_f1``, ``lr``, ``seconds``; also written as ``history.csv``.
    """
    cfg = check_config(cfg)
    dev = runtime.as_device(device)
    use_amp = runtime.use_amp(dev, amp)
    out_dir = resolve(out_dir)
    train_idx, val_idx = slices.indices("train"), slices.indices("val")
    if train_idx.size == 0:
        raise ValueError("the slice set has no training slices (split == 'train')")
    if val_idx.size == 0:
        warnings.warn("no validation slices: the best epoch is chosen by the lowest training loss")

    run_config = {
        "cfg": cfg.trained(),  # every key but epochs: a finished run resumes with more epochs
        "seed": int(seed),
        "model": type(model).__qualname__,
        "model_config": model.config() if hasattr(model, "config") else None,
        "data": _fingerprint(slices, np.concatenate([train_idx, val_idx])),
    }
    # channels-last convolutions are about twice as fast for these thin layers on the CPU
    # (and are what tensor cores want on CUDA); the model is converted back at the end
    model.to(dev, memory_format=torch.channels_last)
    optimizer = common.make_optimizer(model, cfg, "classifier")
    state = common.resume(out_dir, model, optimizer, config=run_config, epochs=cfg.epochs)
    scaler = torch.amp.GradScaler(dev.type, enabled=use_amp)

    images, labels = labelled_images(slices, "train", cfg)
    val_images, val_labels = labelled_images(slices, "val", cfg)
    labels = labels.astype(np.int64)
    dataset = SliceDataset(images, labels, build_augmentation(images.shape[1:], cfg.augment))
    weight = _class_weights(labels, dev) if cfg.balance else None
    n_epochs = cfg.epochs
    batches = math.ceil(len(dataset) / cfg.batch_size)

    for epoch in range(state.epoch, n_epochs):
        t0 = time.perf_counter()
        runtime.seed_everything(_epoch_seed(seed, epoch))
        loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, drop_last=False,
                            num_workers=cfg.num_workers, generator=runtime.generator(_epoch_seed(seed, epoch)),
                            pin_memory=dev.type == "cuda", persistent_workers=False)
        with tqdm(total=batches, desc=f"epoch {epoch + 1}/{n_epochs}", disable=not progress,
                  mininterval=3.0, dynamic_ncols=True) as bar:
            train_loss, train_acc = _run_epoch(model, loader, optimizer, scaler, dev, use_amp, weight, bar,
                                               cfg.equivariance, cfg.cpu_bf16)
            val = (evaluate(model, val_images, val_labels, 2 * cfg.batch_size, dev, use_amp)
                   if val_idx.size else {k: float("nan") for k in ("loss", "accuracy", "precision", "recall", "f1")})
            bar.set_postfix(loss=f"{train_loss:.4f}", val_f1=f"{val['f1']:.3f}", val_loss=f"{val['loss']:.4f}")
        row = {"epoch": epoch + 1, "train_loss": train_loss, "train_accuracy": train_acc,
               **{f"val_{k}": v for k, v in val.items()},
               "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - t0}
        state.history.append(row)
        state.epoch = epoch + 1
        score = val["f1"] if val_idx.size else -train_loss
        if score > state.best_score:
            state.best_score, state.best_epoch = float(score), epoch + 1
            common.save_best(out_dir, model, state, config=run_config)
        common.save_last(out_dir, model, optimizer, state, config=run_config)
    model.to(memory_format=torch.contiguous_format)
    if not (out_dir / "best.pt").is_file():
        raise RuntimeError(f"{out_dir}: training finished without a best.pt; delete last.pt and rerun")
    return pd.DataFrame(state.history)


def load_classifier(out_dir: str | Path, cfg: ClassifierParams | Mapping[str, Any], model: nn.Module | None = None,
                    device: str | torch.device = "cpu") -> nn.Module:
    """The classifier of the best validation epoch, in eval mode.

    Parameters
    ----------
    out_dir : path
        Folder written by :func:`train_classifier` (``best.pt``).
    cfg : mapping
        The ``classifier`` section it was trained with; builds the architecture unless
        ``model`` is given. ``pretrained`` is ignored (the checkpoint holds all weights).
    model : nn.Module, optional
        An architecture to load into (e.g. a DRS / AMR variant).
    """
    if model is None:
        model = build_classifier({**dict(cfg), "pretrained": False})
    own = model.config() if hasattr(model, "config") else None
    try:
        meta = common.load_best(out_dir, model)
    except RuntimeError as exc:  # state dict does not fit the architecture
        raise ValueError(f"{resolve(out_dir) / 'best.pt'} does not fit the classifier built from "
                         f"the parameters ({own or type(model).__name__}): {exc}") from exc
    saved = (meta.get("config") or {}).get("model_config")
    if saved is not None and own is not None and saved != own:
        raise ValueError(f"{resolve(out_dir) / 'best.pt'} was trained with {saved}, "
                         f"but the classifier parameters give {own}")
    return model.to(runtime.as_device(device)).eval()


def training_curves_figure(history: pd.DataFrame, best_epoch: int | None = None) -> Any:
    """Loss (train, validation) and validation accuracy / precision / recall / F1 per epoch.

    Parameters
    ----------
    history : DataFrame
        As returned by :func:`train_classifier` (or read from ``history.csv``).
    best_epoch : int, optional
        Marked with a dashed line (default: the epoch of the highest ``val_f1``).

    Returns
    -------
    matplotlib Figure
    """
    import matplotlib.pyplot as plt

    if best_epoch is None and history["val_f1"].notna().any():
        best_epoch = int(history.loc[history["val_f1"].idxmax(), "epoch"])
    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_loss.plot(history["epoch"], history["train_loss"], "o-", label="train (augmented)")
    ax_loss.plot(history["epoch"], history["val_loss"], "s-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    for col, style in (("val_accuracy", "o-"), ("val_precision", "^-"), ("val_recall", "v-"), ("val_f1", "s-")):
        ax_score.plot(history["epoch"], history[col], style, label=col.removeprefix("val_"))
    if history["train_accuracy"].notna().any():
        ax_score.plot(history["epoch"], history["train_accuracy"], ":", color="grey", label="train accuracy")
    ax_score.set(xlabel="epoch", ylabel="score", title="validation", ylim=(-0.02, 1.02))
    for ax in (ax_loss, ax_score):
        if best_epoch is not None:
            ax.axvline(best_epoch, color="k", ls="--", lw=0.8)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- seeds
def stage_seeds(seed: int, seeds: int) -> list[int]:
    """Seeds of the classifier-and-CAM stage: ``seed, seed + 1, ..., seed + seeds - 1``.

    The first is the *primary* seed: its classifier (``run_dir/classifier``) and CAMs feed
    notebooks 05-07; the others are trained and scored only to give Tables 1 and 2 a seed
    spread (``run_dir/seeds/seed-<s>/classifier``).
    """
    if int(seeds) < 1:
        raise ValueError(f"seeds must be >= 1 (the number of classifier seeds), got {seeds!r}")
    return [int(seed) + i for i in range(int(seeds))]


def classifier_dir(run_dir: str | Path, seed: int, primary_seed: int) -> Path:
    """Folder of the classifier trained with ``seed`` (see :func:`stage_seeds`)."""
    root = resolve(run_dir)
    return root / "classifier" if int(seed) == int(primary_seed) else root / "seeds" / f"seed-{int(seed)}" / "classifier"

