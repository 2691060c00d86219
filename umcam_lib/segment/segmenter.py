"""Train one UNet for ``python -m umcam_lib.segment`` alone, outside the study's UNets.

The study (notebooks 06-07) trains every UNet of Tables 1-2 with one recipe, so that the rows
compare. A model people run on their own stacks needs only one UNet, and may take a recipe the
study cannot afford for all of them (width 16 on the CC0 stacks). This module trains that one
UNet from the artifacts of a run (notebook 01's slices; for a weak method the pseudo labels of
notebooks 03-05) in two stages:

``select``
    Train on the run's training stacks, validate on its validation stacks every epoch and keep
    the best epoch (:func:`umcam_lib.train.seg_train.train_variant`). Validation and test scores
    are recorded; only validation may choose anything.
``refit``
    Train again on the training *and* validation stacks for the number of epochs the select
    stage chose (``--refit FROM``), keeping the last epoch. Only test scores are held out; the
    validation stacks were trained on, so their scores are recorded as ``in_training``.

::

    python -m umcam_lib.segment.segmenter RUN_DIR NAME [--method FullySup] [--seed 0] [--set width=16 ...]
    python -m umcam_lib.segment.segmenter RUN_DIR NAME_REFIT --refit NAME [--seed 0]

Everything goes to ``RUN_DIR/segmenter/NAME/``: ``best.pt``, ``last.pt`` and ``history.csv``
(the training loop's), ``scores.csv`` (per volume: split, 3D DSC %, HD95) and ``summary.json``
(method, stage, seed, the ``seg`` section used, epochs, git state, seconds, and per-split scores
in the form :mod:`umcam_lib.segment.ship` puts on a model card), written last and atomically: a folder
without ``summary.json`` did not finish. ``python -m umcam_lib.segment.ship RUN_DIR --segmenter
weak=NAME --segmenter fullysup=NAME`` ships such models.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import io, provenance, runtime
from ..config.files import apply_overrides, load_params, profile_path
from ..config.schema import ParameterError, check_section
from ..data import SliceSet
from ..data.artifacts import load_slices
from ..paths import resolve
from ..scoring import evaluate_volumes
from ..train.seg_predict import predict_split
from ..train.seg_targets import VARIANTS, variant_targets
from ..train.seg_train import train_variant

SUMMARY = "summary.json"
STAGES = ("select", "refit")


def segmenter_dir(run_dir: str | Path, name: str) -> Path:
    """``run_dir/segmenter/<name>``: the folder of one segment-only UNet."""
    if not name or "/" in name or name.startswith("."):
        raise ParameterError(f"segmenter name {name!r}: use a plain folder name (letters, digits, '-', '_')")
    return resolve(run_dir) / "segmenter" / name


def read_summary(run_dir: str | Path, name: str) -> dict[str, Any]:
    """The ``summary.json`` of a finished segment-only UNet.

    Raises
    ------
    FileNotFoundError
        The folder has no ``summary.json`` (never trained, or did not finish).
    """
    path = segmenter_dir(run_dir, name) / SUMMARY
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing: segmenter {name!r} was not trained in this run, or did not finish")
    return json.loads(path.read_text())


def refit_slices(slices: SliceSet) -> SliceSet:
    """The slice set with its validation stacks moved into training (test untouched)."""
    split = np.where(slices.split == "val", "train", slices.split)
    volumes = slices.volumes.copy()
    volumes["split"] = volumes["split"].replace({"val": "train"})
    return dataclasses.replace(slices, split=split, volumes=volumes)


def stack_names(slices: SliceSet, split: str) -> list[str]:
    """Names of the stacks of ``split`` (``volumes.name``; the volume index where a run has no names)."""
    v = slices.volumes[slices.volumes["split"] == split]
    return sorted(v["name"].astype(str) if "name" in v else v["volume"].astype(str))


def split_scores(model: torch.nn.Module, slices: SliceSet, split: str, seg: Any, device: torch.device,
                 amp: bool) -> pd.DataFrame:
    """Per-volume 3D scores of ``split`` as ``segment`` would predict (``seg.tta``, ``seg.postprocess``)."""
    rows, probs = predict_split(model, slices, split, device, amp, seg.eval_batch_size, tta=seg.tta)
    scores = evaluate_volumes(slices, split, rows, probs > 0.5, postprocess=seg.postprocess)
    scores.insert(0, "split", split)
    return scores


def card_scores(scores: pd.DataFrame, splits: Sequence[str]) -> dict[str, Any]:
    """Per-split summary of :func:`split_scores` rows, in the form of :func:`umcam_lib.segment.ship.scores_of`."""
    out: dict[str, Any] = {}
    for split in splits:
        s = scores[scores["split"] == split]
        if s.empty:
            continue
        n = len(s)
        out[split] = {"table": "segmenter", "n_volumes": n, "dsc_mean": float(s["dsc"].mean()),
                      "dsc_std": float(s["dsc"].std(ddof=1)) if n > 1 else 0.0,
                      "hd95_px_mean": float(s["hd95"].mean()), "dsc_min": float(s["dsc"].min()),
                      "dsc_per_volume": {str(int(v)): float(d) for v, d in zip(s["volume"], s["dsc"])},
                      "hd95_mm_mean": float(s["hd95_mm"].mean()),
                      "hd95_mm_std": float(s["hd95_mm"].std(ddof=1)) if n > 1 else 0.0}
    return out


def run_seg_section(run_dir: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's parameters (as notebook 01 recorded them) and its ``seg`` section.

    The ``seg`` section is the one a notebook of the run recorded (06 or 07), else the run
    profile's (``params/<profile>.yaml``), as notebook 06 would load it.
    """
    records = provenance.collect(run_dir)
    if "01" not in records:
        raise FileNotFoundError(f"{resolve(run_dir)}/provenance/01.json: missing (run notebook 01 first)")
    params = dict(records["01"].get("params") or {})
    recorded = [r["params"]["seg"] for _, r in sorted(records.items()) if "seg" in (r.get("params") or {})]
    if recorded:
        return params, dict(recorded[-1])
    profile = params.get("profile")
    if not profile:
        raise FileNotFoundError(f"{resolve(run_dir)}/provenance/01.json records no profile")
    return params, dict(load_params(profile_path(str(profile))).get("seg") or {})


