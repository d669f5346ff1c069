"""RFC 6455 websockets, server side, over an HTTP handler's ``rfile``/``wfile`` or a plain socket.

``handshake`` checks an upgrade request the way the API server and golang.org/x/net/websocket (the
library under the kubelet's and the API server's wsstream) do, and returns the ``101`` headers.
``WebSocket`` then reads the client's messages (fragments joined, masks removed, pings answered, the
close handshake completed) and sends unfragmented, unmasked frames from any number of threads.

Only what Kubernetes clients use is implemented: no extensions (``permessage-deflate`` is never
accepted), at most ``MAX_MESSAGE_SIZE`` bytes per message, one reading thread.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import threading
from typing import BinaryIO, Mapping, Sequence

from tests.localpods.api.errors import ApiError

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
DATA_OPCODES = (OP_TEXT, OP_BINARY)
CONTROL_OPCODES = (OP_CLOSE, OP_PING, OP_PONG)

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_NO_STATUS = 1005
CLOSE_ABNORMAL = 1006
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009
# Codes a peer may put in a close frame (RFC 6455 7.4, IANA registry); 1004-1006 and 1015 never go on the wire.
_VALID_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})

# golang.org/x/net/websocket's DefaultMaxPayloadBytes: the largest message the kubelet's and the API server's websocket reads.
MAX_MESSAGE_SIZE = 32 << 20


class WebSocketClosed(ConnectionError):
    """A send on a websocket that has sent its close frame, or whose connection is gone."""


def _header_values(headers: Mapping[str, str], name: str) -> list[str]:
    # http.server's headers (email.message.Message) may repeat a name; a plain dict is matched case-insensitively.
    get_all = getattr(headers, "get_all", None)
    if callable(get_all):
        return [str(value) for value in get_all(name) or []]
    return [str(value) for key, value in headers.items() if key.lower() == name.lower()]


def _tokens(values: Sequence[str]) -> list[str]:
    return [token.strip() for value in values for token in value.split(",") if token.strip()]


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode("ascii")).digest()).decode("ascii")


def handshake(headers: Mapping[str, str], supported_protocols: Sequence[str]) -> tuple[dict[str, str], str]:
    """Check a websocket upgrade request; return the ``101 Switching Protocols`` headers and the chosen subprotocol.

    The subprotocol is the first of ``supported_protocols`` (server preference) that the client offers
    in ``Sec-WebSocket-Protocol``; a client offering none gets ``""`` when ``""`` is supported, and then
    the answer names no subprotocol. Refusals are the upstream ones:

    * not an upgrade at all: ``400 Upgrade request required`` (the API server's UpgradeAwareHandler);
    * ``Upgrade`` is not ``websocket``, no key, version not 13: ``400`` with x/net/websocket's texts;
    * no common subprotocol: ``403`` (x/net answers a failed handshake callback with 403 Forbidden),
      with wsstream's ``requested protocol(s) are not supported: [...]; supports [...]``.
    """
    connection = [token.lower() for token in _tokens(_header_values(headers, "Connection"))]
    upgrade = [token.lower() for token in _tokens(_header_values(headers, "Upgrade"))]
    if "upgrade" not in connection:
        raise ApiError(400, "BadRequest", "Upgrade request required")
    if upgrade != ["websocket"]:
        raise ApiError(400, "BadRequest", "not websocket protocol")
    keys = _header_values(headers, "Sec-WebSocket-Key")
    key = keys[0].strip() if keys else ""
    if not key:
        raise ApiError(400, "BadRequest", "mismatch challenge/response")
    versions = _header_values(headers, "Sec-WebSocket-Version")
    if not versions or versions[0].strip() != "13":
        raise ApiError(400, "BadRequest", "missing or bad WebSocket Version")
    offered = _tokens(_header_values(headers, "Sec-WebSocket-Protocol"))
    candidates = offered or [""]
    chosen = next((protocol for protocol in supported_protocols if protocol in candidates), None)
    if chosen is None:
        # Go prints both lists as %v: [a b c].
        message = f"requested protocol(s) are not supported: [{' '.join(offered)}]; supports [{' '.join(supported_protocols)}]"
        raise ApiError(403, "Forbidden", message)
    response = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Accept": accept_key(key)}
    if chosen:
        response["Sec-WebSocket-Protocol"] = chosen
    return response, chosen


def _unmask(data: bytes, mask: bytes) -> bytes:
    # XOR as one big integer: linear, and far faster in CPython than a per-byte loop on multi-megabyte frames.
    size = len(data)
    if not size:
        return data
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")


def _frame(opcode: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return header + payload


class _Failure(Exception):
    """A protocol violation by the peer: the connection is closed with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class WebSocket:
    """The server end of an established websocket (the ``101`` answer already sent).

    ``recv`` must be called from one thread at a time; ``send``/``send_binary``/``close`` from any
    thread, each frame going out whole. The close handshake: ``close`` sends the close frame and
    returns at once; the peer's answer ends ``recv`` (``None``), which also sets ``wait_closed``.
    A peer that closes first gets its close frame echoed by ``recv``. ``abort`` cuts the connection.
    """

    def __init__(self, rfile: BinaryIO, wfile: BinaryIO, sock: socket.socket | None = None, *, max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        self._rfile = rfile
        self._wfile = wfile
        self._sock = sock
        self._max_message_size = max_message_size
        self._send_lock = threading.Lock()
        self._close_sent = False
        self._broken = False
        self._ended = threading.Event()
        # How the connection ended: the peer's close code (1005 when its close frame had none), 1006 when it vanished
        # without a close frame, or the code of our close after a protocol violation; None while it lasts.
        self.close_code: int | None = None
        self.close_reason = ""

    @classmethod
    def from_socket(cls, sock: socket.socket, *, max_message_size: int = MAX_MESSAGE_SIZE) -> WebSocket:
        return cls(sock.makefile("rb"), sock.makefile("wb"), sock, max_message_size=max_message_size)

    @property
    def close_sent(self) -> bool:
        return self._close_sent

    @property
    def ended(self) -> bool:
        """True once ``recv`` has returned ``None``: the peer closed, vanished, or broke the protocol."""
        return self._ended.is_set()

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until ``recv`` has seen the end of the connection; False if ``timeout`` passed first."""
        return self._ended.wait(timeout)

    # Sending.

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self._wfile.write(view)
            if written is None:  # a non-blocking raw file that could take nothing now
                raise WebSocketClosed("the connection does not take data")
            view = view[written:]
        self._wfile.flush()

    def _send_frame(self, opcode: int, payload: bytes, *, after_close: bool = False) -> None:
        with self._send_lock:
            if self._broken:
                raise WebSocketClosed("the connection is gone")
            if self._close_sent and not after_close:
                raise WebSocketClosed("the close frame was already sent")
            try:
                self._write(_frame(opcode, payload))
            except (OSError, ValueError) as exc:  # ValueError: the file was closed under us
                self._broken = True
                raise WebSocketClosed(f"the connection is gone: {exc}") from exc
            if opcode == OP_CLOSE:
                self._close_sent = True

    def send(self, opcode: int, payload: bytes) -> None:
        """Send one unfragmented message (data) or control frame; control payloads are at most 125 bytes."""
        if opcode == OP_CLOSE:
            raise ValueError("use close() to send a close frame")
        if opcode not in DATA_OPCODES and opcode not in CONTROL_OPCODES:
            raise ValueError(f"opcode {opcode:#x} is not a websocket opcode")
        if opcode in CONTROL_OPCODES and len(payload) > 125:
            raise ValueError("a control frame carries at most 125 bytes")
        self._send_frame(opcode, bytes(payload))

    def send_binary(self, data: bytes) -> None:
        self.send(OP_BINARY, data)

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Send the close frame (once; later calls do nothing). Does not wait for the peer's answer."""
        body = reason.encode("utf-8")
        if len(body) > 123:
            raise ValueError("a close reason is at most 123 bytes")
        with self._send_lock:
            if self._close_sent or self._broken:
                return
        try:
            self._send_frame(OP_CLOSE, struct.pack("!H", code) + body)
        except WebSocketClosed:
            pass  # a peer that is gone needs no close frame

    def abort(self) -> None:
        """Cut the connection: a ``recv`` blocked in another thread returns ``None``, later sends fail."""
        with self._send_lock:
            self._broken = True
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # Receiving.

    def _read_exact(self, size: int) -> bytes | None:
        chunks: list[bytes] = []
        remaining = size
        while remaining:
            chunk = self._rfile.read(remaining)
            if not chunk:
                return None
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def _read_frame(self) -> tuple[bool, int, bytes] | None:
        head = self._read_exact(2)
        if head is None:
            return None
        first, second = head
        fin, rsv, opcode = bool(first & 0x80), first & 0x70, first & 0x0F
        masked, size = bool(second & 0x80), second & 0x7F
        if rsv:
            raise _Failure(CLOSE_PROTOCOL_ERROR, "reserved bits set without a negotiated extension")
        if opcode not in DATA_OPCODES and opcode not in CONTROL_OPCODES and opcode != OP_CONTINUATION:
            raise _Failure(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
        if not masked:
            raise _Failure(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
        if opcode in CONTROL_OPCODES and (not fin or size > 125):
            raise _Failure(CLOSE_PROTOCOL_ERROR, "control frames are unfragmented and at most 125 bytes")
        if size == 126:
            extended = self._read_exact(2)
            if extended is None:
                return None
            (size,) = struct.unpack("!H", extended)
        elif size == 127:
            extended = self._read_exact(8)
            if extended is None:
                return None
            (size,) = struct.unpack("!Q", extended)
            if size >> 63:
                raise _Failure(CLOSE_PROTOCOL_ERROR, "frame length with the most significant bit set")
        if size > self._max_message_size:
            raise _Failure(CLOSE_TOO_BIG, "message too big")
        mask = self._read_exact(4)
        if mask is None:
            return None
        payload = self._read_exact(size) if size else b""
        if payload is None:
            return None
        return fin, opcode, _unmask(payload, mask)

    def _peer_closed(self, payload: bytes) -> None:
        if len(payload) == 1:
            raise _Failure(CLOSE_PROTOCOL_ERROR, "close frame with a one-byte body")
        if not payload:
            self.close_code, self.close_reason = CLOSE_NO_STATUS, ""
            reply = b""
        else:
            (code,) = struct.unpack("!H", payload[:2])
            if code not in _VALID_CLOSE_CODES and not 3000 <= code <= 4999:
                raise _Failure(CLOSE_PROTOCOL_ERROR, f"invalid close code {code}")
            try:
                reason = payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                raise _Failure(CLOSE_INVALID_DATA, "close reason is not UTF-8") from None
            self.close_code, self.close_reason = code, reason
            reply = payload[:2]
        try:
            # Echo the peer's code, as RFC 6455 5.5.1 suggests; nothing to answer if we closed first.
            self._send_frame(OP_CLOSE, reply)
        except WebSocketClosed:
            pass

    def recv(self) -> tuple[int, bytes] | None:
        """The next whole message as ``(OP_TEXT or OP_BINARY, payload)``; ``None`` once the connection has ended.

        Pings are answered with pongs and pongs dropped on the way. The end is the peer's close frame
        (echoed unless ours went first), the connection dropping (``close_code`` 1006), or a protocol
        violation, which is answered with a close frame carrying 1002, 1007 or 1009.
        """
        if self._ended.is_set():
            return None
        opcode = -1
        parts: list[bytes] = []
        size = 0
        try:
            while True:
                frame = self._read_frame()
                if frame is None:
                    self.close_code = self.close_code or CLOSE_ABNORMAL
                    break
                fin, frame_opcode, payload = frame
                if frame_opcode == OP_PING:
                    try:
                        self._send_frame(OP_PONG, payload, after_close=True)
                    except WebSocketClosed:
                        pass  # the read side still tells whether the peer is there
                    continue
                if frame_opcode == OP_PONG:
                    continue
                if frame_opcode == OP_CLOSE:
                    self._peer_closed(payload)
                    break
                if frame_opcode == OP_CONTINUATION:
                    if opcode < 0:
                        raise _Failure(CLOSE_PROTOCOL_ERROR, "continuation frame without a message to continue")
                elif opcode >= 0:
                    raise _Failure(CLOSE_PROTOCOL_ERROR, "new message before the previous one was finished")
                else:
                    opcode = frame_opcode
                size += len(payload)
                if size > self._max_message_size:
                    raise _Failure(CLOSE_TOO_BIG, "message too big")
                parts.append(payload)
                if not fin:
                    continue
                message = b"".join(parts)
                if opcode == OP_TEXT:
                    try:
                        message.decode("utf-8")
                    except UnicodeDecodeError:
                        raise _Failure(CLOSE_INVALID_DATA, "text message is not UTF-8") from None
                return opcode, message
        except _Failure as failure:
            self.close_code, self.close_reason = failure.code, failure.reason
            self.close(failure.code, failure.reason)
        except (OSError, ValueError):  # reset, shut down by abort(), or the file closed
            self.close_code = self.close_code or CLOSE_ABNORMAL
        self._ended.set()
        return None
