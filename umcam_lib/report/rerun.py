"""Does a rerun stay inside the intervals a run reports?

Two runs of one profile that differ only in how the arithmetic is scheduled (torch threads per
training, ``--jobs``, another CPU) are not bit-identical: float sums are taken in another order,
and a training that starts from the same seed drifts apart. A reported row or claim is only worth
reading when such a rerun lands inside its interval. This module compares the two runs' recorded
scores (:func:`umcam_lib.data.scores.load_scores`) on what both ran:

* **rows**: the mean DSC of each (section, split, method), with the first run's 95 % interval of
  that mean from the hierarchical bootstrap over volumes and seeds
  (:func:`umcam_lib.report.verdicts.hierarchical_bootstrap`), its rerun interval
  (:func:`umcam_lib.report.verdicts.rerun_halfwidth`: where a rerun with fresh seeds lands) and the
  shift in units of the first run's seed SD;
* **claims**: each claim's gap (:func:`umcam_lib.report.verdicts.assess_claims`) in the rerun,
  against the first run's intervals of that gap.

``inside`` asks the question the rerun interval answers: does the rerun land inside it? The
bootstrap interval is of the expected value, not of another run's estimate, and is reported
beside it (``inside_ci``). A row or claim of one seed has no rerun interval (``inside`` is NA).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..data.scores import load_scores
from .verdicts import assess_claims, hierarchical_bootstrap, rerun_halfwidth, slice_volumes, volume_scores

ROW_COLUMNS = ["section", "split", "method", "n_volumes", "n_seeds", "mean", "ci_low", "ci_high", "seed_sd",
               "rerun_low", "rerun_high", "rerun_mean", "shift", "shift_in_seed_sd", "inside_ci", "inside"]
CLAIM_COLUMNS = ["claim", "split", "metric", "n_seeds", "gap", "ci_low", "ci_high", "rerun_low", "rerun_high", "verdict",
                 "rerun_gap", "rerun_verdict", "shift", "inside_ci", "inside"]


def _volumes(run_dir: str | Path) -> pd.DataFrame:
    scores = load_scores(run_dir)
    needs_slices = bool(len(scores)) and (scores["section"] == "pseudo_mask").any()
    volume_of, spacing = slice_volumes(run_dir) if needs_slices else (None, None)
    return volume_scores(scores, volume_of, spacing)


def row_shifts(run_dir: str | Path, rerun_dir: str | Path) -> pd.DataFrame:
    """Every DSC row both runs recorded: the first run's mean and interval, the rerun's mean.

    Parameters
    ----------
    run_dir, rerun_dir : path
        Run folders with recorded scores (``scores/``) of the same profile and data.

    Returns
    -------
    DataFrame
        :data:`ROW_COLUMNS`: ``mean`` (%, mean over seeds of the per-volume mean), ``ci_low`` /
        ``ci_high`` (its 95 % hierarchical-bootstrap interval), ``seed_sd`` (SD of the per-seed
        means; NaN for one seed), ``rerun_low`` / ``rerun_high`` (the rerun interval), ``rerun_mean``,
        ``shift = rerun_mean - mean``, ``shift_in_seed_sd``, ``inside_ci`` (the rerun's mean lies in
        the bootstrap interval) and ``inside`` (in the rerun interval; NA for one seed).
    """
    a, b = _volumes(run_dir), _volumes(rerun_dir)
    keys = ["section", "split", "method"]
    rows = []
    for key, ga in a.groupby(keys, sort=False):
        gb = b[(b["section"] == key[0]) & (b["split"] == key[1]) & (b["method"] == key[2])]
        if gb.empty:
            continue
        table = ga.pivot_table(index="seed", columns="volume", values="dsc", aggfunc="mean").dropna(axis=1)
        if table.empty:
            continue
        d = table.to_numpy(float)
        boot = hierarchical_bootstrap(d)
        low, high = (float(x) for x in np.percentile(boot, [2.5, 97.5]))
        per_seed = d.mean(axis=1)
        sd = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else float("nan")
        rerun = gb[gb["volume"].isin(table.columns)].groupby("seed")["dsc"].mean().mean()
        mean = float(d.mean())
        shift = float(rerun) - mean
        half = rerun_halfwidth(per_seed)
        rows.append(dict(zip(keys, key), n_volumes=d.shape[1], n_seeds=d.shape[0], mean=mean, ci_low=low,
                         ci_high=high, seed_sd=sd, rerun_low=mean - half, rerun_high=mean + half,
                         rerun_mean=float(rerun), shift=shift,
                         shift_in_seed_sd=shift / sd if sd and not np.isnan(sd) else float("nan"),
                         inside_ci=bool(low <= rerun <= high),
                         inside=pd.NA if np.isnan(half) else bool(abs(shift) <= half)))
    return pd.DataFrame(rows, columns=ROW_COLUMNS)


def claim_shifts(run_dir: str | Path, rerun_dir: str | Path) -> pd.DataFrame:
    """Every claim both runs could measure: the first run's gap and interval, the rerun's gap.

    Returns
    -------
    DataFrame
        :data:`CLAIM_COLUMNS`; ``inside`` says whether the rerun's gap lies in the first run's
        rerun interval (NA for one seed), ``inside_ci`` whether it lies in the 95 % interval.
    """
    a, b = assess_claims(run_dir), assess_claims(rerun_dir)
    keys = ["claim", "split", "metric"]
    both = a.merge(b[keys + ["gap", "verdict"]].rename(columns={"gap": "rerun_gap", "verdict": "rerun_verdict"}),
                   on=keys)
    both = both[both["gap"].notna() & both["rerun_gap"].notna()].copy()
    both["shift"] = both["rerun_gap"] - both["gap"]
    both["inside_ci"] = (both["ci_low"] <= both["rerun_gap"]) & (both["rerun_gap"] <= both["ci_high"])
    inside = (both["rerun_low"] <= both["rerun_gap"]) & (both["rerun_gap"] <= both["rerun_high"])
    both["inside"] = inside.astype(object).where(both["rerun_low"].notna(), pd.NA)
    return both[CLAIM_COLUMNS].reset_index(drop=True)
