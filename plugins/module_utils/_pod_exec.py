# -*- coding: utf-8 -*-
# Copyright: dbonk8s.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pod exec over the Kubernetes websocket: reading the channels and the exit status.

The API server multiplexes an exec session into channels: 1 stdout, 2 stderr, 3 the error channel,
which carries one ``v1.Status`` when the command ends::

    {"status": "Success"}
    {"status": "Failure", "reason": "NonZeroExitCode",
     "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}

``WSClient.returncode`` of the ``kubernetes`` client crashes when that channel is empty (the
connection was cut before the status came), which is exactly when a caller must not guess a result:
here an empty channel is a lost connection (``ExecLost``), never a success.

Nothing here imports ``kubernetes``: ``run_session`` takes any object with the ``WSClient`` methods
it uses (``is_open``, ``update``, ``read_channel``, ``close``), so the unit tests drive it with fakes
that replay real frames.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Protocol

from ansible_collections.dbonk8s.postgresql.plugins.module_utils._cluster import (
    ClusterError,
    ExecLost,
    ExecResult,
    ExecTimeout,
    PodUnavailable,
    StdinLine,
)

STDIN_CHANNEL = 0
STDOUT_CHANNEL = 1
STDERR_CHANNEL = 2
ERROR_CHANNEL = 3

# Longest single wait on the socket; keeps the deadline honoured even when no frame comes.
_POLL_SECONDS = 0.5
# While a stdin line may be said any moment, it must not wait behind a long poll.
_STDIN_POLL_SECONDS = 0.002
_CLOSE_SECONDS = 0.5

# Messages of the API server / kubelet that mean "there is nothing running to exec into".
_NOT_RUNNING_MARKERS = (
    "container not found",
    "is not running",
    "not running",
    "pod does not exist",
    "cannot exec into a container in a completed pod",
    "is waiting to start",
    "containercreating",
    "unable to upgrade connection: pod not found",
)


class ExecSession(Protocol):
    """The part of ``kubernetes.stream.ws_client.WSClient`` that exec needs."""

    def is_open(self) -> bool: ...

    def update(self, timeout: float = 0) -> None: ...

    def read_channel(self, channel: int, timeout: float = 0) -> Any: ...

    def close(self, **kwargs: Any) -> None: ...

    def write_stdin(self, data: str) -> None: ...


def _text(data: Any) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data or ""


def looks_not_running(message: str) -> bool:
    lowered = message.lower()
    return any(marker in lowered for marker in _NOT_RUNNING_MARKERS)


def parse_exec_status(raw: str, pod: str) -> int:
    """Exit code from the error channel's ``v1.Status``.

    Raises ``ExecLost`` when there is no status, ``PodUnavailable`` when the status says the
    container is gone, ``ClusterError`` for any other failure that carries no exit code (for
    instance the executable does not exist in the image).
    """
    text = raw.strip()
    if not text:
        raise ExecLost(f"exec in pod {pod}: the connection closed without an exit status (connection lost)")
    try:
        status = json.loads(text)
    except ValueError:
        raise ExecLost(f"exec in pod {pod}: unreadable exit status {text[:200]!r}") from None
    if not isinstance(status, dict):
        raise ExecLost(f"exec in pod {pod}: unreadable exit status {text[:200]!r}")
    if status.get("status") == "Success":
        return 0
    message = str(status.get("message") or "")
    if status.get("reason") == "NonZeroExitCode":
        for cause in (status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                try:
                    return int(cause.get("message"))
                except (TypeError, ValueError):
                    break
        raise ExecLost(f"exec in pod {pod}: non-zero exit without an exit code: {message or text[:200]}")
    if looks_not_running(message):
        raise PodUnavailable(f"pod {pod} is not available for exec: {message}")
    raise ClusterError(f"exec in pod {pod} failed: {message or text[:200]}")


def run_session(
    session: ExecSession,
    pod: str,
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
    stdin: StdinLine | None = None,
) -> ExecResult:
    """Collect stdout/stderr until the server closes the session, then read its exit status.

    The session is always closed. A command still running at the deadline raises ``ExecTimeout``;
    closing the websocket does not stop it in the container, so callers give commands their own
    limits too (``statement_timeout`` for SQL). With ``stdin``, its line goes to channel 0 once said
    (the v4 protocol cannot close stdin, so the command must stop reading after one line).
    """
    deadline = clock() + timeout
    pending = stdin
    stdout: list[str] = []
    stderr: list[str] = []
    status: list[str] = []

    def drain() -> None:
        # timeout=0: read only what is already buffered; read_channel(..., None) would block.
        stdout.append(_text(session.read_channel(STDOUT_CHANNEL, timeout=0)))
        stderr.append(_text(session.read_channel(STDERR_CHANNEL, timeout=0)))
        status.append(_text(session.read_channel(ERROR_CHANNEL, timeout=0)))

    try:
        while session.is_open():
            remaining = deadline - clock()
            if remaining <= 0:
                raise ExecTimeout(f"exec in pod {pod}: no exit status within {timeout:g}s")
            poll = _POLL_SECONDS
            if pending is not None:
                line = pending.wait(0)
                if line is None:
                    poll = _STDIN_POLL_SECONDS
                else:
                    pending = None
                    try:
                        session.write_stdin(line + "\n")
                    except Exception as exc:  # websocket/socket errors of any kind mean the same here
                        raise ExecLost(f"exec in pod {pod}: connection lost: {exc}") from None
            try:
                session.update(timeout=min(remaining, poll))
            except Exception as exc:  # websocket/socket errors of any kind mean the same here
                raise ExecLost(f"exec in pod {pod}: connection lost: {exc}") from None
            drain()
        drain()
    finally:
        if stdin is not None:
            stdin.close()
        try:
            # websocket-client waits up to 3 s for the server's close frame by default; a server
            # that is still running our timed-out command would hold us that long for nothing.
            session.close(timeout=_CLOSE_SECONDS)
        except Exception:  # closing a dead socket must not hide the real outcome
            pass
    rc = parse_exec_status("".join(status), pod)
    return ExecResult(rc=rc, stdout="".join(stdout), stderr="".join(stderr))
