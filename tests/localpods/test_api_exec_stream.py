"""Pod exec over websockets against the local API server's streaming code, with real clients and real processes.

A small HTTP server in the test upgrades ``/api/v1/namespaces/ns/pods/p/exec`` and runs the query's
``command`` with ``stream_process``; it also answers the pod and the discovery documents, so that
kubectl (``/usr/bin/kubectl``) works against it as well as the ``kubernetes`` Python client.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import ssl
import struct
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.localpods.api.errors import ApiError
from tests.localpods.api.exec_stream import SUPPORTED_PROTOCOLS, V1_PROTOCOL, V4_PROTOCOL, V5_PROTOCOL, stream_error, stream_process
from tests.localpods.api.pki import Pki
from tests.localpods.api.websocket import OP_BINARY, OP_TEXT, WebSocket, WebSocketClosed, accept_key, handshake

kubernetes = pytest.importorskip("kubernetes")
websocket_client = pytest.importorskip("websocket")
from kubernetes.stream import stream as k8s_stream  # noqa: E402
from kubernetes.stream.ws_client import WSClient  # noqa: E402

KUBECTL = "/usr/bin/kubectl"
EXEC_PATH = "/api/v1/namespaces/ns/pods/p/exec"
# What the handler answers when the command's executable does not exist: containerd's text for a missing executable.
NOT_FOUND = (
    'error executing command in container: failed to exec in container: failed to start exec "0123abcd": OCI runtime exec failed: '
    'exec failed: unable to start container process: exec: "{name}": executable file not found in $PATH: unknown'
)
# Long enough for any step on a loaded machine, short enough to fail a hung test.
WAIT = 60.0

POD = {
    "kind": "Pod",
    "apiVersion": "v1",
    "metadata": {"name": "p", "namespace": "ns", "uid": "6f1c3a52-2f0e-4b5e-9c43-0d6a1f2b7e01", "resourceVersion": "1"},
    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    "status": {
        "phase": "Running",
        "containerStatuses": [{"name": "c", "ready": True, "restartCount": 0, "image": "busybox", "imageID": "", "state": {"running": {}}}],
    },
}
API_RESOURCES = {
    "kind": "APIResourceList",
    "groupVersion": "v1",
    "resources": [
        {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod", "verbs": ["get", "list"], "shortNames": ["po"]},
        {"name": "pods/exec", "singularName": "", "namespaced": True, "kind": "PodExecOptions", "verbs": ["create", "get"]},
    ],
}
VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0", "platform": "linux/amd64"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    results: queue.Queue[tuple[int | None, subprocess.Popen[bytes] | None]]
    pki: Pki | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.pki else 'http'}://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        pass

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        url = urllib.parse.urlsplit(self.path)
        documents = {
            "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]},
            "/api/v1": API_RESOURCES,
            "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
            "/version": VERSION,
            "/api/v1/namespaces/ns/pods/p": POD,
        }
        if url.path == EXEC_PATH:
            self._exec(urllib.parse.parse_qs(url.query))
        elif url.path in documents:
            self._json(200, documents[url.path])
        else:
            error = ApiError(404, "NotFound", "the server could not find the requested resource")
            self._json(404, error.status_body())

    do_POST = do_GET

    def _exec(self, query: dict[str, list[str]]) -> None:
        try:
            headers, protocol = handshake(self.headers, SUPPORTED_PROTOCOLS)
        except ApiError as exc:
            self._json(exc.status, exc.status_body())
            return
        # strconv.ParseBool, as the API server reads the flags: the Python client sends "True".
        flags = {name: query.get(name, ["false"])[-1] in ("1", "t", "T", "true", "TRUE", "True") for name in ("stdin", "stdout", "stderr")}
        command = query.get("command", [])
        self.send_response(101)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.close_connection = True
        ws = WebSocket(self.rfile, self.wfile, self.connection)
        pipe = subprocess.PIPE
        try:
            proc = subprocess.Popen(
                command,
                stdin=pipe if flags["stdin"] else subprocess.DEVNULL,
                stdout=pipe if flags["stdout"] else subprocess.DEVNULL,
                stderr=pipe if flags["stderr"] else subprocess.DEVNULL,
            )
        except FileNotFoundError:
            stream_error(ws, protocol, NOT_FOUND.format(name=command[0]), stdout=flags["stdout"], stderr=flags["stderr"])
            self.server.results.put((None, None))
            return
        self.server.results.put((stream_process(ws, protocol, proc, **flags), proc))


@contextlib.contextmanager
def _serving(pki: Pki | None) -> Iterator[_Server]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.results = queue.Queue()
    if pki is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.server_cert, pki.server_key)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        httpd.pki = pki
    thread = threading.Thread(target=httpd.serve_forever, name="exec-test-server", daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(WAIT)


@pytest.fixture
def server() -> Iterator[_Server]:
    with _serving(None) as httpd:
        yield httpd


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[_Server]:
    """The same server over HTTPS, with a certificate for 127.0.0.1 from its own CA, as the local API server has."""
    with _serving(Pki.create(str(tmp_path / "pki"), "127.0.0.1")) as httpd:
        yield httpd


def _configuration(httpd: _Server) -> Any:
    configuration = kubernetes.client.Configuration(host=httpd.url)
    if httpd.pki is not None:
        configuration.ssl_ca_cert = httpd.pki.ca_cert
    return configuration


def _core(httpd: _Server) -> Any:
    return kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(_configuration(httpd)))


def _exec(httpd: _Server, command: list[str], stdin: bool = False) -> Any:
    return k8s_stream(
        _core(httpd).connect_get_namespaced_pod_exec,
        "p",
        "ns",
        command=command,
        stdin=stdin,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )


def _ws_url(httpd: _Server, command: list[str], **flags: bool) -> str:
    query = [("command", arg) for arg in command] + [(name, "true" if value else "false") for name, value in flags.items()]
    return f"{httpd.url.replace('http', 'ws', 1)}{EXEC_PATH}?{urllib.parse.urlencode(query)}"


def _client(httpd: _Server, protocol: str, command: list[str], stdin: bool = False) -> WSClient:
    url = _ws_url(httpd, command, stdin=stdin, stdout=True, stderr=True)
    return WSClient(_configuration(httpd), url, {"sec-websocket-protocol": protocol}, capture_all=True)


def _run(resp: Any) -> tuple[str, str, str]:
    """Read until the server closes; stdout, stderr and the error channel's raw text."""
    resp.run_forever(timeout=WAIT)
    assert not resp.is_open(), "the server did not end the session"
    return resp.read_stdout(timeout=0), resp.read_stderr(timeout=0), resp.read_channel(3, timeout=0)


