"""The Kubernetes exec streaming protocols on a websocket: pods/exec as the API server and kubelet serve it.

Every message carries one channel byte first: 0 stdin, 1 stdout, 2 stderr, 3 the error channel (one
``v1.Status`` when the command has ended), 4 terminal resizes. The subprotocols:

* ``v5.channel.k8s.io`` (kubectl 1.30+, the Python client when offered): as v4, plus the client's
  "close stream" signal ``[255, channel]``; ``[255, 0]`` closes the command's stdin. Upstream the API
  server itself serves v5 (its StreamTranslator) and talks SPDY to the kubelet, so the exit status
  messages are the translator's.
* ``v4.channel.k8s.io``: the status on channel 3 is JSON. A v4 client cannot close stdin alone; its
  only end of input is closing the whole websocket, after which no output can reach it.
* ``channel.k8s.io`` and no subprotocol at all (v1): channel 3 carries only a failure's message text,
  nothing on success.

On connect the server sends one empty message on the lowest output channel the client asked for
(stdout, else stderr, else the error channel), as the kubelet and the translator do. At the end it
writes the status, sends the close frame and waits for the client to answer it, as the translator's
``finish`` does, so that output still in flight is never cut by a reset.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from typing import IO, Any, Sequence

from tests.localpods.api.errors import ApiError
from tests.localpods.api.websocket import WebSocket, WebSocketClosed

STDIN_CHANNEL = 0
STDOUT_CHANNEL = 1
STDERR_CHANNEL = 2
ERROR_CHANNEL = 3
RESIZE_CHANNEL = 4
# The channels wsstream opens for exec; a close signal for any other is a protocol error.
CHANNEL_COUNT = 5
CLOSE_SIGNAL = 255

V5_PROTOCOL = "v5.channel.k8s.io"
V4_PROTOCOL = "v4.channel.k8s.io"
V1_PROTOCOL = "channel.k8s.io"
# Server preference. "" is a client naming no subprotocol, which the kubelet serves as v1.
SUPPORTED_PROTOCOLS = (V5_PROTOCOL, V4_PROTOCOL, V1_PROTOCOL, "")
JSON_STATUS_PROTOCOLS = (V5_PROTOCOL, V4_PROTOCOL)

# io.Copy's buffer: the most output one frame carries upstream.
CHUNK_SIZE = 32 * 1024
# How long the translator waits, after the status, for the client to close the connection.
FINISH_TIMEOUT = 15 * 60.0


def _go_json(value: Any) -> bytes:
    """JSON as Go's encoding/json writes it: compact, UTF-8, with <, >, & and U+2028/9 escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text.encode("utf-8", "replace")


def success_status() -> dict[str, Any]:
    return {"metadata": {}, "status": "Success"}


def exit_code_status(protocol: str, command: Sequence[str], code: int) -> dict[str, Any]:
    """The ``NonZeroExitCode`` status of a command that ended with ``code``.

    v4 (served by the container runtime's streaming server, containerd's or CRI-O's): ``command
    terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3``. v5 (the
    API server's translator, which only saw the SPDY client's error): ``command terminated with non-zero
    exit code: command terminated with exit code 3``.
    """
    if protocol == V5_PROTOCOL:
        error = f"command terminated with exit code {code}"
    else:
        # Go's %v of a []string.
        error = f"error executing command [{' '.join(command)}], exit code {code}"
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: {error}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def internal_error_status(message: str) -> dict[str, Any]:
    """apierrors.NewInternalError(message)."""
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"Internal error occurred: {message}",
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    }


def api_error_status(error: ApiError) -> dict[str, Any]:
    """An ``ApiError`` as the status on channel 3, in Go's field order (no kind/apiVersion, as json.Marshal of status.Status())."""
    status: dict[str, Any] = {"metadata": {}, "status": "Failure", "message": error.message, "reason": error.reason}
    if error.details:
        status["details"] = error.details
    status["code"] = error.status
    return status


def encode_status(protocol: str, status: dict[str, Any]) -> bytes | None:
    """The error channel's payload for ``status``: JSON for v4/v5; for v1 a failure's message text, and nothing (None) on success."""
    if protocol in JSON_STATUS_PROTOCOLS:
        return _go_json(status)
    if status.get("status") == "Success":
        return None
    return str(status.get("message", "")).encode("utf-8")


