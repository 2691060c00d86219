"""Check a built page of the site (``make book``) and take a screenshot of it in headless Chromium.

Usage::

    python tools/book_page.py build/book/docs/study/quick/08_report.html --out /tmp/08.png \
        [--min-figures 1] [--min-tables 1] [--chromium /usr/bin/chromium]

The page fails (exit status 1, each problem on stderr) when one of its images is missing or empty
(a file the page names that the build did not write, or an empty ``data:`` image), or when it holds
fewer figures or tables than asked for. Then Chromium, headless, opens the page and saves a
screenshot of it (``apt-get install chromium`` where it is missing; ``--no-screenshot`` checks only).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

#: Chromium's flags for a machine without a screen, a sandbox or an outside network.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.tables = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs).get("src") or "")
        elif tag == "table":
            self.tables += 1


def page_contents(page: str | Path) -> tuple[list[str], int]:
    """The image sources and the number of tables of an HTML page."""
    collector = _Collector()
    collector.feed(Path(page).read_text(encoding="utf-8"))
    return collector.images, collector.tables


def page_problems(page: str | Path, min_figures: int = 0, min_tables: int = 0) -> list[str]:
    """What is wrong with a built page: missing or empty images, too few figures or tables.

    Parameters
    ----------
    page : path
        An HTML file of the built site.
    min_figures, min_tables : int
        The fewest images and tables the page must show.

    Returns
    -------
    list of str
        One sentence per problem, naming the page and the image; empty when the page is whole.
    """
    page = Path(page)
    if not page.is_file():
        return [f"{page}: no such page (build the site with make book)"]
    images, tables = page_contents(page)
    problems = []
    for src in images:
        if src.startswith("data:"):
            if len(src.partition(",")[2]) < 16:
                problems.append(f"{page}: an inline image is empty")
            continue
        url = urlparse(src)
        if url.scheme in ("http", "https"):
            problems.append(f"{page}: image {src} is remote (the site must stand on its own)")
            continue
        target = (page.parent / unquote(url.path)).resolve()
        if not target.is_file() or target.stat().st_size == 0:
            problems.append(f"{page}: image {src} is missing from the build ({target})")
    if len(images) < min_figures:
        problems.append(f"{page}: {len(images)} figure(s), expected at least {min_figures}")
    if tables < min_tables:
        problems.append(f"{page}: {tables} table(s), expected at least {min_tables}")
    return problems


def screenshot(page: str | Path, out: str | Path, chromium: str | None = None, width: int = 1280,
               height: int = 2400, timeout_s: float = 120.0) -> Path:
    """Open ``page`` in headless Chromium and save a PNG of its first ``height`` pixels to ``out``."""
    exe = chromium or shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not exe:
        raise FileNotFoundError("no Chromium found: apt-get install chromium, or pass --chromium PATH")
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp.png")
    with tempfile.TemporaryDirectory() as profile:
        cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
               f"--screenshot={tmp}", Path(page).resolve().as_uri()]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
        raise RuntimeError(f"Chromium made no screenshot of {page} (exit {done.returncode}): {done.stderr[-800:]}")
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("page", type=Path, help="an HTML page of the built site")
    ap.add_argument("--out", type=Path, help="where the screenshot goes (default: beside the page, .png)")
    ap.add_argument("--min-figures", type=int, default=1)
    ap.add_argument("--min-tables", type=int, default=1)
    ap.add_argument("--chromium", help="the Chromium executable (default: found on PATH)")
    ap.add_argument("--no-screenshot", action="store_true", help="check the page only")
    args = ap.parse_args(argv)
    problems = page_problems(args.page, args.min_figures, args.min_tables)
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    if problems:
        return 1
    images, tables = page_contents(args.page)
    print(f"{args.page}: {len(images)} figure(s), {tables} table(s), none missing")
    if not args.no_screenshot:
        try:
            out = screenshot(args.page, args.out or args.page.with_suffix(".png"), args.chromium)
        except (FileNotFoundError, RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"screenshot: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
