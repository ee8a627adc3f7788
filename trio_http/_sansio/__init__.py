"""The pure protocol core: bytes in, events out, bytes out. No I/O, no clocks, no async.

Every class here is synchronous and deterministic; the I/O layer (``trio_http._*``) feeds it
bytes with ``receive_data``/``receive_eof``, acts on the events it returns, and writes what
``data_to_send()`` hands back. Time, where a protocol needs it, comes in as ``now`` (seconds).
"""
