"""The local pod runtime's Kubernetes API server: HTTPS on a loopback address, over the runtime's object store.

It authenticates as kube-apiserver does (client certificates signed by its CA, bearer tokens it issued
through ``serviceaccounts/token``), authorizes every request with RBAC, serves discovery, the OpenAPI
documents kubectl asks for, get/list/watch/create/update/patch (JSON, merge, strategic, apply)/delete on
the served resources, ``status`` and ``scale``, ``pods/exec`` over websockets, ``pods/log``,
``pods/eviction``, and the self-subject reviews. Errors are ``v1.Status`` bodies with the real codes.
The pods behind ``exec`` and ``log`` are the runtime's (the :class:`PodAccess` it passes in).
"""

from __future__ import annotations

import datetime
import http.server
import json
import os
import secrets
import socket
import ssl
import threading
import time
import urllib.parse
from typing import Any, Protocol

from tests.localpods.api import exec_stream, patches, rbac, resources, websocket
from tests.localpods.api.errors import ApiError, bad_request, not_found
from tests.localpods.api.pki import Pki
from tests.localpods.api.registry import Registry
from tests.localpods.api.selectors import field_selector, label_selector
from tests.localpods.api.store import LocalApiStore

# The version /version reports. kubectl's dispatcher on some machines picks the kubectl binary matching
# the server's minor version, so it names the one that is installed.
GIT_VERSION = resources.DEFAULT_GIT_VERSION
WATCH_DEFAULT_SECONDS = 1800
# Kinds whose registries answer a DELETE with the deleted object rather than a Status.
RETURN_DELETED_OBJECT = {"Pod", "Service", "PersistentVolumeClaim", "PersistentVolume"}
LOG_POLL_SECONDS = 0.2
TOKEN_SECONDS_DEFAULT = 3600


class PodAccess(Protocol):
    """What the runtime offers the API server for the processes of its pods."""

    def exec_process(self, namespace: str, pod: str, container: str, argv: list[str], stdin: bool) -> Any: ...

    def container_log(self, namespace: str, pod: str, container: str, previous: bool) -> str: ...


def _pod_error(error: LookupError) -> ApiError:
    """The runtime's refusal of an exec or a log read, with the status kubelet or the API server answers."""
    status = int(getattr(error, "status", 400))
    reason = {404: "NotFound", 400: "BadRequest"}.get(status, "InternalError")
    return ApiError(status, reason, str(error.args[0]) if error.args else str(error))


class RequestInfo:
    """What a request path names, as the apiserver's RequestInfoFactory reads it."""

    def __init__(self, method: str, path: str, query: dict[str, list[str]]) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.is_resource = False
        self.group = self.version = self.namespace = self.plural = self.name = self.subresource = ""
        self.watch = self._flag("watch")
        parts = [part for part in path.split("/") if part]
        if len(parts) >= 3 and parts[0] == "api":
            self.version, rest = parts[1], parts[2:]
        elif len(parts) >= 4 and parts[0] == "apis":
            self.group, self.version, rest = parts[1], parts[2], parts[3:]
        else:
            return
        if rest and rest[0] == "watch":
            self.watch, rest = True, rest[1:]
        if not rest:
            return
        if rest[0] == "namespaces" and len(rest) > 1:
            self.namespace = rest[1]
            # "namespaces/NAME/status" names the Namespace's own subresource, anything else a namespaced resource.
            if len(rest) > 2 and rest[2] not in ("status", "finalize"):
                rest = rest[2:]
        self.is_resource = True
        self.plural = rest[0]
        if self.plural == "namespaces" and self.namespace:
            self.name, self.namespace = self.namespace, ""
            self.subresource = rest[2] if len(rest) > 2 else ""
        else:
            self.name = rest[1] if len(rest) > 1 else ""
            self.subresource = rest[2] if len(rest) > 2 else ""

    def param(self, name: str, default: str = "") -> str:
        values = self.query.get(name)
        return values[0] if values else default

    def _flag(self, name: str) -> bool:
        return self.param(name).lower() in ("true", "1")

    def verb(self) -> str:
        if not self.is_resource:
            return {"GET": "get", "HEAD": "get", "POST": "post", "PUT": "put", "PATCH": "patch", "DELETE": "delete"}.get(self.method, self.method.lower())
        if self.method in ("GET", "HEAD"):
            if self.subresource in ("exec", "attach", "portforward"):
                return "create"
            if self.watch:
                return "watch"
            return "get" if self.name else "list"
        return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete" if self.name else "deletecollection"}.get(self.method, "")


