"""The site (make book): it builds from the committed files without executing anything, and the
page checker of tools/book_page.py finds missing figures and tables."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import book_page  # noqa: E402

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000")


def _page(folder: Path, body: str) -> Path:
    page = folder / "page.html"
    page.write_text(f"<html><body>{body}</body></html>", encoding="utf-8")
    return page


def test_page_checker_names_a_missing_image_and_a_missing_table(tmp_path):
    (tmp_path / "_images").mkdir()
    (tmp_path / "_images" / "a.png").write_bytes(PNG)
    whole = _page(tmp_path, '<img src="_images/a.png"><table><tr><td>1</td></tr></table>')
    assert book_page.page_problems(whole, min_figures=1, min_tables=1) == []
    broken = _page(tmp_path, '<img src="_images/a.png"><img src="_images/gone.png">')
    problems = book_page.page_problems(broken, min_figures=1, min_tables=1)
    assert any("gone.png" in p and "missing" in p for p in problems)
    assert any("0 table(s)" in p for p in problems)
    assert book_page.page_problems(_page(tmp_path, '<img src="data:image/png;base64,">'))
    assert book_page.main([str(broken), "--no-screenshot"]) == 1


@pytest.mark.slow
def test_the_site_builds_without_execution_and_its_pages_are_whole(tmp_path):
    out = tmp_path / "html"
    done = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", "-c", "book", ".", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "index.html").is_file() and (out / "book" / "index.html").is_file()
    pages = {"README.html": (1, 1), "docs/teaching.html": (0, 1), "docs/glossary.html": (0, 0),
             "docs/results.html": (0, 3), "docs/method.html": (0, 0), "docs/segment.html": (0, 0),
             "docs/study/quick/08_report.html": (2, 2), "docs/study/real/06_segmentation.html": (3, 1)}
    for page, (figures, tables) in pages.items():
        assert book_page.page_problems(out / page, figures, tables) == [], page
    # links to notebooks/ (not pages) lead to the executed copies on the site
    assert 'href="docs/study/quick/03_cam_variants.html' in (out / "README.html").read_text(encoding="utf-8")
    assert 'href="study/quick/05_spl_generation.html' in (out / "docs" / "teaching.html").read_text(encoding="utf-8")
    index = (out / "book" / "index.html").read_text(encoding="utf-8")
    assert "docs/teaching.html" in index and "docs/study/quick/README.html" in index
    assert not (out / "notebooks").exists()              # the unexecuted notebooks are not pages