def train_segmenter(run_dir: str | Path, name: str, method: str = "FullySup", changes: Sequence[str] = (),
                    seed: int = 0, refit: str | None = None, device: str = "auto",
                    progress: bool = True) -> dict[str, Any]:
    """Train, score and record one segment-only UNet (see the module docstring).

    Parameters
    ----------
    run_dir : path
        A run folder with notebook 01's slices (and notebooks 03-05's artifacts for a weak method).
    name : str
        The folder under ``run_dir/segmenter``.
    method : str
        One of :data:`umcam_lib.train.seg_targets.VARIANTS` (``FullySup`` trains on the true masks).
        With ``refit`` it is taken from that model.
    changes : sequence of str
        ``key=value`` changes of the run's ``seg`` section (``width=16``). With ``refit`` they
        apply on top of that model's section.
    seed : int
        Seed of the weights and of the slice order.
    refit : str, optional
        Name of a finished ``select`` model: train on train + validation stacks for its best
        epoch count, with its method and section.
    device : {"auto", "cpu", "cuda"}
    progress : bool
        A progress bar over epochs.

    Returns
    -------
    dict
        The ``summary.json`` written.
    """
    t0 = time.perf_counter()
    state = provenance.git_state(exclude=[resolve(run_dir)])  # the code as it is when training starts
    params, run_seg = run_seg_section(run_dir)
    out = segmenter_dir(run_dir, name)
    slices = load_slices(run_dir)
    if refit is not None:
        source = read_summary(run_dir, refit)
        if source.get("stage") != "select":
            raise ParameterError(f"--refit {refit}: that model is a {source.get('stage')!r} model; refit a select one")
        method = source["method"]
        seg_values = dict(source["seg"])
        best = int(source["best_epoch"])
        seg_values.update(epochs=best, patience=None, plateau_decay=None)
        stage, epochs_from = "refit", {"model": refit, "best_epoch": best}
    else:
        seg_values = run_seg
        stage, epochs_from = "select", None
    if method not in VARIANTS:
        raise ParameterError(f"--method {method!r}: expected one of {', '.join(VARIANTS)}")
    # every key of the schema may be set, also one the run did not record (it had its default then)
    seg_values = {**check_section("seg", {}).to_dict(), **seg_values}
    try:
        seg_values = apply_overrides(seg_values, [c for c in changes], strict=True)
    except ParameterError as exc:
        raise ParameterError(f"--set: {exc} (keys are those of the seg section, without 'seg.')") from exc
    seg = check_section("seg", seg_values)
    train_set = refit_slices(slices) if stage == "refit" else slices
    if len(train_set.volume_ids("train")) == 0:
        raise ParameterError(f"{resolve(run_dir)}: the run has no training stacks")
    dev = runtime.as_device(device)
    amp = bool(params.get("amp", True))
    runtime.set_threads(params.get("threads"))
    if (out / SUMMARY).is_file():
        (out / SUMMARY).unlink()  # a retrained folder is not trusted until its summary is rewritten
    targets = variant_targets(method, train_set, run_dir, seg)
    model = train_variant(method, train_set, targets, seg, run_dir, device=dev, amp=amp, seed=seed, out_dir=out,
                          progress=progress)
    history = pd.read_csv(out / "history.csv")
    ckpt = torch.load(out / "best.pt", map_location="cpu", weights_only=True)
    scores = pd.concat([split_scores(model, slices, s, seg, dev, amp) for s in ("val", "test")
                        if len(slices.volume_ids(s))], ignore_index=True)
    held_out = ("val", "test") if stage == "select" else ("test",)
    scores["in_training"] = ~scores["split"].isin(held_out)
    io.write_text(out / "scores.csv", scores.to_csv(index=False))
    summary = {
        "name": name, "method": method, "stage": stage, "seed": int(seed), "changes": list(changes),
        "epochs_from": epochs_from, "epochs_trained": int(len(history)), "best_epoch": int(ckpt.get("epoch") or 0),
        "validation_score_at_selection": ckpt.get("score") if stage == "select" else None,
        "seg": seg.to_dict(),
        "trained_on": stack_names(train_set, "train"),
        "held_out": list(held_out),
        "scores": card_scores(scores[~scores["in_training"]], held_out),
        "scores_in_training": card_scores(scores[scores["in_training"]], ("val",)),
        "git": {k: v for k, v in state.items() if k != "changed"},
        "library": provenance.library_fingerprint(), "device": str(dev),
        "seconds": round(time.perf_counter() - t0, 1),
        "command": "python -m umcam_lib.segment.segmenter " + " ".join(
            [str(run_dir), name, *(["--refit", refit] if refit else ["--method", method]), "--seed", str(seed),
             *[f"--set {c}" for c in changes]]),
    }
    io.write_json(out / SUMMARY, summary)
    return summary


