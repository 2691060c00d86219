"""Would the UNets stop sooner at no cost? Early-stopping levers replayed on recorded histories.

With a constant learning rate and no plateau decay (the quick profile's ``seg`` section), the
UNet's weights after epoch k do not depend on ``seg.patience`` or ``seg.val_every``: those only
decide when training stops and which validated epoch is kept. A lever on them can therefore be
measured exactly, without training again, by replaying each recorded ``history.csv`` (its
``val_dsc`` column, the validation 3D DSC after each epoch) under the lever's rule, the rule of
:func:`umcam_lib.train.seg_train.train_variant`: keep the best validated epoch; stop once
``epoch >= min_epochs`` and ``patience`` validations in a row did not beat it.

For each lever and each recorded UNet the script reports the validation DSC of the epoch that
would be kept, the epochs that would run, and the seconds saved (the epochs not run, at that
UNet's median seconds per epoch; for ``val_every`` 2 also the validations skipped, at
``--val-seconds`` each). Only validation is used: the test split is not looked at.

Usage::

    python benchmarks/early_stop_levers.py benchmarks/results/seg_seeds_quick_unets \\
        benchmarks/results/seg_seeds_quick_committed_recipe_unets --out benchmarks/results

Writes ``<out>/early_stop_levers_quick.csv`` (one row per lever and UNet) and ``.md`` (summary).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from umcam_lib.report import to_markdown

#: (name, patience, val_every): the quick profile's rule first.
LEVERS = [("patience 5 (quick profile)", 5, 1), ("patience 4", 4, 1), ("patience 3", 3, 1),
          ("val_every 2, patience 3", 3, 2), ("val_every 2, patience 2", 2, 2)]


def replay(history: pd.DataFrame, patience: int, val_every: int = 1, min_epochs: int = 6) -> tuple[float, int, int]:
    """Replay early stopping on one recorded training.

    Parameters
    ----------
    history : DataFrame
        ``epoch`` (1-based) and ``val_dsc`` (%) after every epoch of a run that validated each epoch.
    patience, val_every, min_epochs : int
        The rule of ``seg.patience``, ``seg.val_every`` and ``seg.min_epochs``.

    Returns
    -------
    best_dsc : float
        Validation DSC (%) of the epoch kept.
    best_epoch, last_epoch : int
        That epoch, and the last epoch that would run (at most the recorded ones).
    """
    best, best_epoch, stale, last = float("-inf"), -1, 0, 0
    for epoch, dsc in zip(history["epoch"].astype(int), history["val_dsc"].astype(float)):
        last = epoch
        if epoch % val_every:
            continue
        if dsc > best:
            best, best_epoch, stale = dsc, epoch, 0
        else:
            stale += 1
        if epoch >= min_epochs and stale >= patience:
            break
    return best, best_epoch, last


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", help="folders of UNet folders, each with a history.csv")
    ap.add_argument("--val-seconds", type=float, default=1.5,
                    help="seconds of one validation (142 slices of the quick cohort, 8 per pass: about 1.5)")
    ap.add_argument("--min-epochs", type=int, default=6)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    rows = []
    for folder in args.folders:
        for hist in sorted(Path(folder).glob("*/history.csv")):
            h = pd.read_csv(hist)
            if h["val_dsc"].isna().any():
                raise ValueError(f"{hist}: a run that did not validate every epoch cannot be replayed")
            per_epoch = float(h["seconds"].median())
            base_last = replay(h, 5, 1, args.min_epochs)[2]
            if base_last != len(h):
                raise ValueError(f"{hist}: recorded {len(h)} epochs but the patience-5 rule stops at {base_last}")
            for name, patience, every in LEVERS:
                best, be, last = replay(h, patience, every, args.min_epochs)
                skipped_vals = (last - last // every) if every > 1 else 0
                rows.append({"lever": name, "recipe": Path(folder).name, "unet": hist.parent.name,
                             "val_dsc": round(best, 2), "best_epoch": be, "epochs": last,
                             "seconds_saved": round((len(h) - last) * per_epoch + skipped_vals * args.val_seconds, 1)})
    df = pd.DataFrame(rows)
    base = df[df.lever == LEVERS[0][0]].set_index(["recipe", "unet"])["val_dsc"]
    df["val_change"] = [round(r.val_dsc - base[(r.recipe, r.unet)], 2) for r in df.itertuples()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "early_stop_levers_quick.csv", index=False)
    summary = df.groupby("lever", sort=False).agg(
        unets=("unet", "size"), seconds_saved_mean=("seconds_saved", "mean"),
        val_change_mean=("val_change", "mean"), val_change_worst=("val_change", "min"),
        unets_changed=("val_change", lambda v: int((v != 0).sum()))).round(2)
    lines = ["# Early-stopping levers replayed on recorded UNet histories (quick profile)", "",
             f"`python benchmarks/early_stop_levers.py {' '.join(args.folders)}`. Validation 3D DSC (%) of "
             "the epoch each lever would keep, against the quick profile's rule (patience 5, every epoch "
             "validated, min_epochs 6); seconds saved per UNet (epochs not run, validations skipped).", "",
             to_markdown(summary.reset_index())]
    (out / "early_stop_levers_quick.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