def reported_exit_code(returncode: int) -> int:
    """The exit code a container runtime reports: a process killed by signal N exits with 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def _announce(ws: WebSocket, stdout: bool, stderr: bool) -> None:
    # The empty "connection established" message on the lowest writable channel.
    channel = STDOUT_CHANNEL if stdout else STDERR_CHANNEL if stderr else ERROR_CHANNEL
    ws.send_binary(bytes([channel]))


def _finish(ws: WebSocket, protocol: str, status: dict[str, Any], reader: threading.Thread, finish_timeout: float) -> None:
    """Status on channel 3, the close frame, then the client's answer (``reader`` ends with it) or the timeout."""
    payload = encode_status(protocol, status)
    try:
        if payload is not None:
            ws.send_binary(bytes([ERROR_CHANNEL]) + payload)
    except WebSocketClosed:
        pass
    ws.close()
    reader.join(finish_timeout)
    if reader.is_alive():
        # A client that neither reads nor closes is cut off, as the translator does after its finish timeout.
        ws.abort()
        reader.join()


def _drain(ws: WebSocket) -> None:
    while ws.recv() is not None:
        pass


class _Session:
    """The shared state of one exec session's threads."""

    def __init__(self, ws: WebSocket, protocol: str, stdin: IO[bytes] | None) -> None:
        self.ws = ws
        self.protocol = protocol
        self.stdin = stdin
        self.changed = threading.Condition()
        self.client_done = False
        self.finishing = False
        self.outputs_open = 0
        self.exited = False

    def _close_stdin(self) -> None:
        pipe, self.stdin = self.stdin, None
        if pipe is not None:
            try:
                pipe.close()
            except (OSError, ValueError):
                pass  # the command is gone, or stopped reading: the input is dropped, as upstream drops it

    def _to_stdin(self, data: bytes) -> None:
        if self.stdin is None or self.finishing or not data:
            return
        try:
            self.stdin.write(data)
            self.stdin.flush()
        except (OSError, ValueError):
            # The command closed its stdin or ended; further input is discarded, as wsstream discards frames it cannot deliver.
            self._close_stdin()

    def read_client(self) -> None:
        """Demultiplex the client's messages until the connection ends; then the command's stdin is closed."""
        supports_close = self.protocol == V5_PROTOCOL
        try:
            while True:
                message = self.ws.recv()
                if message is None:
                    break
                data = message[1]
                if not data:
                    continue
                channel = data[0]
                if supports_close and channel == CLOSE_SIGNAL:
                    if len(data) != 2 or data[1] >= CHANNEL_COUNT:
                        # wsstream ends the connection on a malformed close signal.
                        self.ws.close()
                        self.ws.abort()
                        break
                    if data[1] == STDIN_CHANNEL:
                        self._close_stdin()
                    continue
                if channel == STDIN_CHANNEL:
                    self._to_stdin(data[1:])
                # Resizes (no TTY here), frames for output channels and for unknown channels are ignored, as upstream.
        finally:
            self._close_stdin()
            with self.changed:
                self.client_done = True
                self.changed.notify_all()

    def pump_output(self, pipe: IO[bytes], channel: int, forward: bool) -> None:
        """Copy one output pipe to its channel until EOF. Once the client is gone the output is read and dropped, so the command never blocks on it."""
        fd = pipe.fileno()
        try:
            while True:
                chunk = os.read(fd, CHUNK_SIZE)
                if not chunk:
                    break
                if forward and not self.client_done:
                    try:
                        self.ws.send_binary(bytes([channel]) + chunk)
                    except WebSocketClosed:
                        forward = False
        except OSError:
            pass
        finally:
            try:
                pipe.close()
            except OSError:
                pass
            with self.changed:
                self.outputs_open -= 1
                self.changed.notify_all()

    def wait_process(self, proc: subprocess.Popen[bytes]) -> None:
        proc.wait()
        with self.changed:
            self.exited = True
            self.changed.notify_all()


def _daemon(target: Any, *args: Any, name: str) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    thread.start()
    return thread


