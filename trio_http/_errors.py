"""The exceptions trio_http raises into applications and embedding programs.

No h11, h2, wsproto or aioquic exception crosses the public boundary: each is translated into one
of these at the layer that catches it (house rule 7).
"""

from __future__ import annotations


class TrioHTTPError(Exception):
    """Base class of every exception trio_http defines."""


class ConfigError(TrioHTTPError, ValueError):
    """A :class:`~trio_http.Config` field or a bind string is invalid."""


class BindError(TrioHTTPError, OSError):
    """A bind could not be opened (address in use, bad file descriptor, permissions...)."""


class ClientDisconnected(OSError):
    """Raised from an ASGI ``send()`` when the peer has gone away.

    The ASGI specification (HTTP, "Disconnect") says a server raises an :class:`OSError` subclass
    from ``send()`` once the connection or stream is closed; apps may catch it to stop work early.
    """


class LifespanFailure(TrioHTTPError, RuntimeError):
    """The application reported ``lifespan.startup.failed`` (or crashed during startup)."""


class ProtocolError(TrioHTTPError):
    """The peer broke the protocol. Raised only inside the sans-io layer and handled by the
    I/O layer, which answers with the right status code or stream/connection error.

    ``status_code`` is the HTTP/1.1 status to answer with (400, 413, 414, 431, 501...), and
    ``error_code`` the HTTP/2 error code to use in RST_STREAM or GOAWAY.
    """

    def __init__(self, message: str, *, status_code: int = 400, error_code: int = 1) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error_code = error_code
