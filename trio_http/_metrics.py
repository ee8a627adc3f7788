"""``RunningServer.statistics()`` in the Prometheus text exposition format (version 0.0.4), served
on a separate bind (``--metrics-bind``) at ``/metrics``.

Every numeric statistic becomes ``trio_http_<name>``: counters end in ``_total``, the rest are
gauges; booleans are 0/1; per-endpoint lists (``quic``) get an ``endpoint`` label; with several
worker processes each series carries a ``worker`` label (the worker's slot).
Source: https://prometheus.io/docs/instrumenting/exposition_formats/.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from ._types import Receive, Scope, Send

__all__ = ["CONTENT_TYPE", "MetricsApp", "format_prometheus"]

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
_PREFIX = "trio_http_"
# Monotonic statistics whose names do not say so.
_COUNTERS = frozenset({"app_errors", "protocol_errors", "tls_handshake_failures"})
_HELP = {
    "connections_open": "TCP connections open now",
    "connections_total": "TCP connections accepted",
    "requests_total": "requests (HTTP/1.1 requests, HTTP/2 and HTTP/3 streams) received",
    "streams_open": "HTTP/2 streams open now",
    "app_errors_total": "exceptions raised by the application",
    "protocol_errors_total": "connections or streams ended for a protocol violation",
    "tls_handshake_failures_total": "TLS handshakes that failed or timed out",
    "websockets_open": "WebSocket connections open now",
    "websockets_total": "WebSocket connections accepted",
    "shutting_down": "1 once graceful shutdown has begun",
}


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in sorted(labels.items())
    )
    return "{" + inner + "}"


def _number(value: Any) -> str | None:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else ("+Inf" if value == math.inf else repr(value))
    return None


def _collect(
    stats: Mapping[str, Any], labels: dict[str, str],
    into: dict[str, list[tuple[dict[str, str], str]]],
) -> None:
    for key, value in stats.items():
        if isinstance(value, Mapping):
            for sub, v in value.items():
                _collect({key: v}, {**labels, "key": str(sub)}, into)
            continue
        if isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                if isinstance(item, Mapping):
                    _collect({f"{key}_{k}": v for k, v in item.items()},
                             {**labels, "endpoint": str(i)}, into)
            continue
        number = _number(value)
        if number is None:
            continue
        name = key + "_total" if key in _COUNTERS else key
        into.setdefault(name, []).append((labels, number))


def format_prometheus(per_worker: Mapping[str, Mapping[str, Any]]) -> str:
    """Format statistics dicts (by worker label; ``""`` for a single process) as Prometheus
    text."""
    series: dict[str, list[tuple[dict[str, str], str]]] = {}
    for worker, stats in per_worker.items():
        _collect(stats, {"worker": worker} if worker else {}, series)
    lines = []
    for name in sorted(series):
        full = _PREFIX + name
        if name in _HELP:
            lines.append(f"# HELP {full} {_HELP[name]}")
        lines.append(f"# TYPE {full} {'counter' if name.endswith('_total') else 'gauge'}")
        for labels, number in series[name]:
            lines.append(f"{full}{_labels(labels)} {number}")
    return "\n".join(lines) + "\n"


class MetricsApp:
    """ASGI app answering ``GET /metrics`` from ``source()`` (statistics by worker label);
    404 elsewhere. Runs lifespan-less (configure the server with ``lifespan="off"``)."""

    def __init__(self, source: Callable[[], Mapping[str, Mapping[str, Any]]]) -> None:
        self.source = source

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] not in ("/metrics", "/metrics/"):
            body, status, ctype = b"not found\n", 404, b"text/plain"
        else:
            body, status = format_prometheus(self.source()).encode(), 200
            ctype = CONTENT_TYPE
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