def describe(summary: dict[str, Any]) -> str:
    """One line per split: what a person reads after training."""
    lines = [f"{summary['name']}: {summary['method']} ({summary['stage']}, seed {summary['seed']}), "
             f"{summary['epochs_trained']} epochs, kept epoch {summary['best_epoch']}, {summary['seconds']:.0f} s"]
    for split, e in summary["scores"].items():
        lines.append(f"  {split:4s} 3D DSC {e['dsc_mean']:.1f} % (min {e['dsc_min']:.1f}, {e['n_volumes']} stacks), "
                     f"HD95 {e['hd95_mm_mean']:.1f} mm")
    for split, e in summary.get("scores_in_training", {}).items():
        lines.append(f"  {split:4s} 3D DSC {e['dsc_mean']:.1f} % (trained on: not held out)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m umcam_lib.segment.segmenter",
                                 description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", help="run folder with notebook 01's slices (and 03-05's pseudo labels for a weak method)")
    ap.add_argument("name", help="folder under RUN_DIR/segmenter")
    ap.add_argument("--method", default="FullySup", help=f"one of {', '.join(VARIANTS)} (default FullySup)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--refit", default=None, metavar="NAME",
                    help="retrain select model NAME on train + validation stacks for its best epoch count")
    ap.add_argument("--set", dest="changes", action="append", default=[], metavar="KEY=VALUE",
                    help="change a key of the seg section (repeatable), e.g. --set width=16")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    try:
        summary = train_segmenter(args.run_dir, args.name, args.method, args.changes, args.seed, args.refit,
                                  args.device)
    except (ParameterError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(describe(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
