"""A pass over HTTP/2 frame headers before h2 parses the frames (RFC 9113 §4.1), for the
defences h2 does not have: budgets for frames that carry no request work (PING, SETTINGS,
PRIORITY, RST_STREAM, unknown types, empty DATA and CONTINUATION: flood attacks such as
CVE-2019-9512/9515/9518 and the CONTINUATION flood of VU#421644), a size and a start time for
header blocks, and the places to split a read holding many HEADERS frames."""

from __future__ import annotations

__all__ = ["FLOOD_WINDOW", "FrameScanner"]

#: Seconds over which control frames are counted against ``control_frame_budget``.
FLOOD_WINDOW = 10.0
_PREFACE_SIZE = 24  # the client connection preface, RFC 9113 §3.4
# Frame types (RFC 9113 §6) and flags the scanner looks at.
_DATA, _HEADERS, _PUSH_PROMISE, _WINDOW_UPDATE, _CONTINUATION = 0x0, 0x1, 0x5, 0x8, 0x9
_END_STREAM, _END_HEADERS = 0x1, 0x4


class FrameScanner:
    """Frame-header bookkeeping for one connection's input, in the order received.

    ``control_frame_budget`` is how many frames without request work are allowed per
    :data:`FLOOD_WINDOW` seconds; ``max_header_block_size`` (bytes) bounds one header block
    across its CONTINUATION frames; ``headers_batch`` is how many HEADERS frames may go to
    h2 in one piece (:attr:`cuts` says where to split the last read).
    """

    def __init__(
        self, *, control_frame_budget: int, max_header_block_size: int, headers_batch: int
    ) -> None:
        self._skip = _PREFACE_SIZE  # bytes of the current frame (or preface) still to pass
        self._partial = bytearray()  # a frame header split across reads
        #: Frames without request work seen in the current window.
        self.flood = 0
        self._flood_budget = control_frame_budget
        self._flood_since = 0.0
        #: ``now`` when the header block being received began, or ``None``.
        self.block_since: float | None = None
        self._block_bytes = 0
        self._block_ends = False  # the current frame ends its header block
        # A compressed header block is no larger than the list it decodes to, give or take
        # padding: bound it so h2 never buffers more (its own cap is 64 CONTINUATION frames).
        self._max_block = max_header_block_size
        self._batch = headers_batch
        #: Offsets in the last scanned read where a new batch of HEADERS frames begins.
        self.cuts: list[int] = []

    @property
    def over_budget(self) -> bool:
        """True once the control-frame budget of the current window is spent."""
        return self.flood > self._flood_budget

    def scan(self, data: bytes, now: float) -> str | None:
        """Walk the frame headers in ``data`` before h2 sees them: count frames that carry no
        request work, time and size header blocks. Returns why the connection must end, or
        ``None``."""
        if now - self._flood_since >= FLOOD_WINDOW:
            self._flood_since = now
            self.flood = 0
        n = len(data)
        cuts = self.cuts = []
        batch = self._batch
        headers = 0
        skip = self._skip
        pos = min(skip, n)
        skip -= pos
        if not skip and pos and self._block_ends:
            self._block_ends = False
            self.block_since = None
        while not skip and pos < n:
            partial = self._partial
            if partial or n - pos < 9:
                take = min(9 - len(partial), n - pos)
                partial += data[pos : pos + take]
                pos += take
                if len(partial) < 9:
                    break
                head = bytes(partial)
                partial.clear()
            else:
                head = data[pos : pos + 9]
                if head[3] == _HEADERS:
                    headers += 1
                    if headers > batch and (headers - 1) % batch == 0:
                        cuts.append(pos)
                pos += 9
            length = int.from_bytes(head[:3], "big")
            ftype = head[3]
            flags = head[4]
            if ftype == _DATA:
                if not length and not flags & _END_STREAM:
                    self.flood += 1
            elif ftype == _HEADERS or ftype == _PUSH_PROMISE or ftype == _CONTINUATION:
                if self.block_since is None:
                    self.block_since = now
                    self._block_bytes = 0
                self._block_bytes += length
                if self._block_bytes > self._max_block:
                    return "header block too large"
                if flags & _END_HEADERS:
                    self._block_ends = True
                elif not length:
                    self.flood += 1
            elif ftype != _WINDOW_UPDATE:
                # WINDOW_UPDATE is left out: a client reading a large response sends one per
                # few frames it receives, so its number follows our output, not its whim.
                self.flood += 1
            if self.flood > self._flood_budget:
                return "too many control frames"
            take = min(length, n - pos)
            pos += take
            skip = length - take
            if not skip and self._block_ends:
                self._block_ends = False
                self.block_since = None
        self._skip = skip
        return None
