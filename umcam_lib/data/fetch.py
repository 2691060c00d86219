"""The nine public CC0 fetal MRI stacks for anyone who clones the repository.

The real profile reads nine clinical T2 stacks of two fetuses with brain masks (see
``../shared/data/fetal-mri-cc0/README.md``). They are the public sample data of the MIAL
super-resolution toolkit on GitHub; :data:`REGISTRY` names, for each file of the BIDS-style
folder, its upstream repository, commit, path and SHA-256 (the folder's ``SOURCES.tsv``).

:func:`fetch_cc0` returns a folder that holds all eighteen files, every hash verified:

1. a **local copy** when one is present: the folder given (``local=``), else
   ``$UMCAM_CC0_DIR``, else ``../shared/data/fetal-mri-cc0`` beside the repository
   (:data:`umcam_lib.paths.SHARED_DATA`). Nothing is downloaded then, so this works offline.
   A local copy with a file whose hash differs is an error (it is never used, and never
   silently replaced by a download);
2. else the **cache** (``$UMCAM_DATA_DIR/fetal-mri-cc0``, default the user cache folder of
   ``pooch.os_cache("umcam-study")``): files already there are checked, missing or corrupt
   ones are downloaded with `pooch <https://www.fatiando.org/pooch>`_ from the pinned commit
   and checked against :data:`REGISTRY`;
3. else a :class:`~umcam_lib.data.nifti.DataError` that says what was tried and what to do.

In a profile, ``data.root: fetal-mri-cc0`` (the dataset's name, :data:`DATASET`) asks for this
folder (:func:`resolve_root`); any other value is a path as before. On the command line::

    python -m umcam_lib.data.fetch            # print the folder (downloads only when needed)
    python -m umcam_lib.data.fetch --verify   # hash every file of the local copy, no download
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..paths import SHARED_DATA, resolve
from .nifti import DataError
from ..hashing import file_sha256

#: The dataset's name; ``data.root`` set to it means "fetch (or find) these stacks".
DATASET = "fetal-mri-cc0"

#: Environment variables: a local copy of the folder, and the cache root for downloads.
LOCAL_ENV, CACHE_ENV = "UMCAM_CC0_DIR", "UMCAM_DATA_DIR"

#: Raw-file URL of one file at one commit of a GitHub repository (non-LFS files).
URL_TEMPLATE = "https://raw.githubusercontent.com/{repository}/{commit}/{path}"


@dataclass(frozen=True)
class Source:
    """Where one file of the dataset comes from.

    Attributes
    ----------
    file : str
        Path inside the dataset folder (``sub-01/anat/sub-01_run-1_T2w.nii.gz``).
    sha256 : str
        Hex SHA-256 of the file's bytes.
    repository, commit, path : str
        The upstream GitHub repository (``owner/name``), the pinned commit and the file's path
        in it.
    """

    file: str
    sha256: str
    repository: str
    commit: str
    path: str

    @property
    def url(self) -> str:
        return URL_TEMPLATE.format(repository=self.repository, commit=self.commit, path=self.path)


_MIAL = "Medical-Image-Analysis-Laboratory/mialsuperresolutiontoolkit"
_BIDS, _OLD = "ecd37d5f84189c33a76368d3653d9af588032b3c", "dc66d9957ee6a2aa3f454c5c3185a6157fb7d55d"
# (file, sha256, commit, upstream path); the repository is the same for all (SOURCES.tsv)
_ROWS = [
    ("sub-01/anat/sub-01_run-1_T2w.nii.gz", "be83d9c2c6d9b83c1ae9d619b8fefa7048016246df4a97e5c76e0686e0cc8f4c",
     _BIDS, "data/sub-01/anat/sub-01_run-1_T2w.nii.gz"),
    ("sub-01/anat/sub-01_run-1_T2w_desc-brain_mask.nii.gz",
     "f5928e6b2ffeb65e88506ce606a3934fdd8de8f8bb0b585b1436b7e54a33e127",
     _BIDS, "data/derivatives/manual_masks/sub-01/anat/sub-01_run-1_T2w_desc-brain_mask.nii.gz"),
    ("sub-01/anat/sub-01_run-2_T2w.nii.gz", "5bda15f4cfa03f9184068b5881c9ac38f7be9d03ddb8159803d77b36f87e61f7",
     _BIDS, "data/sub-01/anat/sub-01_run-2_T2w.nii.gz"),
    ("sub-01/anat/sub-01_run-2_T2w_desc-brain_mask.nii.gz",
     "2c497fafe960a8950c2bc96202a87674b9f6a12d8478cea8be2eaa166434ec8b",
     _BIDS, "data/derivatives/manual_masks/sub-01/anat/sub-01_run-2_T2w_desc-brain_mask.nii.gz"),
    ("sub-01/anat/sub-01_run-3_T2w.nii.gz", "7fa77748de4de73c481f4453f1e4b948742e3fa6962e6f516a4171b8fbbfd84e",
     _BIDS, "data/sub-01/anat/sub-01_run-3_T2w.nii.gz"),
    ("sub-01/anat/sub-01_run-3_T2w_desc-brain_mask.nii.gz",
     "e4459913c7d8162c0c5181cf62b4d59dfa8894c7183b0bd20b533d6264f61a70",
     _BIDS, "data/derivatives/manual_masks/sub-01/anat/sub-01_run-3_T2w_desc-brain_mask.nii.gz"),
    ("sub-01/anat/sub-01_run-4_T2w.nii.gz", "6e9d158430468510ade7fe499bf693234fb05ceec7dd6b5e8ab1c3591ac13eed",
     _BIDS, "data/sub-01/anat/sub-01_run-4_T2w.nii.gz"),
    ("sub-01/anat/sub-01_run-4_T2w_desc-brain_mask.nii.gz",
     "43ba053394f218827a85a6a610693a3596110a8c54b4976046ea15ca99a12e73",
     _BIDS, "data/derivatives/manual_masks/sub-01/anat/sub-01_run-4_T2w_desc-brain_mask.nii.gz"),
    ("sub-01/anat/sub-01_run-5_T2w.nii.gz", "7a17bd95c0bbacebc51c244d493b6f9d1f969f45d25e0325e7b649231e897820",
     _BIDS, "data/sub-01/anat/sub-01_run-5_T2w.nii.gz"),
    ("sub-01/anat/sub-01_run-5_T2w_desc-brain_mask.nii.gz",
     "8293ccd3d22aae7beb274937c06faf456177dd6071a82feae53a0b2ba4967096",
     _BIDS, "data/derivatives/manual_masks/sub-01/anat/sub-01_run-5_T2w_desc-brain_mask.nii.gz"),
    ("sub-01/anat/sub-01_run-6_T2w.nii.gz", "5abfe46881e2b3aa82eb65e14a39323fdbcf21b4466bf98abe354bf28b44aa13",
     _BIDS, "data/sub-01/anat/sub-01_run-6_T2w.nii.gz"),
    ("sub-01/anat/sub-01_run-6_T2w_desc-brain_mask.nii.gz",
     "6b73de75b900c9bad86f5a0c83054a01f8e0b0017813042acf232215ee8ef4ac",
     _BIDS, "data/derivatives/manual_masks/sub-01/anat/sub-01_run-6_T2w_desc-brain_mask.nii.gz"),
    ("sub-02/anat/sub-02_run-1_T2w.nii.gz", "ccb37bab7bdcc1170bd544c09f41e12e25a725da6ec94a557b7ad1d3b3cb74d8",
     _OLD, "data/axial1_lr.nii.gz"),
    ("sub-02/anat/sub-02_run-1_T2w_desc-brain_mask.nii.gz",
     "769dbc01186f9bc061ac06290ad93327d1cbd21e08ca422af2a08815998b8340", _OLD, "data/axial1_lr_brain_mask.nii.gz"),
    ("sub-02/anat/sub-02_run-2_T2w.nii.gz", "965e14d8d6d2065d76eb438df6eea450a6619fb3069f1b765fe3aa6b93aef041",
     _OLD, "data/coronal1_lr.nii.gz"),
    ("sub-02/anat/sub-02_run-2_T2w_desc-brain_mask.nii.gz",
     "79f8f54ee5ee7952c03ab56d9252e9f16617aae281abcbacbad52e91279ff571", _OLD, "data/coronal1_lr_brain_mask.nii.gz"),
    ("sub-02/anat/sub-02_run-3_T2w.nii.gz", "0a3bbb332c939f3ba3ea4b8edce1d37f82206d2ba8cbf624e5829c0953f74322",
     _OLD, "data/sagittal1_lr.nii.gz"),
    ("sub-02/anat/sub-02_run-3_T2w_desc-brain_mask.nii.gz",
     "b7e6cd88f72515697c6a05779fd9e618280016f8ba39b148982a25c75f2e6e01", _OLD, "data/sagittal1_lr_brain_mask.nii.gz"),
]

#: Every file of the dataset: 9 stacks and their 9 brain masks (the folder's ``SOURCES.tsv``).
REGISTRY: tuple[Source, ...] = tuple(Source(f, h, _MIAL, c, p) for f, h, c, p in _ROWS)

#: ``(url, output_file, pooch)`` -> None, as pooch's downloaders (tests pass a local copier).
Downloader = Callable[[str, str, object], None]


#: Hex SHA-256 of a file's bytes (:func:`umcam_lib.hashing.file_sha256`).
sha256 = file_sha256


def check_folder(folder: str | Path, registry: tuple[Source, ...] | None = None) -> tuple[list[str], list[str]]:
    """Compare a folder with the registry.

    Returns
    -------
    missing : list of str
        Registry files absent from ``folder``.
    corrupt : list of str
        ``"<path>: sha256 <actual>, expected <registry>"`` for each present file whose hash
        differs.
    """
    folder = Path(folder)
    missing, corrupt = [], []
    for src in REGISTRY if registry is None else registry:
        p = folder / src.file
        if not p.is_file():
            missing.append(src.file)
            continue
        actual = sha256(p)
        if actual != src.sha256:
            corrupt.append(f"{p}: sha256 {actual}, expected {src.sha256}")
    return missing, corrupt


def local_candidates(local: str | Path | None = None) -> list[Path]:
    """Where a local copy is looked for, in order: ``local``, ``$UMCAM_CC0_DIR``,
    :data:`umcam_lib.paths.SHARED_DATA` (``../shared/data/fetal-mri-cc0``)."""
    out: list[Path] = []
    if local is not None:
        out.append(resolve(local))
    if os.environ.get(LOCAL_ENV):
        out.append(resolve(os.environ[LOCAL_ENV]))
    out.append(SHARED_DATA)
    return out


def default_cache() -> Path:
    """The download cache: ``$UMCAM_DATA_DIR/fetal-mri-cc0``, else the user cache folder."""
    if os.environ.get(CACHE_ENV):
        return resolve(os.environ[CACHE_ENV]) / DATASET
    import pooch

    return Path(pooch.os_cache("umcam-study")) / DATASET


def _download(cache: Path, downloader: Downloader | None, progress: bool, looked: list[Path]) -> Path:
    """Fetch every registry file into ``cache`` with pooch (hash-checked); raise DataError."""
    try:
        import pooch
    except ImportError as exc:  # pragma: no cover - pooch is a dependency
        raise DataError(f"pooch is needed to download the {DATASET} stacks: pip install pooch") from exc
    fetcher = pooch.create(path=cache, base_url="", registry={s.file: f"sha256:{s.sha256}" for s in REGISTRY},
                           urls={s.file: s.url for s in REGISTRY}, retry_if_failed=2)
    for src in REGISTRY:
        try:
            fetcher.fetch(src.file, downloader=downloader, progressbar=False)
        except Exception as exc:  # network errors, HTTP errors, hash mismatch: all end here
            raise DataError(
                f"cannot fetch {src.file} of the {DATASET} stacks from {src.url} into {cache} "
                f"({type(exc).__name__}: {exc}). No complete local copy was found either (looked in "
                f"{', '.join(str(p) for p in looked)}). Connect to the network, or put a copy of "
                f"the folder there (or pass its path as data.root / ${LOCAL_ENV})"
            ) from exc
        if progress:
            print(f"  {src.file}: ok", file=sys.stderr)
    return cache


def fetch_cc0(local: str | Path | None = None, cache: str | Path | None = None, download: bool = True,
              downloader: Downloader | None = None, progress: bool = False) -> Path:
    """A folder holding the nine CC0 stacks and their masks, every SHA-256 verified.

    Parameters
    ----------
    local : path, optional
        A folder that may hold a copy (BIDS layout as in :data:`REGISTRY`); tried first.
    cache : path, optional
        Download cache (default :func:`default_cache`).
    download : bool
        Allow downloading (``False``: local copy or complete cache only).
    downloader : callable, optional
        pooch downloader ``(url, output_file, pooch)`` (default: pooch's HTTPS downloader);
        tests pass one that copies local files.
    progress : bool
        Print each downloaded file.

    Returns
    -------
    Path
        The local copy when one is complete, else the cache folder.

    Raises
    ------
    DataError
        A local copy or cached file has a wrong hash (the message names it), or the files are
        neither present nor downloadable.
    """
    for folder in local_candidates(local):
        if not folder.is_dir():
            continue
        missing, corrupt = check_folder(folder)
        if corrupt:
            raise DataError(f"local copy of the {DATASET} stacks at {folder} does not match the registry: "
                            + "; ".join(corrupt) + ". Replace these files (or remove the folder to download them)")
        if not missing:
            return folder
        if progress:
            print(f"{folder}: incomplete copy ({len(missing)} of {len(REGISTRY)} files missing); not used",
                  file=sys.stderr)
    cache = resolve(cache) if cache is not None else default_cache()
    missing, _ = check_folder(cache) if cache.is_dir() else ([s.file for s in REGISTRY], [])
    if missing and not download:
        raise DataError(f"the {DATASET} stacks are not available offline: no complete local copy (looked in "
                        f"{', '.join(str(p) for p in local_candidates(local))}) and {len(missing)} file(s) missing "
                        f"from the cache {cache} (e.g. {missing[0]})")
    return _download(cache, downloader, progress, local_candidates(local))  # re-checks (and re-fetches) corrupt cached files too


def resolve_root(root: str | Path | None, **kwargs) -> Path:
    """The folder a profile's ``data.root`` names.

    ``fetal-mri-cc0`` (:data:`DATASET`), unless a folder of that name exists relative to the
    repository, means :func:`fetch_cc0`; anything else is a path resolved against the
    repository root (:func:`umcam_lib.paths.resolve`).
    """
    if root is None or str(root).strip() == "":
        raise DataError(f"data.root must name a folder of NIfTI stacks (or {DATASET!r} for the public CC0 stacks) "
                        f"when data.source is 'nifti'")
    if str(root) == DATASET and not resolve(root).is_dir():
        return fetch_cc0(**kwargs)
    return resolve(root)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m umcam_lib.data.fetch", description=__doc__.split("\n\n")[0])
    ap.add_argument("--local", help="folder that may hold a copy (tried first)")
    ap.add_argument("--cache", help=f"download cache (default ${CACHE_ENV}/{DATASET} or the user cache)")
    ap.add_argument("--offline", action="store_true", help="never download")
    ap.add_argument("--verify", action="store_true", help="only check a local copy's hashes (no download)")
    args = ap.parse_args(argv)
    try:
        if args.verify:
            folder = next((p for p in local_candidates(args.local) if p.is_dir()), None)
            if folder is None:
                raise DataError(f"no local copy in {', '.join(str(p) for p in local_candidates(args.local))}")
            missing, corrupt = check_folder(folder)
            for line in [f"missing: {m}" for m in missing] + [f"corrupt: {c}" for c in corrupt]:
                print(line)
            print(f"{folder}: {len(REGISTRY) - len(missing) - len(corrupt)} of {len(REGISTRY)} files verified")
            return 1 if missing or corrupt else 0
        print(fetch_cc0(args.local, args.cache, download=not args.offline, progress=True))
        return 0
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