def stream_process(
    ws: WebSocket,
    protocol: str,
    proc: subprocess.Popen[bytes],
    stdin: bool,
    stdout: bool,
    stderr: bool,
    *,
    command: Sequence[str] | None = None,
    finish_timeout: float = FINISH_TIMEOUT,
) -> int | None:
    """Serve one exec session for ``proc`` (started with binary pipes) on ``ws``, negotiated as ``protocol``.

    Channel 0 goes to ``proc.stdin`` (when ``stdin``), closed by the v5 close signal or when the
    connection ends; ``proc.stdout``/``proc.stderr`` go to channels 1 and 2 (a pipe whose flag is false
    is drained and dropped). When the command has exited and both pipes reached EOF (a background child
    holding them keeps the session open, as on a real node), the status goes to channel 3 (see
    ``exit_code_status``; ``command`` defaults to ``proc.args``), then the close handshake.

    Returns the exit code reported to the client (``reported_exit_code``), or ``None`` when the
    client went away first. Nothing is killed then: the command keeps running with its stdin closed
    and its output discarded, as a container's command outlives a dropped exec; the caller decides
    whether to wait for it or kill it. The HTTP handler must not reuse the connection afterwards
    (``close_connection = True``).
    """
    if command is None:
        command = [str(arg) for arg in proc.args] if isinstance(proc.args, (list, tuple)) else [str(proc.args)]
    if proc.stdin is not None and not stdin:
        try:
            proc.stdin.close()  # the command gets EOF at once, as with no stdin requested upstream
        except OSError:
            pass
    session = _Session(ws, protocol, proc.stdin if stdin else None)
    pipes = [
        (pipe, channel, flag) for pipe, channel, flag in ((proc.stdout, STDOUT_CHANNEL, stdout), (proc.stderr, STDERR_CHANNEL, stderr)) if pipe is not None
    ]
    session.outputs_open = len(pipes)
    try:
        _announce(ws, stdout, stderr)
    except WebSocketClosed:
        pass  # the reader sees the same end and reports the client gone
    reader = _daemon(session.read_client, name="exec-stdin")
    for pipe, channel, flag in pipes:
        _daemon(session.pump_output, pipe, channel, flag, name=f"exec-output-{channel}")
    _daemon(session.wait_process, proc, name="exec-wait")
    with session.changed:
        session.changed.wait_for(lambda: session.client_done or (session.exited and session.outputs_open == 0))
        if session.client_done:
            return None
        session.finishing = True
    code = reported_exit_code(proc.wait())  # already exited: returns at once
    status = success_status() if code == 0 else exit_code_status(protocol, command, code)
    _finish(ws, protocol, status, reader, finish_timeout)
    return code


def stream_error(
    ws: WebSocket,
    protocol: str,
    message: str | ApiError,
    *,
    stdout: bool = True,
    stderr: bool = True,
    finish_timeout: float = FINISH_TIMEOUT,
) -> None:
    """End a session that could not run its command, after the upgrade: the announce message, a Failure status, the close handshake.

    A ``str`` is the error text of an InternalError (``Internal error occurred: <message>``, code 500),
    which is what the kubelet sends when the runtime fails to start the command, e.g. ``error executing
    command in container: failed to exec in container: failed to start exec "<id>": OCI runtime exec
    failed: exec failed: unable to start container process: exec: "nope": executable file not found in
    $PATH: unknown``; kubectl prints it after ``error: `` and exits 1. For v5 the translator turns any
    failure of its SPDY leg into an InternalError too: a container that is not running reads
    ``Internal error occurred: unable to upgrade connection: container not found ("postgres")``, and the
    kubelet's own InternalError arrives wrapped once more (its message, already prefixed, becomes the
    translator's error text), so a faithful v5 caller passes the kubelet's full message.
    An ``ApiError`` is sent as its own status. ``stdout``/``stderr`` are the request's flags.
    """
    status = api_error_status(message) if isinstance(message, ApiError) else internal_error_status(message)
    try:
        _announce(ws, stdout, stderr)
    except WebSocketClosed:
        return
    reader = _daemon(_drain, ws, name="exec-drain")
    _finish(ws, protocol, status, reader, finish_timeout)
