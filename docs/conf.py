"""Sphinx configuration: ``sphinx-build -W -b html docs docs/_build/html`` (``nox -s docs``).

Sphinx rather than mkdocs: the reference is generated from the code (autodoc reads the
docstrings; docs/_ext/trio_http_docs.py reads ``Config`` and the argument parser), which is
what Sphinx's directive system is for. Pages are Markdown, read by MyST. Theme: furo.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent))  # document this checkout's trio_http

import trio_http  # noqa: E402

project = "trio_http"
author = "the trio_http authors"
copyright = "2026, the trio_http authors"
version = release = trio_http.__version__

extensions = ["sphinx.ext.autodoc", "myst_parser", "trio_http_docs"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "examples", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["deflist", "colon_fence"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "undoc-members": False}

html_theme = "furo"
html_title = f"trio_http {release}"
html_static_path = ["_static"]
html_css_files = ["trio_http.css"]
smartquotes = False  # "--bind" must stay two hyphens, not become a dash


def setup(app):
    # Config-file languages Pygments does not know: shown as plain text, not a warning.
    from pygments.lexers.special import TextLexer

    app.add_lexer("haproxy", TextLexer)
