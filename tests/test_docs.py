"""The documentation, tested like code: the Sphinx site builds with warnings as errors (which
also checks that every ``{ref}`` to a CLI flag or Config field resolves), every documented
``python -m trio_http`` command line is accepted by the real argument parser, every public
name is in the API reference, and every Config field has a description and a unit."""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
import types
from pathlib import Path

import pytest
import trio

import trio_http
import trio_http.testing
from trio_http._cli import build_parser

from .conftest import REQUIRE_TOOLS, TESTS_DIR

REPO = TESTS_DIR.parent
DOCS = REPO / "docs"
# Seconds the whole build may take (a cold build takes about 15 s on 2 cores).
BUILD_TIMEOUT = 240


def _pages() -> list[Path]:
    pages = [p for p in DOCS.rglob("*.md") if "_build" not in p.parts]
    return [*pages, REPO / "README.md"]


def _require_sphinx() -> None:
    missing = [m for m in ("sphinx", "furo", "myst_parser")
               if importlib.util.find_spec(m) is None]
    if missing:
        if REQUIRE_TOOLS:
            pytest.fail(f"{missing} required (TRIO_HTTP_REQUIRE_TOOLS=1) but not installed")
        pytest.skip(f"{missing} not installed (pip install -e '.[test]')")


async def test_sphinx_build_has_no_warnings(tmp_path):
    _require_sphinx()
    argv = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
            "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")]
    with trio.fail_after(BUILD_TIMEOUT):
        proc = await trio.run_process(argv, capture_stdout=True, capture_stderr=True,
                                      check=False, cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr.decode() + proc.stdout.decode()
    html = tmp_path / "html"
    cli = (html / "reference" / "cli.html").read_text()
    config = (html / "reference" / "config.html").read_text()
    # Generated from the code: every option and every field is on its page.
    for action in build_parser()._actions:
        if action.option_strings and action.help != "==SUPPRESS==":
            anchor = action.option_strings[-1].lstrip("-")
            assert f'id="cli-{anchor}"' in cli, anchor
    for name in trio_http.Config.__dataclass_fields__:
        assert f'id="config-{name.replace("_", "-")}"' in config, name
    assert "serve_asgi" in (html / "reference" / "api.html").read_text()


def _command_lines(text: str) -> list[str]:
    """``python -m trio_http ...`` command lines in code blocks, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", text)
    found = []
    for line in text.splitlines():
        line = line.strip().removeprefix("$ ")
        for command in line.split(" && "):
            command = command.strip()
            if command.startswith("python -m trio_http") and "`" not in command:
                found.append(command)
    return found


def test_documented_command_lines_parse():
    parser = build_parser()
    seen = 0
    for page in _pages():
        for command in _command_lines(page.read_text()):
            argv = shlex.split(command, comments=True)[3:]
            try:
                parser.parse_args(argv)
            except SystemExit:
                pytest.fail(f"{page.relative_to(REPO)}: the parser rejects: {command}")
            seen += 1
    assert seen >= 15  # the guides are full of them; finding none means this test broke


def test_every_public_name_is_in_the_api_reference():
    api = (DOCS / "reference" / "api.md").read_text()
    public = [f"trio_http.{name}" for name, value in vars(trio_http).items()
              if not name.startswith("_") and not isinstance(value, types.ModuleType)
              and name != "testing"]
    public += [f"trio_http.testing.{name}" for name in trio_http.testing.__all__]
    missing = [name for name in public if not re.search(rf"\b{re.escape(name)}\b", api)]
    assert missing == [], "add them to docs/reference/api.md"


def test_every_config_field_has_a_description_and_a_unit():
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        from trio_http_docs import config_fields
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    fields = [item for _, items in config_fields() for item in items]
    assert {f["name"] for f in fields} == set(trio_http.Config.__dataclass_fields__)
    assert [f["name"] for f in fields if not f["doc"]] == []
    assert [f["name"] for f in fields if f["unit"] is None] == []
    units = {f["name"]: f["unit"] for f in fields}
    assert units["graceful_timeout"] == "seconds"
    assert units["h2_initial_window_size"] == "bytes"
    assert units["max_connections"] == "connections"
    assert units["websocket_max_queue"] == "messages"
    assert units["certfile"] == ""  # not a number
