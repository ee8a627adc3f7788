"""Where settings come from, and which wins: command-line flags, then ``TRIO_HTTP_*``
environment variables, then the ``--config`` TOML file, then ``[tool.trio_http]`` in
``./pyproject.toml``, then the defaults.

Every setting is an argparse option: its ``dest`` is its key in TOML files (``graceful_timeout
= 10``, dashes accepted too) and, upper-cased after ``TRIO_HTTP_``, its environment variable
(``TRIO_HTTP_GRACEFUL_TIMEOUT=10``). Lists (``bind``...) are TOML arrays, or comma-separated in
the environment; booleans are ``true``/``false`` (``1``/``0``, ``yes``/``no``, ``on``/``off`` in
the environment). The mapping is derived from the parser, so the documentation and the parser
cannot disagree.

``--env-file`` (or ``TRIO_HTTP_ENV_FILE``) names a dotenv file whose variables join the
environment, below the variables already set: they reach the app, and its ``TRIO_HTTP_*``
lines count as environment settings.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "Settings",
    "env_name",
    "resolve_settings",
    "setting_actions",
    "settings_to_toml",
]

ENV_PREFIX = "TRIO_HTTP_"
#: Options that are not settings: they steer this invocation only.
_NOT_SETTINGS = frozenset({"help", "config", "env_file", "print_config"})
#: Environment variables with our prefix that are not settings (the supervisor's, the test
#: suite's, and --dev-tls's state directory).
_RESERVED_ENV = frozenset(
    {"TRIO_HTTP_WORKER_SPEC", "TRIO_HTTP_REQUIRE_TOOLS", "TRIO_HTTP_STATE_DIR"}
)
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_NONE = frozenset({"", "none", "null"})


@dataclass
class Settings:
    """The effective settings: ``values`` by dest, and where each came from (``"default"``,
    ``"pyproject.toml"``, the config file's path, ``"env TRIO_HTTP_X"`` or ``"command line"``)."""

    values: dict[str, Any]
    sources: dict[str, str] = field(default_factory=dict)
    config_file: str | None = None
    print_config: bool = False
    #: Variables read from ``--env-file`` that the environment did not already set: the
    #: caller puts them in ``os.environ`` for the app (and the workers) to see.
    env_file_values: dict[str, str] = field(default_factory=dict)

    def namespace(self) -> argparse.Namespace:
        return argparse.Namespace(**self.values)


def setting_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The parser's options that are settings, by ``dest``."""
    return {
        a.dest: a for a in parser._actions
        if a.dest not in _NOT_SETTINGS and a.dest != argparse.SUPPRESS
    }


def env_name(dest: str) -> str:
    """The environment variable of a setting: ``TRIO_HTTP_`` + ``dest`` upper-cased."""
    return ENV_PREFIX + dest.upper()


def _is_bool(action: argparse.Action) -> bool:
    return isinstance(action, argparse._StoreConstAction) and isinstance(action.const, bool)


def _is_list(action: argparse.Action) -> bool:
    return isinstance(action, argparse._AppendAction)


def _scalar(action: argparse.Action, value: Any, where: str) -> Any:
    kind = action.type
    if value is None:
        return None
    if isinstance(value, str):
        if action.default is None and value.strip().lower() in _NONE and kind is not None:
            return None
        if kind is not None:
            try:
                value = kind(value)  # type: ignore[operator]
            except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
                raise ConfigError(f"{where}: {exc}") from None
    elif kind is int or kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, not {value!r}")
        if kind is int and isinstance(value, float):
            if not value.is_integer():
                raise ConfigError(f"{where}: expected an integer, not {value!r}")
            value = int(value)
        value = kind(value)
    elif kind is None or kind is str:
        raise ConfigError(f"{where}: expected a string, not {value!r}")
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: unexpected value {value!r}")
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise ConfigError(f"{where}: {value!r} is not one of {choices}")
    return value


def _coerce(action: argparse.Action, value: Any, where: str, *, from_env: bool) -> Any:
    if _is_bool(action):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"{where}: expected true or false, not {value!r}")
    if _is_list(action):
        if isinstance(value, str):
            items: Sequence[Any] = (
                [p.strip() for p in value.split(",") if p.strip()] if from_env else [value]
            )
        elif isinstance(value, list):
            items = value
        else:
            raise ConfigError(f"{where}: expected a list, not {value!r}")
        return [_scalar(action, item, where) for item in items]
    return _scalar(action, value, where)


