"""A real nginx in front of two trio_http workers, as docs/deployment.md describes: clients
speak HTTP/1.1 and HTTP/2 (cleartext, prior knowledge) to nginx on loopback, nginx proxies
over HTTP/1.1 with X-Forwarded-* headers, and trio_http (--proxy-headers, trusting
127.0.0.1) puts the original client, scheme and host in the scope."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import trio

from .conftest import require_tool
from .prod_helpers import free_port, run_cli

NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream trio_http {{
        server 127.0.0.1:{upstream};
        keepalive 8;
    }}
    server {{
        listen 127.0.0.1:{h1};
        listen 127.0.0.1:{h2} http2;
        location / {{
            proxy_pass http://trio_http;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            # As if nginx had terminated TLS for the public name.
            proxy_set_header X-Forwarded-Proto https;
            proxy_set_header X-Forwarded-Host public.example;
        }}
    }}
}}
"""


async def _wait_listening(port: int, process: trio.Process, tmp: Path) -> None:
    with trio.fail_after(15):
        while True:
            if process.returncode is not None:
                raise AssertionError((tmp / "error.log").read_text())
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.05)
                continue
            await stream.aclose()
            return


async def test_nginx_proxies_http1_and_http2_to_two_workers(tmp_path):
    nginx = require_tool("nginx")
    async with run_cli("tests.apps.prod_apps:info_app", "--workers", "2", "--bind",
                       "127.0.0.1:0", "--proxy-headers", "--forwarded-allow-ips", "127.0.0.1",
                       ready=r"Worker \d+ ready", ready_count=2) as server:
        h1, h2 = free_port(), free_port()
        conf = tmp_path / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp_path, upstream=server.port, h1=h1, h2=h2))
        process = await trio.lowlevel.open_process(
            [nginx, "-p", str(tmp_path), "-c", str(conf)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            await _wait_listening(h1, process, tmp_path)
            await _wait_listening(h2, process, tmp_path)
            seen: list[dict[str, Any]] = []
            for port, http2 in ((h1, False), (h2, True)):
                async with httpx.AsyncClient(http1=not http2, http2=http2) as client:
                    for i in range(10):
                        r = await client.get(f"http://127.0.0.1:{port}/item/{i}",
                                             headers={"x-forwarded-for": "203.0.113.9"})
                        assert r.status_code == 200, r.text
                        assert r.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
                        seen.append(r.json())
        finally:
            process.terminate()
            with trio.move_on_after(5):
                await process.wait()
            if process.returncode is None:
                process.kill()
    for view in seen:
        # nginx appended its peer (this test, on 127.0.0.1: trusted too, so the hop it
        # claims is believed) after the hop the request carried.
        assert view["client"] == ["203.0.113.9", 0]
        assert view["scheme"] == "https"
        assert view["host"] == "public.example"
        assert view["http_version"] == "1.1"  # nginx speaks HTTP/1.1 upstream
    assert [v["path"] for v in seen[:2]] == ["/item/0", "/item/1"]
    workers = set(map(int, re.findall(r"Worker (\d+) ready", server.text)))
    assert {v["pid"] for v in seen} <= workers and len(workers) == 2
