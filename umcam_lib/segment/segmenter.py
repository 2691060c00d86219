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
    python -m umcam_lib.segment.segmenter RUN_DIR NAME --seeds 0,1,2 [--jobs 2]
    python -m umcam_lib.segment.segmenter RUN_DIR NAME --synthetic 24 [--set augment=true ...]

``--synthetic N`` adds N domain-randomised phantom stacks to the training stacks
(:mod:`umcam_lib.segment.synthetic`; FullySup only: the weak route sees image-level labels only).
``--restack`` adds stacks cut from the real training stacks: resliced into the two other planes,
and cropped to a tight field of view (:mod:`umcam_lib.segment.restack`; any method: each
new stack carries the method's own labels, pseudo labels for a weak one). ``--restack-step F``
keeps one slab every F slice thicknesses (default 2; more: fewer resliced slices), and
``--restack-no-tight`` leaves the tight crops out, ``--restack-planes none`` the reslices, and
``--restack-tight-share F`` keeps that share of each cropped copy's slices (default 1).

With ``--seeds`` every seed is one task (:class:`SegmenterTask`, written to ``NAME-s<seed>``; with
``--refit FROM`` each seed refits ``FROM-s<seed>``), run through the study's executors
(:mod:`umcam_lib.train.executors`): one after another in this process, or ``--jobs N`` worker
processes with ``threads // N`` torch threads each. A seed whose folder already holds the summary
of the same request and library is not trained again.

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
from . import restack as rs
from . import synthetic as synth
from ..config.files import apply_overrides, load_params, profile_path
from ..config.schema import ParameterError, check_section
from ..data import SliceSet
from ..data.artifacts import load_slices
from ..paths import resolve
from ..scoring import evaluate_volumes
from ..train.seg_predict import predict_split
from ..train.seg_targets import VARIANTS, variant_targets
from ..train.seg_train import train_variant
from ..train.executors import SerialExecutor, TaskError, make_executor, run_tasks

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
                    progress: bool = True, threads: int | None = None, synthetic: int = 0,
                    synthetic_seed: int = synth.SYNTHETIC_SEED, restack: bool | rs.Restack = False) -> dict[str, Any]:
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
    threads : int, optional
        Torch threads; default the run's ``threads``.
    synthetic : int
        Domain-randomised phantom stacks added to the training stacks
        (:func:`umcam_lib.segment.synthetic.synthetic_slices`); FullySup only. With ``refit``
        it is taken from that model.
    synthetic_seed : int
        Their seed (the same stacks for every UNet seed).
    restack : bool or Restack
        Add the extra stacks of a :class:`umcam_lib.segment.restack.Restack` recipe (``True``: its
        defaults) cut from every real training stack, with the method's own labels. With
        ``refit`` it is taken from that model.

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
        synthetic = int((source.get("synthetic") or {}).get("n_volumes", 0))
        synthetic_seed = int((source.get("synthetic") or {}).get("seed", synthetic_seed))
        restack = rs.as_recipe(source.get("restack")) or False
        seg_values = dict(source["seg"])
        best = int(source["best_epoch"])
        seg_values.update(epochs=best, patience=None, plateau_decay=None)
        stage, epochs_from = "refit", {"model": refit, "best_epoch": best}
    else:
        seg_values = run_seg
        stage, epochs_from = "select", None
    if method not in VARIANTS:
        raise ParameterError(f"--method {method!r}: expected one of {', '.join(VARIANTS)}")
    if synthetic < 0:
        raise ParameterError(f"--synthetic must be >= 0 stacks, got {synthetic}")
    if synthetic and method != "FullySup":
        raise ParameterError(f"--synthetic with --method {method}: the weak route sees image-level labels only, "
                             "and synthetic stacks have no pseudo labels; use --method FullySup")
    # every key of the schema may be set, also one the run did not record (it had its default then)
    seg_values = {**check_section("seg", {}).to_dict(), **seg_values}
    try:
        seg_values = apply_overrides(seg_values, [c for c in changes], strict=True)
    except ParameterError as exc:
        raise ParameterError(f"--set: {exc} (keys are those of the seg section, without 'seg.')") from exc
    seg = check_section("seg", seg_values)
    train_set = refit_slices(slices) if stage == "refit" else slices
    synthetic_record = None
    if synthetic:
        made = synth.synthetic_slices(synthetic, slices.spacing_mm, int(slices.images.shape[-1]), synthetic_seed,
                                      cache_dir=resolve(run_dir) / "segmenter" / "_synthetic")
        train_set = synth.with_synthetic(train_set, made)
        synthetic_record = {"n_volumes": int(synthetic), "seed": int(synthetic_seed),
                            "n_slices": int(len(made["images"])),
                            "brain_ml": [round(float(v), 1) for v in made["brain_ml"]],
                            "ranges": dataclasses.asdict(synth.DOMAIN_RANDOMISATION)}
    if len(train_set.volume_ids("train")) == 0:
        raise ParameterError(f"{resolve(run_dir)}: the run has no training stacks")
    dev = runtime.as_device(device)
    amp = bool(params.get("amp", True))
    runtime.set_threads(threads if threads is not None else params.get("threads"))
    if (out / SUMMARY).is_file():
        (out / SUMMARY).unlink()  # a retrained folder is not trusted until its summary is rewritten
    targets = variant_targets(method, train_set, run_dir, seg)
    restack_record = None
    recipe = rs.as_recipe(restack)
    if recipe is not None:
        train_set, targets, made = rs.with_restacks(train_set, targets, recipe)
        restack_record = {**dataclasses.asdict(recipe), "n_stacks": int(len(made)),
                          "n_slices": int(made["n_slices"].sum()) if len(made) else 0,
                          "stacks": made.to_dict(orient="records")}
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
        "synthetic": synthetic_record,
        "restack": restack_record,
        "held_out": list(held_out),
        "scores": card_scores(scores[~scores["in_training"]], held_out),
        "scores_in_training": card_scores(scores[scores["in_training"]], ("val",)),
        "git": {k: v for k, v in state.items() if k != "changed"},
        "library": provenance.library_fingerprint(), "device": str(dev),
        "seconds": round(time.perf_counter() - t0, 1),
        "command": "python -m umcam_lib.segment.segmenter " + " ".join(
            [str(run_dir), name, *(["--refit", refit] if refit else ["--method", method]), "--seed", str(seed),
             *([f"--synthetic {synthetic}"] if synthetic and not refit else []),
             *(restack_flags(recipe) if not refit else []), *[f"--set {c}" for c in changes]]),
    }
    io.write_json(out / SUMMARY, summary)
    return summary


