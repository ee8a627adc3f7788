"""--metrics-bind: RunningServer.statistics() in the Prometheus text format on its own
listener, from one process and from a supervisor aggregating its workers."""

from __future__ import annotations

import re

import httpx
import trio

from trio_http._metrics import format_prometheus

from .prod_helpers import run_cli

METRICS = re.compile(r"Metrics on (\S+)")


def _value(text: str, series: str) -> float:
    m = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    assert m is not None, f"{series} missing from\n{text}"
    return float(m.group(1))


async def test_metrics_endpoint_single_process():
    async with run_cli("tests.apps.prod_apps:info_app", "--bind", "127.0.0.1:0",
                       "--metrics-bind", "127.0.0.1:0", ready=r"Metrics on") as server:
        url = METRICS.search(server.text).group(1)  # type: ignore[union-attr]
        async with httpx.AsyncClient() as client:
            for _ in range(3):
                assert (await client.get(server.urls[0] + "/")).status_code == 200
            r = await client.get(url)
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
            text = r.text
            assert _value(text, "trio_http_requests_total") == 3
            assert _value(text, "trio_http_connections_total") == 1
            assert _value(text, "trio_http_shutting_down") == 0
            assert "# TYPE trio_http_requests_total counter" in text
            assert "# TYPE trio_http_connections_open gauge" in text
            assert (await client.get(url.replace("/metrics", "/other"))).status_code == 404


async def test_metrics_from_supervised_workers():
    async with run_cli("tests.apps.prod_apps:info_app", "--bind", "127.0.0.1:0",
                       "--workers", "2", "--metrics-bind", "127.0.0.1:0",
                       ready=r"Worker \d+ ready", ready_count=2) as server:
        url = METRICS.search(server.text).group(1)  # type: ignore[union-attr]
        async with httpx.AsyncClient() as client:
            with trio.fail_after(15):
                while True:
                    text = (await client.get(url)).text
                    if 'worker="0"' in text and 'worker="1"' in text:
                        break
                    await trio.sleep(0.2)  # workers report once a second
        assert _value(text, 'trio_http_requests_total{worker="1"}') == 0


def test_format_prometheus_labels_and_types():
    text = format_prometheus({
        "0": {"requests_total": 5, "app_errors": 1, "shutting_down": True, "note": "x",
              "quic": [{"connections": 2, "dropped": 7}], "by": {"h2": 3}},
        "1": {"requests_total": 2, "app_errors": 0, "shutting_down": False},
    })
    assert 'trio_http_requests_total{worker="0"} 5' in text
    assert 'trio_http_app_errors_total{worker="1"} 0' in text
    assert 'trio_http_shutting_down{worker="0"} 1' in text
    assert 'trio_http_quic_connections{endpoint="0",worker="0"} 2' in text
    assert 'trio_http_by{key="h2",worker="0"} 3' in text
    assert "note" not in text
    assert text.count("# TYPE trio_http_requests_total counter") == 1
