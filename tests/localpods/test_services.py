# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runtime's Services, with real processes: a virtual address per Service, whose new
connections go to a ready endpoint matching the selector as it is now while an existing connection
keeps its own; names in the pods' hosts files; EndpointSlices that follow readiness.

The pods are toy echo servers built here: each answers a connection with its hostname, then echoes
every line; it is ready while a file named after it exists."""

from __future__ import annotations

import os
import socket
import stat
import sys
import tempfile

import kubernetes
import pytest

from tests.localpods.fixtures import LocalPods, _down_all, eventually

NAMESPACE = "svc"

ECHO_SERVER = r"""
import os, socket, socketserver
class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        self.wfile.write((socket.gethostname() + "\n").encode())
        for line in self.rfile:
            self.wfile.write(line)
class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
Server((os.environ["POD_IP"], 8080), Echo).serve_forever()
"""


def echo_statefulset(ready_dir: str) -> dict:
    container = {
        "name": "echo",
        "image": "localpods/toy",
        "command": [sys.executable, "-c", ECHO_SERVER],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [{"name": "echo", "containerPort": 8080}],
        "readinessProbe": {"exec": {"command": ["sh", "-c", f'test -f "{ready_dir}/$(hostname)"']}, "periodSeconds": 1, "failureThreshold": 1},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "echo", "namespace": NAMESPACE},
        "spec": {
            "serviceName": "echo-headless",
            "replicas": 2,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "echo"}},
            "template": {"metadata": {"labels": {"app": "echo"}}, "spec": {"terminationGracePeriodSeconds": 2, "containers": [container]}},
        },
    }


def service(name: str, target_port, publish_not_ready: bool = False, headless: bool = False) -> dict:
    spec = {"selector": {"app": "echo"}, "ports": [{"name": "echo", "port": 7000, "targetPort": target_port}], "publishNotReadyAddresses": publish_not_ready}
    if headless:
        spec["clusterIP"] = "None"
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec}


class Echoes:
    def __init__(self, runtime: LocalPods, ready_dir: str) -> None:
        self.runtime, self.ready_dir = runtime, ready_dir
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=runtime.kubeconfig, client_configuration=configuration)
        api = kubernetes.client.ApiClient(configuration)
        self.core, self.apps = kubernetes.client.CoreV1Api(api), kubernetes.client.AppsV1Api(api)
        self.discovery = kubernetes.client.DiscoveryV1Api(api)

    def set_ready(self, pod: str, ready: bool) -> None:
        path = os.path.join(self.ready_dir, pod)
        if ready:
            with open(path, "w", encoding="utf-8"):
                pass
            os.chmod(path, 0o644)
        elif os.path.exists(path):
            os.unlink(path)
        eventually(lambda: self.pod_ready(pod) is ready, timeout=30, message=f"{pod} ready={ready}")

    def pod_ready(self, pod: str) -> bool:
        conditions = self.core.read_namespaced_pod(pod, NAMESPACE).status.conditions or []
        return any(c.type == "Ready" and c.status == "True" for c in conditions)

    def address(self, name: str) -> str:
        return eventually(lambda: self.core.read_namespaced_service(name, NAMESPACE).spec.cluster_ip, timeout=10, message=f"{name}'s virtual address")

    def slice_conditions(self, name: str) -> dict[str, bool]:
        slices = self.discovery.list_namespaced_endpoint_slice(NAMESPACE, label_selector=f"kubernetes.io/service-name={name}").items
        return {endpoint.target_ref.name: endpoint.conditions.ready for s in slices for endpoint in s.endpoints or []}


class Connection:
    """A client connection through a Service: who answered it, and whether it still echoes."""

    def __init__(self, address: str, port: int = 7000) -> None:
        self.sock = socket.create_connection((address, port), timeout=10)
        self.reader = self.sock.makefile("r", encoding="utf-8")
        self.pod = self.reader.readline().strip()

    def echo(self, text: str) -> str:
        self.sock.sendall((text + "\n").encode())
        return self.reader.readline().strip()

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def refused(address: str, port: int = 7000) -> bool:
    """Whether a connection is refused, or reset before the greeting: nobody serves it."""
    try:
        connection = Connection(address, port)
    except OSError:
        return True
    answered = bool(connection.pod)
    connection.close()
    return not answered


def answered_by(address: str) -> str:
    connection = Connection(address)
    try:
        return connection.pod
    finally:
        connection.close()


@pytest.fixture(scope="module")
def echoes():
    ready_dir = tempfile.mkdtemp(prefix="localpods-ready-")
    os.chmod(ready_dir, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    runtime = LocalPods.start(None, options=[f"--home-namespace={NAMESPACE}"])
    try:
        cluster = Echoes(runtime, ready_dir)
        cluster.core.create_namespace({"metadata": {"name": NAMESPACE}})
        cluster.core.create_namespaced_service(NAMESPACE, service("echo", "echo"))
        cluster.core.create_namespaced_service(NAMESPACE, service("echo-all", 8080, publish_not_ready=True))
        cluster.core.create_namespaced_service(NAMESPACE, service("echo-headless", 8080, headless=True))
        cluster.apps.create_namespaced_stateful_set(NAMESPACE, echo_statefulset(ready_dir))
        eventually(lambda: len(runtime.pods(NAMESPACE, "echo")) == 2 and all(p["status"].get("podIP") for p in runtime.pods(NAMESPACE, "echo")), timeout=60)
        yield cluster
    finally:
        _down_all([(runtime, set())])
        for entry in os.listdir(ready_dir):
            os.unlink(os.path.join(ready_dir, entry))
        os.rmdir(ready_dir)


def test_new_connections_follow_readiness_and_an_existing_one_keeps_its_endpoint(echoes: Echoes):
    address = echoes.address("echo")
    assert address.startswith("127.1.") and address != echoes.address("echo-all")
    echoes.set_ready("echo-0", True)
    eventually(lambda: echoes.slice_conditions("echo") == {"echo-0": True, "echo-1": False}, timeout=10, message="the slice follows readiness")
    assert {answered_by(address) for _attempt in range(4)} == {"echo-0"}
    kept = Connection(address)
    assert kept.pod == "echo-0"

    # Readiness moves from echo-0 to echo-1.
    echoes.set_ready("echo-1", True)
    echoes.set_ready("echo-0", False)
    eventually(lambda: echoes.slice_conditions("echo") == {"echo-0": False, "echo-1": True}, timeout=10, message="the slice follows readiness")
    assert {answered_by(address) for _attempt in range(4)} == {"echo-1"}
    # The connection made before is still the one echo-0 answered, and still works.
    assert kept.echo("still here") == "still here"
    kept.close()


def test_publish_not_ready_addresses_uses_every_pod(echoes: Echoes):
    echoes.set_ready("echo-0", False)
    echoes.set_ready("echo-1", False)
    address = echoes.address("echo-all")
    assert {answered_by(address) for _attempt in range(6)} == {"echo-0", "echo-1"}
    assert echoes.slice_conditions("echo-all") == {"echo-0": True, "echo-1": True}


def test_a_service_without_a_ready_endpoint_refuses_connections(echoes: Echoes):
    echoes.set_ready("echo-0", False)
    echoes.set_ready("echo-1", False)
    eventually(lambda: echoes.slice_conditions("echo") == {"echo-0": False, "echo-1": False}, timeout=10, message="no ready endpoint")
    # The proxy resets the connection: the greeting never comes.
    assert refused(echoes.address("echo"))
    # Not for want of a listener: a pod that becomes ready is answered again.
    echoes.set_ready("echo-1", True)
    eventually(lambda: echoes.slice_conditions("echo") == {"echo-0": False, "echo-1": True}, timeout=10, message="echo-1 ready")
    assert answered_by(echoes.address("echo")) == "echo-1"


def test_pods_resolve_service_names_and_headless_services_get_no_address(echoes: Echoes):
    address = echoes.address("echo")
    names = ["echo", f"echo.{NAMESPACE}", f"echo.{NAMESPACE}.svc", f"echo.{NAMESPACE}.svc.cluster.local"]
    found = echoes.runtime.cli("exec", "--namespace", NAMESPACE, "echo-1", "--", "getent", "hosts", *names).stdout.split("\n")
    assert [line.split()[0] for line in found if line] == [address] * len(names)
    assert echoes.core.read_namespaced_service("echo-headless", NAMESPACE).spec.cluster_ip == "None"
    # A headless Service still has its EndpointSlice.
    assert set(echoes.slice_conditions("echo-headless")) == {"echo-0", "echo-1"}


def test_a_service_created_later_is_named_in_running_pods(echoes: Echoes):
    echoes.core.create_namespaced_service(NAMESPACE, service("echo-late", 8080))
    address = echoes.address("echo-late")

    def resolved() -> str:
        completed = echoes.runtime.cli("exec", "--namespace", NAMESPACE, "echo-0", "--", "getent", "hosts", f"echo-late.{NAMESPACE}.svc", check=False)
        return completed.stdout.split()[0] if completed.returncode == 0 and completed.stdout else ""

    eventually(lambda: resolved() == address, timeout=10, message="the new name in echo-0's hosts file")
    echoes.set_ready("echo-0", True)
    assert answered_by(address) == "echo-0"
    echoes.core.delete_namespaced_service("echo-late", NAMESPACE)
    eventually(lambda: refused(address), timeout=10, message="the listener closed with its Service")