@dataclasses.dataclass(frozen=True)
class SegmenterTask:
    """One seed of a segment-only UNet: everything a worker needs.

    Attributes
    ----------
    run_dir : str
        The run folder (absolute; shared with the workers).
    name : str
        The folder under ``run_dir/segmenter`` this task writes.
    method, changes, seed, refit, device
        As :func:`train_segmenter` takes them.
    threads : int or None
        Torch threads of this task (None: the run's ``threads``).
    keep_finished : bool
        Keep a seed that finished the same request under another version of the library
        (:func:`finished_summary`) instead of training it anew.
    restack : bool or Restack
        Add the stacks of :mod:`umcam_lib.segment.restack` (as :func:`train_segmenter`).
    """

    run_dir: str
    name: str
    method: str = "FullySup"
    changes: tuple[str, ...] = ()
    seed: int = 0
    refit: str | None = None
    device: str = "auto"
    threads: int | None = None
    synthetic: int = 0
    keep_finished: bool = False
    restack: bool | rs.Restack = False

    @property
    def where(self) -> str:
        """The folder this task writes."""
        return str(segmenter_dir(self.run_dir, self.name))

    def describe(self) -> str:
        """``segmenter fs-s1 (seed 1)``: the task in a progress line or an error."""
        return f"segmenter {self.name} (seed {self.seed})"


