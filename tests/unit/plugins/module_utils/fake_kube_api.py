# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fake Kubernetes API server on 127.0.0.1 for the unit tests of the Kubernetes backend.

It speaks the real wire protocol to the real ``kubernetes`` client: REST paths and ``v1.Status``
error bodies of the API server, bearer-token authentication, merge-patch content type, and pod
exec over a websocket with the ``v4.channel.k8s.io`` channel protocol (stdout 1, stderr 2, the
exit ``v1.Status`` on 3). Objects live in a ``LocalApiStore`` (same JSON shapes).

Exec is scripted per test: ``server.exec_handler(pod, container, argv)`` returns an ``ExecScript``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
import struct
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from tests.localpods.api.store import LocalApiError, LocalApiStore

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@dataclasses.dataclass
class ExecScript:
    """What the fake sends on an exec websocket."""

    stdout: str = ""
    stderr: str = ""
    rc: int | None = 0  # None: close without any status (a lost connection)
    status: dict | None = None  # a complete v1.Status to send instead of one derived from rc
    handshake_error: tuple[int, str] | None = None  # refuse the upgrade with (HTTP status, message)
    delay: float = 0.0  # seconds to wait before the status, to make the client time out
    read_stdin: bool = False  # wait for one frame on channel 0 (stdin) and echo it as "stdin:<data>" on stdout


def exit_status(rc: int) -> dict:
    if rc == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command, exit code {rc}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(rc)}]},
    }


def status_body(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}


