"""The paper's claims tested with the volume as the unit and seeds as replicates.

Each claim says that one method beats another on one section of the tables (pseudo masks or
segmentation), in Dice (higher is better) and in HD95 (lower is better). A claim is tested on
paired per-volume scores:

* the unit is the volume: a pseudo mask scores a volume by the mean over its positive slices, a
  segmentation by its 3D score;
* seeds (of the classifier-and-CAM stage, or of the UNet) are replicates: the paired difference
  ``d[s, v]`` of seed ``s`` and volume ``v`` is averaged over seeds, never counted as more samples.

The gap is the mean of ``d`` (in the claim's favour: ``better - worse`` for Dice, ``worse - better``
for HD95), with a 95 % interval from a hierarchical bootstrap: each of :data:`N_BOOT` resamples
draws volumes with replacement and, independently, seeds with replacement, and averages ``d``
over the drawn seeds and volumes (percentile interval; fixed generator seed, so a rerun gives the
same interval).

A rerun of the same command on another machine (another thread count, another order of float
sums) keeps the volumes but not the trainings: a training that starts from the same seed drifts
apart, so a rerun is a fresh draw of the seeds. The **rerun interval** is where a rerun's gap lands
at 95 %: ``gap +- t(0.975, S - 1) * sqrt(2 / S) * SD`` over the ``S`` per-seed mean gaps (a
prediction interval for the difference of two means of ``S`` seeds each; :func:`rerun_interval`).
With one seed there is none.

The verdict rule, stated once (:func:`verdict`):

* **descriptive** when fewer than :data:`MIN_VOLUMES` volumes are paired: no interval is trusted;
* **holds** when the 95 % interval lies above 0 and so does the rerun interval (a rerun would not
  flip the sign; with one seed there is no rerun interval and no claim can hold or reverse);
* **reversed** when both intervals lie below 0;
* **inconclusive** otherwise.

:func:`detectable_gap` states the smallest gap the design can call: 2.8 bootstrap standard errors
(80 % power at a two-sided 5 % level), and never less than the rerun interval's half-width.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ..data.artifacts import slices_path
from ..data.scores import SPLITS, load_scores

#: Resamples of the hierarchical bootstrap.
N_BOOT = 2000
#: Fewer paired volumes than this make a claim descriptive (no verdict).
MIN_VOLUMES = 5
#: Seed of the bootstrap's generator (a rerun gives the same interval).
BOOT_SEED = 0
#: The verdict words.
VERDICTS = ("holds", "reversed", "inconclusive", "descriptive")
#: How intervals are made, as the tables name it.
METHOD = f"hierarchical bootstrap over volumes and seeds ({N_BOOT} resamples, percentile 95 % interval)"
#: Standard errors in a detectable gap: z(0.975) + z(0.80).
POWER_Z = 1.96 + 0.84
#: Coverage of the rerun interval.
RERUN_LEVEL = 0.95
#: How rerun intervals are made, as the tables name it.
RERUN_METHOD = ("rerun interval: gap +- t(0.975, S-1) * sqrt(2/S) * SD of the S per-seed mean gaps "
                "(where a rerun with fresh seeds lands, 95 %)")


@dataclass(frozen=True)
class Claim:
    """One of the paper's claims: ``better`` beats ``worse`` on ``section`` (both metrics)."""

    name: str
    section: str       # "pseudo_mask" or "segmentation"
    better: str
    worse: str
    source: str        # where the paper makes it


