# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Services for the local pod runtime: what kube-proxy, the EndpointSlice controller and the
cluster DNS do for the Services in the store.

Each Service with a selector that is not headless gets a virtual address of its own on loopback
(``127.1.<slot>.<n>``, apart from the pods' addresses), written into its ``spec.clusterIP`` as the
API server allocates one, and a TCP listener per port. For each new connection the proxy picks one
endpoint among the pods that match the selector *now* and are Ready (any pod with an address when
``publishNotReadyAddresses``), and splices the two sockets; a connection keeps its endpoint until
either side closes it, as with kube-proxy, whatever the endpoints become afterwards. A Service with
no endpoint resets new connections, as kube-proxy's REJECT rule does.

Every Service with a selector, headless ones included, gets an EndpointSlice ``<service>-<hash>``
(label ``kubernetes.io/service-name``, endpoint conditions ``ready``/``serving``/``terminating``,
``targetRef`` to the Pod), kept in step with its pods.

Names: ``<svc>``, ``<svc>.<ns>``, ``<svc>.<ns>.svc`` and ``<svc>.<ns>.svc.cluster.local`` of every
Service with a virtual address, in every pod's hosts file (the short name only in its own namespace).

Where it differs from Kubernetes: TCP only (no UDP, no SCTP); no ``sessionAffinity``, no
``externalTrafficPolicy``, no NodePort or LoadBalancer addresses (a Service of those types gets its
virtual address like a ClusterIP one); endpoints are chosen in turn rather than at random; the name of a
headless Service itself resolves to nothing (its pods' own names do); the proxy reacts to the store's
events at once, where kube-proxy and the EndpointSlice controller take up to about a second.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import socket
import struct
import threading
from typing import Any, Callable, Iterable

from tests.localpods.api.store import LocalApiStore

#: The second octet of the Services' virtual addresses: 127.1.<slot>.<n>.
SERVICE_ADDRESS_OCTET = 1
_WATCHED_KINDS = {"Service", "Pod"}
POLL_SECONDS = 0.5
_ACCEPT_BACKLOG = 64
_COPY_CHUNK = 65536


def _ready(pod: dict) -> bool:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False


def _selects(selector: dict[str, str], pod: dict) -> bool:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return all(labels.get(key) == value for key, value in selector.items())


def _target_port(port: dict, pod: dict) -> int | None:
    """The pod's port for a Service port: ``targetPort`` as a number, or the container port of that
    name; ``port`` itself without a targetPort. None: the pod has no port of that name."""
    target = port.get("targetPort", port.get("port"))
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
        return int(target)
    for container in ((pod.get("spec") or {}).get("containers") or []) + ((pod.get("spec") or {}).get("initContainers") or []):
        for container_port in container.get("ports") or []:
            if container_port.get("name") == target:
                return int(container_port["containerPort"])
    return None


def _is_headless(service: dict) -> bool:
    return (service.get("spec") or {}).get("clusterIP") == "None"


def _tcp_ports(service: dict) -> list[dict]:
    return [port for port in (service.get("spec") or {}).get("ports") or [] if port.get("protocol", "TCP") == "TCP" and "port" in port]


def endpoints_of(service: dict, pods: Iterable[dict]) -> list[dict]:
    """The Service's endpoints among ``pods`` (of its namespace): ``pod``, ``ip``, ``ready``, ``uid``
    and the pod object, in pod name order; only pods with an address."""
    selector = (service.get("spec") or {}).get("selector") or {}
    publish_not_ready = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    found = []
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        ip = (pod.get("status") or {}).get("podIP")
        if not ip or not _selects(selector, pod):
            continue
        ready = _ready(pod)
        found.append({"pod": pod["metadata"]["name"], "ip": ip, "ready": ready, "usable": ready or publish_not_ready, "object": pod})
    return found


def endpoint_slice(service: dict, endpoints: list[dict]) -> dict:
    """The EndpointSlice that the EndpointSlice controller keeps for ``service``."""
    metadata = service["metadata"]
    namespace, name = metadata["namespace"], metadata["name"]
    suffix = hashlib.sha256(f"{namespace}/{name}/{metadata.get('uid', '')}".encode()).hexdigest()[:5]
    ports = []
    for port in _tcp_ports(service):
        entry: dict[str, Any] = {"port": _target_port(port, endpoints[0]["object"]) if endpoints else port.get("targetPort", port["port"]), "protocol": "TCP"}
        entry["name"] = port.get("name", "")
        ports.append(entry)
    owner = {"apiVersion": "v1", "kind": "Service", "name": name, "uid": metadata.get("uid", ""), "controller": True, "blockOwnerDeletion": True}
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{name}-{suffix}",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": name, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
            "ownerReferences": [owner],
        },
        "addressType": "IPv4",
        "endpoints": [
            {
                "addresses": [endpoint["ip"]],
                "conditions": {"ready": endpoint["usable"], "serving": endpoint["ready"], "terminating": False},
                "targetRef": {"kind": "Pod", "namespace": namespace, "name": endpoint["pod"], "uid": endpoint["object"]["metadata"].get("uid", "")},
                "nodeName": (endpoint["object"].get("spec") or {}).get("nodeName", "localpods"),
            }
            for endpoint in endpoints
        ],
        "ports": ports,
    }