def _result(httpd: _Server) -> tuple[int | None, subprocess.Popen[bytes] | None]:
    return httpd.results.get(timeout=WAIT)


# The handshake.


def _upgrade(**extra: str) -> dict[str, str]:
    headers = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    headers.update(extra)
    return headers


def test_handshake_answers_the_rfc_example_and_prefers_the_servers_order() -> None:
    headers, protocol = handshake(_upgrade(**{"Sec-WebSocket-Protocol": "v4.channel.k8s.io, v5.channel.k8s.io"}), SUPPORTED_PROTOCOLS)
    assert protocol == V5_PROTOCOL
    assert headers == {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Accept": "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
        "Sec-WebSocket-Protocol": V5_PROTOCOL,
    }
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_handshake_without_a_subprotocol_is_v1_and_names_none() -> None:
    headers, protocol = handshake(_upgrade(Connection="keep-alive, Upgrade"), SUPPORTED_PROTOCOLS)
    assert protocol == ""
    assert "Sec-WebSocket-Protocol" not in headers


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({"Connection": "keep-alive"}, 400, "Upgrade request required"),
        ({"Upgrade": "SPDY/3.1"}, 400, "not websocket protocol"),
        ({"Sec-WebSocket-Key": ""}, 400, "mismatch challenge/response"),
        ({"Sec-WebSocket-Version": "8"}, 400, "missing or bad WebSocket Version"),
        (
            {"Sec-WebSocket-Protocol": "v3.channel.k8s.io,base64.channel.k8s.io"},
            403,
            "requested protocol(s) are not supported: [v3.channel.k8s.io base64.channel.k8s.io]; "
            "supports [v5.channel.k8s.io v4.channel.k8s.io channel.k8s.io ]",
        ),
    ],
)
def test_handshake_refusals_say_what_upstream_says(headers: dict[str, str], status: int, message: str) -> None:
    with pytest.raises(ApiError) as caught:
        handshake(_upgrade(**headers), SUPPORTED_PROTOCOLS)
    assert (caught.value.status, caught.value.message) == (status, message)
    assert caught.value.reason == ("Forbidden" if status == 403 else "BadRequest")