ROUTES = [
    (re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)$"), "Namespace"),
    (re.compile(r"^/apis/apps/v1/namespaces/(?P<ns>[^/]+)/statefulsets/(?P<name>[^/]+)$"), "StatefulSet"),
    (re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods$"), "PodList"),
    (re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)/exec$"), "Exec"),
    (re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)$"), "Pod"),
    (re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/configmaps/(?P<name>[^/]+)$"), "ConfigMap"),
    (re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/services/(?P<name>[^/]+)$"), "Service"),
]


class FakeKubeApi:
    def __init__(self, root: str, token: str = "good-token") -> None:
        self.store = LocalApiStore(root)
        self.token = token
        self.forbidden_kinds: set[str] = set()
        self.exec_handler: Callable[[str, str, list[str]], ExecScript] = lambda pod, container, argv: ExecScript()
        self.requests: list[tuple[str, str, str]] = []  # (method, path, content type)
        self.exec_calls: list[tuple[str, str, list[str]]] = []
        self.exec_stdin_flags: list[str] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeKubeApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                api.handle(self, "GET")

            def do_PUT(self) -> None:
                api.handle(self, "PUT")

            def do_PATCH(self) -> None:
                api.handle(self, "PATCH")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- HTTP ----------------------------------------------------------------------------------

    @staticmethod
    def _send_json(handler: BaseHTTPRequestHandler, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        handler.send_response(code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parsed = urllib.parse.urlparse(handler.path)
        query = urllib.parse.parse_qs(parsed.query)
        self.requests.append((method, parsed.path, handler.headers.get("Content-Type", "")))
        length = int(handler.headers.get("Content-Length") or 0)
        body = json.loads(handler.rfile.read(length)) if length else None
        if handler.headers.get("Authorization") != f"Bearer {self.token}":
            self._send_json(handler, 401, status_body(401, "Unauthorized", "Unauthorized"))
            return
        for pattern, kind in ROUTES:
            match = pattern.match(parsed.path)
            if match:
                break
        else:
            self._send_json(handler, 404, status_body(404, "NotFound", "the server could not find the requested resource"))
            return
        namespace, name = match.group("ns"), match.groupdict().get("name")
        if kind in self.forbidden_kinds:
            self._send_json(handler, 403, status_body(403, "Forbidden", f'{kind.lower()}s is forbidden: User "tester" cannot {method.lower()} resource'))
            return
        try:
            if kind == "Exec":
                self._exec(handler, namespace, name, query)
                return
            if kind == "Namespace":
                if namespace not in self.store.namespaces():
                    raise LocalApiError(404, "NotFound", f'namespaces "{namespace}" not found')
                self._send_json(handler, 200, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}, "status": {"phase": "Active"}})
                return
            if kind == "PodList":
                selector = None
                if query.get("labelSelector"):
                    selector = dict(term.split("=", 1) for term in query["labelSelector"][0].split(","))
                items = self.store.list("Pod", namespace, selector)
                self._send_json(handler, 200, {"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": items})
                return
            if method == "GET":
                obj = self.store.get(kind, namespace, name)
                if obj is None:
                    raise LocalApiError(404, "NotFound", f'{kind.lower()}s "{name}" not found')
                self._send_json(handler, 200, obj)
            elif method == "PUT":
                body.setdefault("kind", kind)
                body["metadata"]["namespace"] = namespace
                self._send_json(handler, 200, self.store.replace(body))
            elif method == "PATCH":
                content_type = handler.headers.get("Content-Type", "")
                if content_type != "application/merge-patch+json":
                    self._send_json(handler, 415, status_body(415, "UnsupportedMediaType", f"this fake only takes merge patches, not {content_type}"))
                    return
                self._send_json(handler, 200, self.store.patch_merge(kind, namespace, name, body))
        except LocalApiError as exc:
            self._send_json(handler, exc.status, status_body(exc.status, exc.reason, exc.message))

    # -- exec websocket ------------------------------------------------------------------------

    def _exec(self, handler: BaseHTTPRequestHandler, namespace: str, pod: str, query: dict) -> None:
        argv = query.get("command", [])
        container = (query.get("container") or [""])[0]
        self.exec_calls.append((pod, container, argv))
        self.exec_stdin_flags.append((query.get("stdin") or ["false"])[0])
        stored = self.store.get("Pod", namespace, pod)
        if stored is None:
            script = ExecScript(handshake_error=(404, f'pods "{pod}" not found'))
        elif (stored.get("status") or {}).get("phase") != "Running":
            script = ExecScript(handshake_error=(400, f'container not found ("{container}")'))
        else:
            script = self.exec_handler(pod, container, argv)
        if script.handshake_error:
            code, message = script.handshake_error
            self._send_json(handler, code, status_body(code, "BadRequest" if code == 400 else "NotFound", message))
            return
        key = handler.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        handler.send_response(101, "Switching Protocols")
        handler.send_header("Upgrade", "websocket")
        handler.send_header("Connection", "Upgrade")
        handler.send_header("Sec-WebSocket-Accept", accept)
        handler.send_header("Sec-WebSocket-Protocol", "v4.channel.k8s.io")
        handler.end_headers()
        handler.wfile.flush()
        out = handler.wfile
        if script.read_stdin:
            data = _read_channel_frame(handler.rfile, channel=0)
            out.write(_frame(0x2, b"\x01" + b"stdin:" + data))
        if script.stdout:
            out.write(_frame(0x2, b"\x01" + script.stdout.encode()))
        if script.stderr:
            out.write(_frame(0x2, b"\x02" + script.stderr.encode()))
        out.flush()
        if script.delay:
            threading.Event().wait(script.delay)
        status = script.status if script.status is not None else (exit_status(script.rc) if script.rc is not None else None)
        try:
            if status is not None:
                out.write(_frame(0x2, b"\x03" + json.dumps(status).encode()))
            out.write(_frame(0x8, struct.pack("!H", 1000)))
            out.flush()
        except OSError:
            pass  # the client gave up (timeout test)
        handler.close_connection = True


def _read_channel_frame(rfile: Any, channel: int) -> bytes:
    """The payload (after the channel byte) of the client's next data frame on ``channel``; client
    frames are masked (RFC 6455 5.3)."""
    while True:
        first, second = rfile.read(2)
        opcode, length = first & 0x0F, second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", rfile.read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", rfile.read(8))
        mask = rfile.read(4) if second & 0x80 else b"\0\0\0\0"
        payload = bytes(byte ^ mask[index % 4] for index, byte in enumerate(rfile.read(length)))
        if opcode in (0x1, 0x2) and payload[:1] == bytes([channel]):
            return payload[1:]


def _frame(opcode: int, payload: bytes) -> bytes:
    header = bytes([0x80 | opcode])
    length = len(payload)
    if length < 126:
        header += bytes([length])
    elif length < 1 << 16:
        header += bytes([126]) + struct.pack("!H", length)
    else:
        header += bytes([127]) + struct.pack("!Q", length)
    return header + payload


def seed_cluster(store: LocalApiStore, namespace: str = "postgres", name: str = "postgres", members: int = 3, phases: dict[str, str] | None = None) -> None:
    """StatefulSet, its pods, the record of the primary and the -rw Service, as the role creates them."""
    labels = {"app": name, "app.kubernetes.io/name": "postgres", "app.kubernetes.io/instance": name}
    store.create(
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"replicas": members, "serviceName": name, "selector": {"matchLabels": labels}},
        }
    )
    for ordinal in range(members):
        pod = f"{name}-{ordinal}"
        phase = (phases or {}).get(pod, "Running")
        store.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": pod, "namespace": namespace, "labels": {**labels, "statefulset.kubernetes.io/pod-name": pod}},
                "status": {
                    "phase": phase,
                    "podIP": f"10.244.0.{10 + ordinal}",
                    "conditions": [{"type": "Ready", "status": "True" if phase == "Running" else "False"}],
                    "containerStatuses": [{"name": "postgres", "ready": phase == "Running", "restartCount": 0, "state": {"running": {}}}],
                },
            }
        )
    store.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{name}-primary", "namespace": namespace},
            "data": {"primary": f"{name}-0", "epoch": "1"},
        }
    )
    store.create(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": f"{name}-rw", "namespace": namespace},
            "spec": {"selector": {"statefulset.kubernetes.io/pod-name": f"{name}-0"}, "ports": [{"port": 5432}]},
        }
    )
