"""Choosing the HTTP/1.1 parser: h11 (pure Python, always there) or httptools (llhttp, in C,
the ``fast`` extra). Both expose the same sans-io interface and pass the same tests."""

from __future__ import annotations

from typing import TypeAlias

from ._http1 import H1Connection, RequestLimits

try:
    from ._http1_httptools import HttptoolsH1Connection
except ImportError:  # pragma: no cover - depends on the installed extras
    HTTPTOOLS_AVAILABLE = False
else:
    HTTPTOOLS_AVAILABLE = True

__all__ = ["AUTO_PARSER", "HTTPTOOLS_AVAILABLE", "AnyH1Connection", "make_h1_connection"]

AnyH1Connection: TypeAlias = "H1Connection | HttptoolsH1Connection"

#: The parser ``"auto"`` stands for: httptools when it can be imported. The test suite switches
#: it to run the HTTP/1.1 tests over both parsers.
AUTO_PARSER = "httptools" if HTTPTOOLS_AVAILABLE else "h11"


def make_h1_connection(
    parser: str, *, max_request_header_size: int, limits: RequestLimits | None = None
) -> AnyH1Connection:
    """A new server connection using ``parser`` (``"auto"``, ``"h11"`` or ``"httptools"``),
    enforcing ``limits`` (which override ``max_request_header_size``).
    Raises :class:`ValueError` for ``"httptools"`` when httptools is not installed."""
    if parser == "auto":
        parser = AUTO_PARSER
    if parser == "httptools":
        if not HTTPTOOLS_AVAILABLE:
            raise ValueError("h1_parser 'httptools' needs httptools (pip install trio_http[fast])")
        return HttptoolsH1Connection(
            max_request_header_size=max_request_header_size, limits=limits
        )
    return H1Connection(max_request_header_size=max_request_header_size, limits=limits)