def test_refused_upgrade_reaches_the_python_client_as_the_handshake_status(server: _Server) -> None:
    with pytest.raises(websocket_client.WebSocketBadStatusException) as caught:
        websocket_client.create_connection(_ws_url(server, ["true"], stdout=True), subprotocols=["v3.channel.k8s.io"])
    assert caught.value.status_code == 403


# Frames, on a socket pair: the test plays a client writing raw frames.


def _client_frame(opcode: int, payload: bytes, fin: bool = True, mask: bytes = b"\x11\x22\x33\x44") -> bytes:
    size = len(payload)
    first = (0x80 if fin else 0) | opcode
    if size < 126:
        header = struct.pack("!BB", first, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, size)
    masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    return header + mask + masked


def _read_server_frame(reader: Any) -> tuple[int, bytes]:
    first, second = reader.read(2)
    assert first & 0x80, "server frames are unfragmented"
    assert not second & 0x80, "server frames are not masked"
    size = second & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", reader.read(2))
    elif size == 127:
        (size,) = struct.unpack("!Q", reader.read(8))
    return first & 0x0F, reader.read(size)


@pytest.fixture
def pair() -> Iterator[tuple[WebSocket, socket.socket, Any]]:
    server_end, client_end = socket.socketpair()
    reader = client_end.makefile("rb")
    try:
        yield WebSocket.from_socket(server_end), client_end, reader
    finally:
        reader.close()
        client_end.close()
        server_end.close()


def test_fragments_pings_and_the_close_handshake(pair: tuple[WebSocket, socket.socket, Any]) -> None:
    ws, client, reader = pair
    client.sendall(
        _client_frame(OP_TEXT, b"hel", fin=False)
        + _client_frame(0x9, b"are you there")
        + _client_frame(0x0, b"lo", fin=False)
        + _client_frame(0x0, "\u00e9".encode(), fin=True)
        + _client_frame(OP_BINARY, bytes(range(256)) * 300)
        + _client_frame(0x8, struct.pack("!H", 1001) + b"bye")
    )
    assert ws.recv() == (OP_TEXT, "hello\u00e9".encode())
    assert _read_server_frame(reader) == (0xA, b"are you there")
    assert ws.recv() == (OP_BINARY, bytes(range(256)) * 300)
    assert ws.recv() is None
    assert (ws.close_code, ws.close_reason) == (1001, "bye")
    assert _read_server_frame(reader) == (0x8, struct.pack("!H", 1001))
    assert ws.wait_closed(0)
    with pytest.raises(WebSocketClosed):
        ws.send_binary(b"late")


