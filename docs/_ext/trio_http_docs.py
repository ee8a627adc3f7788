"""Sphinx extension for the trio_http docs: reference pages generated from the code, so that the
documentation and the code cannot disagree.

* ``trio-http-config``: a table per section of :class:`trio_http.Config`: every field with its
  type, default, unit and the ``#:`` comment above it in ``trio_http/_config.py``. A field with
  no ``#:`` comment, or a number whose unit cannot be told, is a build warning (an error under
  ``-W``).
* ``trio-http-cli``: the command line as ``trio_http._cli.build_parser()`` defines it: usage,
  then every option with its metavar, choices, default and help, group by group.
* ``toctree`` entries ending in ``?`` are optional: left out, without a warning, while the page
  does not exist (pages other work streams add, like ``security`` or ``deployment``).
* ``{page}`target``` (role): a link to the document ``target`` when it exists, its path as
  plain text otherwise, for the same optional pages.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.directives.other import TocTree
from sphinx.util import docname_join, logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

# --- Config ----------------------------------------------------------------------------------

#: Units by field name, for names the suffix rules below do not cover.
UNITS_BY_NAME = {
    "backlog": "connections",
    "unix_socket_mode": "permission bits",
    "wsgi_max_threads": "threads",
    "websocket_max_queue": "messages",
}
#: Words that, in a field's ``#:`` comment, name its unit (the earliest in it wins).
UNIT_WORDS = ("seconds", "bytes", "connections", "streams", "messages", "requests", "fields",
              "resets", "items",
              "datagrams", "threads", "workers", "processes", "frames", "events")
_SECTION = re.compile(r"^\s*# --- (.+?) -+\s*$")
_DOC = re.compile(r"^\s*#: ?(.*)$")
_FIELD = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*:")


def unit_of(name: str, annotation: str, doc: str) -> str | None:
    """The unit of a numeric field, or None when it cannot be told. Non-numbers have none."""
    if not re.search(r"\b(int|float)\b", annotation):
        return ""
    if name in UNITS_BY_NAME:
        return UNITS_BY_NAME[name]
    if name.endswith(("_timeout", "_interval", "_delay", "_jitter_seconds")):
        return "seconds"
    if name.endswith("_size"):
        return "bytes"
    if name.endswith("_concurrent_streams"):
        return "streams"
    m = re.match(r"(?:.*_)?max_([a-z]+s)$", name)
    if m:
        return m.group(1)
    lowered = doc.lower()
    found = [(m.start(), word) for word in UNIT_WORDS
             if (m := re.search(rf"\b{word}\b", lowered))]
    return min(found)[1] if found else None


def config_fields() -> list[tuple[str, list[dict[str, Any]]]]:
    """``[(section title, [field, ...]), ...]`` in source order; each field a dict with
    ``name``, ``type``, ``default``, ``doc``, ``unit``."""
    from trio_http import Config

    source, _ = inspect.getsourcelines(Config)
    fields = {f.name: f for f in dataclasses.fields(Config)}
    sections: list[tuple[str, list[dict[str, Any]]]] = [("General", [])]
    doc: list[str] = []
    for line in source:
        if m := _SECTION.match(line):
            sections.append((m.group(1).strip(), []))
            doc = []
        elif m := _DOC.match(line):
            doc.append(m.group(1))
        elif (m := _FIELD.match(line)) and m.group(1) in fields:
            f = fields.pop(m.group(1))
            if f.default is not dataclasses.MISSING:
                default: Any = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = dataclasses.MISSING
            text = " ".join(doc)
            annotation = str(f.type)
            sections[-1][1].append({
                "name": f.name, "type": annotation, "default": default, "doc": text,
                "unit": unit_of(f.name, annotation, text),
            })
            doc = []
        elif line.strip() == "":
            doc = []
    for name in fields:  # declared in a way the scan above did not see
        sections[-1][1].append({"name": name, "type": str(fields[name].type), "default": None,
                                "doc": "", "unit": None})
    return [(title, items) for title, items in sections if items]


def _table(rows: list[list[str]], header: list[str], widths: list[int]) -> list[str]:
    out = [".. list-table::", "   :header-rows: 1", "   :class: trio-http-table",
           "   :widths: " + " ".join(map(str, widths)), ""]
    for row in [header, *rows]:
        for i, cell in enumerate(row):
            first, *rest = cell.split("\n")
            out.append(("   * - " if i == 0 else "     - ") + first)
            out.extend(("       " + line) if line else "" for line in rest)
    return out


def _escape(text: str) -> str:
    """Plain text (argparse help) as reStructuredText that shows it verbatim."""
    for ch in "\\*_|`":
        text = text.replace(ch, "\\" + ch)
    return text


def _literal(value: str) -> str:
    value = value.replace("`", "'")
    return f"``{value}``" if value else ""


class ConfigDirective(SphinxDirective):
    """``.. trio-http-config::``: the Config reference tables."""

    def run(self) -> list[nodes.Node]:
        lines: list[str] = []
        for title, items in config_fields():
            rows = []
            for item in items:
                if not item["doc"]:
                    logger.warning("Config field %s has no #: comment", item["name"],
                                   location=(self.env.docname, self.lineno))
                if item["unit"] is None:
                    logger.warning("Config field %s: its unit cannot be told; name it in the "
                                   "#: comment (seconds, bytes, connections...)", item["name"],
                                   location=(self.env.docname, self.lineno))
                default = item["default"]
                rows.append([
                    f".. _config-{item['name']}:\n\n``{item['name']}``",
                    _literal(item["type"]),
                    "(required)" if default is dataclasses.MISSING else _literal(repr(default)),
                    item["unit"] or "",
                    item["doc"] or "",
                ])
            lines += [f".. rubric:: {title}", ""]
            lines += _table(rows, ["field", "type", "default", "unit", "meaning"],
                            [18, 16, 14, 8, 44])
            lines.append("")
        return self._parse(lines)

    def _parse(self, lines: list[str]) -> list[nodes.Node]:
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source="trio_http/_config.py"), 0, container)
        return container.children


# --- CLI -------------------------------------------------------------------------------------


def cli_parser() -> argparse.ArgumentParser:
    from trio_http._cli import build_parser

    return build_parser()


def _settings(parser: argparse.ArgumentParser) -> tuple[set[str], Any]:
    """The options that are settings (also read from TOML and the environment), and the
    function naming their environment variables; none when the CLI has no such sources."""
    try:
        from trio_http._config_sources import env_name, setting_actions
    except ImportError:
        return set(), None
    return set(setting_actions(parser)), env_name


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    formatter = parser._get_formatter()
    return formatter._expand_help(action)


def _invocation(action: argparse.Action) -> str:
    if not action.option_strings:
        return action.metavar if isinstance(action.metavar, str) else action.dest.upper()
    if action.nargs == 0:
        return ", ".join(action.option_strings)
    if action.metavar is not None:
        metavar = action.metavar if isinstance(action.metavar, str) else " ".join(action.metavar)
    elif action.choices is not None:
        metavar = "{" + ",".join(map(str, action.choices)) + "}"
    else:
        metavar = action.dest.upper()
    return ", ".join(f"{opt} {metavar}" for opt in action.option_strings)


class CLIDirective(SphinxDirective):
    """``.. trio-http-cli::``: the command-line reference, from the parser itself."""

    def run(self) -> list[nodes.Node]:
        parser = cli_parser()
        settings, env_name = _settings(parser)
        usage = parser.format_usage().strip()
        lines = [".. code-block:: text", ""]
        lines += ["   " + line for line in usage.splitlines()]
        lines.append("")
        if parser.description:
            lines += [parser.description, ""]
        for group in parser._action_groups:
            actions = [a for a in group._group_actions if a.help != argparse.SUPPRESS]
            if not actions:
                continue
            title = group.title or "options"
            lines += [f".. rubric:: {title[0].upper()}{title[1:]}", ""]
            if group.description:
                lines += [group.description, ""]
            for action in actions:
                anchor = (action.option_strings[-1] if action.option_strings
                          else action.dest).lstrip("-")
                lines += [f".. _cli-{anchor}:", ""]
                lines += [f"``{_invocation(action)}``"]
                text = _escape(_help(parser, action))
                if action.choices is not None and "{" not in _invocation(action):
                    text += " Choices: " + ", ".join(f"``{c}``" for c in action.choices) + "."
                if not text:
                    logger.warning("CLI option %s has no help", anchor,
                                   location=(self.env.docname, self.lineno))
                if action.dest in settings:
                    text += f" *TOML* ``{action.dest}``, *env* ``{env_name(action.dest)}``."
                lines += ["   " + text.strip(), ""]
        if parser.epilog:
            lines += [parser.epilog, ""]
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source="trio_http/_cli.py"), 0, container)
        return container.children


# --- optional pages --------------------------------------------------------------------------


class OptionalTocTree(TocTree):
    """The ``toctree`` directive, where an entry ending in ``?`` is dropped while its page
    does not exist."""

    option_spec = dict(TocTree.option_spec)

    def run(self) -> list[nodes.Node]:
        kept = []
        for line in self.content:
            entry = line.strip()
            if entry.endswith("?"):
                entry = entry[:-1].rstrip()
                target = entry.rsplit("<", 1)[-1].rstrip(">").strip() if "<" in entry else entry
                if docname_join(self.env.docname, target) not in self.env.found_docs:
                    continue
            kept.append(entry)
        self.content = StringList(kept, source=self.content.source(0) if self.content else "")
        return super().run()


def page_role(name: str, rawtext: str, text: str, lineno: int, inliner: Any,
              options: dict[str, Any] | None = None, content: list[str] | None = None
              ) -> tuple[list[nodes.Node], list[nodes.system_message]]:
    """``{page}`title <docname>``` or ``{page}`docname```: a :doc: link if the page exists."""
    env = inliner.document.settings.env
    m = re.match(r"^(.*?)\s*<([^<>]+)>$", text)
    title, target = (m.group(1), m.group(2)) if m else (None, text)
    docname = docname_join(env.docname, target)
    if docname in env.found_docs:
        node = addnodes.pending_xref(
            rawtext, reftype="doc", refdomain="std", refexplicit=bool(title),
            reftarget="/" + docname, refdoc=env.docname, refwarn=True,
        )
        node += nodes.inline(rawtext, title or "", classes=["xref", "std", "std-doc"])
        return [node], []
    return [nodes.emphasis(rawtext, title or f"docs/{docname}.md")], []


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("trio-http-config", ConfigDirective)
    app.add_directive("trio-http-cli", CLIDirective)
    app.add_directive("toctree", OptionalTocTree, override=True)
    app.add_role("page", page_role)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
