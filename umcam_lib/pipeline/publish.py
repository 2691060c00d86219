"""The executed study where a reader finds it: ``docs/study/<profile>/``.

A pipeline run that writes the committed ``figures/<profile>/`` also copies the executed
notebooks of its run folder (``<run>/notebooks/NN_name.ipynb``, outputs included) to
``docs/study/<profile>/`` and writes an index ``README.md`` there: one line per notebook (its
title, its run time, the commit and date it ran at). The copies are made light: widget state,
papermill's and the execution's metadata are dropped, progress bars keep their last state (the
many stream outputs a bar writes are merged into one), tqdm's "IProgress not found" warning is
dropped, and paths of the checkout are written relative; images are kept (the largest
re-encoded as 256-colour PNG or JPEG, so that each copy stays under about 2 MB). Markdown links that point out of
``notebooks/`` (``../docs/method.md``) are rewritten to work from the new place.

Rebuild from an existing run folder without rerunning anything::

    python -m umcam_lib.pipeline --publish-only --out runs/quick
"""
from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..io import atomic_path
from ..paths import REPO_ROOT

#: Output mime types that hold interactive state a static page cannot use.
DROPPED_MIME = ("application/vnd.jupyter.widget-view+json", "application/vnd.jupyter.widget-state+json")

#: An inline PNG larger than this (bytes of base64) is re-encoded by :func:`shrink_image`, so that
#: an executed copy stays under about 2 MB and renders on a code host.
LARGE_IMAGE = 300_000

#: Metadata kept on a published notebook and on its cells.
NOTEBOOK_METADATA = ("kernelspec", "language_info")
CELL_METADATA = ("tags",)

_LINK_OUT = re.compile(r"(\]\(|src=\")\.\./")


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


#: Lines a published copy drops: tqdm's warning when ipywidgets is missing, and its source line.
_NOISE = re.compile(r"^[^\n]*TqdmWarning: IProgress not found[^\n]*\n(?:[ \t]+from \.autonotebook import[^\n]*\n)?",
                    re.M)


def _last_state(text: str) -> str:
    """Text as a terminal shows it: of each line rewritten with ``\\r``, only the last version."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def _merged_streams(outputs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Outputs with each run of consecutive stream outputs of one name (stdout, stderr) joined
    into one: a progress bar that the kernel flushed as hundreds of outputs becomes one."""
    merged: list[dict[str, Any]] = []
    for o in outputs:
        prev = merged[-1] if merged else None
        if (o.get("output_type") == "stream" and prev is not None and prev.get("output_type") == "stream"
                and prev.get("name") == o.get("name")):
            prev["text"] = _text(prev.get("text")) + _text(o.get("text"))
            continue
        merged.append(dict(o))
    return merged


def notebook_heading(nb: Mapping[str, Any], fallback: str = "") -> str:
    """The first Markdown heading of a notebook (``"# 01 · Data preparation"`` -> its text)."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        for line in _text(cell.get("source")).splitlines():
            if line.lstrip().startswith("#"):
                return line.lstrip().lstrip("#").strip()
    return fallback


def shrink_image(png_b64: str, limit: int = LARGE_IMAGE) -> tuple[str, str]:
    """A large inline PNG re-encoded to fit ``limit``: first as a 256-colour PNG, else as a JPEG.

    Parameters
    ----------
    png_b64 : str
        The image as a notebook stores it (base64 of a PNG).
    limit : int
        Bytes of base64 under which the image is kept as it is.

    Returns
    -------
    (mime, base64) : tuple of str
        ``("image/png", ...)`` (unchanged, or palette-quantised) or ``("image/jpeg", ...)``
        (quality 85), whichever is first under ``limit``; the smaller of the two otherwise. Pixel
        size is kept, so a figure reads as before.
    """
    import base64
    import io

    from PIL import Image

    text = "".join(png_b64.split())
    if len(text) <= limit:
        return "image/png", png_b64
    with Image.open(io.BytesIO(base64.b64decode(text))) as img:
        rgb = img.convert("RGB")
    buf = io.BytesIO()
    rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(buf, format="PNG", optimize=True)
    palette = base64.b64encode(buf.getvalue()).decode("ascii")
    if len(palette) <= limit:
        return "image/png", palette
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=85, optimize=True)
    jpeg = base64.b64encode(buf.getvalue()).decode("ascii")
    return ("image/jpeg", jpeg) if len(jpeg) < len(palette) else ("image/png", palette)


def shrink_output(data: dict[str, Any], metadata: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """An output's ``data`` and ``metadata`` with its PNG through :func:`shrink_image` (order kept)."""
    if "image/png" not in data:
        return data, metadata
    mime, image = shrink_image(_text(data["image/png"]))
    if mime == "image/png" and image is data["image/png"]:
        return data, metadata
    swap = {"image/png": mime}
    return ({swap.get(k, k): (image if k == "image/png" else v) for k, v in data.items()},
            {swap.get(k, k): v for k, v in metadata.items()})


