"""The method page is in the repository and the entry documents point to it (a clone has no ../shared)."""
from __future__ import annotations

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
