# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The exec layer against a fake of ``kubernetes.stream.ws_client.WSClient``.

The fake keeps WSClient's buffering semantics (frames appended to per-channel buffers by
``update``; ``read_channel`` pops a buffer; the connection flag drops on the close frame) and is fed
the frames a real API server sends for an exec session.
"""

from __future__ import annotations

import json

import pytest
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._cluster import ClusterError, ExecLost, ExecTimeout, PodUnavailable, StdinLine
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._pod_exec import ERROR_CHANNEL, parse_exec_status, run_session

SUCCESS = json.dumps({"metadata": {}, "status": "Success"})
EXIT_3 = json.dumps(
    {
        "metadata": {},
        "status": "Failure",
        "message": "command terminated with non-zero exit code: error executing command [psql -c x], exit code 3",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
    }
)
NOT_FOUND = json.dumps(
    {
        "metadata": {},
        "status": "Failure",
        "message": 'error executing command in container: container not found ("postgres")',
        "reason": "InternalError",
        "code": 500,
    }
)
NO_EXECUTABLE = json.dumps(
    {
        "metadata": {},
        "status": "Failure",
        "message": 'OCI runtime exec failed: exec failed: unable to start container process: exec: "psql": executable file not found in $PATH: unknown',
        "reason": "InternalError",
        "code": 500,
    }
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeWSClient:
    """Frames are (channel, text) pairs; ``None`` in the script is the close frame."""

    def __init__(self, script: list, clock: FakeClock, update_error: Exception | None = None) -> None:
        self._script = list(script)
        self._channels: dict[int, str] = {}
        self._connected = True
        self._clock = clock
        self._update_error = update_error
        self.closed = False
        self.update_timeouts: list[float] = []
        self.stdin_writes: list[tuple[float, str]] = []

    def is_open(self) -> bool:
        return self._connected

    def update(self, timeout: float = 0) -> None:
        if not self._connected:
            return
        if self._update_error is not None:
            raise self._update_error
        if not self._script:
            # Nothing arrives: poll() waits the whole timeout.
            self.update_timeouts.append(timeout)
            self._clock.now += timeout
            return
        frame = self._script.pop(0)
        if frame is None:
            self._connected = False
            return
        channel, data = frame
        self._channels[channel] = self._channels.get(channel, "") + data

    def read_channel(self, channel: int, timeout: float = 0) -> str:
        if channel not in self._channels:
            self.update(timeout=timeout)
        return self._channels.pop(channel, "")

    def close(self, **kwargs) -> None:
        self.closed = True
        self._connected = False

    def write_stdin(self, data: str) -> None:
        if self._update_error is not None:
            raise self._update_error
        self.stdin_writes.append((self._clock.now, data))


def test_success_collects_stdout_and_stderr():
    clock = FakeClock()
    session = FakeWSClient([(1, '{"in_recovery": '), (2, "NOTICE: x\n"), (1, "false}\n"), (ERROR_CHANNEL, SUCCESS), None], clock)
    result = run_session(session, "postgres-0", timeout=5, clock=clock)
    assert (result.rc, result.stdout, result.stderr) == (0, '{"in_recovery": false}\n', "NOTICE: x\n")
    assert session.closed


def test_non_zero_exit_code_comes_from_the_status_cause():
    clock = FakeClock()
    session = FakeWSClient([(2, "psql: error: connection to server failed\n"), (ERROR_CHANNEL, EXIT_3), None], clock)
    result = run_session(session, "postgres-1", timeout=5, clock=clock)
    assert result.rc == 3
    assert result.stderr.startswith("psql: error")


def test_status_split_over_frames_is_joined():
    clock = FakeClock()
    session = FakeWSClient([(ERROR_CHANNEL, EXIT_3[:20]), (ERROR_CHANNEL, EXIT_3[20:]), None], clock)
    assert run_session(session, "postgres-1", timeout=5, clock=clock).rc == 3


def test_closed_channel_without_status_is_a_lost_connection():
    clock = FakeClock()
    session = FakeWSClient([(1, "partial output"), None], clock)
    with pytest.raises(ExecLost, match="without an exit status"):
        run_session(session, "postgres-2", timeout=5, clock=clock)
    assert session.closed


def test_socket_error_during_update_is_a_lost_connection():
    clock = FakeClock()
    session = FakeWSClient([], clock, update_error=ConnectionResetError(104, "Connection reset by peer"))
    with pytest.raises(ExecLost, match="Connection reset by peer"):
        run_session(session, "postgres-2", timeout=5, clock=clock)
    assert session.closed


def test_timeout_when_no_status_arrives():
    clock = FakeClock()
    session = FakeWSClient([(1, "working...")], clock)
    with pytest.raises(ExecTimeout, match="within 2s"):
        run_session(session, "postgres-0", timeout=2, clock=clock)
    assert session.closed
    # The deadline is honoured: no wait goes past it.
    assert clock.now <= 1000.0 + 2 + 1e-9
    assert all(wait <= 0.5 for wait in session.update_timeouts)


def test_container_not_found_is_pod_unavailable():
    with pytest.raises(PodUnavailable):
        parse_exec_status(NOT_FOUND, "postgres-0")


def test_missing_executable_is_a_cluster_error_with_the_message():
    with pytest.raises(ClusterError, match="executable file not found") as error:
        parse_exec_status(NO_EXECUTABLE, "postgres-0")
    assert not isinstance(error.value, (PodUnavailable, ExecLost))


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   \n",
        "not json",
        "[]",
        json.dumps({"status": "Failure", "reason": "NonZeroExitCode", "details": {"causes": []}}),
        json.dumps({"status": "Failure", "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": "x"}]}}),
    ],
)
def test_status_without_exit_code_is_lost(raw):
    with pytest.raises(ExecLost):
        parse_exec_status(raw, "postgres-0")


def test_bytes_frames_are_decoded():
    clock = FakeClock()

    class BinaryWSClient(FakeWSClient):
        def read_channel(self, channel, timeout=0):
            text = super().read_channel(channel, timeout)
            return text.encode()

    session = BinaryWSClient([(1, "héllo"), (ERROR_CHANNEL, SUCCESS), None], clock)
    assert run_session(session, "postgres-0", timeout=5, clock=clock).stdout == "héllo"


class SaysAfter(StdinLine):
    """A line said once the fake clock has reached ``moment`` (as another thread would)."""

    def __init__(self, clock: FakeClock, moment: float, line: str) -> None:
        super().__init__()
        self.clock, self.moment, self.pending = clock, moment, line

    def wait(self, timeout):
        if self.clock.now >= self.moment:
            self.say(self.pending)
        return super().wait(0)


def test_stdin_line_is_sent_once_said_and_polled_for_closely():
    clock = FakeClock()
    session = FakeWSClient([], clock)
    line = SaysAfter(clock, 1000.1, "go")
    with pytest.raises(ExecTimeout):
        run_session(session, "postgres-1", timeout=1, clock=clock, stdin=line)
    assert [data for _at, data in session.stdin_writes] == ["go\n"]
    sent_at = session.stdin_writes[0][0]
    # Said at 1000.1: sent within a few milliseconds, not after a long poll.
    assert 1000.1 <= sent_at < 1000.11
    assert all(wait <= 0.002 for wait in session.update_timeouts[: int(0.1 / 0.002)])


def test_stdin_line_never_said_is_closed_and_sends_nothing_after_the_exit():
    clock = FakeClock()
    line = StdinLine()
    session = FakeWSClient([(1, "{}"), (ERROR_CHANNEL, SUCCESS), None], clock)
    assert run_session(session, "postgres-1", timeout=5, clock=clock, stdin=line).rc == 0
    assert session.stdin_writes == []
    # Closed once the session ended: whoever would say "go" later finds it said (empty).
    assert line.wait(0) == ""


def test_stdin_write_error_is_a_lost_connection():
    clock = FakeClock()
    line = StdinLine()
    line.say("go")
    session = FakeWSClient([], clock, update_error=BrokenPipeError(32, "Broken pipe"))
    with pytest.raises(ExecLost, match="Broken pipe"):
        run_session(session, "postgres-1", timeout=5, clock=clock, stdin=line)