def test_server_close_then_the_peers_answer_ends_recv(pair: tuple[WebSocket, socket.socket, Any]) -> None:
    ws, client, reader = pair
    ws.close(1000)
    assert _read_server_frame(reader) == (0x8, struct.pack("!H", 1000))
    client.sendall(_client_frame(0x8, struct.pack("!H", 1000)))
    assert ws.recv() is None
    assert ws.close_code == 1000
    client.settimeout(WAIT)
    ws.abort()
    assert reader.read() == b"", "a close already sent is not echoed again"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (struct.pack("!BB", 0x82, 3) + b"abc", 1002),  # not masked
        (_client_frame(0x3, b""), 1002),  # reserved opcode
        (_client_frame(0x0, b"x"), 1002),  # continuation of nothing
        (_client_frame(0x9, b"x" * 126), 1002),  # control frame too long
        (_client_frame(OP_TEXT, b"\xff\xfe"), 1007),  # text that is not UTF-8
    ],
)
def test_protocol_violations_close_the_connection_with_their_code(pair: tuple[WebSocket, socket.socket, Any], frame: bytes, code: int) -> None:
    ws, client, reader = pair
    client.sendall(frame)
    assert ws.recv() is None
    opcode, payload = _read_server_frame(reader)
    assert (opcode, struct.unpack("!H", payload[:2])[0]) == (0x8, code)


def test_a_vanished_peer_ends_recv_as_1006(pair: tuple[WebSocket, socket.socket, Any]) -> None:
    ws, client, _reader = pair
    client.sendall(_client_frame(OP_BINARY, b"x" * 1000)[:500])
    client.shutdown(socket.SHUT_WR)
    assert ws.recv() is None
    assert ws.close_code == 1006


def test_concurrent_sends_keep_frames_whole(pair: tuple[WebSocket, socket.socket, Any]) -> None:
    ws, _client, reader = pair
    count, size = 200, 70_000

    def send(tag: int) -> None:
        for _frame in range(count):
            ws.send_binary(bytes([tag]) * size)

    threads = [threading.Thread(target=send, args=(tag,)) for tag in (1, 2, 3)]
    for thread in threads:
        thread.start()
    seen = {1: 0, 2: 0, 3: 0}
    for _frame in range(3 * count):
        opcode, payload = _read_server_frame(reader)
        assert opcode == OP_BINARY and len(payload) == size and len(set(payload)) == 1
        seen[payload[0]] += 1
    for thread in threads:
        thread.join(WAIT)
    assert seen == {1: count, 2: count, 3: count}


# The exec protocols, with the kubernetes Python client.


def test_python_client_gets_stdout_stderr_and_success(server: _Server) -> None:
    resp = _exec(server, ["sh", "-c", "echo out; echo err >&2; echo more"])
    stdout, stderr, error = _run(resp)
    assert (stdout, stderr) == ("out\nmore\n", "err\n")
    assert error == '{"metadata":{},"status":"Success"}'
    assert resp.subprotocol == V5_PROTOCOL
    assert _result(server)[0] == 0


def test_python_client_reads_the_exit_code(server: _Server) -> None:
    resp = _exec(server, ["sh", "-c", "echo before; exit 3"])
    resp.run_forever(timeout=WAIT)
    assert resp.returncode == 3
    assert resp.read_stdout(timeout=0) == "before\n"
    assert _result(server)[0] == 3


@pytest.mark.parametrize(
    ("protocol", "message"),
    [
        (V5_PROTOCOL, "command terminated with non-zero exit code: command terminated with exit code 7"),
        (V4_PROTOCOL, "command terminated with non-zero exit code: error executing command [sh -c exit 7], exit code 7"),
    ],
)
def test_non_zero_exit_status_is_the_upstream_json(server: _Server, protocol: str, message: str) -> None:
    resp = _client(server, protocol, ["sh", "-c", "exit 7"])
    _out, _err, error = _run(resp)
    expected = {
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "7"}]},
    }
    assert error == json.dumps(expected, separators=(",", ":"))
    assert _result(server)[0] == 7


def test_v1_sends_only_a_failures_message(server: _Server) -> None:
    ok = _client(server, V1_PROTOCOL, ["sh", "-c", "echo fine"])
    assert _run(ok) == ("fine\n", "", "")
    failed = _client(server, V1_PROTOCOL, ["sh", "-c", "exit 2"])
    assert _run(failed)[2] == "command terminated with non-zero exit code: error executing command [sh -c exit 2], exit code 2"


