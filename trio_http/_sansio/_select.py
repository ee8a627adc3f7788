"""Choose the protocol a connection speaks: from ALPN on TLS (RFC 7301), from the first bytes on
a cleartext port (the HTTP/2 connection preface, RFC 9113 §3.4)."""

from __future__ import annotations

from typing import Literal

__all__ = ["H2_PREFACE", "select_protocol"]

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: Enough of the preface to tell it from any HTTP/1.1 request line: no method is "PRI".
_SNIFF = b"PRI "


def select_protocol(
    alpn: str | None, first_bytes: bytes, *, prior_knowledge: bool = True
) -> Literal["h1", "h2"] | None:
    """``"h2"`` or ``"h1"``, or ``None`` when more bytes are needed to tell.

    ALPN decides when it was negotiated. Otherwise, with ``prior_knowledge``, bytes that begin
    like the preface select HTTP/2, so that a garbled preface is answered by the HTTP/2 layer
    with GOAWAY rather than by an HTTP/1.1 error response; without it, HTTP/1.1.
    """
    if alpn == "h2":
        return "h2"
    if (alpn is not None and alpn != "") or not prior_knowledge:
        return "h1"
    n = min(len(first_bytes), len(_SNIFF))
    if first_bytes[:n] != _SNIFF[:n]:
        return "h1"
    if n < len(_SNIFF):
        return None
    return "h2"