def finished_summary(task: SegmenterTask) -> dict[str, Any] | None:
    """The summary of ``task``'s folder when it finished the same request with the same library code
    (with ``task.keep_finished``: with any library code; a kept older one is printed)."""
    path = Path(task.where) / SUMMARY
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    same = (summary.get("seed") == task.seed and list(summary.get("changes") or []) == list(task.changes)
            and ((summary.get("epochs_from") or {}).get("model") == task.refit)
            and (task.refit is not None or summary.get("method") == task.method)
            and (task.refit is not None or int((summary.get("synthetic") or {}).get("n_volumes", 0)) == task.synthetic)
            and (task.refit is not None or rs.as_recipe(summary.get("restack")) == rs.as_recipe(task.restack)))
    if not same:
        return None
    if summary.get("library") != provenance.library_fingerprint():
        if not task.keep_finished:
            return None
        print(f"{task.where}: finished under another version of the library; kept (keep_finished)", flush=True)
    return summary


def run_segmenter_task(task: SegmenterTask) -> dict[str, Any]:
    """Train one seed (:func:`train_segmenter`) unless its folder already finished it; return its summary."""
    done = finished_summary(task)
    if done is not None:
        return done
    before = torch.get_num_threads()
    try:
        return train_segmenter(task.run_dir, task.name, task.method, task.changes, task.seed, task.refit, task.device,
                               progress=False, threads=task.threads, synthetic=task.synthetic, restack=task.restack)
    finally:
        torch.set_num_threads(before)


def seed_tasks(run_dir: str | Path, name: str, method: str = "FullySup", changes: Sequence[str] = (),
               seeds: Sequence[int] = (0,), refit: str | None = None, device: str = "auto",
               threads: int | None = None, synthetic: int = 0, keep_finished: bool = False,
               restack: bool | rs.Restack = False) -> list[SegmenterTask]:
    """One task per seed, written to ``NAME-s<seed>`` (refitting ``REFIT-s<seed>``) when there are several."""
    many = len(seeds) > 1
    return [SegmenterTask(str(resolve(run_dir)), f"{name}-s{s}" if many else name, method, tuple(changes), int(s),
                          (f"{refit}-s{s}" if many else refit) if refit else None, device, threads, int(synthetic),
                          keep_finished, restack)
            for s in seeds]