#: The paper's claims as the paper states them (Table 1, Table 2 and Sec. 3.3). The order of rows
#: within a table (e.g. AMR above DRS) is not a claim of the paper and is not tested.
CLAIMS: tuple[Claim, ...] = (
    Claim("multi-resolution helps: Average-CAM beats Grad-CAM", "pseudo_mask", "Average-CAM", "Grad-CAM", "Table 1"),
    Claim("uncertainty weighting helps: UM-CAM beats Average-CAM", "pseudo_mask", "UM-CAM", "Average-CAM", "Table 1"),
    Claim("UM-CAM beats Grad-CAM++", "pseudo_mask", "UM-CAM", "Grad-CAM++", "Table 2, Sec. 3.3"),
    Claim("UM-CAM beats Score-CAM", "pseudo_mask", "UM-CAM", "Score-CAM", "Table 2, Sec. 3.3"),
    Claim("UM-CAM beats Ablation-CAM", "pseudo_mask", "UM-CAM", "Ablation-CAM", "Table 2, Sec. 3.3"),
    Claim("UNets: UM-CAM labels beat Grad-CAM labels", "segmentation", "UM-CAM", "Grad-CAM", "Table 1"),
    Claim("UNets: SPL labels beat UM-CAM labels", "segmentation", "SPL", "UM-CAM", "Table 1"),
    Claim("UNets: UM-CAM+SPL beats SPL alone", "segmentation", "UM-CAM+SPL", "SPL", "Table 1"),
    Claim("UNets: UM-CAM+SPL beats DRS", "segmentation", "UM-CAM+SPL", "DRS", "Table 2, Sec. 3.3"),
    Claim("UNets: UM-CAM+SPL beats AMR", "segmentation", "UM-CAM+SPL", "AMR", "Table 2, Sec. 3.3"),
)

#: Metrics: name -> (score column, higher is better, unit).
METRICS = {"dsc": ("dsc", True, "%"), "hd95": ("hd95_mm", False, "mm")}


def slice_volumes(run_dir: str | Path) -> tuple[np.ndarray, float | None]:
    """The volume of every slice row of a run (``data/slices.npz``'s ``volume``, shape (N,)) and the
    slices' in-plane spacing in mm (None when not recorded)."""
    with np.load(slices_path(run_dir)) as z:
        spacing = float(z["spacing_mm"]) if "spacing_mm" in z.files else None
        return np.asarray(z["volume"], dtype=np.int64), spacing


def volume_scores(scores: pd.DataFrame, volume_of: np.ndarray | None = None,
                  spacing_mm: float | None = None) -> pd.DataFrame:
    """Per-volume scores of every (section, split, method, seed).

    Parameters
    ----------
    scores : DataFrame
        :func:`umcam_lib.data.scores.load_scores`: one row per (table, section, split, method,
        id, seed) with ``dsc`` and ``hd95`` (and ``hd95_mm`` where recorded).
    volume_of : ndarray, int, shape (N,), optional
        Volume of each slice row; needed for pseudo-mask rows, whose ``id`` is a slice row.
    spacing_mm : float, optional
        In-plane spacing: converts the 2D HD95 of pseudo masks (pixels) to mm where no
        ``hd95_mm`` was recorded.

    Returns
    -------
    DataFrame
        Columns section, split, method, seed, volume, dsc, hd95_mm (NaN where not recorded): a
        pseudo mask's volume score is the mean over the volume's scored (positive) slices.
    """
    s = scores.drop_duplicates(subset=["section", "split", "method", "id", "seed"]).copy()
    if "hd95_mm" not in s.columns:
        s["hd95_mm"] = np.nan
    if spacing_mm is not None:
        s["hd95_mm"] = s["hd95_mm"].fillna(s["hd95"] * float(spacing_mm))
    pm = s["section"] == "pseudo_mask"
    if pm.any():
        if volume_of is None:
            raise ValueError("pseudo-mask scores are per slice: give volume_of (the run's slice -> volume map)")
        ids = s.loc[pm, "id"].to_numpy(dtype=np.int64)
        if ids.max(initial=-1) >= len(volume_of):
            raise ValueError(f"pseudo-mask scores name slice row {int(ids.max())}, but the run has {len(volume_of)} slices")
    s["volume"] = s["id"].astype(np.int64)
    if pm.any():
        s.loc[pm, "volume"] = np.asarray(volume_of)[s.loc[pm, "id"].to_numpy(dtype=np.int64)]
    keys = ["section", "split", "method", "seed", "volume"]
    return s.groupby(keys, sort=False)[["dsc", "hd95_mm"]].mean().reset_index()