def test_python_client_stdin_closed_by_the_v5_signal(server: _Server) -> None:
    resp = _exec(server, ["sh", "-c", "cat; echo end"], stdin=True)
    resp.write_stdin("hello\n")
    resp.write_stdin(b"\x00bytes\n")
    resp.close_channel(0)
    resp.run_forever(timeout=WAIT)
    assert (resp.read_stdout(timeout=0), resp.read_stderr(timeout=0)) == ("hello\n\x00bytes\nend\n", "")
    assert resp.returncode == 0


@pytest.mark.parametrize("protocol", [V5_PROTOCOL, V4_PROTOCOL])
def test_client_going_away_closes_stdin_and_kills_nothing(server: _Server, tmp_path: Path, protocol: str) -> None:
    target = tmp_path / "stdin"
    resp = _client(server, protocol, ["sh", "-c", 'cat > "$0"; echo done >> "$0"', str(target)], stdin=True)
    resp.write_stdin("line one\nline two\n")
    # v4 has no other end of input than closing the websocket.
    resp.close()
    rc, proc = _result(server)
    assert rc is None, "the server reported an exit for a session whose client left"
    assert proc is not None and proc.wait(timeout=WAIT) == 0, "the command was not left to finish on its own"
    assert target.read_text() == "line one\nline two\ndone\n"


def test_large_output_arrives_complete_on_both_channels(server: _Server) -> None:
    resp = _exec(server, ["sh", "-c", "seq 1 600000; seq 1 200000 >&2"])
    stdout, stderr, error = _run(resp)
    assert len(stdout) > 4_000_000
    assert stdout == "".join(f"{n}\n" for n in range(1, 600001))
    assert stderr == "".join(f"{n}\n" for n in range(1, 200001))
    assert error == '{"metadata":{},"status":"Success"}'


@pytest.mark.parametrize(
    ("flags", "first"),
    [({"stdout": True, "stderr": True}, b"\x01"), ({"stdout": False, "stderr": True}, b"\x02"), ({"stdout": False, "stderr": False}, b"\x03")],
)
def test_first_message_is_empty_on_the_lowest_output_channel(server: _Server, flags: dict[str, bool], first: bytes) -> None:
    conn = websocket_client.create_connection(_ws_url(server, ["true"], stdin=False, **flags), subprotocols=[V4_PROTOCOL])
    try:
        assert conn.subprotocol == V4_PROTOCOL
        opcode, frame = conn.recv_data_frame(False)
        assert (opcode, frame.data) == (OP_BINARY, first)
        opcode, frame = conn.recv_data_frame(False)
        assert (opcode, frame.data) == (OP_BINARY, b'\x03{"metadata":{},"status":"Success"}')
        opcode, frame = conn.recv_data_frame(False)
        assert opcode == 0x8
    finally:
        conn.close()
    assert _result(server)[0] == 0


def test_command_that_cannot_start_is_an_internal_error(server: _Server) -> None:
    resp = _exec(server, ["no-such-command-here", "x"])
    stdout, stderr, error = _run(resp)
    assert (stdout, stderr) == ("", "")
    detail = NOT_FOUND.format(name="no-such-command-here")
    expected = {
        "metadata": {},
        "status": "Failure",
        "message": f"Internal error occurred: {detail}",
        "reason": "InternalError",
        "details": {"causes": [{"message": detail}]},
        "code": 500,
    }
    assert json.loads(error) == expected
    assert _result(server) == (None, None)


def _pod_exec_module() -> Any:
    collections = Path(__file__).resolve().parents[2] / ".collections"
    if (collections / "ansible_collections" / "dbonk8s" / "postgresql").is_dir() and str(collections) not in sys.path:
        sys.path.insert(0, str(collections))
    return pytest.importorskip("ansible_collections.dbonk8s.postgresql.plugins.module_utils._pod_exec")