def train_segmenter_seeds(run_dir: str | Path, name: str, method: str = "FullySup", changes: Sequence[str] = (),
                          seeds: Sequence[int] = (0,), refit: str | None = None, device: str = "auto",
                          jobs: int = 1, synthetic: int = 0, keep_finished: bool = False,
                          restack: bool | rs.Restack = False) -> list[dict[str, Any]]:
    """Every seed of a segment-only UNet as a task (see the module docstring); their summaries in seed order.

    Parameters
    ----------
    jobs : int
        1: one seed after another in this process; N > 1: N worker processes, each with the
        run's ``threads // N`` torch threads (at least 1).
    keep_finished : bool
        A seed that finished the same request under another version of the library is kept,
        not trained anew (a benchmark that scores finished checkpoints; by default a library
        change retrains, and the new run replaces the folder's checkpoints).
    restack : bool or Restack
        Add the stacks of :mod:`umcam_lib.segment.restack` (as :func:`train_segmenter`).

    Raises
    ------
    TaskError
        A seed failed; the message names it and its folder (whose summary is absent, so nothing
        trusts it). The other seeds still finish.
    """
    if jobs < 1:
        raise ParameterError(f"--jobs must be >= 1, got {jobs}")
    if len(set(seeds)) != len(seeds) or not seeds:
        raise ParameterError(f"--seeds must list distinct seeds, got {list(seeds)}")
    params, _ = run_seg_section(run_dir)
    threads = params.get("threads")
    if jobs > 1:
        threads = max(1, int(threads or torch.get_num_threads()) // jobs)
    tasks = seed_tasks(run_dir, name, method, changes, seeds, refit, device, threads, synthetic, keep_finished, restack)
    executor = SerialExecutor() if jobs == 1 else make_executor({"kind": "processes", "jobs": int(jobs)})
    try:
        return run_tasks(executor, run_segmenter_task, tasks)
    finally:
        executor.shutdown()


def restack_flags(recipe: rs.Restack | None) -> list[str]:
    """The command-line flags that ask for ``recipe`` (none for ``None``).

    >>> restack_flags(rs.Restack(plane_step=4.0, tight=False))
    ['--restack', '--restack-step 4', '--restack-no-tight']
    >>> restack_flags(rs.Restack(planes=(), tight_share=0.25))
    ['--restack', '--restack-planes none', '--restack-tight-share 0.25']
    """
    if recipe is None:
        return []
    default = rs.Restack()
    planes = [] if recipe.planes == default.planes else [f"--restack-planes {','.join(recipe.planes) or 'none'}"]
    return ["--restack", *planes,
            *([f"--restack-step {recipe.plane_step:g}"] if recipe.plane_step != default.plane_step else []),
            *(["--restack-no-tight"] if not recipe.tight else []),
            *([f"--restack-tight-share {recipe.tight_share:g}"] if recipe.tight and recipe.tight_share != 1 else [])]


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
    ap.add_argument("--seeds", default=None, metavar="S,S,...",
                    help="train one UNet per seed, as tasks, into NAME-s<seed> (instead of --seed)")
    ap.add_argument("--jobs", type=int, default=1, help="with --seeds: worker processes (default 1: in this process)")
    ap.add_argument("--refit", default=None, metavar="NAME",
                    help="retrain select model NAME on train + validation stacks for its best epoch count")
    ap.add_argument("--set", dest="changes", action="append", default=[], metavar="KEY=VALUE",
                    help="change a key of the seg section (repeatable), e.g. --set width=16")
    ap.add_argument("--synthetic", type=int, default=0, metavar="N",
                    help="add N domain-randomised phantom stacks to the training stacks (FullySup only; "
                         "umcam_lib.segment.synthetic)")
    ap.add_argument("--restack", action="store_true",
                    help="add stacks cut from the real training stacks: the two other planes and a tight field of "
                         "view, with the method's own labels (umcam_lib.segment.restack)")
    ap.add_argument("--restack-step", type=float, default=None, metavar="F",
                    help="with --restack: one slab every F slice thicknesses (default 2)")
    ap.add_argument("--restack-no-tight", action="store_true", help="with --restack: no tight crops")
    ap.add_argument("--restack-tight-share", type=float, default=None, metavar="F",
                    help="with --restack: keep this share of each tight copy's slices, evenly spaced (default 1)")
    ap.add_argument("--restack-planes", default=None, metavar="P,P",
                    help=f"with --restack: planes to reslice into, of {', '.join(rs.PLANES)}, or none (default both)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    restack: bool | rs.Restack = False
    try:
        if args.restack:
            options: dict[str, Any] = {"tight": not args.restack_no_tight}
            if args.restack_step is not None:
                options["plane_step"] = args.restack_step
            if args.restack_tight_share is not None:
                options["tight_share"] = args.restack_tight_share
            if args.restack_planes is not None:
                options["planes"] = tuple(p.strip() for p in args.restack_planes.split(",")
                                          if p.strip() and p.strip() != "none")
            restack = rs.Restack(**options)
        elif (args.restack_step is not None or args.restack_no_tight or args.restack_planes is not None
              or args.restack_tight_share is not None):
            raise ParameterError("--restack-step, --restack-planes, --restack-no-tight and --restack-tight-share "
                                 "need --restack")
        if args.seeds is not None:
            try:
                seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
            except ValueError:
                raise ParameterError(f"--seeds {args.seeds!r}: expected seeds separated by commas, e.g. 0,1,2") from None
            summaries = train_segmenter_seeds(args.run_dir, args.name, args.method, args.changes, seeds, args.refit,
                                              args.device, args.jobs, args.synthetic, restack=restack)
        else:
            summaries = [train_segmenter(args.run_dir, args.name, args.method, args.changes, args.seed, args.refit,
                                         args.device, synthetic=args.synthetic, restack=restack)]
    except (ParameterError, FileNotFoundError, ValueError, TaskError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(describe(s) for s in summaries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