class _TlsServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    api: "ApiServer"

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        # Headers and body leave in separate writes: without this, Nagle's algorithm and the client's
        # delayed ACK add 40 ms to every answer.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # The TLS handshake happens in the request's thread, so one slow client never holds the accept loop.
        return self.api.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _TlsServer
    timeout = 300

    def setup(self) -> None:
        super().setup()
        try:
            self.connection.settimeout(30)
            self.connection.do_handshake()
            self.connection.settimeout(self.timeout)
        except (ssl.SSLError, OSError):
            self.close_connection = True
            self.rfile = open(os.devnull, "rb")  # pylint: disable=consider-using-with

    def log_message(self, format: str, *args: Any) -> None:  # pylint: disable=redefined-builtin
        return

    def _dispatch(self) -> None:
        self.server.api.handle(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch  # noqa: N815

    # -- response helpers used by ApiServer ------------------------------------------------------

    def send_json(self, code: int, body: Any, content_type: str = "application/json") -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_text(self, code: int, text: str) -> None:
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def start_chunked(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()

    def chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            return self.rfile.read(length)
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0] or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return b""


class ApiServer:
    """One API server: ``start()`` listens and writes the admin kubeconfig; ``stop()`` ends it."""

    def __init__(self, state_dir: str, store: LocalApiStore, pods: PodAccess | None = None, address: str = "127.0.0.1", port: int = 0) -> None:
        self.state_dir = os.path.abspath(state_dir)
        self.store = store
        self.registry = Registry(store)
        self.pods = pods
        self.address = address
        self.pki = Pki.create(os.path.join(self.state_dir, "pki"), address)
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(self.pki.server_cert, self.pki.server_key)
        self.tls.load_verify_locations(self.pki.ca_cert)
        self.tls.verify_mode = ssl.CERT_OPTIONAL
        self.tls.set_alpn_protocols(["http/1.1"])
        self.tokens: dict[str, tuple[rbac.User, float]] = {}
        self.tokens_lock = threading.Lock()
        self.httpd = _TlsServer((address, port), _Handler)
        self.httpd.api = self
        self.port = self.httpd.server_address[1]
        self.url = f"https://{address}:{self.port}"
        self.kubeconfig = os.path.join(self.state_dir, "kubeconfig")
        self.log_path = os.path.join(self.state_dir, "apiserver.log")
        self._log = open(self.log_path, "a", encoding="utf-8")  # pylint: disable=consider-using-with
        self._log_lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def start(self) -> str:
        self.registry.ensure_system_namespaces()
        self._ensure_kubernetes_service()
        self.pki.write_kubeconfig(self.kubeconfig, self.url)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="apiserver", daemon=True)
        self.thread.start()
        return self.url

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._log.close()

    def _ensure_kubernetes_service(self) -> None:
        """``default/kubernetes`` and its EndpointSlice name the API server's address, as in every cluster."""
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {
                "clusterIP": self.address,
                "ports": [{"name": "https", "port": self.port, "protocol": "TCP", "targetPort": self.port}],
                "type": "ClusterIP",
            },
        }
        endpoints = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [self.address], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": self.port, "protocol": "TCP"}],
        }
        for obj in (service, endpoints):
            existing = self.store.get(obj["kind"], "default", "kubernetes")
            if existing is None:
                self.store.create(obj)
            else:
                obj["metadata"] = {**existing["metadata"], **obj["metadata"]}
                with self.store.locked():
                    self.store.write_locked(obj)

    # -- tokens ----------------------------------------------------------------------------------

    def issue_token(self, user: rbac.User, seconds: int = TOKEN_SECONDS_DEFAULT) -> str:
        token = secrets.token_urlsafe(32)
        with self.tokens_lock:
            self.tokens[token] = (user, time.time() + seconds)
        return token

    def service_account_kubeconfig(self, path: str, namespace: str, name: str, seconds: int = TOKEN_SECONDS_DEFAULT) -> str:
        """A kubeconfig for ServiceAccount ``namespace/name`` (which must exist), with a fresh token."""
        if self.store.get("ServiceAccount", namespace, name) is None:
            raise not_found("serviceaccounts", name)
        token = self.issue_token(rbac.service_account_user(namespace, name), seconds)
        return self.pki.write_kubeconfig(path, self.url, namespace=namespace, user=f"{namespace}-{name}", token=token)

    # -- request handling ------------------------------------------------------------------------

    def _audit(self, handler: _Handler, user: str, code: int) -> None:
        with self._log_lock:
            if not self._log.closed:
                stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%S.%f")[:-3]
                self._log.write(f"{stamp} {handler.client_address[0]} {user} {handler.command} {handler.path} {code}\n")
                self._log.flush()

    def _authenticate(self, handler: _Handler) -> rbac.User | None:
        authorization = handler.headers.get("Authorization") or ""
        if authorization.startswith("Bearer "):
            with self.tokens_lock:
                entry = self.tokens.get(authorization[7:].strip())
            if entry is None or entry[1] < time.time():
                return None
            return entry[0]
        try:
            certificate = handler.connection.getpeercert()
        except (ValueError, OSError):
            certificate = None
        if certificate:
            name, groups = "", []
            for rdn in certificate.get("subject", ()):
                for key, value in rdn:
                    if key == "commonName":
                        name = value
                    elif key == "organizationName":
                        groups.append(value)
            if name:
                return rbac.User(name, tuple(groups) + ("system:authenticated",))
        return None

    @staticmethod
    def _selected_name(info: RequestInfo) -> str:
        """A list or watch of ``metadata.name=X`` is a request for X, as resourceNames rules see it."""
        for part in info.param("fieldSelector").split(","):
            key, _sep, value = part.partition("=")
            if key.strip() == "metadata.name" and value:
                return value.lstrip("=").strip()
        return ""

    def _objects(self, kind: str, namespace: str | None) -> list[dict]:
        return self.store.list(kind, namespace)

    def handle(self, handler: _Handler) -> None:
        parsed = urllib.parse.urlsplit(handler.path)
        info = RequestInfo(handler.command, parsed.path, urllib.parse.parse_qs(parsed.query, keep_blank_values=True))
        user = self._authenticate(handler)
        code = 200
        try:
            if user is None:
                raise ApiError(401, "Unauthorized", "Unauthorized")
            request = rbac.Request(
                verb=info.verb(),
                api_group=info.group,
                resource=info.plural,
                subresource=info.subresource,
                # The apiserver reads /api/v1/namespaces/NAME as in the namespace NAME, for RBAC.
                namespace=info.namespace or (info.name if info.plural == "namespaces" else ""),
                name=info.name or self._selected_name(info),
                path=parsed.path,
            )
            allowed, reason = rbac.authorize(user, request, self._objects)
            if not allowed:
                raise rbac.forbidden(user, request, reason)
            code = self._serve(handler, info, user)
        except ApiError as error:
            code = error.status
            if handler.command in ("POST", "PUT", "PATCH", "DELETE") and not getattr(handler, "_body_read", False):
                # An unread body would be taken for the next request on this connection.
                handler.read_body()
            handler.send_json(error.status, error.status_body())
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, TimeoutError):
            code = 499
            handler.close_connection = True
        except Exception as error:  # pylint: disable=broad-except
            code = 500
            try:
                handler.send_json(500, ApiError(500, "InternalError", f"Internal error occurred: {error!r}").status_body())
            except OSError:
                handler.close_connection = True
        self._audit(handler, user.name if user else "-", code)

    def _body(self, handler: _Handler) -> bytes:
        handler._body_read = True  # pylint: disable=protected-access
        return handler.read_body()

    def _json_body(self, handler: _Handler) -> Any:
        raw = self._body(handler)
        try:
            return json.loads(raw or b"null")
        except ValueError as error:
            raise bad_request(f"the body of the request could not be decoded as JSON: {error}") from None

    @staticmethod
    def _manager(handler: _Handler, info: RequestInfo) -> str:
        manager = info.param("fieldManager")
        if manager:
            return manager
        agent = handler.headers.get("User-Agent") or "unknown"
        return agent.split("/")[0].strip() or "unknown"

    def _serve(self, handler: _Handler, info: RequestInfo, user: rbac.User) -> int:
        if not info.is_resource:
            return self._serve_non_resource(handler, info)
        resource = resources.find(info.group, info.version, info.plural)
        if resource is None or (info.subresource and info.subresource not in resource.subresources):
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        namespace = info.namespace or None
        if resource.namespaced and info.name and not namespace and info.method != "GET":
            raise not_found(resource.plural, info.name, resource.group)
        dry_run = info.param("dryRun") == "All"
        manager = self._manager(handler, info)
        method, name, sub = info.method, info.name, info.subresource
        if method in ("GET", "HEAD"):
            if sub == "exec":
                return self._exec(handler, info, namespace or "", name)
            if sub == "log":
                return self._logs(handler, info, namespace or "", name)
            if sub == "scale":
                handler.send_json(200, self.registry.scale(resource, namespace or "", name))
                return 200
            if info.watch:
                return self._watch(handler, info, resource, namespace)
            if name:
                obj = self.registry.get(resource, namespace, name)
                self._send_objects(handler, resource, [obj], single=True, info=info)
                return 200
            return self._list(handler, info, resource, namespace)
        if method == "POST":
            if sub == "exec":
                return self._exec(handler, info, namespace or "", name)
            body = self._json_body(handler)
            if sub == "eviction":
                handler.send_json(201, self.registry.evict(resource, namespace or "", name, body, dry_run))
                return 201
            if sub == "token":
                return self._token_request(handler, namespace or "", name, body)
            if resource.plural in ("selfsubjectaccessreviews", "selfsubjectrulesreviews", "selfsubjectreviews"):
                return self._review(handler, resource, user, body)
            if name:
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            created = self.registry.create(resource, namespace, body, manager, dry_run)
            handler.send_json(201, created)
            return 201
        if method == "PUT" and name:
            body = self._json_body(handler)
            if sub == "scale":
                replicas = ((body or {}).get("spec") or {}).get("replicas") if isinstance(body, dict) else None
                handler.send_json(200, self.registry.set_scale(resource, namespace or "", name, replicas, manager, dry_run))
                return 200
            handler.send_json(200, self.registry.update(resource, namespace, name, body, manager, dry_run, sub))
            return 200
        if method == "PATCH" and name:
            raw = self._body(handler)
            content_type = handler.headers.get("Content-Type") or ""
            if sub == "scale":
                scale = self.registry.scale(resource, namespace or "", name)
                patched = patches.merge_patch(scale, json.loads(raw or b"{}"))
                handler.send_json(200, self.registry.set_scale(resource, namespace or "", name, (patched.get("spec") or {}).get("replicas"), manager, dry_run))
                return 200
            force = info.param("force").lower() == "true"
            obj, created = self.registry.patch(resource, namespace, name, content_type, raw, manager, force, dry_run, sub)
            handler.send_json(201 if created else 200, obj)
            return 201 if created else 200
        if method == "DELETE":
            raw = self._body(handler)
            options = json.loads(raw) if raw.strip() else {}
            if info.param("propagationPolicy"):
                options["propagationPolicy"] = info.param("propagationPolicy")
            if options.get("dryRun") == ["All"]:
                dry_run = True
            if name:
                deleted = self.registry.delete(resource, namespace, name, options, dry_run)
                pending = deleted["metadata"].get("deletionTimestamp") and self.registry.live(resource, namespace, name) is not None
                if pending or resource.kind in RETURN_DELETED_OBJECT:
                    handler.send_json(200, deleted)
                    return 200
                handler.send_json(
                    200,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Success",
                        "details": {"name": name, "group": resource.group, "kind": resource.plural, "uid": deleted["metadata"].get("uid")},
                    },
                )
                return 200
            keep = self._filter(info)
            deleted_items = self.registry.delete_collection(resource, namespace, keep, options, dry_run)
            handler.send_json(200, {"kind": resource.list_kind, "apiVersion": resource.api_version, "metadata": {}, "items": deleted_items})
            return 200
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    # -- non-resource paths ----------------------------------------------------------------------

    def _serve_non_resource(self, handler: _Handler, info: RequestInfo) -> int:
        path = info.path.rstrip("/") or "/"
        if path in ("/healthz", "/livez", "/readyz"):
            handler.send_text(200, "ok")
            return 200
        found = resources.discovery_for_path(path, handler.headers.get("Accept") or "", f"{self.address}:{self.port}", GIT_VERSION)
        if found is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        content_type, document = found
        handler.send_json(200, document, content_type)
        return 200

    # -- reads -----------------------------------------------------------------------------------

    @staticmethod
    def _filter(info: RequestInfo) -> Any:
        labels = label_selector(info.param("labelSelector"))
        fields = field_selector(info.param("fieldSelector"))
        return lambda obj: labels(obj) and fields(obj)

    def _send_objects(
        self, handler: _Handler, resource: resources.Resource, objects: list[dict], single: bool = False, info: RequestInfo | None = None
    ) -> None:
        accept = handler.headers.get("Accept") or ""
        if resources.wants_table(accept):
            include = info.param("includeObject", "Metadata") if info else "Metadata"
            version = objects[0]["metadata"].get("resourceVersion", "") if single and objects else self.store.current_resource_version()
            table = resources.table(
                resource, objects, include, list_metadata={"resourceVersion": version}, api_version=resources.table_api_version(accept) or "meta.k8s.io/v1"
            )
            handler.send_json(200, table)
            return
        if single:
            handler.send_json(200, objects[0])
            return
        handler.send_json(
            200,
            {
                "kind": resource.list_kind,
                "apiVersion": resource.api_version,
                "metadata": {"resourceVersion": self.store.current_resource_version()},
                "items": objects,
            },
        )

    def _list(self, handler: _Handler, info: RequestInfo, resource: resources.Resource, namespace: str | None) -> int:
        version = self.store.current_resource_version()
        keep = self._filter(info)
        items = [obj for obj in self.registry.list(resource, namespace) if keep(obj)]
        accept = handler.headers.get("Accept") or ""
        if resources.wants_table(accept):
            self._send_objects(handler, resource, items, info=info)
            return 200
        handler.send_json(200, {"kind": resource.list_kind, "apiVersion": resource.api_version, "metadata": {"resourceVersion": version}, "items": items})
        return 200

    def _watch(self, handler: _Handler, info: RequestInfo, resource: resources.Resource, namespace: str | None) -> int:
        selected = self._filter(info)

        def keep(obj: dict) -> bool:
            return selected(obj) and (not info.name or obj["metadata"]["name"] == info.name)

        timeout = float(info.param("timeoutSeconds") or WATCH_DEFAULT_SECONDS)
        deadline = time.monotonic() + timeout
        requested = info.param("resourceVersion")
        handler.start_chunked("application/json")
        handler.connection.settimeout(None)

        def send(event_type: str, obj: dict) -> None:
            handler.chunk(json.dumps({"type": event_type, "object": obj}).encode() + b"\n")

        def wanted(obj: dict) -> bool:
            if obj.get("kind") != resource.kind:
                return False
            if resource.namespaced and namespace and (obj.get("metadata") or {}).get("namespace") != namespace:
                return False
            return keep(obj)

        if requested in ("", "0"):
            position = int(self.store.current_resource_version())
            for obj in self.registry.list(resource, namespace):
                if keep(obj):
                    send("ADDED", obj)
        else:
            position = int(requested)
        while time.monotonic() < deadline:
            events = self.store.journal.since(position)
            if events is None:
                send("ERROR", ApiError(410, "Expired", f"too old resource version: {position} ({self.store.journal.horizon})").status_body())
                break
            for event in events:
                obj = event["object"]
                position = int(obj["metadata"]["resourceVersion"])
                if wanted(obj):
                    send(event["type"], obj)
            self.store.journal.wait(position, min(1.0, max(0.0, deadline - time.monotonic())))
        handler.end_chunked()
        return 200

    # -- pods: exec and logs ---------------------------------------------------------------------

    def _container(self, pod: dict, requested: str) -> str:
        containers = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
        names = containers + [c["name"] for c in (pod.get("spec") or {}).get("initContainers") or []]
        name = pod["metadata"]["name"]
        if requested:
            if requested not in names:
                raise bad_request(f"container {requested} is not valid for pod {name}")
            return requested
        if len(containers) == 1:
            return containers[0]
        default = ((pod.get("metadata") or {}).get("annotations") or {}).get("kubectl.kubernetes.io/default-container")
        if default in containers:
            return default
        raise bad_request(f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]")

    def _exec(self, handler: _Handler, info: RequestInfo, namespace: str, name: str) -> int:
        pods = resources.find("", "v1", "pods")
        pod = self.registry.get(pods, namespace, name)
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            raise bad_request(f"cannot exec into a container in a completed pod; current phase is {phase}")
        container = self._container(pod, info.param("container"))
        argv = info.query.get("command") or []
        if not argv:
            raise bad_request("you must specify at least 1 command")
        if self.pods is None:
            raise ApiError(500, "InternalError", "this API server has no pods to exec into")
        response_headers, protocol = websocket.handshake(handler.headers, exec_stream.SUPPORTED_PROTOCOLS)
        want_stdin = info.param("stdin").lower() in ("true", "1")
        try:
            process = self.pods.exec_process(namespace, name, container, list(argv), want_stdin)
        except LookupError as error:
            raise _pod_error(error) from None
        handler.send_response(101)
        for key, value in response_headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.flush()
        handler.connection.settimeout(None)
        handler.close_connection = True
        connection = websocket.WebSocket(handler.rfile, handler.wfile, handler.connection)
        exit_code = exec_stream.stream_process(
            connection,
            protocol,
            process,
            stdin=want_stdin,
            stdout=info.param("stdout", "true").lower() in ("true", "1"),
            stderr=info.param("stderr", "true").lower() in ("true", "1"),
            command=list(argv),
        )
        if exit_code is None:
            # The client left: as with kubelet, the command runs on; it is only reaped here.
            threading.Thread(target=process.wait, daemon=True).start()
        return 101

    def _logs(self, handler: _Handler, info: RequestInfo, namespace: str, name: str) -> int:
        pods = resources.find("", "v1", "pods")
        pod = self.registry.get(pods, namespace, name)
        container = self._container(pod, info.param("container"))
        if self.pods is None:
            raise ApiError(500, "InternalError", "this API server has no pods to read logs from")
        try:
            path = self.pods.container_log(namespace, name, container, info.param("previous").lower() == "true")
        except LookupError as error:
            raise _pod_error(error) from None
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating') from None
        tail = info.param("tailLines")
        if tail:
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-int(tail) :]) if int(tail) > 0 else b""
        if info.param("follow").lower() != "true":
            handler.send_response(200)
            handler.send_header("Content-Type", "text/plain")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
            return 200
        handler.start_chunked("text/plain")
        handler.chunk(data)
        uid = pod["metadata"].get("uid")
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            while True:
                more = handle.read()
                if more:
                    handler.chunk(more)
                    continue
                current = self.store.get("Pod", namespace, name)
                if current is None or current["metadata"].get("uid") != uid:
                    break
                time.sleep(LOG_POLL_SECONDS)
        handler.end_chunked()
        return 200

    # -- tokens and reviews ----------------------------------------------------------------------

    def _token_request(self, handler: _Handler, namespace: str, name: str, body: Any) -> int:
        if self.store.get("ServiceAccount", namespace, name) is None:
            raise not_found("serviceaccounts", name)
        spec = (body or {}).get("spec") or {} if isinstance(body, dict) else {}
        seconds = int(spec.get("expirationSeconds") or TOKEN_SECONDS_DEFAULT)
        if seconds < 600:
            raise ApiError(
                422,
                "Invalid",
                f'TokenRequest.authentication.k8s.io "{name}" is invalid: spec.expirationSeconds: Invalid value: {seconds}: '
                "may not specify a duration less than 10 minutes",
            )
        token = self.issue_token(rbac.service_account_user(namespace, name), seconds)
        expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
        answer = {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": None},
            "spec": {"audiences": spec.get("audiences") or ["https://kubernetes.default.svc.cluster.local"], "expirationSeconds": seconds},
            "status": {"token": token, "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")},
        }
        handler.send_json(201, answer)
        return 201

    def _review(self, handler: _Handler, resource: resources.Resource, user: rbac.User, body: Any) -> int:
        review = body if isinstance(body, dict) else {}
        review = {**review, "apiVersion": resource.api_version, "kind": resource.kind}
        review.setdefault("metadata", {"creationTimestamp": None})
        spec = review.get("spec") or {}
        if resource.plural == "selfsubjectaccessreviews":
            review["status"] = rbac.access_review(user, spec, self._objects)
        elif resource.plural == "selfsubjectrulesreviews":
            review["status"] = rbac.rules_review(user, spec.get("namespace") or "", self._objects)
        else:
            review["status"] = {"userInfo": {"username": user.name, "groups": list(user.groups)}}
        handler.send_json(201, review)
        return 201
