"""Logging setup for the command line: the ``trio_http.error`` and ``trio_http.access`` loggers
(stdlib :mod:`logging` throughout), ``--log-level``, ``--error-logfile``, ``--access-logfile``,
and ``--log-config`` for full control: :func:`logging.config.dictConfig` from a ``.json`` or
``.toml`` file, :func:`logging.config.fileConfig` for ``.ini``/``.conf``/``.cfg``.

Access lines are formatted with Gunicorn-style atoms (``%(h)s %(r)s %(s)s %(b)s %(D)s``,
``%({name}i)s`` for a request header); see ``trio_http._asgi.AccessLogAtoms``. Request data in
them is escaped, so a client cannot forge log lines.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import sys
import tomllib
from typing import Any

from ._errors import ConfigError

__all__ = ["configure_logging"]

_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"


def _load_dict_config(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            if path.endswith(".toml"):
                data: Any = tomllib.load(f)
            else:
                data = json.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read log config {path!r}: {exc.strerror or exc}") from None
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"log config {path!r}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"log config {path!r}: expected a table/object")
    data.setdefault("version", 1)
    data.setdefault("disable_existing_loggers", False)
    return data


def _apply_log_config(path: str) -> None:
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext in (".json", ".toml"):
            logging.config.dictConfig(_load_dict_config(path))
        elif ext in (".ini", ".conf", ".cfg"):
            if not os.path.isfile(path):
                raise ConfigError(f"cannot read log config {path!r}")
            logging.config.fileConfig(path, disable_existing_loggers=False)
        else:
            raise ConfigError(
                f"log config {path!r}: use .json or .toml (dictConfig) or .ini/.conf (fileConfig)"
            )
    except (ValueError, TypeError, AttributeError, ImportError, KeyError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"log config {path!r}: {exc}") from None


def configure_logging(
    *,
    level: str = "info",
    log_config: str | None = None,
    error_logfile: str | None = None,
    access_logfile: str | None = None,
) -> None:
    """Set up the ``trio_http`` loggers. With ``log_config`` that file decides everything it
    names (handlers added here only fill in what it leaves out). ``error_logfile`` and
    ``access_logfile`` are paths, or ``"-"`` for stderr / stdout. Raises :class:`ConfigError`
    for an unreadable or invalid log config."""
    if log_config:
        _apply_log_config(log_config)
    root = logging.getLogger("trio_http")
    if not log_config or root.level == logging.NOTSET:
        root.setLevel(level.upper())
    if not _has_real_handler(root):
        if error_logfile and error_logfile != "-":
            handler: logging.Handler = logging.FileHandler(error_logfile)
        else:
            handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(handler)
    access = logging.getLogger("trio_http.access")
    if not log_config or access.level == logging.NOTSET:
        access.propagate = False
        access.setLevel(logging.INFO)
    if access_logfile is not None and not _has_real_handler(access):
        out = (logging.StreamHandler(sys.stdout) if access_logfile == "-"
               else logging.FileHandler(access_logfile))
        out.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(out)


def _has_real_handler(logger: logging.Logger) -> bool:
    return any(not isinstance(h, logging.NullHandler) for h in logger.handlers)