def hosts_lines(addresses: dict[tuple[str, str], str], namespace: str) -> list[str]:
    """The hosts file lines of the Services' virtual addresses, for a pod of ``namespace``."""
    lines = []
    for (service_namespace, name), address in sorted(addresses.items()):
        names = [f"{name}.{service_namespace}.svc.cluster.local", f"{name}.{service_namespace}.svc", f"{name}.{service_namespace}"]
        if service_namespace == namespace:
            names.append(name)
        lines.append(f"{address}\t{' '.join(names)}")
    return lines


class _Listener:
    """The proxy of one Service port: accepts on the virtual address, splices to an endpoint."""

    def __init__(self, proxies: "ServiceProxies", key: tuple[str, str], address: str, port: dict) -> None:
        self.proxies, self.key, self.port = proxies, key, port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, int(port["port"])))
        self.sock.listen(_ACCEPT_BACKLOG)
        self.turn = itertools.count()
        self.connections: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, name=f"service {key[0]}/{key[1]}:{port['port']}", daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _peer = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        target = self.proxies.pick(self.key, self.port, next(self.turn))
        upstream = None
        if target is not None:
            try:
                upstream = socket.create_connection(target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                upstream = None
        if upstream is None:
            # No endpoint (or it refuses): a reset, as kube-proxy's REJECT gives the client a refusal.
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            return
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.lock:
            self.connections.update((client, upstream))
        done = threading.Event()
        threading.Thread(target=self._pump, args=(client, upstream, done), daemon=True).start()
        self._pump(upstream, client, done)

    def _pump(self, source: socket.socket, sink: socket.socket, done: threading.Event) -> None:
        try:
            while True:
                data = source.recv(_COPY_CHUNK)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        if done.is_set():
            # The second direction is over too: the connection is.
            with self.lock:
                self.connections.difference_update((source, sink))
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.close()
        done.set()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        with self.lock:
            connections, self.connections = list(self.connections), set()
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.close()


class ServiceProxies:
    """The Services of the store: virtual addresses, proxies, EndpointSlices and hosts lines."""

    def __init__(self, store: LocalApiStore, slot: int, log: Callable[[str], None], hosts_changed: Callable[[], None]) -> None:
        self.store, self.slot, self.log, self.hosts_changed = store, slot, log, hosts_changed
        self.lock = threading.RLock()
        # (namespace, name) -> the virtual address, kept for as long as the daemon runs.
        self.addresses: dict[tuple[str, str], str] = {}
        self.spare = (f"127.{SERVICE_ADDRESS_OCTET}.{slot}.{n}" for n in range(1, 255))
        self.listeners: dict[tuple[str, str, int], _Listener] = {}
        self.endpoints: dict[tuple[str, str], list[dict]] = {}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="services", daemon=True)

    def start(self) -> None:
        """Allocates the addresses of the Services stored so far, then follows the store."""
        self._sync_logged()
        self.thread.start()

    def _sync_logged(self) -> None:
        try:
            self.sync()
        except Exception as error:  # pylint: disable=broad-except
            # A write that lost a race with a client (409): the event it caused brings the next sync.
            self.log(f"services: {error!r}")

    def stop(self) -> None:
        self.stopped.set()
        with self.lock:
            for listener in self.listeners.values():
                listener.close()
            self.listeners.clear()

    def hosts_lines(self, namespace: str) -> list[str]:
        with self.lock:
            return hosts_lines(dict(self.addresses), namespace)

    def pick(self, key: tuple[str, str], port: dict, turn: int) -> tuple[str, int] | None:
        """The endpoint of the next connection to Service ``key``'s ``port``: the usable ones in turn."""
        with self.lock:
            usable = [endpoint for endpoint in self.endpoints.get(key, []) if endpoint["usable"]]
        candidates = [(endpoint["ip"], _target_port(port, endpoint["object"])) for endpoint in usable]
        candidates = [(ip, target) for ip, target in candidates if target is not None]
        return candidates[turn % len(candidates)] if candidates else None

    def _run(self) -> None:
        version = int(self.store.current_resource_version() or 0)
        while not self.stopped.is_set():
            # The daemon's own writes (the API server's, the pods' status) arrive as events at once;
            # another process writing into the store directly is seen within a poll.
            self.store.journal.wait(version, timeout=POLL_SECONDS)
            events = self.store.journal.since(version)
            version = int(events[-1]["object"]["metadata"]["resourceVersion"]) if events else int(self.store.current_resource_version() or 0)
            if events and not any(event["object"].get("kind") in _WATCHED_KINDS for event in events):
                continue
            if not self.stopped.is_set():
                self._sync_logged()

    def sync(self) -> None:
        """Brings addresses, listeners, endpoints and EndpointSlices in line with the store."""
        with self.lock:
            services = {}
            for namespace in self.store.namespaces():
                for service in self.store.list("Service", namespace):
                    if (service.get("spec") or {}).get("selector"):
                        service["metadata"]["namespace"] = namespace
                        services[(namespace, service["metadata"]["name"])] = service
            hosts_before = dict(self.addresses)
            for key, service in services.items():
                pods = self.store.list("Pod", key[0])
                self.endpoints[key] = endpoints_of(service, pods)
                if not _is_headless(service):
                    self._ensure_address(key, service)
                self._publish_slice(service, self.endpoints[key])
            for key in [key for key in self.endpoints if key not in services]:
                del self.endpoints[key]
                self.addresses.pop(key, None)
            wanted = {(key[0], key[1], int(port["port"])) for key, service in services.items() if key in self.addresses for port in _tcp_ports(service)}
            for listener_key in [k for k in self.listeners if k not in wanted]:
                self.listeners.pop(listener_key).close()
            for namespace, name, number in sorted(wanted - set(self.listeners)):
                port = next(p for p in _tcp_ports(services[(namespace, name)]) if int(p["port"]) == number)
                try:
                    self.listeners[(namespace, name, number)] = _Listener(self, (namespace, name), self.addresses[(namespace, name)], port)
                except OSError as error:
                    self.log(f"service {namespace}/{name}: cannot listen on {self.addresses[(namespace, name)]}:{number}: {error}")
            hosts_changed = hosts_before != self.addresses
        if hosts_changed:
            self.hosts_changed()

    def _ensure_address(self, key: tuple[str, str], service: dict) -> None:
        address = self.addresses.get(key)
        if address is None:
            address = next(self.spare, None)
            if address is None:
                raise RuntimeError(f"no virtual address left for service {key[0]}/{key[1]}")
            self.addresses[key] = address
            self.log(f"service {key[0]}/{key[1]}: virtual address {address}")
        spec = service.get("spec") or {}
        if spec.get("clusterIP") != address:
            # As the API server allocates it at creation: the client never sent it, so no apply owns it.
            with contextlib.suppress(Exception):
                self.store.patch_merge("Service", key[0], key[1], {"spec": {"clusterIP": address, "clusterIPs": [address]}})

    def _publish_slice(self, service: dict, endpoints: list[dict]) -> None:
        wanted = endpoint_slice(service, endpoints)
        namespace, name = wanted["metadata"]["namespace"], wanted["metadata"]["name"]
        current = self.store.get("EndpointSlice", namespace, name)
        if current is not None:
            same = all(json.dumps(current.get(field), sort_keys=True) == json.dumps(wanted[field], sort_keys=True) for field in ("endpoints", "ports"))
            if same:
                return
            wanted["metadata"] = {**current["metadata"], **{k: wanted["metadata"][k] for k in ("labels", "ownerReferences")}}
            self.store.replace(wanted)
        else:
            with contextlib.suppress(Exception):
                self.store.create(wanted)
