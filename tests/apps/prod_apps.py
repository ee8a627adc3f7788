"""Apps served by the production tests (workers, proxies, TLS, WSGI): each answers with what
it saw, as JSON, so that a test can check the scope from outside the process."""

from __future__ import annotations

import json
import os
from typing import Any


def _scope_view(scope: dict[str, Any]) -> dict[str, Any]:
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    tls = scope.get("extensions", {}).get("tls")
    return {
        "pid": os.getpid(),
        "client": list(scope["client"]) if scope.get("client") else None,
        "server": list(scope["server"]) if scope.get("server") else None,
        "scheme": scope["scheme"],
        "http_version": scope.get("http_version"),
        "host": headers.get("host"),
        "path": scope.get("path"),
        "root_path": scope.get("root_path"),
        "tls": tls,
    }


async def info_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``GET /anything``: 200 with the scope's client, scheme, host, TLS extension and pid."""
    if scope["type"] != "http":
        return
    body = json.dumps(_scope_view(scope)).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def make_app() -> Any:
    """A factory (``--factory``)."""
    return info_app


def wsgi_app(environ: dict[str, Any], start_response: Any) -> Any:
    """A WSGI app: ``/echo`` streams the request body back in 3 chunks; anything else
    describes the environ."""
    if environ["PATH_INFO"] == "/echo":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("X-Length", str(len(body)))])
        third = len(body) // 3
        return [body[:third], body[third: 2 * third], body[2 * third:]]
    if environ["PATH_INFO"] == "/fail":
        raise RuntimeError("boom")
    view = {
        "pid": os.getpid(),
        "method": environ["REQUEST_METHOD"],
        "script_name": environ["SCRIPT_NAME"],
        "path_info": environ["PATH_INFO"],
        "query": environ["QUERY_STRING"],
        "remote_addr": environ.get("REMOTE_ADDR"),
        "protocol": environ["SERVER_PROTOCOL"],
        "scheme": environ["wsgi.url_scheme"],
        "x_test": environ.get("HTTP_X_TEST"),
    }
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(view).encode()]