def slim_notebook(nb: dict[str, Any], depth: int, repo: Path = REPO_ROOT) -> dict[str, Any]:
    """A copy of an executed notebook fit to commit beside the docs.

    Parameters
    ----------
    nb : dict
        The executed notebook (nbformat 4 JSON).
    depth : int
        How many folders below the checkout's root the copy goes (``docs/study/quick``: 3);
        Markdown links out of ``notebooks/`` (``../x``) get ``depth`` steps up instead of one.
    repo : Path
        The checkout; its absolute path in sources and text outputs is made relative.

    Returns
    -------
    dict
        The notebook without widget state, papermill / execution metadata, carriage-return
        progress updates (consecutive stream outputs merged) and tqdm's IProgress warning; text
        outputs are kept, and images too, those over :data:`LARGE_IMAGE` re-encoded smaller
        (:func:`shrink_image`).
    """
    out = copy.deepcopy(nb)
    root = str(Path(repo).resolve()) + os.sep
    up = "../" * depth

    def rel(text: str) -> str:
        return text.replace(root, "")

    out["metadata"] = {k: v for k, v in (nb.get("metadata") or {}).items() if k in NOTEBOOK_METADATA}
    for cell in out.get("cells", []):
        cell["metadata"] = {k: v for k, v in (cell.get("metadata") or {}).items() if k in CELL_METADATA}
        src = _text(cell.get("source"))
        if cell.get("cell_type") == "markdown":
            src = _LINK_OUT.sub(lambda m: m.group(1) + up, src)
        cell["source"] = rel(src)
        if cell.get("cell_type") != "code":
            continue
        kept = []
        for o in _merged_streams(cell.get("outputs") or []):
            kind = o.get("output_type")
            if kind == "stream":
                o["text"] = rel(_NOISE.sub("", _last_state(_text(o.get("text")))))
                if not o["text"].strip():
                    continue
            elif kind in ("display_data", "execute_result"):
                data = {k: v for k, v in (o.get("data") or {}).items() if k not in DROPPED_MIME}
                if not data:
                    continue
                for k in ("text/plain", "text/markdown", "text/html"):
                    if k in data:
                        data[k] = rel(_text(data[k]))
                meta = {k: v for k, v in (o.get("metadata") or {}).items() if k.startswith("image/")}
                o["data"], o["metadata"] = shrink_output(data, meta)
            elif kind == "error":
                o["traceback"] = [rel(t) for t in o.get("traceback") or []]
            kept.append(o)
        cell["outputs"] = kept
    return out


