"""Two or more runs of the study side by side (e.g. the real stacks with slice and crop labels).

Each run keeps its own folder and tables; this module only reads their recorded scores
(:func:`umcam_lib.report.summarise`) and lines the rows of Tables 1 and 2 up, one column group
per run.
"""
from __future__ import annotations

import json

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from ..data.scores import SECTIONS, TABLES
from .tables import _method_rank, save_table, summarise


def companion_dirs(run_dir: str | Path, figures_dir: str | Path, companion: str) -> tuple[Path, Path]:
    """Run and figure folders of a companion profile (``companions`` parameter) of a run.

    Returns ``(<run_dir>/companions/<name>, <figures_dir>/companions/<name>)``.
    """
    return Path(run_dir) / "companions" / companion, Path(figures_dir) / "companions" / companion


def side_by_side(runs: Mapping[str, str | Path], split: str = "test") -> pd.DataFrame:
    """Tables 1 and 2 of several runs, one row per (section, method), one column group per run.

    Parameters
    ----------
    runs : mapping of label -> run folder
        E.g. ``{"slice": "runs/real-slice", "crop": "runs/real"}``; every folder must hold
        recorded scores (notebooks 03-07).
    split : {"val", "test"}

    Returns
    -------
    DataFrame
        ``section``, ``method`` and, per run label ``L``: ``dsc_L`` (mean 3D or 2D DSC, %),
        ``sd_L`` (SD over slices / volumes), ``seed_sd_L`` (SD of the seed means; NaN for one
        seed), ``n_L``. A method a run did not score has NaN.
    """
    if not runs:
        raise ValueError("side_by_side needs at least one run")
    parts = []
    for label, run_dir in runs.items():
        if not Path(run_dir).is_dir():
            raise FileNotFoundError(f"run folder {run_dir} (label {label!r}) does not exist")
        rows = pd.concat([summarise(run_dir, t) for t in TABLES], ignore_index=True)
        rows = rows[rows["split"] == split].drop_duplicates(["section", "method"])
        parts.append(rows.set_index(["section", "method"])[["dsc_mean", "dsc_std", "dsc_seed_sd", "n"]]
                     .rename(columns={"dsc_mean": f"dsc_{label}", "dsc_std": f"sd_{label}",
                                      "dsc_seed_sd": f"seed_sd_{label}", "n": f"n_{label}"}))
    out = pd.concat(parts, axis=1).reset_index()
    out["_s"] = out["section"].map(lambda s: SECTIONS.index(s) if s in SECTIONS else len(SECTIONS))
    out["_m"] = out["method"].map(_method_rank)
    return out.sort_values(["_s", "_m"]).drop(columns=["_s", "_m"]).reset_index(drop=True)


def run_label(run_dir: str | Path, name: str) -> str:
    """A legend entry for a run that says what its classifier was trained on, and what it is tested on.

    Reads ``classifier.label_unit`` and ``data.test_subjects`` from the run's provenance of
    notebook 02 (``<run_dir>/provenance/02.json``): e.g. ``"slice labels (real-slice)"``, or
    ``"crop labels, test sub-01 (real-reverse)"`` when the test subjects were named. Returns
    ``name`` alone when the run recorded no such provenance.
    """
    path = Path(run_dir) / "provenance" / "02.json"
    if not path.is_file():
        return name
    params = json.loads(path.read_text()).get("params", {})
    unit = (params.get("classifier", {}) or {}).get("label_unit")
    test = [str(s) for s in (params.get("data", {}) or {}).get("test_subjects") or []]
    where = f", test {' '.join(test)}" if test else ""
    return f"{unit} labels{where} ({name})" if unit else name


def side_by_side_figure(table: pd.DataFrame, labels: list[str], title: str = "",
                        display: Mapping[str, str] | None = None) -> "object":
    """Horizontal bars of ``dsc_<label>`` per method (one colour per run), error bars = seed SD.

    Parameters
    ----------
    table : DataFrame
        :func:`side_by_side`.
    labels : list of str
        The run labels of ``table``'s column groups.
    display : mapping, optional
        Run label -> legend text (e.g. from :func:`run_label`); the label itself otherwise.

    Returns
    -------
    matplotlib Figure
        The legend sits above the bars, outside the axes, so it covers none.
    """
    import matplotlib.pyplot as plt

    names = [f"{m} ({'pseudo mask' if s == 'pseudo_mask' else 'UNet'})" for s, m in zip(table["section"], table["method"])]
    y = np.arange(len(table))
    h = 0.8 / max(len(labels), 1)
    fig, ax = plt.subplots(figsize=(7.5, 0.35 * len(table) + 1.2))
    for i, label in enumerate(labels):
        err = table.get(f"seed_sd_{label}")
        ax.barh(y + (i - (len(labels) - 1) / 2) * h, table[f"dsc_{label}"], height=h,
                label=(display or {}).get(label, label),
                xerr=None if err is None else err.fillna(0.0), capsize=2)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("DSC (%)")
    ax.set_xlim(0, 100)
    ax.legend(title="classifier trained on", loc="lower center", bbox_to_anchor=(0.5, 1.0),
              ncol=min(len(labels), 2), fontsize=8, title_fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def write_side_by_side(runs: Mapping[str, str | Path], figures_dir: str | Path, name: str = "label_units",
                       split: str = "test") -> pd.DataFrame:
    """Write ``<name>.csv/.md/.tex`` and ``<name>.png`` into ``figures_dir``; return the table."""
    import matplotlib.pyplot as plt

    table = side_by_side(runs, split)
    save_table(table, figures_dir, name, caption=f"Tables 1 and 2 ({split}) for each run: " + ", ".join(runs))
    display = {label: run_label(d, label) for label, d in runs.items()}
    fig = side_by_side_figure(table, list(runs), title=f"{split} DSC, run by run", display=display)
    out = Path(figures_dir) / f"{name}.png"
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(out)
    return table


def write_companion_claims(run_dir: str | Path, figures_dir: str | Path,
                           companions: list[str]) -> dict[str, pd.DataFrame]:
    """The paper's claims on each companion's own scores, written beside its figures.

    A companion that stops after notebook 05 has pseudo masks only, so only the pseudo-mask
    claims are measured; the others are left out. Each table goes to
    ``<figures_dir>/companions/<name>/claims.{csv,md,tex}`` (:func:`umcam_lib.report.verdicts.assess_claims`).

    Returns
    -------
    dict
        Companion name -> its measured claims (empty when it recorded no scores).
    """
    from .verdicts import METHOD, assess_claims

    out = {}
    for name in companions:
        c_run, c_fig = companion_dirs(run_dir, figures_dir, name)
        claims = assess_claims(c_run)
        claims = claims[claims["verdict"] != "not measured"].reset_index(drop=True)
        if len(claims):
            save_table(claims, c_fig, "claims", caption=f"The paper's claims on the scores of companion {name} "
                       f"({METHOD}); only the sections it ran")
        out[name] = claims
    return out