def test_the_collections_exec_session_reads_a_line_and_an_exit_code(server: _Server) -> None:
    pod_exec = _pod_exec_module()
    cluster = pytest.importorskip("ansible_collections.dbonk8s.postgresql.plugins.module_utils._cluster")
    line = cluster.StdinLine()
    session = _exec(server, ["sh", "-c", 'read answer; echo "got $answer"; echo warn >&2; exit 4'], stdin=True)
    line.say("yes")
    result = pod_exec.run_session(session, "p", timeout=WAIT, stdin=line)
    assert (result.rc, result.stdout, result.stderr) == (4, "got yes\n", "warn\n")


# kubectl.


def _kubectl(server: _Server, tmp_path: Path, args: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    if not os.access(KUBECTL, os.X_OK):
        pytest.skip(f"{KUBECTL} is not installed: the kubectl exec tests need it")
    kubeconfig = tmp_path / "kubeconfig"
    if server.pki is not None:
        kubeconfig.write_text(server.pki.kubeconfig(server.url, namespace="ns"))
    else:
        cluster = {"name": "local", "cluster": {"server": server.url}}
        context = {"name": "local", "context": {"cluster": "local", "user": "local", "namespace": "ns"}}
        config = {"apiVersion": "v1", "kind": "Config", "clusters": [cluster], "users": [{"name": "local", "user": {"token": "local-test-token"}}]}
        kubeconfig.write_text(json.dumps({**config, "contexts": [context], "current-context": "local"}))
    env = {key: value for key, value in os.environ.items() if "proxy" not in key.lower()}
    env.update({"KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path)})
    return subprocess.run([KUBECTL, "--cache-dir", str(tmp_path / "cache"), *args], input=stdin, capture_output=True, env=env, timeout=WAIT, check=False)


def test_kubectl_exec_with_stdin_gives_back_input_and_exit_code(server: _Server, tmp_path: Path) -> None:
    data = b"hello\n" + bytes(range(256)) + b"\nworld\n" * 20000
    done = _kubectl(server, tmp_path, ["exec", "-i", "p", "--", "sh", "-c", "cat; exit 3"], stdin=data)
    assert done.returncode == 3, done.stderr.decode()
    assert done.stdout == data
    assert b"command terminated with exit code 3" in done.stderr
    assert _result(server)[0] == 3


def test_kubectl_exec_separates_stdout_and_stderr(server: _Server, tmp_path: Path) -> None:
    done = _kubectl(server, tmp_path, ["exec", "p", "--", "sh", "-c", "echo out; echo err >&2"])
    assert (done.returncode, done.stdout, done.stderr) == (0, b"out\n", b"err\n")


def test_kubectl_exec_of_a_missing_executable_prints_the_runtime_error(server: _Server, tmp_path: Path) -> None:
    done = _kubectl(server, tmp_path, ["exec", "p", "--", "no-such-command-here"])
    assert done.returncode == 1
    detail = NOT_FOUND.format(name="no-such-command-here")
    assert done.stderr.decode().strip().endswith(f"error: Internal error occurred: {detail}"), done.stderr.decode()


# Over TLS, as the local API server serves: the stdin reader and the output pumps share one SSL socket.


def test_tls_stdin_and_large_output_flow_at_once(tls_server: _Server) -> None:
    resp = _exec(tls_server, ["sh", "-c", "seq 1 300000 >&2 & cat; wait"], stdin=True)
    data = "".join(f"line {n}\n" for n in range(100000))
    for start in range(0, len(data), 65536):
        resp.write_stdin(data[start : start + 65536])
        resp.update(timeout=0)
    resp.close_channel(0)
    resp.run_forever(timeout=WAIT)
    assert resp.read_stdout(timeout=0) == data
    assert resp.read_stderr(timeout=0) == "".join(f"{n}\n" for n in range(1, 300001))
    assert resp.returncode == 0


def test_kubectl_over_tls(tls_server: _Server, tmp_path: Path) -> None:
    done = _kubectl(tls_server, tmp_path, ["exec", "-i", "p", "--", "sh", "-c", "cat; echo err >&2; exit 5"], stdin=b"over tls\n")
    assert (done.returncode, done.stdout) == (5, b"over tls\n"), done.stderr.decode()
    assert done.stderr.startswith(b"err\n")