def paired_differences(vols: pd.DataFrame, section: str, split: str, better: str, worse: str,
                       metric: str = "dsc") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paired differences ``d[s, v]`` in the claim's favour, for seeds and volumes both rows share.

    Seeds are paired by number (seed ``s`` of one row with seed ``s`` of the other). When the two
    rows share no seed (e.g. one recorded without seeds), each row is first averaged over its own
    seeds and the result has one replicate.

    Returns
    -------
    d : ndarray, float, shape (S, V)
    seeds : ndarray, shape (S,)
        The seeds (``-1`` for the averaged case).
    volumes : ndarray, shape (V,)
    """
    column, higher, _ = METRICS[metric]
    sub = vols[(vols["section"] == section) & (vols["split"] == split)]
    a = sub[sub["method"] == better].pivot_table(index="seed", columns="volume", values=column, aggfunc="mean")
    b = sub[sub["method"] == worse].pivot_table(index="seed", columns="volume", values=column, aggfunc="mean")
    if a.empty or b.empty:
        return np.zeros((0, 0)), np.zeros(0), np.zeros(0)
    seeds = a.index.intersection(b.index)
    if len(seeds) == 0:
        a, b = a.mean().to_frame().T, b.mean().to_frame().T
        a.index = b.index = [-1]
        seeds = a.index
    volumes = a.columns.intersection(b.columns)
    av, bv = a.loc[seeds, volumes].to_numpy(float), b.loc[seeds, volumes].to_numpy(float)
    keep = ~np.isnan(av).any(0) & ~np.isnan(bv).any(0)
    d = (av - bv) if higher else (bv - av)
    return d[:, keep], np.asarray(seeds), np.asarray(volumes)[keep]


def hierarchical_bootstrap(d: np.ndarray, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> np.ndarray:
    """Bootstrap means of ``d [S, V]``: volumes and seeds each drawn with replacement.

    Examples
    --------
    >>> import numpy as np
    >>> d = np.array([[1.0, 2.0, 3.0], [2.0, 3.0, 4.0]])
    >>> boot = hierarchical_bootstrap(d, n_boot=500)
    >>> boot.shape, bool(1.5 < boot.mean() < 3.5)
    ((500,), True)
    """
    d = np.asarray(d, dtype=float)
    n_seeds, n_vols = d.shape
    rng = np.random.default_rng(seed)
    si = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    vi = rng.integers(0, n_vols, size=(n_boot, n_vols))
    return d[si[:, :, None], vi[:, None, :]].mean(axis=(1, 2))


def seed_sd(d: np.ndarray) -> float:
    """SD over seeds of each seed's mean gap (NaN with one seed)."""
    per_seed = np.asarray(d, dtype=float).mean(axis=1)
    return float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else float("nan")


def rerun_halfwidth(per_seed: np.ndarray, level: float = RERUN_LEVEL) -> float:
    """Half-width of the interval a rerun's mean lands in, around this run's mean.

    Parameters
    ----------
    per_seed : ndarray, float, shape (S,)
        Each seed's mean (a row's score or a claim's gap, averaged over the volumes).
    level : float
        Coverage.

    Returns
    -------
    float
        ``t(level, S - 1) * sqrt(2 / S) * SD(per_seed)``: the difference of two means of ``S``
        seeds each, one of them this run's; NaN with fewer than 2 seeds.

    Examples
    --------
    >>> round(rerun_halfwidth(np.array([1.0, 2.0, 3.0])), 2)    # t(0.975, 2) = 4.30, sqrt(2/3) = 0.82, SD 1
    3.51
    >>> rerun_halfwidth(np.array([1.0]))
    nan
    """
    x = np.asarray(per_seed, dtype=float)
    if len(x) < 2:
        return float("nan")
    t = float(stats.t.ppf(0.5 + level / 2, len(x) - 1))
    return float(t * np.sqrt(2.0 / len(x)) * np.std(x, ddof=1))


def rerun_interval(d: np.ndarray, level: float = RERUN_LEVEL) -> tuple[float, float]:
    """Where a rerun's mean of ``d [S, V]`` lands (the volumes kept, the seeds drawn afresh).

    Examples
    --------
    >>> low, high = rerun_interval(np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]))
    >>> round(low, 2), round(high, 2)
    (-1.51, 5.51)
    """
    d = np.asarray(d, dtype=float)
    half = rerun_halfwidth(d.mean(axis=1), level)
    return float(d.mean() - half), float(d.mean() + half)


