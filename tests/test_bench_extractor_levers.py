"""benchmarks/extractor_levers.py: levers are chosen on the two validation sets; sub-02 can only veto
shipping a choice that loses there against the shipped recipe."""
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import extractor_levers as el  # noqa: E402


def _scores(levels: dict[str, dict[str, float]]) -> pd.DataFrame:
    rows = []
    for lever, sets in levels.items():
        for seed in (0, 1, 2):
            for st, dsc in sets.items():
                rows.append({"lever": lever, "seed": seed, "set": st, "dsc": dsc + seed, "dsc_min": dsc - 5})
    return pd.DataFrame(rows)


def test_choice_reads_validation_only_and_sub02_can_only_veto(tmp_path):
    base = {"sub-01 val": 84.0, "shift val": 72.0, "sub-02 test": 87.0, "shift test": 75.0}
    better_val = {"sub-01 val": 84.0, "shift val": 76.0, "sub-02 test": 84.0, "shift test": 99.0}
    scores = _scores({"strong": base, "tight-quarter": better_val})
    picks = el.choose(scores)
    assert picks == {"FullySup": ("tight-quarter", 2)}
    guard = el.ship_guard(scores, picks)
    assert "reported, not shipped" in guard["FullySup"] and "85.0 on sub-02 against strong's 88.0" in guard["FullySup"]
    # the same table with sub-02 and the shift test half changed: the choice does not move
    assert el.choose(_scores({"strong": {**base, "sub-02 test": 0.0}, "tight-quarter": better_val})) == picks
    fine = _scores({"strong": base, "tight-quarter": {**better_val, "sub-02 test": 90.0}})
    assert "may be shipped" in el.ship_guard(fine, el.choose(fine))["FullySup"]
    assert el.ship_guard(_scores({"strong": base}), {"FullySup": ("strong", 0)}) == {}   # the baseline itself
    el.write_table(scores, tmp_path / "t", "cmd")
    text = (tmp_path / "t.md").read_text()
    assert "FullySup: **tight-quarter**" in text and "reported, not shipped" in text
