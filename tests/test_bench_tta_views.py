"""benchmarks/segment_tta_views.py: the view set is chosen on validation only, ties to fewer views."""
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import segment_tta_views as tv  # noqa: E402


def _table(val: dict[str, float], test: dict[str, float]) -> pd.DataFrame:
    rows = []
    for model, shift in (("a", 0.0), ("b", 2.0)):  # two replicates, b better everywhere by 2
        for views in tv.SETTINGS:
            for set_name in ("sub-01 val", "shift val", "sub-02 test", "shift test"):
                dsc = (val if "val" in set_name else test)[views] + shift
                rows += [{"model": model, "set": set_name, "stack": f"{set_name}-{i}", "views": views,
                          "n_views": len(tv.SETTINGS[views]), "dsc": dsc + i, "forward_s": 1.0} for i in (-1, 1)]
    return pd.DataFrame(rows)


def test_choice_reads_validation_only_and_gives_ties_to_fewer_views(tmp_path):
    val = {"d8": 80.0, "rot4": 79.0, "flip4": 80.5, "flip2": 80.46, "off": 70.0}
    test = {"d8": 90.0, "rot4": 50.0, "flip4": 50.0, "flip2": 50.0, "off": 99.0}
    assert tv.choose(_table(val, test)) == "flip2"  # 0.04 below flip4, half the passes
    assert tv.choose(_table({**val, "flip2": 80.4}, test)) == "flip4"  # 0.1 below: not a tie
    assert tv.choose(_table(val, {v: 0.0 for v in test})) == "flip2"  # test columns never read
    chosen = tv.write_table(_table(val, test), tmp_path / "t", "cmd")
    md = (tmp_path / "t.md").read_text()
    assert chosen == "flip2" and "| **flip2** | 2 | 81.5 +- 1.4 |" in md and "| off | 1 | 71.0 +- 1.4 |" in md
    assert len(pd.read_csv(tmp_path / "t.csv")) == 2 * 5 * 4 * 2


def test_shift_scores_are_reused_only_for_the_same_checkpoint_and_views(tmp_path):
    import json
    import os

    import shift_benchmark as sb
    ck = tmp_path / "best.pt"
    ck.write_bytes(b"weights")
    out = tmp_path / "out"
    out.mkdir()
    record = {"checkpoint": str(ck), "tta": True}  # written before --tta-views: d8
    (out / "segment_desc-x.json").write_text(json.dumps(record))
    pd.DataFrame({"image": ["a.nii.gz"], "dsc": [80.0]}).to_csv(out / "scores_desc-x.csv", index=False)
    os.utime(ck, (1, 1))
    assert sb.cached_scores(out, "d8")["dsc"].tolist() == [80.0]
    assert sb.cached_scores(out, "flip2") is None  # other views
    (out / "segment_desc-x.json").write_text(json.dumps({**record, "tta_views": "flip2"}))
    assert sb.cached_scores(out, "flip2") is not None and sb.cached_scores(out, "d8") is None
    (out / "segment_desc-x.json").write_text(json.dumps({**record, "tta": False, "tta_views": None}))
    assert sb.cached_scores(out, "d8") is not None  # TTA off: views do not matter
    ck.write_bytes(b"retrained")  # newer than the scores
    assert sb.cached_scores(out, "d8") is None
    assert sb.cached_scores(tmp_path / "none", "d8") is None