def verdict(gap: float, low: float, high: float, rerun_low: float, rerun_high: float, n_volumes: int,
            min_volumes: int = MIN_VOLUMES) -> str:
    """The verdict word of one claim (the rule of the module docstring).

    Parameters
    ----------
    gap : float
        Mean paired difference in the claim's favour.
    low, high : float
        Its 95 % interval.
    rerun_low, rerun_high : float
        Its rerun interval (NaN with one seed).
    n_volumes : int
        Paired volumes.

    Examples
    --------
    >>> verdict(3.0, 1.0, 5.0, 0.5, 5.5, 20), verdict(-3.0, -5.0, -1.0, -5.5, -0.5, 20)
    ('holds', 'reversed')
    >>> verdict(3.0, 1.0, 5.0, -1.0, 7.0, 20), verdict(0.5, -1.0, 2.0, 0.1, 0.9, 20)
    ('inconclusive', 'inconclusive')
    >>> verdict(3.0, 1.0, 5.0, float("nan"), float("nan"), 20), verdict(3.0, 1.0, 5.0, 0.5, 5.5, 3)
    ('inconclusive', 'descriptive')
    """
    if n_volumes < min_volumes:
        return "descriptive"
    if np.isnan([low, high, rerun_low, rerun_high]).any():
        return "inconclusive"
    if low > 0 and rerun_low > 0:
        return "holds"
    if high < 0 and rerun_high < 0:
        return "reversed"
    return "inconclusive"


def detectable_gap(boot: np.ndarray, rerun_half: float) -> float:
    """Smallest gap this design calls: :data:`POWER_Z` bootstrap SEs, and at least the rerun
    interval's half-width (NaN with one seed: no gap can be called)."""
    se = float(np.std(boot, ddof=1)) if len(boot) > 1 else float("nan")
    if np.isnan(rerun_half):
        return float("nan")
    return float(np.nanmax([POWER_Z * se, rerun_half]))


def assess_claim(vols: pd.DataFrame, claim: Claim, split: str, metric: str = "dsc") -> dict:
    """One claim on one split and metric: means, gap, interval, seed SD, detectable gap, verdict."""
    d, seeds, volumes = paired_differences(vols, claim.section, split, claim.better, claim.worse, metric)
    column, higher, unit = METRICS[metric]
    row = {"claim": claim.name, "source": claim.source, "section": claim.section, "metric": metric, "unit": unit,
           "split": split, "better": claim.better, "worse": claim.worse, "n_volumes": int(d.shape[1]) if d.size else 0,
           "n_seeds": int(d.shape[0]) if d.size else 0}
    if not d.size:
        return {**row, "better_mean": np.nan, "worse_mean": np.nan, "gap": np.nan, "ci_low": np.nan, "ci_high": np.nan,
                "seed_sd": np.nan, "rerun_low": np.nan, "rerun_high": np.nan, "detectable_gap": np.nan,
                "verdict": "not measured"}
    sub = vols[(vols["section"] == claim.section) & (vols["split"] == split)]

    def mean_of(method: str) -> float:
        m = sub[(sub["method"] == method) & sub["volume"].isin(volumes)]
        if seeds[0] != -1:
            m = m[m["seed"].isin(seeds)]
        return float(m.groupby("seed")[column].mean().mean())

    boot = hierarchical_bootstrap(d)
    low, high = (float(x) for x in np.percentile(boot, [2.5, 97.5]))
    gap, spread = float(d.mean()), seed_sd(d)
    rerun_low, rerun_high = rerun_interval(d)
    return {**row, "better_mean": mean_of(claim.better), "worse_mean": mean_of(claim.worse), "gap": gap,
            "ci_low": low, "ci_high": high, "seed_sd": spread, "rerun_low": rerun_low, "rerun_high": rerun_high,
            "detectable_gap": detectable_gap(boot, rerun_halfwidth(d.mean(axis=1))),
            "verdict": verdict(gap, low, high, rerun_low, rerun_high, d.shape[1])}


def assess_claims(run_dir: str | Path, claims: Sequence[Claim] = CLAIMS, splits: Sequence[str] = SPLITS,
                metrics: Sequence[str] = ("dsc", "hd95")) -> pd.DataFrame:
    """Every claim on every split and metric, from a run's recorded scores (:func:`assess_claim`).

    Returns
    -------
    DataFrame
        One row per (claim, split, metric): ``better_mean`` / ``worse_mean`` (means over seeds of
        the per-volume mean), ``gap`` with ``ci_low`` / ``ci_high`` (:data:`METHOD`),
        ``seed_sd``, ``rerun_low`` / ``rerun_high`` (:data:`RERUN_METHOD`), ``detectable_gap``,
        ``n_volumes``, ``n_seeds`` and ``verdict``.
    """
    scores = load_scores(run_dir)
    needs_slices = (scores["section"] == "pseudo_mask").any() if len(scores) else False
    volume_of, spacing = slice_volumes(run_dir) if needs_slices else (None, None)
    vols = volume_scores(scores, volume_of, spacing)
    rows = [assess_claim(vols, c, split, metric) for c in claims for split in splits for metric in metrics]
    return pd.DataFrame(rows)


