"""The method page is in the repository and the entry documents point to it (a clone has no ../shared)."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
METHOD = ROOT / "docs" / "method.md"


def test_method_page_restores_every_numbered_equation():
    text = METHOD.read_text(encoding="utf-8")
    for n in range(1, 9):
        assert f"\\qquad ({n})" in text, f"docs/method.md lacks Eq. {n}"
    for section in ("pipeline at a glance", "authors' code differs", "Deliberate deviations"):
        assert section in text


@pytest.mark.parametrize("name", ["README.md", "CONTRIBUTING.md"])
def test_entry_documents_link_the_method_page_not_the_shared_folder(name):
    text = (ROOT / name).read_text(encoding="utf-8")
    assert "docs/method.md" in text
    assert "../shared/paper" not in text and "../shared/STUDY" not in text


def test_license_is_the_one_pyproject_names():
    import tomllib

    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"] == {"text": "MIT"}
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


# --- README and docs/: generated numbers, length, links -------------------------------------

import re  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402

sys.path.insert(0, str(ROOT / "tools"))
import readme_numbers  # noqa: E402

README = ROOT / "README.md"
#: Documents whose relative links must resolve (targets and #anchors).
LINKED_DOCS = ("README.md", "docs/results.md", "docs/levers.md", "docs/method.md", "CONTRIBUTING.md")
README_MAX_LINES = 250


def test_generated_numbers_match_the_committed_csvs():
    problems = readme_numbers.check(ROOT)
    assert not problems, "\n".join(problems) + "\nrun: python tools/readme_numbers.py"


def test_every_document_with_numbers_has_its_blocks():
    assert readme_numbers.blocks_in(README.read_text(encoding="utf-8")) == ["found", "results"]
    assert set(readme_numbers.blocks_in((ROOT / "docs" / "results.md").read_text(encoding="utf-8"))) == (
        set(readme_numbers.RENDERERS) - {"found", "results"})


def _copy_study(tmp_path: Path) -> Path:
    """The documents and the figure CSVs of the checkout, in a scratch tree."""
    for doc in readme_numbers.DOCUMENTS:
        (tmp_path / doc).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / doc, tmp_path / doc)
    for csv_file in [*(ROOT / "figures").rglob("*.csv"), *(ROOT / "figures").rglob("provenance.json")]:
        dest = tmp_path / csv_file.relative_to(ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(csv_file, dest)
    return tmp_path


def _set_dsc(path: Path, method: str, split: str, value: float) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(True)
    header = lines[0].rstrip("\n").split(",")
    col = header.index("dsc_mean")
    for i, line in enumerate(lines[1:], 1):
        cells = line.rstrip("\n").split(",")
        if cells[0] == "pseudo_mask" and cells[1] == method and cells[2] == split:
            cells[col] = repr(value)
            lines[i] = ",".join(cells) + "\n"
    path.write_text("".join(lines), encoding="utf-8")


def test_check_fails_when_a_csv_changes_and_the_tool_rewrites_the_block(tmp_path):
    root = _copy_study(tmp_path)
    assert readme_numbers.check(root) == []
    _set_dsc(root / "figures" / "quick" / "table1.csv", "UM-CAM", "test", 12.34)
    problems = readme_numbers.check(root)
    assert problems and "README.md" in problems[0]
    assert "12.3" in "".join(problems)
    assert readme_numbers.main(["--check", "--root", str(root)]) == 1
    assert readme_numbers.write(root) == ["README.md", "docs/results.md"]
    assert readme_numbers.check(root) == []
    text = " ".join((root / "README.md").read_text(encoding="utf-8").split())
    assert "(UM-CAM, 12.3 %) is 7.1 points above the all-foreground floor" in text  # floor 5.25 %


def test_a_missing_csv_is_an_error_naming_it(tmp_path):
    root = _copy_study(tmp_path)
    (root / "figures" / "real" / "companions.csv").unlink()
    with pytest.raises(readme_numbers.NumbersError, match="companions.csv"):
        readme_numbers.check(root)


def test_wrapped_lines_never_start_a_list_or_heading():
    body = "word " * 18 + "- next " + "x " * 40 + "# no heading " + "y " * 40 + "1. no list"
    for line in readme_numbers.wrap(body, width=40).splitlines()[1:]:
        assert not re.match(r"^(?:[-+*] |#|>|1[.)] |\|)", line), line
    assert readme_numbers.wrap("p = 0.25 " * 30, width=30).count("p = 0.25") == 30


def test_readme_is_short_and_opens_on_what_was_found_then_the_two_commands():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < README_MAX_LINES, f"README.md has {len(lines)} lines"
    assert "**What we found.**" in "\n".join(lines[:20])
    first_screen = "\n".join(lines[:55])
    for needed in ("make study", "make test", "min", "docs/study/quick/README.md", "docs/study/real/README.md"):
        assert needed in first_screen, needed


def _strip_code(text: str) -> str:
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    text = re.sub(r"^(?: {4}|\t).*$", "", text, flags=re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    seen: dict[str, int] = {}
    out = set()
    for line in _strip_code(path.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _links(text: str) -> list[str]:
    return re.findall(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", _strip_code(text))


@pytest.mark.parametrize("name", LINKED_DOCS)
def test_relative_links_resolve(name):
    doc = ROOT / name
    broken = []
    for target in _links(doc.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target):
            continue
        path_part, _, anchor = target.partition("#")
        dest = (doc.parent / path_part).resolve() if path_part else doc
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target} (no heading #{anchor})")
    assert not broken, f"{name}: " + ", ".join(broken)


#: Terms a newcomer meets in the README and the notebooks before they are explained there.
GLOSSARY_TERMS = ("Pointing game", "All-foreground, the floor", "Readings of Eq. 3-4", "Per-batch max",
                  "Companion profile", "DRS, AMR", "SPL, seed-derived pseudo label", "GSE, geodesic seed expansion",
                  "TTA, test-time augmentation", "Verdict: holds, reversed, inconclusive, descriptive",
                  "Crop labels", "HD95", "Replicate", "Sensitivity row")


def test_the_glossary_defines_the_terms_the_readme_uses_before_explaining_them():
    text = (ROOT / "docs" / "glossary.md").read_text(encoding="utf-8")
    defined = set(re.findall(r"^\*\*(.+?)\*\*", text, flags=re.M))
    missing = [t for t in GLOSSARY_TERMS if not any(d.rstrip(".").startswith(t) for d in defined)]
    assert not missing, f"docs/glossary.md lacks {missing}"
    assert "docs/glossary.md" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_found_block_follows_the_verdicts_of_claims_csv(tmp_path):
    """A claim whose verdict changes in claims.csv moves to another line of the README's summary."""
    root = _copy_study(tmp_path)
    path = root / "figures" / "quick" / "claims.csv"
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    target = next(r for r in rows if r["split"] == "test" and r["metric"] == "dsc" and r["verdict"] == "reversed")
    target["verdict"] = "holds"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    readme_numbers.write(root)
    text = " ".join((root / "README.md").read_text(encoding="utf-8").split())
    found = text[text.index("**What we found.**"):text.index("**Caveats**")]
    holds = found[found.index("**Holds**"):found.index("**Reversed**") if "**Reversed**" in found else None]
    assert readme_numbers.claim_label(target) in holds


def test_the_teaching_page_tables_match_the_measured_lesson_run():
    sys.path.insert(0, str(ROOT / "tools"))
    import lesson_times

    assert lesson_times.main(["--check"]) == 0, "run: python tools/lesson_times.py"
    text = (ROOT / "docs" / "teaching.md").read_text(encoding="utf-8")
    for ex, _, _ in lesson_times.EXERCISES:
        assert f"| {ex} |" in text
