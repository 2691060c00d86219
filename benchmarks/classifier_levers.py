"""Does the fusion ordering change when the classifier is closer to the paper's? (issue 20, item 4)

Each lever is one pipeline run of notebooks 01-04 with the lever's ``--set`` overrides, over the
profile's classifier seeds, e.g.::

    python -m umcam_lib.pipeline --profile quick --only 01,02,03,04 \\
        --set classifier.batch_norm=false --out runs/lever-bn-off --figures runs/lever-bn-off/figures

This script reads what those runs recorded (``cams/fusion_readings.csv`` of notebook 04 and the
classifiers' ``history.csv``) and writes one row per lever: the classifier's best validation
accuracy, the seed mean and SD of Grad-CAM, Average-CAM and UM-CAM (the paper's reading of
Eq. 3-4 and the reading validation chooses for UM-CAM), and in how many seeds UM-CAM is above
Average-CAM and above Grad-CAM. Nothing is trained here::

    python benchmarks/classifier_levers.py --run "width 0.125 (quick)=runs/quick" \\
        --run "batch norm off=runs/lever-bn-off" --out benchmarks/results/classifier_levers_quick
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from umcam_lib.cam.fairness import choose_reading, reading_gaps, summarise_readings  # noqa: E402
from umcam_lib.cam.study import load_reading_scores  # noqa: E402
from umcam_lib.io import atomic_path  # noqa: E402


def classifier_accuracy(run_dir: Path) -> list[float]:
    """Best validation accuracy (%) of every seed's classifier in a run folder."""
    files = [run_dir / "classifier" / "history.csv", *sorted((run_dir / "seeds").glob("seed-*/classifier/history.csv"))]
    return [100.0 * float(pd.read_csv(f)["val_accuracy"].max()) for f in files if f.is_file()]


def lever_row(name: str, run_dir: Path) -> dict[str, object]:
    """One lever's summary (see the module docstring); raises when notebook 04 left no readings."""
    scores = load_reading_scores(run_dir)
    if scores is None:
        raise FileNotFoundError(f"{run_dir}: no cams/fusion_readings.csv (run notebooks 01-04 with cam.readings=true)")
    summary = summarise_readings(scores)
    acc = classifier_accuracy(run_dir)
    row: dict[str, object] = {"lever": name, "run": str(run_dir), "n_seeds": int(scores["seed"].nunique()),
                              "classifier_val_acc": float(np.mean(acc)) if acc else np.nan}

    def cell(reading: str, method: str) -> None:
        hit = summary[(summary["reading"] == reading) & (summary["method"] == method)].iloc[0]
        key = f"{method}{'' if reading in ('-', 'paper') else ' ' + reading}".replace(" ", "_").lower()
        for split in ("val", "test"):
            row[f"{key}_{split}"] = float(hit[f"{split}_dsc"])
            row[f"{key}_{split}_sd"] = float(hit[f"{split}_seed_sd"])

    cell("-", "Grad-CAM")
    cell("paper", "Average-CAM")
    cell("paper", "UM-CAM")
    chosen = choose_reading(summary)
    row["umcam_chosen_reading"] = str(chosen["reading"])
    row["umcam_chosen_val"], row["umcam_chosen_test"] = float(chosen["val_dsc"]), float(chosen["test_dsc"])
    for left in ("Average-CAM", "Grad-CAM"):
        gaps = reading_gaps(scores, left=left)
        tag = left.split("-")[0].lower()
        for split in ("val", "test"):
            g = gaps[(gaps["split"] == split)]
            paper = g[g["reading"] == "paper"].iloc[0]
            row[f"umcam_over_{tag}_paper_{split}"] = f"{int(paper['seeds_agreeing'])}/{int(paper['n_seeds'])}"
            every = int(((g["seeds_agreeing"] == g["n_seeds"]) & (g["n_seeds"] > 0)).sum())
            row[f"readings_umcam_over_{tag}_every_seed_{split}"] = f"{every}/{len(g)}"
    return row


def markdown(df: pd.DataFrame) -> str:
    """The table a reader needs: seed means (SD) of validation / test DSC, %, and the seed counts."""
    def ms(r: pd.Series, key: str, split: str) -> str:
        return f"{r[f'{key}_{split}']:.1f} ({r[f'{key}_{split}_sd']:.1f})"

    lines = ["| lever | seeds | clf val acc | Grad-CAM val / test | Average-CAM val / test | UM-CAM val / test | "
             "UM > Avg seeds (paper) val, test | UM > Grad seeds (paper) val, test | readings with UM > Avg in every seed "
             "val, test | UM-CAM, validation-chosen reading |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in df.iterrows():
        lines.append(
            f"| {r['lever']} | {r['n_seeds']} | {r['classifier_val_acc']:.1f} | "
            f"{ms(r, 'grad-cam', 'val')} / {ms(r, 'grad-cam', 'test')} | "
            f"{ms(r, 'average-cam', 'val')} / {ms(r, 'average-cam', 'test')} | "
            f"{ms(r, 'um-cam', 'val')} / {ms(r, 'um-cam', 'test')} | "
            f"{r['umcam_over_average_paper_val']}, {r['umcam_over_average_paper_test']} | "
            f"{r['umcam_over_grad_paper_val']}, {r['umcam_over_grad_paper_test']} | "
            f"{r['readings_umcam_over_average_every_seed_val']}, {r['readings_umcam_over_average_every_seed_test']} | "
            f"{r['umcam_chosen_reading']}: {r['umcam_chosen_val']:.1f} / {r['umcam_chosen_test']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", action="append", required=True, metavar="NAME=RUN_DIR",
                    help="a lever's name and its run folder (repeatable)")
    ap.add_argument("--out", type=Path, help="write <out>.csv and <out>.md")
    args = ap.parse_args(argv)
    rows = []
    for text in args.run:
        if "=" not in text:
            ap.error(f"--run expects NAME=RUN_DIR, got {text!r}")
        name, path = text.split("=", 1)
        rows.append(lever_row(name, Path(path)))
    df = pd.DataFrame(rows)
    md = markdown(df)
    print(md)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(args.out.with_suffix(".csv")) as tmp:
            df.to_csv(tmp, index=False)
        with atomic_path(args.out.with_suffix(".md")) as tmp:
            Path(tmp).write_text(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