def _from_mapping(
    actions: Mapping[str, argparse.Action], data: Mapping[str, Any], origin: str
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        dest = key.replace("-", "_")
        action = actions.get(dest)
        if action is None:
            raise ConfigError(f"{origin}: unknown setting {key!r}")
        out[dest] = _coerce(action, value, f"{origin}: {key}", from_env=False)
    return out


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path!r}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path!r}: {exc}") from None


def _read_env_file(path: str) -> dict[str, str]:
    """The ``NAME=value`` lines of a dotenv file, read by python-dotenv (the format Uvicorn's
    ``--env-file`` reads); names without a value are left out."""
    try:
        from dotenv import dotenv_values
    except ImportError:
        raise ConfigError("--env-file needs python-dotenv: pip install 'trio_http[dotenv]'"
                          ) from None
    if not os.path.isfile(path):
        raise ConfigError(f"env file {path!r} not found")
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _pyproject(cwd: str) -> dict[str, Any]:
    path = os.path.join(cwd, "pyproject.toml")
    if not os.path.isfile(path):
        return {}
    table = _read_toml(path).get("tool", {}).get("trio_http", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.trio_http] must be a table")
    return table


def _explicit_cli(parser: argparse.ArgumentParser, argv: Sequence[str]) -> dict[str, Any]:
    # A normal parse first: --help and usage errors behave as argparse users expect.
    parser.parse_args(argv)
    # Then again with every default suppressed: what remains was typed.
    saved = {a.dest: a.default for a in parser._actions}
    try:
        for a in parser._actions:
            a.default = argparse.SUPPRESS
        return vars(parser.parse_args(argv))
    finally:
        for a in parser._actions:
            a.default = saved[a.dest]


def resolve_settings(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> Settings:
    """Merge every source (see the module docstring) into :class:`Settings`.

    Exits through ``parser.error`` (status 2) on bad flags, as argparse does; raises
    :class:`ConfigError` for a bad value in a file or the environment, or an unknown key in a
    file. Unknown ``TRIO_HTTP_*`` variables are reported on stderr and ignored.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ if environ is None else environ
    cwd = os.getcwd() if cwd is None else cwd
    defaults = vars(parser.parse_args([]))
    cli = _explicit_cli(parser, argv)
    env_file = cli.get("env_file") or environ.get(env_name("env_file")) or None
    from_file: dict[str, str] = {}
    if env_file:
        # The environment wins over the file, as with python-dotenv's load_dotenv.
        from_file = {k: v for k, v in _read_env_file(env_file).items() if k not in environ}
        environ = {**environ, **from_file}
    actions = setting_actions(parser)
    values = {k: v for k, v in defaults.items() if k in actions}
    sources = dict.fromkeys(values, "default")

    def layer(data: Mapping[str, Any], origin: str) -> None:
        for k, v in data.items():
            values[k] = v
            sources[k] = origin

    layer(_from_mapping(actions, _pyproject(cwd), "pyproject.toml [tool.trio_http]"),
          "pyproject.toml")
    config_file = cli.get("config") or environ.get(env_name("config")) or None
    if config_file:
        layer(_from_mapping(actions, _read_toml(config_file), config_file), config_file)
    for name, raw in environ.items():
        if (not name.startswith(ENV_PREFIX) or name in _RESERVED_ENV
                or name in (env_name("config"), env_name("env_file"))):
            continue
        dest = name[len(ENV_PREFIX):].lower()
        action = actions.get(dest)
        if action is None:
            print(f"trio_http: warning: ignoring unknown setting {name}", file=sys.stderr)
            continue
        values[dest] = _coerce(action, raw, name, from_env=True)
        sources[dest] = f"env {name}"
    layer({k: v for k, v in cli.items() if k in actions}, "command line")
    return Settings(values, sources, config_file, bool(cli.get("print_config")), from_file)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # JSON string escapes are valid TOML basic-string escapes


def settings_to_toml(settings: Settings, parser: argparse.ArgumentParser) -> str:
    """The effective settings as a TOML document that ``--config`` reads back; each line says
    where its value came from. Unset settings (``None``) are listed as comments."""
    lines = [
        "# trio_http: effective settings",
        "# precedence: command line > TRIO_HTTP_* environment > --config file > "
        "pyproject.toml [tool.trio_http] > defaults",
    ]
    if settings.config_file:
        lines.append(f"# config file: {settings.config_file}")
    for dest in setting_actions(parser):
        value = settings.values.get(dest)
        source = settings.sources.get(dest, "default")
        if value is None:
            lines.append(f"# {dest} =   (not set)")
        else:
            lines.append(f"{dest} = {_toml_value(value)}  # {source}")
    return "\n".join(lines) + "\n"
