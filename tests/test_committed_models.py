"""The models committed in models/ (python -m umcam_lib.segment.ship runs/real) segment a real test stack
as well as their model card says.

For each shipped model (the weak one and FullySup): every file is verified against
models/registry.json, then ``python -m umcam_lib.segment`` (no run folder) segments one stack of
the test split of the nine CC0 stacks (read-only from their local copy) and its mask is scored
against the manual mask beside it. The floor is the 3D DSC that the run recorded for that very
stack (``card.json`` -> ``scores.test.dsc_per_volume``), less :data:`TOLERANCE`: the run scores
on its prepared 2 mm grid, segment on the stack's native grid, and the shipped weights are
float16.
"""
from __future__ import annotations

import json

import pandas as pd
import pytest

from umcam_lib import segment as sg
from umcam_lib.segment import shipped
from umcam_lib.data.fetch import fetch_cc0
from umcam_lib.data.nifti import DataError

TOLERANCE = 5.0
"""DSC points the native-grid score of segment may fall below the run's score of the same stack."""
STACK = "sub-02_run-1_T2w"
"""A test-split stack of the real profile (sub-02 is the test subject)."""


@pytest.fixture(scope="module")
def cc0():
    try:
        return fetch_cc0(download=False)
    except DataError as exc:
        pytest.skip(f"the CC0 stacks are not available offline ({exc})")


@pytest.mark.parametrize("alias", ["weak", "fullysup"])
def test_committed_model_segments_a_real_test_stack_as_its_card_says(alias, cc0, tmp_path):
    reg = shipped.verify(shipped.MODELS_DIR)  # every file, hashed against registry.json
    name = shipped.model_name(reg, alias)
    card = json.loads((shipped.MODELS_DIR / reg["models"][name]["folder"] / "card.json").read_text())
    stacks = {s["name"]: s for s in card["training_data"]["stacks"]}
    assert stacks[STACK]["split"] == "test"  # never a stack the model was trained or chosen on
    floor = card["scores"]["test"]["dsc_per_volume"][str(stacks[STACK]["volume"])] - TOLERANCE

    image = cc0 / STACK.split("_")[0] / "anat" / f"{STACK}.nii.gz"
    out = tmp_path / "masks"
    assert sg.main([str(image), "--out", str(out), "--model", alias, "--device", "cpu", "--quiet", "--no-qc"]) == 0
    scores = pd.read_csv(next(out.glob("scores_desc-*.csv")))
    assert len(scores) == 1 and scores.reference.notna().all()
    assert scores.dsc.iloc[0] > floor, (f"{name}: 3D DSC {scores.dsc.iloc[0]:.2f} % on {STACK}, below the floor "
                                        f"{floor:.2f} % (the card's {floor + TOLERANCE:.2f} % - {TOLERANCE})")