def short(row: pd.Series | dict) -> str:
    """``holds: +3.1 (95 % CI 1.2 to 5.0; a rerun 0.4 to 5.8)``: a claim row in a few words."""
    r = dict(row)
    if r["verdict"] == "not measured":
        return "not measured"
    sign = "+" if r["gap"] >= 0 else ""
    rerun = r.get("rerun_low", float("nan"))
    tail = (f"; a rerun {r['rerun_low']:.1f} to {r['rerun_high']:.1f}" if rerun is not None and not pd.isna(rerun)
            else "")
    return f"{r['verdict']}: {sign}{r['gap']:.1f} {r['unit']} (95 % CI {r['ci_low']:.1f} to {r['ci_high']:.1f}{tail})"


def describe(claims: pd.DataFrame, split: str = "test", metric: str = "dsc") -> str:
    """Markdown list: each claim's verdict with its gap and interval on ``split``."""
    d = claims[(claims["split"] == split) & (claims["metric"] == metric)]
    if d.empty:
        return f"- No claims measured on {split}."
    return "\n".join(f"- {r.claim}: **{short(r._asdict())}**, {r.n_volumes} volumes x {r.n_seeds} seed(s)"
                     for r in d.itertuples())


def plot_claims(claims: pd.DataFrame):
    """Forest plot: each claim's gap with its 95 % interval, per split, one panel per metric.

    Points right of 0 favour the paper's claim (Dice up, HD95 down). Thin bars: the 95 % interval;
    pale wide bars: the rerun interval. Filled markers: the verdict holds or reverses; hollow:
    inconclusive or descriptive.
    """
    import matplotlib.pyplot as plt

    metrics = [m for m in METRICS if (claims["metric"] == m).any()]
    names = list(dict.fromkeys(claims["claim"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(6.2 * len(metrics), 0.42 * len(names) + 1.6),
                             sharey=True, squeeze=False)
    colors = {"val": "#d95f02", "test": "#1b9e77"}
    for ax, metric in zip(axes[0], metrics):
        sub = claims[claims["metric"] == metric]
        for k, split in enumerate(dict.fromkeys(sub["split"])):
            s = sub[sub["split"] == split].set_index("claim").reindex(names)
            y = np.arange(len(names)) + (k - 0.5) * 0.28
            ok = s["verdict"].isin(["holds", "reversed"]).to_numpy()
            if "rerun_low" in s:  # where a rerun lands: a wide pale bar behind the interval
                ax.hlines(y, s["rerun_low"], s["rerun_high"], color=colors.get(split, "k"), alpha=0.22, lw=6)
            err = np.vstack([s["gap"] - s["ci_low"], s["ci_high"] - s["gap"]])
            ax.errorbar(s["gap"], y, xerr=err, fmt="none", ecolor=colors.get(split, "k"), elinewidth=1.4, capsize=2)
            ax.scatter(s["gap"][ok], y[ok], color=colors.get(split, "k"), zorder=3, label=f"{split}")
            ax.scatter(s["gap"][~ok], y[~ok], facecolor="white", edgecolor=colors.get(split, "k"), zorder=3)
        ax.axvline(0, color="0.3", lw=0.8)
        unit = METRICS[metric][2]
        ax.set_xlabel(f"gap in the claim's favour ({'Dice' if metric == 'dsc' else 'HD95'}, {unit})")
        ax.set_title("Dice: higher is better" if metric == "dsc" else "HD95: lower is better", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[0, 0].set_yticks(np.arange(len(names)), names, fontsize=8)
    axes[0, 0].invert_yaxis()
    axes[0, -1].legend(title="split (filled: holds/reversed)", fontsize=8, title_fontsize=8, loc="lower right")
    fig.suptitle("The paper's claims: paired per-volume gaps, 95 % intervals (thin) and where a rerun lands (pale)",
                 fontsize=11)
    fig.tight_layout()
    return fig
