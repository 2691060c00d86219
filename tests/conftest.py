"""Shared fixtures: one run of the whole pipeline on the tiny profile for the notebook tests."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@dataclass
class TinyRun:
    run_dir: Path
    figures_dir: Path
    results: list


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    """Run every registered notebook with ``params/tiny.yaml`` into a temporary folder, once."""
    from umcam_lib import paths, pipeline

    base = tmp_path_factory.mktemp("tiny_run")
    run_dir, fig_dir = base / "run", base / "figures"
    existing = []  # the unbroken run of notebooks from 01 (later ones need earlier artifacts)
    for number, name in pipeline.NOTEBOOKS.items():
        if not (paths.NOTEBOOK_DIR / name).is_file():
            break
        existing.append(number)
    results = pipeline.run_pipeline(profile="tiny", only=existing, out=run_dir, figures=fig_dir)
    return TinyRun(run_dir=run_dir, figures_dir=fig_dir, results=results)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses the tiny pipeline run as slow (``make test-fast`` skips them)."""
    for item in items:
        if "tiny_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """Skip, not fail, a test that needs GeodisTK where the optional ``[geodesic]`` extra is absent
    (the plain ``pip install -e .`` and conda routes; ``make`` installs it)."""
    try:
        return (yield)
    except ModuleNotFoundError as err:
        if err.name == "GeodisTK":
            pytest.skip("GeodisTK is not installed (optional extra [geodesic]; see CONTRIBUTING.md)")
        raise
