"""Sphinx configuration of the study's site (``make book``; MyST-NB, no execution).

The source folder is the repository root, so that the pages keep the links they have on the code
host (``docs/results.md`` -> ``figures/quick/claims.png``); ``include_patterns`` picks the pages:
the README, the documents in ``docs/`` and the executed notebooks of ``docs/study/<profile>/``.
The notebooks without outputs (``notebooks/``) are not pages: on the site, the links the README and
the teaching plan make to them lead to their executed copies in ``docs/study/quick/``
(:func:`executed_links`).
The committed notebooks are rendered as they are: nothing is executed.
"""
import re

project = "UM-CAM study"
author = "the UM-CAM study authors"
copyright = "2026, " + author

extensions = ["myst_nb"]
root_doc = "book/index"
include_patterns = ["book/index.md", "README.md", "docs/*.md", "docs/study/*/README.md", "docs/study/*/*.ipynb"]
exclude_patterns = ["build", "runs", ".venv", "**/.ipynb_checkpoints"]

nb_execution_mode = "off"          # the executed copies are committed; a build never runs them
nb_merge_streams = True
nb_render_markdown_format = "myst"  # Markdown outputs (the notebooks' tables) with tables; commonmark has none
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3           # README and docs link to their sections by GitHub-style anchors
# Links to the unexecuted notebooks/ and to source files are not pages of the site; they stay
# plain links on the code host, and the build says so only once per kind.
suppress_warnings = ["myst.xref_missing", "myst.header", "mystnb.unknown_mime_type", "misc.highlighting_failure"]

html_theme = "alabaster"
html_title = "UM-CAM study"
html_theme_options = {"page_width": "1200px", "sidebar_width": "260px", "fixed_sidebar": True}
html_show_sourcelink = False
html_extra_path = ["_extra"]       # index.html at the site's root: a redirect to book/index.html


_NOTEBOOK_LINK = re.compile(r"\]\((?:\.\./)*notebooks/(0\d_[A-Za-z0-9_]+\.ipynb)\)")
_NOTEBOOK_DIR_LINK = re.compile(r"\]\((?:\.\./)*notebooks/\)")


def executed_links(app, docname, source):
    """On the site, a link to ``notebooks/NN_*.ipynb`` (no outputs, not a page) leads to its
    executed copy in ``docs/study/quick/``, and one to ``notebooks/`` to that folder's index."""
    up = "../" * docname.count("/")
    text = _NOTEBOOK_LINK.sub(lambda m: f"]({up}docs/study/quick/{m.group(1)})", source[0])
    source[0] = _NOTEBOOK_DIR_LINK.sub(f"]({up}docs/study/quick/README.md)", text)


def setup(app):
    app.connect("source-read", executed_links)
