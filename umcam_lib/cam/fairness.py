"""Is the UM-CAM comparison fair? The diagnosis of notebook 04 (issue: the fusion claim).

Three questions, each answered from maps the study computes, never from stored numbers:

1. **What do the entropy weights see?** :func:`pixel_distributions` samples, per layer, the
   normalised map value ``M_n(i)`` and its weight ``W_n(i)`` (Eq. 3) at pixels inside and
   outside the brain of the positive validation slices; :func:`plot_pixel_distributions` draws
   them with seaborn and :func:`weight_contrast` sums them up per layer.
2. **Which layer hurts?** :func:`leave_one_out` fuses the layers with each one left out.
3. **Does another reading of Eq. 3-4, or LayerCAM, change the verdict?** :func:`score_readings`
   scores every reading of :data:`READINGS` (:func:`umcam_lib.cam.fusion.fuse_reading`) for
   UM-CAM and Average-CAM, Grad-CAM of ``block5`` and LayerCAM (one layer and the fusion of the
   LayerCAM paper) for one classifier; each row's threshold is chosen on validation and test is
   reported beside it. :func:`summarise_readings` gives means and SDs over seeds and
   :func:`choose_reading` picks the UM-CAM reading with the best *validation* mean.

This module computes only; notebook 04 writes what it returns (``fusion_readings.csv``).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import nn

from ..config.schema import CamParams, check_section
from ..config.schema import default as default_value
from ..data.artifacts import SliceSet
from ..metrics import threshold_grid
from .ablation import layer_ablation
from .fusion import entropy_weights, fuse_reading, layercam_fusion, norm_groups, normalise_maps
from .gradcam import CAM_LAYER, compute_cams
from .pseudo_mask import eval_rows, evaluate_cam

#: Readings of Eq. 3-4 scored side by side: key -> (label, keyword arguments of ``fuse_reading``).
#: ``paper`` is the study's default (each map divided by its own maximum, entropy in nats, T = 1,
#: final min-max), ``minmax`` what the authors' code gets from pytorch-grad-cam's per-map scaling.
READINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "paper": ("per-map max, nats, T=1 (default)", {}),
    "minmax": ("per-map min-max (authors' code)", {"norm": "minmax"}),
    "batch_max": ("per-batch max", {"norm": "batch_max"}),
    "volume_max": ("per-volume max", {"norm": "volume_max"}),
    "percentile": ("per-map 99th percentile", {"norm": "percentile", "percentile": 99.0}),
    "bits": ("entropy in bits", {"base": "2"}),
    "t0.5": ("temperature T=0.5", {"temperature": 0.5}),
    "t2": ("temperature T=2", {"temperature": 2.0}),
    "no_final_norm": ("no final min-max (Eq. 4 as printed)", {"final_norm": "none"}),
}

#: Method names of the rows :func:`score_readings` adds beside the fusions.
GRADCAM, LAYERCAM, LAYERCAM_MAX, LAYERCAM_SUM = ("Grad-CAM", "LayerCAM (block5)", "LayerCAM fusion (max)",
                                                 "LayerCAM fusion (sum)")
FUSION_NAMES = {"umcam": "UM-CAM", "average_cam": "Average-CAM"}


# ----------------------------------------------------------------------------- 1. weights
def pixel_distributions(layer_maps: np.ndarray, masks: np.ndarray, layers: Sequence[str],
                        n_pixels: int = 3000, seed: int = 0, **reading: Any) -> pd.DataFrame:
    """Sample per-layer map values and entropy weights inside and outside the brain.

    Parameters
    ----------
    layer_maps : ndarray, shape (L, n, H, W)
        Per-layer CAMs of ``n`` slices, each divided by its own maximum.
    masks : ndarray, shape (n, H, W)
        Brain masks of the same slices.
    layers : sequence of str, length L
        Layer names.
    n_pixels : int
        Pixels drawn per layer and region (the same pixels for every layer).
    seed : int
        Seed of the pixel draw.
    **reading
        ``norm``, ``base``, ``temperature``, ``percentile`` of :func:`fuse_reading` (default:
        the paper's reading); ``batch_max`` / ``volume_max`` are not sampled here.

    Returns
    -------
    DataFrame
        Columns ``layer, region`` ("brain" / "outside"), ``value`` (normalised map, 0-1) and
        ``weight`` (``W_n``, 0.5-1 in nats at T = 1); ``n_pixels`` rows per layer and region
        (fewer when a region has fewer pixels).
    """
    layer_maps = np.asarray(layer_maps)
    masks = np.asarray(masks).astype(bool)
    if layer_maps.shape[0] != len(layers) or layer_maps.shape[1:] != masks.shape:
        raise ValueError(f"layer_maps {layer_maps.shape} do not match {len(layers)} layers and masks {masks.shape}")
    norm = reading.get("norm", "max")
    if norm in ("batch_max", "volume_max"):
        raise ValueError("pixel_distributions samples per-map readings only (max, minmax, percentile)")
    m = normalise_maps(layer_maps, norm, percentile=float(reading.get("percentile", 99.0)))
    w = np.asarray(entropy_weights(m, base=reading.get("base", "e"),
                                   temperature=float(reading.get("temperature", 1.0))))
    rng = np.random.default_rng(seed)
    frames = []
    for region, where in (("brain", masks), ("outside", ~masks)):
        flat = np.flatnonzero(where)
        if flat.size == 0:
            continue
        pick = rng.choice(flat, size=min(int(n_pixels), flat.size), replace=False)
        for i, name in enumerate(layers):
            frames.append(pd.DataFrame({"layer": name, "region": region,
                                        "value": m[i].reshape(-1)[pick].astype(np.float32),
                                        "weight": w[i].reshape(-1)[pick].astype(np.float32)}))
    return pd.concat(frames, ignore_index=True)


def weight_contrast(dist: pd.DataFrame) -> pd.DataFrame:
    """Per layer: median map value and mean weight inside and outside the brain.

    Returns
    -------
    DataFrame
        Index ``layer``; columns ``value_brain, value_outside, weight_brain, weight_outside`` and
        ``weight_gap`` (brain minus outside: negative when a layer counts for *less* on the brain
        than around it).
    """
    agg = dist.groupby(["layer", "region"], sort=False).agg(value=("value", "median"), weight=("weight", "mean"))
    out = agg.unstack("region")
    out.columns = [f"{a}_{b}" for a, b in out.columns]
    out = out.reindex(columns=["value_brain", "value_outside", "weight_brain", "weight_outside"])
    out["weight_gap"] = out["weight_brain"] - out["weight_outside"]
    return out


def plot_pixel_distributions(dist: pd.DataFrame) -> plt.Figure:
    """Violin plots (seaborn) of map values and entropy weights per layer, brain vs outside."""
    import seaborn as sns

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True)
    palette = {"brain": "tab:red", "outside": "tab:gray"}
    for ax, col, label in zip(axes, ("value", "weight"),
                              ("normalised map value $M_n(i)$", "entropy weight $W_n(i)$ (Eq. 3)")):
        sns.violinplot(data=dist, x="layer", y=col, hue="region", split=True, inner="quart", cut=0,
                       density_norm="width", palette=palette, ax=ax, linewidth=0.8)
        ax.set_xlabel("")
        ax.set_ylabel(label)
    axes[0].get_legend().remove()
    axes[1].legend(title="pixels", loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8)
    axes[0].set_title("What each layer says at brain and non-brain pixels")
    axes[1].set_title("How much UM-CAM trusts it there")
    return fig


# ----------------------------------------------------------------------------- 2. leave one out
def leave_one_out(slices: SliceSet, index: np.ndarray, layer_maps: np.ndarray, layer_names: Sequence[str],
                  layers: Sequence[str], grid: Sequence[float]) -> pd.DataFrame:
    """UM-CAM and Average-CAM of ``layers`` and of ``layers`` with each one left out.

    Returns
    -------
    DataFrame
        :func:`umcam_lib.cam.ablation.layer_ablation` rows (``layers`` = "all" or "without
        blockN") plus ``val_change`` and ``test_change``: DSC points against all layers of the
        same fusion (positive: leaving the layer out helps).
    """
    layers = list(layers)
    subsets = {"all": layers, **{f"without {l}": [k for k in layers if k != l] for l in layers if len(layers) > 1}}
    df = layer_ablation(slices, index, layer_maps, layer_names, grid, subsets=subsets)
    ref = df[df["layers"] == "all"].set_index("fusion")
    for split in ("val", "test"):
        df[f"{split}_change"] = df[f"{split}_dsc"] - df["fusion"].map(ref[f"{split}_dsc"])
    return df


# ----------------------------------------------------------------------------- 3. readings
def _score(slices: SliceSet, rows: np.ndarray, maps: np.ndarray, grid: np.ndarray, seed: int, reading: str,
           method: str) -> list[dict[str, Any]]:
    res = evaluate_cam(slices, rows, np.asarray(maps, dtype=np.float32), grid, name=f"{method}[{reading}]",
                       method=method)
    return [{"seed": int(seed), "reading": reading, "method": method, "split": split, "threshold": res.threshold,
             "n": len(df), "dsc": float(df["dsc"].mean())} for split, df in res.scores.items()]


def score_readings(model: nn.Module, slices: SliceSet, cam: CamParams | Mapping[str, Any], seed: int,
                   device: str | torch.device | None = None, amp: bool = False,
                   readings: Mapping[str, tuple[str, Mapping[str, Any]]] | None = None,
                   progress: bool = False) -> pd.DataFrame:
    """Score every reading of Eq. 3-4 and the LayerCAM rows for one classifier.

    Grad-CAM and LayerCAM maps of ``cam.layers`` are computed once each (one forward and one
    backward pass per batch) on the positive validation and test slices; every row then chooses
    its threshold on validation (``cam.threshold_grid``) and is scored on both splits.

    Parameters
    ----------
    model : nn.Module
        A trained classifier (not modified).
    slices : SliceSet
    cam : mapping
        The checked ``cam`` section (layers, grid, batch size, target, LayerCAM options).
    seed : int
        Recorded in the rows (the classifier's seed).
    readings : mapping, optional
        Default :data:`READINGS`.

    Returns
    -------
    DataFrame
        Columns ``seed, reading, method, split, threshold, n, dsc`` (mean DSC, %, over the split's
        positive slices). ``method`` is UM-CAM or Average-CAM for each reading (Average-CAM only
        where the normalisation differs), and Grad-CAM / LayerCAM rows with ``reading = "-"``.
    """
    readings = READINGS if readings is None else readings
    cam = check_section("cam", cam)
    grid = threshold_grid(cam.threshold_grid)
    rows = eval_rows(slices)
    layers = list(cam.layers)
    kw = dict(batch_size=cam.batch_size, device=device, amp=amp, target=cam.target, progress=progress)
    gmaps, peaks = compute_cams(model, slices.images[rows], layers, return_peaks=True, desc="Grad-CAM", **kw)
    lmaps = compute_cams(model, slices.images[rows], layers, weighting="layercam", desc="LayerCAM", **kw)
    out: list[dict[str, Any]] = []
    if CAM_LAYER in layers:
        out += _score(slices, rows, gmaps[layers.index(CAM_LAYER)], grid, seed, "-", GRADCAM)
        out += _score(slices, rows, lmaps[layers.index(CAM_LAYER)], grid, seed, "-", LAYERCAM)
    lam = dict(gamma=cam.layercam_gamma)
    out += _score(slices, rows, layercam_fusion(lmaps, rule="max", **lam), grid, seed, "-", LAYERCAM_MAX)
    out += _score(slices, rows, layercam_fusion(lmaps, rule="sum", **lam), grid, seed, "-", LAYERCAM_SUM)
    positions = np.arange(len(rows))
    done_average: set[tuple[Any, ...]] = set()
    for key, (_, opts) in readings.items():
        norm = opts.get("norm", "max")
        groups = norm_groups(norm, positions if norm == "batch_max" else rows, slices.volume, cam.batch_size)
        extra = dict(peaks=peaks, groups=groups) if groups is not None else {}
        out += _score(slices, rows, fuse_reading(gmaps, "umcam", **opts, **extra), grid, seed, key, "UM-CAM")
        avg_key = (norm, opts.get("percentile"), opts.get("final_norm", "minmax"))
        if avg_key not in done_average:
            done_average.add(avg_key)
            out += _score(slices, rows, fuse_reading(gmaps, "average_cam", **opts, **extra), grid, seed, key,
                          "Average-CAM")
    return pd.DataFrame(out)


def summarise_readings(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean and SD over seeds of every row of :func:`score_readings` (concatenated over seeds).

    Returns
    -------
    DataFrame
        One row per ``reading, method``: ``val_dsc, val_seed_sd, test_dsc, test_seed_sd, n_seeds``
        and ``label`` (the reading's description).
    """
    g = scores.groupby(["reading", "method", "split"], sort=False)["dsc"]
    s = pd.DataFrame({"dsc": g.mean(), "seed_sd": g.std(ddof=1), "n_seeds": g.count()}).reset_index()
    wide = s.pivot_table(index=["reading", "method"], columns="split", values=["dsc", "seed_sd"], sort=False)
    wide.columns = [f"{split}_{stat}" if stat == "seed_sd" else f"{split}_dsc" for stat, split in wide.columns]
    wide = wide.reset_index()
    wide["n_seeds"] = wide.apply(lambda r: int(s[(s["reading"] == r["reading"]) & (s["method"] == r["method"])]
                                               ["n_seeds"].max()), axis=1)
    wide["label"] = wide["reading"].map(lambda k: READINGS.get(k, ("no fusion reading",))[0])
    cols = ["reading", "label", "method", "val_dsc", "val_seed_sd", "test_dsc", "test_seed_sd", "n_seeds"]
    return wide.reindex(columns=cols)


def choose_reading(summary: pd.DataFrame, method: str = "UM-CAM") -> pd.Series:
    """The ``method`` row with the highest *validation* mean DSC (ties: the first listed)."""
    rows = summary[summary["method"] == method]
    if rows.empty:
        raise ValueError(f"no {method} rows in the readings summary")
    return rows.loc[rows["val_dsc"].idxmax()]


#: Keyword of :func:`umcam_lib.cam.fusion.fuse_reading` -> the ``cam`` key that sets it.
READING_KEYS = {"norm": "umcam_norm", "percentile": "umcam_percentile", "base": "entropy_base",
                "temperature": "entropy_temperature", "final_norm": "umcam_final_norm"}

#: The table name of the sensitivity row: UM-CAM under the paper's (the default) reading.
PAPER_READING_ROW = "UM-CAM (paper's Eq. 3-4 reading)"


def reading_section(cam: CamParams | Mapping[str, Any], reading: str) -> CamParams:
    """The ``cam`` section under one reading of :data:`READINGS` (the default reading's keys
    first, then the reading's own).

    Examples
    --------
    >>> reading_section({}, "t2").entropy_temperature, reading_section({"umcam_norm": "minmax"}, "paper").umcam_norm
    (2.0, 'max')
    """
    if reading not in READINGS:
        raise ValueError(f"unknown reading {reading!r}; expected one of {list(READINGS)}")
    base = check_section("cam", cam)
    default = {key: default_value(f"cam.{key}") for key in READING_KEYS.values()}
    own = {READING_KEYS[k]: v for k, v in READINGS[reading][1].items()}
    return base.replace(**{**default, **own})


def same_reading(a: CamParams | Mapping[str, Any], b: CamParams | Mapping[str, Any]) -> bool:
    """Whether two ``cam`` sections read Eq. 3-4 the same way (the keys of :data:`READING_KEYS`)."""
    a, b = check_section("cam", a), check_section("cam", b)
    return all(a[k] == b[k] for k in READING_KEYS.values())


def reading_gaps(scores: pd.DataFrame, left: str = "Average-CAM", right: str = "UM-CAM") -> pd.DataFrame:
    """Per reading and split: ``right - left`` DSC per seed, its mean, SD and sign agreement.

    ``left`` may be Grad-CAM (one row per seed, compared with every reading) or Average-CAM
    (compared under the same normalisation: the Average-CAM row of the reading, or of the
    paper's reading when the reading changes only the entropy).

    Returns
    -------
    DataFrame
        ``reading, split, left, right, gap, gap_seed_sd, n_seeds, seeds_agreeing`` (seeds where
        ``right`` is above ``left``).
    """
    out = []
    keyed = scores.set_index(["seed", "reading", "method", "split"])["dsc"]
    for (reading, split), g in scores[scores["method"] == right].groupby(["reading", "split"], sort=False):
        gaps = []
        for r in g.itertuples():
            ref_reading = "-" if left in (GRADCAM, LAYERCAM, LAYERCAM_MAX, LAYERCAM_SUM) else reading
            if (r.seed, ref_reading, left, split) not in keyed.index:
                ref_reading = "paper"
            key = (r.seed, ref_reading, left, split)
            if key in keyed.index:
                gaps.append(r.dsc - float(keyed.loc[key]))
        gaps_arr = np.asarray(gaps, dtype=float)
        out.append({"reading": reading, "split": split, "left": left, "right": right,
                    "gap": float(gaps_arr.mean()) if gaps_arr.size else np.nan,
                    "gap_seed_sd": float(gaps_arr.std(ddof=1)) if gaps_arr.size > 1 else np.nan,
                    "n_seeds": int(gaps_arr.size), "seeds_agreeing": int((gaps_arr > 0).sum())})
    return pd.DataFrame(out)


def plot_readings(scores: pd.DataFrame) -> plt.Figure:
    """Seed spread of every reading (seaborn): validation and test DSC of UM-CAM and Average-CAM
    per reading, with Grad-CAM and every LayerCAM row (block 5, and the max and sum fusions of
    the LayerCAM paper) as horizontal references (their seed means)."""
    import seaborn as sns

    fused = scores[scores["method"].isin(list(FUSION_NAMES.values()))]
    order = list(dict.fromkeys(fused["reading"]))
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.4), sharey=True, constrained_layout=True)
    refs = {GRADCAM: "black", LAYERCAM: "tab:green", LAYERCAM_MAX: "tab:olive", LAYERCAM_SUM: "tab:purple"}
    for ax, split in zip(axes, ("val", "test")):
        d = fused[fused["split"] == split]
        sns.stripplot(data=d, x="reading", y="dsc", hue="method", order=order, dodge=True, alpha=0.6, size=5,
                      palette={"UM-CAM": "tab:red", "Average-CAM": "tab:blue"}, ax=ax, legend=False)
        sns.pointplot(data=d, x="reading", y="dsc", hue="method", order=order, dodge=0.4, errorbar="sd",
                      linestyle="none", markers="_", markersize=14,
                      palette={"UM-CAM": "tab:red", "Average-CAM": "tab:blue"}, ax=ax)
        for name, colour in refs.items():
            ref = scores[(scores["method"] == name) & (scores["split"] == split)]["dsc"]
            if len(ref):
                ax.axhline(float(ref.mean()), color=colour, ls="--", lw=1, label=f"{name} (mean)")
        ax.set_title({"val": "validation", "test": "test"}[split])
        ax.set_xlabel("")
        ax.set_ylabel("DSC (%)")
        ax.tick_params(axis="x", rotation=35)
        for t in ax.get_xticklabels():
            t.set_ha("right")
    axes[0].get_legend().remove()
    axes[1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8)
    fig.suptitle("Pseudo-mask DSC under each reading of Eq. 3-4 (dots: seeds; bars: mean ± SD over seeds)")
    return fig


# ----------------------------------------------------------------------------- sentences
def describe_contrast(contrast: pd.DataFrame) -> str:
    """Markdown bullets from :func:`weight_contrast`: which layer the weights favour on the brain."""
    c = contrast
    hi, lo = c["weight_brain"].idxmax(), c["weight_brain"].idxmin()
    lower = [str(l) for l in c.index if c.loc[l, "weight_gap"] < 0]
    return "\n".join([
        f"- On brain pixels the mean weight is highest for {hi} ({c.loc[hi, 'weight_brain']:.2f}) and lowest for "
        f"{lo} ({c.loc[lo, 'weight_brain']:.2f}); their median map values there are "
        f"{c.loc[hi, 'value_brain']:.2f} and {c.loc[lo, 'value_brain']:.2f}.",
        f"- {len(lower)} of {len(c)} layers weigh less on the brain than outside it"
        + f" ({', '.join(lower)})" + ": on the brain, Eq. 3 favours the layers whose maps sit near 0 or 1 "
        "there over those with intermediate values, whichever of them marks the brain." if lower else
        "- Every layer weighs at least as much on the brain as outside it.",
    ])


def describe_leave_one_out(loo: pd.DataFrame, fusion: str = "umcam") -> str:
    """One Markdown bullet: which left-out layer helps or hurts ``fusion`` most on validation."""
    d = loo[(loo["fusion"] == fusion) & (loo["layers"] != "all")]
    if d.empty:
        return "- Only one layer is fused: nothing to leave out."
    best, worst = d.loc[d["val_change"].idxmax()], d.loc[d["val_change"].idxmin()]
    name = FUSION_NAMES.get(fusion, fusion)
    helped = int((d["val_change"] > 0).sum())
    return (f"- {name}: leaving out one layer raises the validation DSC for {helped} of {len(d)} layers; "
            f"most when it is {best['layers'].removeprefix('without ')} ({best['val_change']:+.1f} points, "
            f"test {best['test_change']:+.1f}), least when it is {worst['layers'].removeprefix('without ')} "
            f"({worst['val_change']:+.1f}, test {worst['test_change']:+.1f}).")


def _verdict(gaps: pd.Series | pd.DataFrame) -> str:
    g = gaps
    if g["n_seeds"] == 0 or np.isnan(g["gap"]):
        return "not measured"
    every = g["seeds_agreeing"] == g["n_seeds"]
    none = g["seeds_agreeing"] == 0
    if g["gap"] > 0:
        return "holds in every seed" if every else "holds in the mean, not in every seed"
    return "does not hold (reversed in every seed)" if none else "does not hold (reversed in the mean)"


def describe_readings(summary: pd.DataFrame, scores: pd.DataFrame) -> str:
    """Markdown bullets: the validation-chosen reading, and per reading whether UM-CAM beats
    Average-CAM and Grad-CAM (seed means; the sign of every seed's gap decides "every seed")."""
    best = choose_reading(summary)
    n = int(best["n_seeds"])
    lines = [f"- Chosen on validation: **{best['label'] or best['reading']}**, UM-CAM {best['val_dsc']:.1f} "
             f"(seed SD {best['val_seed_sd']:.1f}) on validation and {best['test_dsc']:.1f} "
             f"(SD {best['test_seed_sd']:.1f}) on test, {n} seed{'s' if n != 1 else ''}."]
    for left in ("Average-CAM", GRADCAM):
        gaps = reading_gaps(scores, left=left)
        for split in ("val", "test"):
            g = gaps[gaps["split"] == split]
            held = [r.reading for r in g.itertuples() if r.gap > 0 and r.seeds_agreeing == r.n_seeds]
            mean_only = [r.reading for r in g.itertuples() if r.gap > 0 and r.seeds_agreeing < r.n_seeds]
            lines.append(f"- {split}: UM-CAM is above {left} in every seed under {len(held)} of {len(g)} readings"
                         + (f" ({', '.join(held)})" if held else "")
                         + (f", in the mean only under {', '.join(mean_only)}" if mean_only else "") + ".")
    layer = summary[summary["method"].str.startswith("LayerCAM")]
    if len(layer):
        top = layer.loc[layer["val_dsc"].idxmax()]
        lines.append(f"- The best LayerCAM row on validation is {top['method']}: {top['val_dsc']:.1f} validation, "
                     f"{top['test_dsc']:.1f} test (Grad-CAM: "
                     + ", ".join(f"{r.val_dsc:.1f} / {r.test_dsc:.1f}"
                                 for r in summary[summary["method"] == GRADCAM].itertuples()) + ").")
    return "\n".join(lines)


def reading_links(scores: pd.DataFrame) -> pd.DataFrame:
    """The fusion claims under every reading, one row per reading and split (notebook 08's sensitivity table).

    Returns
    -------
    DataFrame
        Columns ``claim, split, left, relation, right, left_dsc, right_dsc, p_value`` (NaN: the
        verdict is over seeds), ``test``,
        ``verdict``, ``n_seeds``, ``seeds_agreeing``, ``gap_seed_sd``.
    """
    out = []
    means = scores.groupby(["reading", "method", "split"])["dsc"].mean()
    for left, claim in (("Average-CAM", "UM-CAM > Average-CAM under each reading of Eq. 3-4"),
                        (GRADCAM, "UM-CAM > Grad-CAM under each reading of Eq. 3-4")):
        for g in reading_gaps(scores, left=left).itertuples():
            ref_reading = "-" if left == GRADCAM else (g.reading if (g.reading, left, g.split) in means.index
                                                          else "paper")
            right_dsc = float(means.get((g.reading, "UM-CAM", g.split), np.nan))
            left_dsc = float(means.get((ref_reading, left, g.split), np.nan))
            out.append({"claim": claim, "split": g.split, "left": f"{left} [{ref_reading}]", "relation": "<",
                        "right": f"UM-CAM [{g.reading}]", "left_dsc": left_dsc, "right_dsc": right_dsc,
                        "p_value": np.nan, "test": f"sign of the gap in each of {g.n_seeds} seeds",
                        "verdict": _verdict(pd.Series(g._asdict())), "n_seeds": g.n_seeds,
                        "seeds_agreeing": g.seeds_agreeing, "gap_seed_sd": g.gap_seed_sd})
    return pd.DataFrame(out)
