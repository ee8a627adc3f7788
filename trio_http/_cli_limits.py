"""Command-line options for the limits and timeouts that harden a server (docs/security.md):
added to the parser by :func:`add_limit_arguments`, turned into :class:`Config` keywords by
:func:`limit_settings`. ``none`` (or ``off``) turns off a limit or timeout that may be off."""

from __future__ import annotations

import argparse
from typing import Any

from ._config import Config

__all__ = ["add_limit_arguments", "limit_settings"]

_OFF = frozenset({"none", "off", "null", ""})


def _count_or_none(text: str) -> int | None:
    if text.strip().lower() in _OFF:
        return None
    return int(text)


def _seconds_or_none(text: str) -> float | None:
    if text.strip().lower() in _OFF:
        return None
    return float(text)


def _default(value: object) -> str:
    return "off" if value is None else str(value)


def add_limit_arguments(p: argparse.ArgumentParser, d: Config) -> None:
    """Add the "limits and timeouts" option group; defaults come from ``d``."""
    g = p.add_argument_group("limits and timeouts (docs/security.md)")
    g.add_argument("--request-head-timeout", type=_seconds_or_none, metavar="S",
                   default=d.request_head_timeout,
                   help="seconds from the first byte of a request head (HTTP/2: header block) "
                        f"to its end, then 408 (default {_default(d.request_head_timeout)})")
    g.add_argument("--body-read-timeout", type=_seconds_or_none, metavar="S",
                   default=d.body_read_timeout,
                   help="seconds without request body while the app waits for it, then 408 "
                        f"(default {_default(d.body_read_timeout)})")
    g.add_argument("--write-timeout", type=_seconds_or_none, metavar="S",
                   default=d.write_timeout,
                   help="seconds a write (or a shut HTTP/2 window) may stall before the peer "
                        f"is dropped (default {_default(d.write_timeout)})")
    g.add_argument("--tcp-notsent-lowat", type=_count_or_none, metavar="BYTES",
                   default=d.tcp_notsent_lowat,
                   help="unsent bytes the kernel may queue per TCP connection before a write "
                        "waits (TCP_NOTSENT_LOWAT; 'off' keeps trio's 16384) "
                        f"(default {_default(d.tcp_notsent_lowat)})")
    g.add_argument("--max-request-line-size", type=int, metavar="BYTES",
                   default=d.max_request_line_size,
                   help="request line (HTTP/2: method and :path), 414 past it "
                        f"(default {d.max_request_line_size})")
    g.add_argument("--max-request-header-count", type=int, metavar="N",
                   default=d.max_request_header_count,
                   help="header fields per request, 431 past it "
                        f"(default {d.max_request_header_count})")
    g.add_argument("--max-request-body-size", type=_count_or_none, metavar="BYTES",
                   default=d.max_request_body_size,
                   help="request body, 413 (or a reset stream) past it "
                        f"(default {_default(d.max_request_body_size)})")
    g.add_argument("--max-requests-per-connection", type=_count_or_none, metavar="N",
                   default=d.max_requests_per_connection,
                   help="requests (HTTP/2: streams) per connection, then Connection: close / "
                        f"GOAWAY (default {_default(d.max_requests_per_connection)})")
    g.add_argument("--h2-reset-budget", type=int, metavar="N", default=d.h2_reset_budget,
                   help="HTTP/2 stream resets tolerated beyond completed streams, then "
                        f"GOAWAY(ENHANCE_YOUR_CALM) (default {d.h2_reset_budget})")
    g.add_argument("--h3-reset-budget", type=int, metavar="N", default=d.h3_reset_budget,
                   help="HTTP/3 stream resets tolerated beyond completed streams, then "
                        f"H3_EXCESSIVE_LOAD (default {d.h3_reset_budget})")
    g.add_argument("--h2-control-frame-budget", type=int, metavar="N",
                   default=d.h2_control_frame_budget,
                   help="HTTP/2 frames without request work (PING, SETTINGS, empty DATA...) "
                        "per 10 s, then GOAWAY(ENHANCE_YOUR_CALM) "
                        f"(default {d.h2_control_frame_budget})")


def limit_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`Config` keywords for the options :func:`add_limit_arguments` added."""
    return {
        "request_head_timeout": args.request_head_timeout,
        "body_read_timeout": args.body_read_timeout,
        "write_timeout": args.write_timeout,
        "tcp_notsent_lowat": args.tcp_notsent_lowat,
        "max_request_line_size": args.max_request_line_size,
        "max_request_header_count": args.max_request_header_count,
        "max_request_body_size": args.max_request_body_size,
        "max_requests_per_connection": args.max_requests_per_connection,
        "h2_reset_budget": args.h2_reset_budget,
        "h2_control_frame_budget": args.h2_control_frame_budget,
        "h3_reset_budget": args.h3_reset_budget,
    }
