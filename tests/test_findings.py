import json

import numpy as np
import pandas as pd
import pytest

from umcam_lib.report import findings, verdicts
from umcam_lib import report


def test_paper_layout_stars_only_significant_best(tmp_path):
    rng = np.random.default_rng(1)
    base = rng.normal(80, 3, 10)
    report.record_scores(tmp_path, "table2", "segmentation", "DRS", "val", range(10), base, np.ones(10))
    report.record_scores(tmp_path, "table2", "segmentation", "UM-CAM+SPL", "val", range(10), base + 5, np.ones(10))
    t = findings.paper_layout(tmp_path, "table2").set_index("method")
    assert t.loc["UM-CAM+SPL", "val DSC (%)"].endswith("*")
    assert not t.loc["DRS", "val DSC (%)"].endswith("*")
    assert t.loc["DRS", "val paper DSC"] == "84.98 ± 5.62"


# ----------------------------------------------------------------------------- generated prose
def _seg(run_dir, method, split, dsc):
    dsc = np.asarray(dsc, float)
    report.record_scores(run_dir, "table1", "segmentation", method, split, range(len(dsc)), dsc, np.ones(len(dsc)))


def test_class_balance_sentence_reads_the_label_table():
    labels = pd.DataFrame({"unit": ["slice"] * 2, "split": ["train", "val"], "images": [80, 20],
                           "positives": [16, 4], "positive_share": [0.2, 0.2]})
    text = findings.describe_class_balance(labels)
    assert "80.0 % of the images show no brain" in text and "right 80.0 % of the time" in text
    assert "train 80.0 %" in text and "val 80.0 %" in text
    with pytest.raises(ValueError, match="empty"):
        findings.describe_class_balance(labels.iloc[:0])


@pytest.mark.parametrize("shift_both, word", [(10.0, "above both"), (-1.0, "between"), (-30.0, "below both")])
def test_combination_sentence_follows_the_rows(tmp_path, shift_both, word):
    rng = np.random.default_rng(0)
    base = rng.normal(60, 3, 12)
    _seg(tmp_path, "UM-CAM", "test", base - 10)
    _seg(tmp_path, "SPL", "test", base)
    _seg(tmp_path, "UM-CAM+SPL", "test", base + shift_both + rng.normal(0, 0.3, 12))
    text = findings.describe_combination(tmp_path, "test")
    assert f"The combination is {word}" in text
    assert "complement each other" in text if word == "above both" else "complement" not in text
    assert "12 volumes" in text


def test_combination_sentence_says_when_rows_are_missing(tmp_path):
    _seg(tmp_path, "SPL", "val", [50, 60])
    assert "no segmentation rows for UM-CAM, UM-CAM+SPL" in findings.describe_combination(tmp_path, "val")


def test_tta_oracle_spl_and_pseudo_mask_sentences_count_from_their_tables():
    tta = pd.DataFrame({"method": ["a", "b", "c"], "val_gain": [1.0, -2.0, 0.5], "test_gain": [-1.0, -1.0, 3.0]})
    text = findings.describe_tta(tta)
    assert "val: TTA raises 2 of 3 UNets" in text and "test: TTA raises 1 of 3 UNets" in text
    oracle = pd.DataFrame({"method": ["a", "b"], "dsc_all": [50.0, 60.0], "dsc_oracle": [70.0, 75.0]})
    text = findings.describe_oracle(oracle)
    assert "+15.0 to +20.0 points" in text and "more than the 10.0 points" in text
    quality = pd.DataFrame({"method": ["UM-CAM", "SPL"], "split": ["val", "val"], "dsc_mean": [70.0, 65.0],
                            "hd95_mean": [5.0, 6.0]})
    assert "5.0 points below the UM-CAM mask" in findings.describe_spl_quality(quality)
    pm = pd.DataFrame({"method": ["Grad-CAM", "DRS (suppressed)", "AMR"], "val_dsc": [40.0, 55.0, 40.0]})
    text = findings.describe_pseudo_masks(pm, "val")
    assert "DRS (suppressed) is 15.0 points above plain Grad-CAM" in text and "AMR is equal to plain Grad-CAM" in text


# ----------------------------------------------------------------------------- printed in the executed notebooks
def _printed(run_dir, name: str) -> str:
    """Every text output of an executed notebook of the run (streams, plain text, Markdown)."""
    nb = json.loads((run_dir / "notebooks" / name).read_text())
    out = []
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            out.append("".join(o.get("text", "")))
            for kind in ("text/plain", "text/markdown"):
                out.append("".join(o.get("data", {}).get(kind, "")))
    return "\n".join(out)


def _claims(run, fig) -> dict[str, list[str]]:
    """Notebook -> the sentences it must have printed, regenerated here from the run's recorded results."""
    labels = pd.read_csv(fig / "label_units.csv")
    return {
        "02_classifier_training.ipynb": [findings.describe_class_balance(labels),
                                         findings.describe_class_balance(labels[labels["unit"] == "slice"]),
                                         findings.describe_seed_spread(pd.read_csv(fig / "classification_seeds.csv"))],
        "05_spl_generation.ipynb": [findings.describe_spl_quality(pd.read_csv(fig / "spl_quality.csv"))],
        "06_segmentation.ipynb": [findings.describe_combination(run, "val"), findings.describe_combination(run, "test"),
                                  findings.describe_tta(pd.read_csv(fig / "segmentation_tta.csv")),
                                  findings.describe_oracle(pd.read_csv(fig / "segmentation_oracle.csv"))],
        "07_baselines.ipynb": [findings.describe_pseudo_masks(pd.read_csv(fig / "baseline_pseudo_masks.csv"), s)
                               for s in ("val", "test")]
                              + [findings.describe_section(pd.read_csv(fig / "table2.csv"), "segmentation", s)
                                 for s in ("val", "test")],
        "08_report.ipynb": [verdicts.describe(pd.read_csv(fig / "claims.csv"), s, m) for s in ("val", "test")
                            for m in ("dsc", "hd95")]
                           + [findings.describe_section(report.summarise(run, "table1"), "pseudo_mask", "test")],
    }


@pytest.mark.parametrize("notebook", ["02_classifier_training.ipynb", "05_spl_generation.ipynb",
                                      "06_segmentation.ipynb", "07_baselines.ipynb", "08_report.ipynb"])
def test_generated_claims_are_printed_in_the_executed_notebooks(tiny_run, notebook):
    """The sentences standing in for result claims in the markdown, regenerated from the run's
    tables and scores, appear verbatim in the notebook's outputs (so its prose and its numbers agree)."""
    expected = _claims(tiny_run.run_dir, tiny_run.figures_dir)[notebook]
    printed = _printed(tiny_run.run_dir, notebook)
    for sentence in expected:
        for line in sentence.splitlines():
            assert line.strip() and line.strip() in printed, f"{notebook} did not print: {line!r}"
