""":class:`RecordingApp`: an ASGI app (or wrapper around one) that records the requests it
sees, with the protocol each came over and the body bytes read, and asserts on them."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["RecordedRequest", "RecordingApp"]


class RecordedRequest:
    """One ``http`` or ``websocket`` request as the app saw it.

    - ``type``: ``"http"`` or ``"websocket"``; ``method``: ``"GET"``, ``"POST"``, ...
    - ``path`` (decoded, as in the ASGI scope), ``query_string`` (bytes), ``scheme``.
    - ``http_version``: ``"1.1"``, ``"2"`` or ``"3"``: the protocol it came over.
    - ``headers``: ``(name, value)`` pairs, names lower-case, both decoded as latin-1.
    - ``body``: the body bytes the app has read so far (all of it once the app read it all;
      the default responder always does).
    - ``status``: the response status the app sent, or ``None``; ``finished``: the app
      returned.
    """

    __slots__ = (
        "_chunks", "finished", "headers", "http_version", "method", "path", "query_string",
        "scheme", "status", "type",
    )

    def __init__(self, scope: Mapping[str, Any]) -> None:
        self.type: str = scope["type"]
        self.method: str = scope.get("method", "GET")
        self.path: str = scope.get("path", "")
        self.query_string: bytes = scope.get("query_string", b"")
        self.scheme: str = scope.get("scheme", "http")
        self.http_version: str = scope.get("http_version", "1.1")
        self.headers: tuple[tuple[str, str], ...] = tuple(
            (bytes(n).decode("latin-1").lower(), bytes(v).decode("latin-1"))
            for n, v in scope.get("headers", ())
        )
        self._chunks: list[bytes] = []
        self.status: int | None = None
        self.finished = False

    @property
    def body(self) -> bytes:
        return b"".join(self._chunks)

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (any case); repeated fields joined with ``", "``."""
        want = name.lower()
        values = [v for n, v in self.headers if n == want]
        return ", ".join(values) if values else None

    def matches(
        self,
        *,
        method: str | None = None,
        path: str | None = None,
        http_version: str | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> bool:
        """Whether every criterion given holds (``headers``: each name present with that
        value; names in any case)."""
        if method is not None and self.method != method.upper():
            return False
        if path is not None and self.path != path:
            return False
        if http_version is not None and self.http_version != http_version:
            return False
        if body is not None and self.body != body:
            return False
        return all(self.header(n) == v for n, v in (headers or {}).items())

    def __repr__(self) -> str:
        query = f"?{self.query_string.decode('latin-1')}" if self.query_string else ""
        status = f" -> {self.status}" if self.status is not None else ""
        return (
            f"<{self.method} {self.path}{query} HTTP/{self.http_version}"
            f" body={len(self.body)} bytes{status}>"
        )


def _criteria(**kwargs: Any) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if v is not None) or "(any)"


class RecordingApp:
    """An ASGI 3 app that records every ``http``/``websocket`` request it serves.

    ``RecordingApp()`` answers every request itself: it reads the whole body, then responds
    ``status`` with ``body`` and ``headers`` (WebSocket connections are refused).
    ``RecordingApp(app)`` wraps ``app`` (ASGI 3) instead and records what it reads. Lifespan
    goes to the wrapped app (the default responder does not take part in it).

    Thread-safe: a server in another thread may record while the test reads ``requests``.
    """

    def __init__(
        self,
        app: Any = None,
        *,
        status: int = 200,
        body: bytes = b"",
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.app = app
        self._status = status
        self._body = body
        self._headers = list(headers or [(b"content-type", b"text/plain")])
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            if self.app is not None:
                await self.app(scope, receive, send)
            return
        record = RecordedRequest(scope)
        with self._lock:
            self._requests.append(record)

        async def recording_receive() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                record._chunks.append(bytes(message.get("body", b"")))
            return message

        async def recording_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
            await send(message)

        try:
            if self.app is not None:
                await self.app(scope, recording_receive, recording_send)
            else:
                await self._respond(scope, recording_receive, recording_send)
        finally:
            record.finished = True

    async def _respond(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1000})
            return
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.start", "status": self._status,
                    "headers": self._headers})
        await send({"type": "http.response.body", "body": self._body})

    # --- reading -----------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """The requests recorded so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    def __len__(self) -> int:
        with self._lock:
            return len(self._requests)

    def __iter__(self) -> Iterator[RecordedRequest]:
        return iter(self.requests)

    @property
    def last(self) -> RecordedRequest:
        """The latest request; :class:`AssertionError` if there is none."""
        requests = self.requests
        assert requests, "RecordingApp: no request was recorded"
        return requests[-1]

    @property
    def http_versions(self) -> list[str]:
        """The protocol of each recorded request, in order: ``["2", "2", "1.1"]``."""
        return [r.http_version for r in self.requests]

    def clear(self) -> None:
        """Forget the requests recorded so far."""
        with self._lock:
            self._requests.clear()

    def find(
        self,
        *,
        method: str | None = None,
        path: str | None = None,
        http_version: str | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> list[RecordedRequest]:
        """The recorded requests matching every criterion given (see
        :meth:`RecordedRequest.matches`)."""
        return [
            r for r in self.requests
            if r.matches(method=method, path=path, http_version=http_version, headers=headers,
                         body=body)
        ]

    # --- asserting -----------------------------------------------------------------------

    def assert_requested(
        self,
        *,
        method: str | None = None,
        path: str | None = None,
        http_version: str | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        count: int | None = None,
    ) -> RecordedRequest:
        """Assert that a recorded request matches (exactly ``count`` of them when given, which
        must then be at least 1) and return the latest match. The :class:`AssertionError`
        lists every request recorded."""
        found = self.find(method=method, path=path, http_version=http_version,
                          headers=headers, body=body)
        want = _criteria(method=method, path=path, http_version=http_version,
                         headers=headers, body=body)
        if count is not None and count < 1:
            raise ValueError("count must be at least 1; use assert_not_requested()")
        if not found or (count is not None and len(found) != count):
            expected = "a request" if count is None else f"{count} request(s)"
            raise AssertionError(
                f"RecordingApp: expected {expected} matching {want}, found {len(found)}; "
                f"recorded: {self.requests!r}"
            )
        return found[-1]

    def assert_not_requested(
        self,
        *,
        method: str | None = None,
        path: str | None = None,
        http_version: str | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> None:
        """Assert that no recorded request matches."""
        found = self.find(method=method, path=path, http_version=http_version,
                          headers=headers, body=body)
        if found:
            want = _criteria(method=method, path=path, http_version=http_version,
                             headers=headers, body=body)
            raise AssertionError(
                f"RecordingApp: expected no request matching {want}, found {found!r}"
            )

    def assert_all_http_version(self, http_version: str) -> None:
        """Assert that at least one request was recorded and that every one came over
        ``http_version`` (``"1.1"``, ``"2"``, ``"3"``)."""
        versions = self.http_versions
        if not versions or any(v != http_version for v in versions):
            raise AssertionError(
                f"RecordingApp: expected every request over HTTP/{http_version}, "
                f"recorded: {self.requests!r}"
            )