def _seconds(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"


def _read(path: Path) -> dict[str, Any]:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def publish(run_dir: str | Path, docs_dir: str | Path, notebooks: Sequence[tuple[str, str]], profile: str,
            figures_dir: str | Path | None = None, stale: Mapping[str, Sequence[str]] | None = None,
            repo: Path = REPO_ROOT) -> Path:
    """Copy a run's executed notebooks into ``docs_dir`` and write its ``README.md`` index.

    Parameters
    ----------
    run_dir : path
        The run folder: ``notebooks/`` (executed copies), ``.done/NN.json`` (run times) and
        ``provenance/NN.json`` (commit, dirty flag, time).
    docs_dir : path
        Destination (``docs/study/<profile>``); created. Notebook copies of earlier publications
        that this run no longer has are removed.
    notebooks : sequence of (number, file name)
        The study's notebooks, in order; those without a finished result are left out.
    profile : str
        The profile's name (for the index).
    figures_dir : path, optional
        The run's figure folder, linked from the index.
    stale : mapping number -> reasons, optional
        Notebooks whose result no longer matches the code and parameters (the index says so).
    repo : Path
        The checkout (for relative paths and links).

    Returns
    -------
    Path
        The index ``README.md``.
    """
    run_dir, docs_dir = Path(run_dir), Path(docs_dir)
    docs_dir.mkdir(parents=True, exist_ok=True)
    try:
        depth = len(docs_dir.resolve().relative_to(Path(repo).resolve()).parts)
    except ValueError:  # outside the checkout: links out of notebooks/ cannot be kept relative
        depth = 1
    rows, commits, times, published = [], {}, [], set()
    for number, name in notebooks:
        src = run_dir / "notebooks" / name
        marker = _read(run_dir / ".done" / f"{number}.json")
        if not src.is_file() or not marker:
            continue
        nb = json.loads(src.read_text(encoding="utf-8"))
        with atomic_path(docs_dir / name) as tmp:
            Path(tmp).write_text(json.dumps(slim_notebook(nb, depth, repo), indent=1, ensure_ascii=False) + "\n",
                                 encoding="utf-8")
        published.add(name)
        prov = _read(run_dir / "provenance" / f"{number}.json")
        git = prov.get("git") or {}
        commit = str(git.get("commit") or "unknown")[:10]
        dirty = git.get("dirty")
        commits[commit + (" (dirty)" if dirty else "")] = True
        when = str(prov.get("time_utc") or "")
        if when:
            times.append(when)
        note = f" (stale: {'; '.join(stale[number])})" if stale and stale.get(number) else ""
        title = notebook_heading(nb, name)
        rows.append(f"| [{title}]({name}){note} | {_seconds(marker.get('seconds'))} | "
                    f"`{commit}`{' dirty' if dirty else ''} | {when[:16].replace('T', ' ')} |")
    for old in docs_dir.glob("[0-9][0-9]_*.ipynb"):
        if old.name not in published:
            old.unlink()
    fig_link = ""
    if figures_dir is not None:
        rel = os.path.relpath(Path(figures_dir).resolve(), docs_dir.resolve())
        fig_link = f" Its figures and tables are in [`{Path(rel).as_posix()}`]({Path(rel).as_posix()}/)."
    nb_rel = (Path(os.path.relpath(Path(repo).resolve() / "notebooks", docs_dir.resolve())).as_posix() if depth > 1
              else (Path(repo).resolve() / "notebooks").as_posix())
    span = f"{min(times)[:16].replace('T', ' ')} to {max(times)[:16].replace('T', ' ')} UTC" if times else "unknown"
    lines = [
        f"# The {profile} study, executed",
        "",
        f"The study's notebooks as the `{profile}` profile ran them, outputs included (the notebooks in "
        f"[`notebooks/`]({nb_rel}/) are kept without outputs).{fig_link}",
        "",
        f"- commit: {', '.join(f'`{c}`' for c in commits) or 'unknown'}",
        f"- run: {span}",
        "",
        "| Notebook | Run time | Commit | Ran at (UTC) |",
        "|---|---|---|---|",
        *rows,
        "",
        f"Made by `python -m umcam_lib.pipeline --profile {profile}`; rebuilt from the run folder without "
        f"rerunning by `python -m umcam_lib.pipeline --publish-only --out <run folder>`. A notebook reused "
        f"from an earlier run shows the time and commit it ran at.",
        "",
    ]
    readme = docs_dir / "README.md"
    with atomic_path(readme) as tmp:
        Path(tmp).write_text("\n".join(lines), encoding="utf-8")
    return readme
