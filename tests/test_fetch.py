"""The CC0 stacks' registry and fetcher (umcam_lib.data.fetch), offline.

No test here touches the network: the registry is checked against the local copy in
``../shared/data/fetal-mri-cc0`` (skipped where it is absent), and the download path runs with
pooch and a downloader that copies local files (pooch's own hash check included)."""
from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import pytest

from umcam_lib.config import check_section
from umcam_lib.data import fetch
from umcam_lib.data import prepare as prep
from umcam_lib.data.nifti import DataError
from umcam_lib.paths import SHARED_DATA

pytest.importorskip("pooch")


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(fetch.LOCAL_ENV, raising=False)
    monkeypatch.delenv(fetch.CACHE_ENV, raising=False)


@pytest.fixture
def shared():
    if not (SHARED_DATA / "SOURCES.tsv").is_file():
        pytest.skip(f"no local copy of the CC0 stacks at {SHARED_DATA}")
    return SHARED_DATA


def _refuse(url, output_file, pooch):  # a downloader for "there is no network"
    raise ConnectionError(f"no network here ({url})")


# --------------------------------------------------------------------------- the real registry
def test_registry_equals_sources_tsv(shared):
    with open(shared / "SOURCES.tsv", newline="") as f:
        rows = [r for r in csv.reader(f, delimiter="\t") if r and not r[0].startswith("#")]
    assert len(rows) == len(fetch.REGISTRY) == 18
    assert [(s.file, s.sha256, s.repository, s.commit, s.path) for s in fetch.REGISTRY] == [tuple(r) for r in rows]
    for s in fetch.REGISTRY:
        assert s.url.startswith("https://") and s.url.endswith(s.path) and s.commit in s.url


def test_registry_hashes_equal_local_copy(shared):
    missing, corrupt = fetch.check_folder(shared)
    assert missing == [] and corrupt == []
    assert fetch.main(["--verify", "--local", str(shared)]) == 0


def test_local_copy_is_used_without_download(shared, tmp_path):
    out = fetch.fetch_cc0(cache=tmp_path / "cache", downloader=_refuse)
    assert out == shared
    assert not (tmp_path / "cache").exists()
    assert fetch.resolve_root("fetal-mri-cc0", cache=tmp_path / "cache", downloader=_refuse) == shared


def test_real_profile_root_finds_the_nine_stacks(shared, tmp_path):
    data = check_section("data", {"source": "nifti", "root": fetch.DATASET})
    refs = prep._cohort_refs(data, tmp_path, seed=0, progress=False)
    assert len(refs) == 9 and {r.subject for r in refs} == {"sub-01", "sub-02"}


# --------------------------------------------------------------------------- download path (offline)
@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A three-file registry served from ``tmp_path/upstream`` and no shared copy."""
    upstream = tmp_path / "upstream"
    rows = []
    for i, name in enumerate(["sub-01/anat/a_T2w.nii.gz", "sub-01/anat/a_T2w_desc-brain_mask.nii.gz",
                              "sub-02/anat/b_T2w.nii.gz"]):
        p = upstream / f"blob{i}"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(bytes([i]) * (100 + i))
        rows.append(fetch.Source(name, hashlib.sha256(p.read_bytes()).hexdigest(), "owner/repo", "c" * 40,
                                 f"blob{i}"))
    monkeypatch.setattr(fetch, "REGISTRY", tuple(rows))
    monkeypatch.setattr(fetch, "SHARED_DATA", tmp_path / "no-shared-copy")
    calls = []

    def copier(url, output_file, pooch):
        calls.append(url)
        shutil.copyfile(upstream / url.rsplit("/", 1)[-1], output_file)

    return dict(upstream=upstream, rows=rows, copier=copier, calls=calls, cache=tmp_path / "cache")


def test_download_into_cache_verifies_and_reuses(fake):
    out = fake["cache"]
    assert fetch.fetch_cc0(cache=out, downloader=fake["copier"]) == out
    assert len(fake["calls"]) == 3
    assert fetch.check_folder(out) == ([], [])
    # a second call finds everything in the cache: no download
    assert fetch.fetch_cc0(cache=out, downloader=_refuse) == out
    assert fetch.fetch_cc0(cache=out, download=False) == out


def test_corrupt_download_is_refused_and_not_kept(fake):
    def bad(url, output_file, pooch):
        Path(output_file).write_bytes(b"not the file")

    with pytest.raises(DataError, match=r"sub-01/anat/a_T2w.nii.gz.*(?i:hash)"):
        fetch.fetch_cc0(cache=fake["cache"], downloader=bad)
    assert not (fake["cache"] / "sub-01/anat/a_T2w.nii.gz").exists()


def test_no_copy_and_no_network_is_a_clear_error(fake):
    with pytest.raises(DataError, match=r"cannot fetch sub-01/anat/a_T2w.nii.gz.*no-shared-copy"):
        fetch.fetch_cc0(cache=fake["cache"], downloader=_refuse)
    with pytest.raises(DataError, match="not available offline"):
        fetch.fetch_cc0(cache=fake["cache"], download=False)


def test_corrupt_cached_file_is_fetched_again(fake):
    fetch.fetch_cc0(cache=fake["cache"], downloader=fake["copier"])
    (fake["cache"] / fake["rows"][2].file).write_bytes(b"bit rot")
    fetch.fetch_cc0(cache=fake["cache"], downloader=fake["copier"])
    assert fetch.check_folder(fake["cache"]) == ([], [])


def test_user_copy_is_used_and_checked(fake, tmp_path):
    copy = tmp_path / "mine"
    for src in fake["rows"]:
        (copy / src.file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(fake["upstream"] / src.path, copy / src.file)
    assert fetch.fetch_cc0(local=copy, downloader=_refuse) == copy
    (copy / fake["rows"][1].file).write_bytes(b"edited")
    with pytest.raises(DataError, match="a_T2w_desc-brain_mask.nii.gz: sha256"):
        fetch.fetch_cc0(local=copy, downloader=_refuse)


def test_resolve_root_paths_and_missing_root(tmp_path):
    assert fetch.resolve_root(str(tmp_path)) == tmp_path
    with pytest.raises(DataError, match="data.root"):
        fetch.resolve_root(None)
